"""Checks around a fit: the design and quadrature settings before it, the warnings after.

Before fitting: a rank-deficient fixed-effects design is refused naming the
redundant column (:func:`_check_rank`), a random effect without a fixed effect
is warned about (:func:`_check_re_in_fixed`), ``nagq`` is validated against
the size of the product grid (:func:`_resolve_nagq`) and against the random-
effects structure (:func:`_check_aghq_structure`: quadrature needs nested
factors). After fitting, :func:`_warn_fit_problems` raises one warning per
problem -- non-convergence, a singular fit, separation, an AGHQ fit whose
estimates would move with more points (the fit-time check of
:mod:`mlglm.core.adequacy`), a ``nagq="auto"`` that did not settle -- each
with advice; the summary shows the same flags.
"""
from __future__ import annotations

import warnings

import numpy as np

from .core.covariance import Sigma_from_vech
from .core.lmm import rank_deficient_columns
from .core.quadrature import MAX_GRID_POINTS
from .data_checks import DataWarning, MixedGLMInputError

__all__ = ["FitError", "SingularFitWarning", "SeparationWarning", "QuadratureWarning",
           "StandardErrorWarning", "standard_error_note"]


class FitError(RuntimeError):
    """The optimisation broke down numerically; the message says what to try."""


class SingularFitWarning(UserWarning):
    """A random-effect SD is estimated at zero (the fit is on the boundary)."""


class SeparationWarning(UserWarning):
    """Binomial data (quasi-)completely separated by some fixed effect."""


class QuadratureWarning(UserWarning):
    """The AGHQ estimates move with more quadrature points (advice in the message)."""


class StandardErrorWarning(UserWarning):
    """Some standard errors are not available (NaN): the observed information does not
    determine those parameters, or it was not computed (``fit(hessian=False)``)."""


def standard_error_note(res) -> str | None:
    """Why some standard errors are NaN, in words (None when all that can be are there).

    Three reasons: the observed information was not computed (``fit(hessian=False)``);
    it is singular in some directions -- the log-likelihood is flat along them to the
    accuracy of the differenced gradient, typically a coefficient running off to
    infinity under (quasi-)separation (a level whose responses are all 0 or all 1, or
    all-zero counts), or parameters the data cannot tell apart --, whose parameters then
    have no SE while the others keep theirs (the inverse over the directions with
    information, :func:`mlglm.core.information.information_inverse`); or it has negative
    curvature (not a maximum: the fit has not converged). Variance parameters at the
    boundary have NaN SEs too; the singular-fit note covers them.
    """
    rec = res.optim
    info = getattr(rec, "information", "")
    if info.startswith("not computed"):
        return ("Standard errors were not computed (fit(hessian=False)): bse, p-values and "
                "Wald intervals are NaN, and convergence was checked to first order only "
                "(converged is False); refit with hessian=True for both")
    missing = list(getattr(res, "se_missing", []) or [])
    if not missing:
        return None
    k = getattr(rec, "n_null", 0)
    neg = getattr(rec, "n_negative", 0)
    names = ", ".join(missing)
    if neg:
        why = (f"the observed information has {neg} negative eigenvalue(s) (the fit is not at "
               "a maximum)")
    else:
        why = (f"the observed information is singular in {k} direction(s) involving them: the "
               "log-likelihood is flat there, e.g. under separation (a coefficient running off "
               "to infinity: a level whose responses are all 0 or all 1, or all-zero counts) "
               "or for parameters the data cannot tell apart")
    return (f"No standard error for {names} (NaN, and NaN z, p-values and Wald intervals): "
            f"{why}. The other standard errors hold those directions fixed; remove or merge "
            "the offending terms or levels, or use profile intervals")


