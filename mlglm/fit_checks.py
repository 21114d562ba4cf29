"""Checks around a fit: the design and quadrature settings before it, the warnings after.

Before fitting: a rank-deficient fixed-effects design is refused naming the
redundant column (:func:`_check_rank`), a random effect without a fixed effect
is warned about (:func:`_check_re_in_fixed`), ``nagq`` is validated against
the size of the product grid (:func:`_resolve_nagq`) and against the random-
effects structure (:func:`mlglm.core.problem.check_quadrature_structure`: quadrature needs nested
factors). After fitting, :func:`_warn_fit_problems` raises one warning per
problem -- non-convergence, a singular fit, separation, an AGHQ fit whose
estimates would move with more points (the fit-time check of
:mod:`mlglm.core.adequacy`), a ``nagq="auto"`` that did not settle -- each
with advice; the summary shows the same flags.
"""
from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from .core.quadrature import MAX_GRID_POINTS
from .data_checks import DataWarning, MixedGLMInputError
from .mixedlm_view import single_term

__all__ = ["FitError", "SingularFitWarning", "SeparationWarning", "QuadratureWarning",
           "singular_advice", "boundary_groups"]


class FitError(RuntimeError):
    """The optimisation broke down numerically; the message says what to try."""


class SingularFitWarning(UserWarning):
    """A random-effect SD is estimated at zero (the fit is on the boundary)."""


class SeparationWarning(UserWarning):
    """Binomial data (quasi-)completely separated by some fixed effect."""


class QuadratureWarning(UserWarning):
    """The AGHQ estimates move with more quadrature points (advice in the message)."""


def _warn_fit_problems(res):
    """One warning per problem, with advice; the summary shows the same flags."""
    if not res.converged:
        rec = res.optim
        detail = ""
        if hasattr(rec, "newton_decrement"):
            detail = (f" (max |gradient| {rec.grad_norm:.2g}, Newton decrement "
                      f"{rec.newton_decrement:.2g}, Hessian PD: {rec.hessian_pd})")
        warnings.warn("the fit has not converged" + detail + "; try start_params= from a "
                      "simpler model, rescale covariates, or check for separation",
                      ConvergenceWarning, stacklevel=3)
    if np.any(res.singular):
        what = res.singular_description()
        warnings.warn(f"singular fit: {what}; {singular_advice(what)}", SingularFitWarning,
                      stacklevel=3)
    sep = getattr(res, "separation", None)
    if sep:
        warnings.warn(f"possible separation: {sep}; remove or merge the offending terms or "
                      "levels", SeparationWarning, stacklevel=3)
    chk = getattr(res.optim, "quadrature_check", None)
    if chk is not None and not chk.adequate:
        why = boundary_groups(res.model)
        warnings.warn(chk.advice() + (f" ({why})" if why else ""), QuadratureWarning,
                      stacklevel=3)
    auto = getattr(res.optim, "auto", None)
    if auto is not None and not auto.settled:
        warnings.warn(f"{auto.describe()}; the estimates at nagq={auto.nagq} are reported",
                      QuadratureWarning, stacklevel=3)


def singular_advice(description: str) -> str:
    """What to do about a singular fit described by ``description`` (the results'
    ``singular_description()``): drop an effect whose SD is 0; for perfectly correlated
    effects, drop one of them or their correlation (``||``)."""
    if "correlated" in description or "combination" in description:
        return "consider dropping one of those random effects, or their correlation (||)"
    return "consider dropping that random effect"


