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

from .core.blocked import dense_block_problem
from .core.quadrature import grid_problem
from .data_checks import DataWarning, MixedGLMInputError, is_integer

__all__ = ["FitError", "SingularFitWarning", "SeparationWarning", "QuadratureWarning",
           "CollinearityWarning", "collinearity"]


class FitError(RuntimeError):
    """The optimisation broke down numerically; the message says what to try."""


class SingularFitWarning(UserWarning):
    """A random-effect SD is estimated at zero (the fit is on the boundary)."""


class SeparationWarning(UserWarning):
    """Binomial data (quasi-)completely separated by some fixed effect."""


class QuadratureWarning(UserWarning):
    """The AGHQ estimates move with more quadrature points (advice in the message)."""


class CollinearityWarning(UserWarning):
    """Fixed-effect columns that are nearly linear combinations of one another."""


#: condition number of the correlation matrix of the fixed-effect columns beyond which
#: they are reported as near-collinear whatever the estimates (standard errors inflated
#: by about this factor; a raw quartic polynomial in an age of 15-50 has about 1.8e3)
COLLINEAR_COND = 1e4
#: an effect over one SD of its column beyond this (linear-predictor scale) is "huge"
HUGE_EFFECT = 10.0


def collinearity(cov, beta, names, huge: bool = True):
    """Near-collinear fixed-effect columns, from their covariance matrix ``cov`` (p x p,
    the intercept's row and column zero) and the estimates ``beta``.

    Two findings: the condition number kappa of the correlation matrix of the
    non-constant columns (square root of the ratio of its extreme eigenvalues; the
    columns with the largest loadings in the smallest eigenvalue's eigenvector are
    the near-dependent ones) exceeds :data:`COLLINEAR_COND`; or (``huge``: the link
    scale is one where an effect of 10 is extreme) coefficients are huge over one SD
    of their columns, |b_j| sd_j > 10, while together they move the linear predictor
    by an SD of at most 10 -- large estimates that cancel, which is collinearity,
    not separation (where the linear predictor itself runs off).

    Returns (description or None, the huge columns collinearity explains).
    """
    cov = np.asarray(cov, dtype=float)
    beta = np.asarray(beta, dtype=float)
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    live = np.flatnonzero(sd > 0)
    if live.size < 2:
        return None, set()
    corr = cov[np.ix_(live, live)] / np.outer(sd[live], sd[live])
    evals, evecs = np.linalg.eigh((corr + corr.T) / 2)
    kappa = float(np.sqrt(evals[-1] / evals[0])) if evals[0] > 0 else np.inf
    big = [j for j in live if abs(beta[j]) * sd[j] > HUGE_EFFECT] if huge else []
    combined = float(np.sqrt(max(beta[big] @ cov[np.ix_(big, big)] @ beta[big], 0.0))) \
        if len(big) > 1 else np.inf
    cancel = combined <= HUGE_EFFECT
    if not (kappa > COLLINEAR_COND or cancel):
        return None, set()
    load = np.abs(evecs[:, 0])
    involved = [str(names[live[k]]) for k in np.flatnonzero(load >= 0.1 * load.max())]
    if cancel:
        text = (f"{', '.join(str(names[j]) for j in big)} have huge coefficients that cancel "
                f"(together they move the linear predictor by an SD of {combined:.2g}), which "
                "is collinearity, not separation")
    else:
        text = f"the columns {', '.join(involved)} are nearly linear combinations of each other"
    text += (f" (condition number {kappa:.2g} of the columns' correlation matrix); their "
             "separate estimates and SEs are unstable: drop or combine them, or centre a "
             "polynomial")
    return text, {str(names[j]) for j in big} if cancel else set()