def _warn_fit_problems(res):
    """One warning per problem, with advice; the summary shows the same flags."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    rec = res.optim
    not_computed = getattr(rec, "information", "").startswith("not computed")
    if not_computed:
        warnings.warn(f"fit(hessian=False): convergence checked to first order only (max "
                      f"|gradient| {rec.grad_norm:.2g}; converged is False) and no standard "
                      "errors (NaN); refit with hessian=True for both", ConvergenceWarning,
                      stacklevel=3)
    elif not res.converged:
        detail = ""
        if hasattr(rec, "newton_decrement"):
            detail = (f" (max |gradient| {rec.grad_norm:.2g}, Newton decrement "
                      f"{rec.newton_decrement:.2g}, information: {rec.information})")
        if getattr(rec, "boundary_unresolved", False):
            detail += ("; a variance estimated at 0 would rise if moved off it, but the "
                       "restarts from inside did not get away")
        warnings.warn("the fit has not converged" + detail + "; try start_params= from a "
                      "simpler model, rescale covariates, or check for separation",
                      ConvergenceWarning, stacklevel=3)
    if np.any(res.singular):
        from .singular import describe_singular, singular_advice
        warnings.warn(f"singular fit: {describe_singular(res)}; {singular_advice(res)}",
                      SingularFitWarning, stacklevel=3)
    se_note = None if not_computed else standard_error_note(res)
    if se_note:
        warnings.warn(se_note, StandardErrorWarning, stacklevel=3)
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
    """Refuse a rank-deficient fixed-effects design, naming the redundant columns (the
    core's tolerance-based test, :func:`mlglm.core.lmm.rank_deficient_columns`, so the
    model and the core agree whatever the CPU)."""
    if X.shape[1] == 0:
        return
    scale = np.sqrt((X * X).sum(axis=0))
    if np.any(scale == 0):
        bad = [names[i] for i in np.flatnonzero(scale == 0)]
        raise MixedGLMInputError(f"fixed-effect column(s) {', '.join(bad)} are all zero; "
                                 "drop them from the formula")
    dependent = rank_deficient_columns(X)
    if dependent.size:
        bad = [names[i] for i in dependent]
        raise MixedGLMInputError(
            f"the fixed-effects design is rank deficient: {', '.join(bad)} "
            "is a linear combination of the columns before it; drop it (or a level) "
            "from the formula")


def _check_start_covariances(model, start_params):
    """Refuse ``start_params`` whose random-effect covariances are not covariances.

    Each term's block of ``start_params`` is vech(Sigma_k) (row-major lower triangle). A
    negative variance, or a correlation beyond +-1, is no covariance matrix; mapped to
    the nearest one it would silently start somewhere else than asked, so it is refused
    naming the term. A variance of 0 is a legal start (the fit leaves it when that
    raises the log-likelihood, :func:`mlglm.core.optimize._leave_boundary`).
    """
    params = np.asarray(start_params, dtype=float).reshape(-1)
    i = model.k_fe
    for t in model.re_terms:
        k = t.q * (t.q + 1) // 2
        if params.size < i + k:
            return                       # a length error is reported elsewhere
        S = Sigma_from_vech(params[i:i + k], t.q)
        scale = max(1.0, float(np.max(np.abs(np.diag(S))))) if S.size else 1.0
        if np.all(np.isfinite(S)) and np.linalg.eigvalsh(S)[0] < -1e-12 * scale:
            d = np.diag(S)
            what = (f"the variance of {t.column_names[int(np.argmin(d))]} is {d.min():g}"
                    if d.min() < 0 and t.column_names else
                    "a variance is negative" if d.min() < 0 else
                    "a correlation is beyond +-1")
            raise MixedGLMInputError(
                f"start_params: the random-effect covariance of {t.name!r} is not a "
                f"covariance matrix ({what}): give variances >= 0 and correlations within "
                "[-1, 1]; a variance of 0 starts on the boundary, which the fit leaves "
                "if that raises the log-likelihood")
        i += k
    if model.fam.estimates_dispersion and params.size > i and not params[i] > 0:
        raise MixedGLMInputError(f"start_params: the {model.fam.dispersion_name} (last entry) "
                                 f"must be positive, got {params[i]:g}")


def _check_aghq_structure(terms):
    """nagq > 1 needs factors nested in one another (the integral factorises by
    top-level group); crossed factors are refused with the reason (never a silent
    Laplace)."""
    if terms.kind == "crossed":
        raise MixedGLMInputError(
            f"adaptive quadrature (nagq > 1) needs grouping factors nested in one another; "
            f"{', '.join(terms.names)} are crossed, so the likelihood does not factorise over "
            "the groups of any one factor and there is no low-dimensional integral to do by "
            "quadrature. Use the Laplace approximation (nagq=1)")


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