def boundary_groups(model) -> str:
    """Where adaptive quadrature struggles, in words ("" if nowhere in particular).

    Groups whose responses all sit at a boundary of their distribution (binomial: every
    trial a failure, or every one a success; counts: all zero) have conditional
    distributions of their random effects that are far from normal: the normal prior cut
    off by a steep likelihood next to the mode, which a Gauss-Hermite rule integrates
    slowly (benchmarks/QUADRATURE.md, Part E). Counted for the levels of every grouping
    factor (AGHQ integrates every level of a nested chain); rows in memory.
    """
    if not getattr(model, "rows_on_driver", True):
        return ""
    fam = model.fam
    if not (fam.is_binomial or fam.name in ("poisson", "negative_binomial")):
        return ""
    y = np.asarray(model.endog, dtype=float)
    m = np.asarray(model.n_trials, dtype=float)
    what = "all 0 or all 1" if fam.is_binomial else "all zero"
    parts = []
    for t in model.re_terms:
        ysum = np.bincount(t.codes, weights=y, minlength=t.n_levels)
        at_boundary = ysum == 0
        if fam.is_binomial:
            at_boundary |= ysum == np.bincount(t.codes, weights=m, minlength=t.n_levels)
        n = int(np.sum(at_boundary))
        if n:
            where = "groups" if single_term(model) else f"levels of {t.name}"
            parts.append(f"{n} of {t.n_levels} {where}")
    if not parts:
        return ""
    return (f"{' and '.join(parts)} have responses {what}: the conditional distributions "
            "of their random effects are far from normal, where the quadrature needs many "
            "points")


def _report(res, disp):
    """fit(disp=True): one line on the outcome, as statsmodels' optimisers print."""
    if not disp:
        return
    rec = res.optim
    status = "converged" if res.converged else "did NOT converge"
    print(f"mlglm {res.method} fit {status}: log-likelihood {res.llf:.6f}, "
          f"{getattr(rec, 'n_evals', '?')} evaluations, max |gradient| "
          f"{getattr(rec, 'grad_norm', float('nan')):.2g}")


def _check_re_in_fixed(X, Z, names):
    """Warn when a random-effect column is not in the fixed part: its mean is then
    forced to zero, which is rarely intended (allowed, as in lme4)."""
    if Z is None or Z.ndim != 2:
        return
    missing = []
    for k in range(Z.shape[1]):
        z = Z[:, k]
        if not any(np.array_equal(z, X[:, j]) for j in range(X.shape[1])):
            missing.append(str(names[k]) if names is not None else f"column {k}")
    if missing:
        warnings.warn(f"random effect(s) {', '.join(missing)} have no matching fixed effect, so "
                      "their mean is fixed at 0; add them to the fixed part unless that is "
                      "intended", DataWarning, stacklevel=3)


def _check_rank(X, names):
    """Refuse a rank-deficient fixed-effects design, naming the redundant columns."""
    if X.shape[1] == 0:
        return
    scale = np.sqrt((X * X).sum(axis=0))
    if np.any(scale == 0):
        bad = [names[i] for i in np.flatnonzero(scale == 0)]
        raise MixedGLMInputError(f"fixed-effect column(s) {', '.join(bad)} are all zero; "
                                 "drop them from the formula")
    R = np.linalg.qr(X / scale, mode="r")
    d = np.abs(np.diag(R))
    tol = d.max() * max(X.shape) * np.finfo(float).eps * 10
    if np.any(d <= tol):
        bad = [names[i] for i in np.flatnonzero(d <= tol)]
        raise MixedGLMInputError(
            f"the fixed-effects design is rank deficient: {', '.join(bad)} "
            "is a linear combination of the columns before it; drop it (or a level) "
            "from the formula")


def _resolve_nagq(method, nagq, q):
    if method == "laplace":
        if nagq not in (None, 1):
            raise MixedGLMInputError("nagq > 1 and nagq='auto' need method='aghq'")
        return 1
    if nagq is None:
        nagq = 11 if q <= 2 else 7
    if isinstance(nagq, str) and nagq == "auto":
        raise MixedGLMInputError("nagq='auto' chooses the points while fitting (fit(method="
                                 "'aghq', nagq='auto') or glmer(..., nagq='auto')); give a "
                                 "positive integer here")
    if not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise MixedGLMInputError(f"nagq must be a positive integer or 'auto', got {nagq!r}")
    if nagq ** q > MAX_GRID_POINTS:
        raise MixedGLMInputError(
            f"nagq={nagq} with {q} random effects is a product grid of {nagq ** q:,} points per "
            f"group (about {nagq ** q * 8 / 1e6:,.0f} MB per 1,000 rows); the limit is "
            f"{MAX_GRID_POINTS:,}: lower nagq")
    return int(nagq)
