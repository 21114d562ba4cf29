"""The core's exceptions: a request it cannot honour, an inner iteration that fails.

:class:`MixedGLMInputError` is defined at the bottom of the package so that the
core can refuse what no engine can do (adaptive quadrature over crossed
factors, a grid beyond the memory limit) with the same exception the model layer
raises for bad input; the message always says what to do instead.
"""
from __future__ import annotations

__all__ = ["MixedGLMInputError", "ModeFailure"]


class MixedGLMInputError(ValueError):
    """Invalid input or a model the engines cannot fit; the message says what to do."""


class ModeFailure(RuntimeError):
    """The inner Newton iteration for the conditional modes did not converge (any
    engine: one term, nested, crossed); the fit driver treats the point as outside the
    region it can evaluate."""