def _warn_fit_problems(res):
    """One warning per problem, with advice; the summary shows the same flags."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
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
        from .singular import describe_singular, singular_advice
        warnings.warn(f"singular fit: {describe_singular(res)}; {singular_advice(res)}",
                      SingularFitWarning, stacklevel=3)
    col = getattr(res, "collinearity", None)
    if col:
        warnings.warn(f"near-collinear fixed effects: {col}", CollinearityWarning, stacklevel=3)
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


def boundary_groups(model) -> str:
    """Where adaptive quadrature struggles, in words ("" if nowhere in particular).

    Groups whose responses all sit at a boundary of their distribution (binomial: every
    trial a failure, or every one a success; counts: all zero) have conditional
    distributions of their random effects that are far from normal: the normal prior cut
    off by a steep likelihood next to the mode, which a Gauss-Hermite rule integrates
    slowly (benchmarks/QUADRATURE.md, Part E). One grouping factor, rows in memory.
    """
    if getattr(model, "multi", False) or not getattr(model, "rows_on_driver", True):
        return ""
    fam = model.fam
    if not (fam.is_binomial or fam.name in ("poisson", "negative_binomial")):
        return ""
    codes, G = np.asarray(model.group_codes), int(model.n_groups)
    ysum = np.bincount(codes, weights=np.asarray(model.endog, dtype=float), minlength=G)
    if fam.is_binomial:
        msum = np.bincount(codes, weights=np.asarray(model.n_trials, dtype=float), minlength=G)
        n, what = int(np.sum((ysum == 0) | (ysum == msum))), "all 0 or all 1"
    else:
        n, what = int(np.sum(ysum == 0)), "all zero"
    if n == 0:
        return ""
    return (f"{n} of {G} groups have responses {what}: the conditional distributions of "
            "their random effects are far from normal, where the quadrature needs many points")


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


def _check_start_params(model, start_params) -> np.ndarray:
    """``start_params`` as floats, one per parameter of ``model``, all finite; else a
    clear error naming what the parameters are."""
    names = [str(n) for n in model.data.param_names]
    expected = model.k_fe + sum(t.q * (t.q + 1) // 2 for t in model.re_terms) + (
        1 if model.fam.estimates_dispersion else 0)
    try:
        sp = np.asarray(start_params, dtype=float)
    except (TypeError, ValueError) as exc:
        raise MixedGLMInputError(f"start_params must be numbers ({exc})") from exc
    if sp.ndim != 1 or sp.size != expected:
        shown = f" ({', '.join(names)})" if len(names) == expected else ""
        raise MixedGLMInputError(
            f"start_params has {sp.size} values; the model has {expected} parameters{shown}: "
            "the fixed effects, then the lower triangle (row by row) of each random-effects "
            "covariance matrix" + (", then the dispersion" if model.fam.estimates_dispersion
                                   else ""))
    bad = ~np.isfinite(sp)
    if bad.any():
        which = [names[i] if len(names) == expected else str(i) for i in np.flatnonzero(bad)]
        raise MixedGLMInputError(f"start_params must be finite; {', '.join(which)} is NaN "
                                 "or inf")
    return sp


def _check_dense_memory(terms, gaussian: bool) -> None:
    """Refuse, before the fit allocates it, a dense part of the blocked factorisation
    (several factors: every linear mixed model, crossed GLMMs) that is too large or
    would not fit in memory, with the estimated figure (:mod:`mlglm.core.memory`)."""
    if len(terms) < 2 or not (gaussian or terms.kind == "crossed"):
        return                  # one factor, or nested GLMM factors: no dense block
    problem = dense_block_problem(terms, gaussian=gaussian)
    if problem:
        raise MixedGLMInputError(problem)


def _resolve_nagq(method, nagq, q, max_rows=None):
    """The number of quadrature points per dimension of a fit, validated: an integer
    (Python or numpy) >= 1 whose rule can be computed (at most
    :data:`~mlglm.core.quadrature.MAX_POINTS_PER_DIMENSION`), whose product grid of
    nagq^q points per group stays within :data:`~mlglm.core.quadrature.MAX_GRID_POINTS`
    and, with ``max_rows`` (the rows of the largest top-level group), whose chunk of
    rows x points fits in memory (:func:`mlglm.core.memory.grid_bytes`). The fit-time
    check's nagq + 2 points are not held to these limits: where they exceed them the
    check is skipped with a note (:func:`mlglm.core.quadrature.grid_problem`)."""
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
    if not is_integer(nagq) or nagq < 1:
        raise MixedGLMInputError(f"nagq must be a positive integer or 'auto', got {nagq!r}")
    problem = grid_problem(int(nagq), q, max_rows)
    if problem:
        raise MixedGLMInputError(problem)
    return int(nagq)
