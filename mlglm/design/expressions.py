"""Evaluating a column expression of an lme4 formula, such as ``size - incidence`` or
``log(n)``, as patsy evaluates a formula term.

lme4 formulas compute some columns inline: the failures of ``cbind(s, n - s)`` and
the offset of ``offset(log(n))``. :func:`evaluate` runs such an expression as patsy
runs a term of the fixed part: Python, with a name looked up among the data's
columns first and then among the names the formula may use
(:mod:`mlglm.design.formula_env`: the caller's namespace, R's function names, Python's
built-ins). It is not a sandbox -- neither is patsy: an expression can do whatever
Python code in the caller's namespace can. Never build a formula from untrusted text.
"""
from __future__ import annotations

import builtins
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .formula_env import formula_names

__all__ = ["evaluate", "evaluate_terms", "ExpressionError"]


class ExpressionError(ValueError):
    """A column expression that cannot be evaluated, or whose values are not one
    number per row (the message says which and why)."""


class _DataFirst(Mapping):
    """Columns of ``data`` first, then ``names`` (patsy's lookup order)."""

    def __init__(self, data, names):
        self.data, self.names = data, names

    def __getitem__(self, key):
        if key in self.data.columns:
            return self.data[key]
        return self.names[key]

    def __iter__(self):
        return iter(list(self.data.columns) + list(self.names))

    def __len__(self):
        return len(self.data.columns) + len(self.names)


def evaluate(expr: str, data, names, what: str = "expression") -> np.ndarray:
    """The values of ``expr`` for every row of ``data`` as floats, the names looked up
    as patsy looks them up (module docstring): ``offset(log(n))``'s ``log(n)``, the
    failures ``n - s`` of ``cbind(s, n - s)``.

    ``what`` names the place in messages (``"offset(log(n))"``). Raises
    :class:`ExpressionError` (a ``ValueError``) when the expression cannot be
    evaluated or its values are not numbers, one per row.
    """
    text = expr.strip()
    try:
        code = compile(text, "<formula>", "eval")
        value = eval(code, {"__builtins__": builtins}, _DataFirst(data, names))  # noqa: S307
    except Exception as exc:
        hint = ""
        if isinstance(exc, NameError):
            hint = ("; a name must be a column of the data or defined where the model is "
                    "built (or passed with eval_env=)")
        raise ExpressionError(f"cannot evaluate {what}: {type(exc).__name__}: {exc}{hint}") \
            from exc
    return _per_row(value, text, what, len(data))


def _per_row(value, text: str, what: str, n: int) -> np.ndarray:
    """``value`` as n floats (a scalar is repeated); a clear error otherwise."""
    if isinstance(value, pd.Series) and pd.api.types.is_extension_array_dtype(value.dtype) \
            and (pd.api.types.is_numeric_dtype(value.dtype)
                 or pd.api.types.is_bool_dtype(value.dtype)):
        value = value.to_numpy(dtype=float, na_value=np.nan)   # nullable Int64, boolean
    raw = np.asarray(value)
    if raw.dtype.kind not in "biuf":
        sample = [v for v in np.ravel(raw)[:3]]
        raise ExpressionError(f"{what} must give numbers, one per row; {text} gives "
                                 f"values such as {sample}")
    out = raw.astype(float)
    if out.ndim == 0:
        out = np.full(n, float(out))
    if out.shape != (n,):
        raise ExpressionError(f"{what} gives {out.size} values for {n} rows; "
                                 "it must give one number per row")
    return out


def evaluate_terms(terms, data, names) -> np.ndarray:
    """The sum of the offset expressions ``terms`` on ``data`` (zeros for none), with
    R's functions available where ``names`` (a model's ``formula_env``; empty once
    unpickled) does not define them."""
    env = formula_names(names or {}, terms, r_names=True)
    return sum((evaluate(t, data, env, f"offset({t})") for t in terms), np.zeros(len(data)))
