"""Checks around a fit: the design and quadrature settings before it, the warnings after.

Before fitting: a rank-deficient fixed-effects design is refused naming the
redundant column (:func:`_check_rank`), a random effect without a fixed effect
is warned about (:func:`check_re_in_fixed`), ``method`` / ``nagq`` / ``reml`` are
resolved once for every engine, in memory or sharded (:func:`resolve_fit_method`):
``nagq`` is validated against the size of the product grid (:func:`_resolve_nagq`)
and against the random-effects structure
(:func:`mlglm.core.problem.check_quadrature_structure`: quadrature needs nested
factors). After fitting, :func:`_warn_fit_problems` raises one warning per
problem -- non-convergence, a singular fit, separation, an AGHQ fit whose
estimates would move with more points (the fit-time check of
:mod:`mlglm.core.fit.adequacy`), a ``nagq="auto"`` that did not settle -- each
with advice; the summary shows the same flags.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from ..core.engines.crossed.blocked import dense_block_problem
from ..core.spec.covariance import Sigma_from_vech
from ..core.engines.lmm.blockdiag import rank_deficient_columns
from ..core.engines.nested.objective import quadrature_dimension
from ..core.problem import check_quadrature_structure
from ..core.numerics.quadrature import grid_problem
from .data_checks import DataWarning, MixedGLMInputError, is_integer
from .mixedlm_view import single_term

__all__ = ["FitError", "SingularFitWarning", "SeparationWarning", "QuadratureWarning",
           "CollinearityWarning", "collinearity", "StandardErrorWarning",
           "standard_error_note", "FitMethod", "resolve_fit_method", "check_re_in_fixed",
           "singular_advice", "boundary_groups"]


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
    information, :func:`mlglm.core.fit.information.information_inverse`); or it has negative
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
        what = res.singular_description()
        warnings.warn(f"singular fit: {what}; {singular_advice(what)}", SingularFitWarning,
                      stacklevel=3)
    col = getattr(res, "collinearity", None)
    if col:
        warnings.warn(f"near-collinear fixed effects: {col}", CollinearityWarning, stacklevel=3)
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
    if not (fam.is_binomial or fam.is_count):
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


def check_re_in_fixed(model):
    """Warn when a random-effect column (``model.exog_re``) is not in the fixed part
    (``model.exog``): its mean is then forced to zero, which is rarely intended
    (allowed, as in lme4)."""
    X = np.asarray(model.exog, dtype=float)
    Z = None if model.exog_re is None else np.asarray(model.exog_re)
    names = getattr(model.data, "exog_re_names", None)
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
    core's tolerance-based test, :func:`mlglm.core.engines.lmm.blockdiag.rank_deficient_columns`, so the
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


@dataclass(frozen=True)
class FitMethod:
    """How a fit runs, resolved from ``fit()``'s method / nagq / reml
    (:func:`resolve_fit_method`).

    method : ``"reml"`` or ``"ml"`` (Gaussian: exact), ``"laplace"`` or ``"aghq"``.
    nagq : points per random-effect dimension (1: Laplace; the first rung of
        ``nagq="auto"``); None for Gaussian models.
    auto : ``nagq="auto"``: the points are raised until the estimates settle.
    """

    method: str
    nagq: int | None = None
    auto: bool = False

    @property
    def gaussian(self) -> bool:
        return self.method in ("reml", "ml")

    @property
    def reml(self) -> bool:
        return self.method == "reml"


def resolve_fit_method(model, method=None, nagq=None, reml=None) -> FitMethod:
    """``fit()``'s method, nagq and reml, checked against the family and the
    random-effects terms of ``model`` (any case of the method name; ``nagq > 1``
    without a method means AGHQ); the rules of :meth:`mlglm.api.models.MixedGLM.fit`,
    for every engine."""
    fam = model.fam
    if isinstance(method, str):
        method = method.lower()
    if method is None and nagq not in (None, 1) and not fam.is_gaussian:
        method = "aghq"
    if fam.is_gaussian:
        if method not in (None, "reml", "ml"):
            raise MixedGLMInputError("Gaussian models are fitted exactly by 'reml' or 'ml'")
        if nagq not in (None, 1):
            raise MixedGLMInputError("Gaussian models are fitted exactly; nagq= is for "
                                     "binomial and Poisson models")
        if reml is None:
            reml = method != "ml"
        return FitMethod("reml" if reml else "ml")
    if reml:
        raise MixedGLMInputError("REML is for Gaussian models; GLMMs are fitted by ML")
    method = "laplace" if method is None else method
    if method not in ("laplace", "aghq"):
        raise MixedGLMInputError(f"method must be 'laplace' or 'aghq', got {method!r}")
    auto = method == "aghq" and isinstance(nagq, str) and nagq == "auto"
    if auto:
        check_quadrature_structure(model.re_terms, nagq="auto")  # crossed: no quadrature
        return FitMethod(method, 1, True)
    max_rows = model._largest_group_rows() if method == "aghq" else None
    return FitMethod(method, _resolve_nagq(method, nagq, quadrature_dimension(model.re_terms),
                                           max_rows))


def _check_start_covariances(model, start_params):
    """Refuse ``start_params`` whose random-effect covariances are not covariances.

    Each term's block of ``start_params`` is vech(Sigma_k) (row-major lower triangle). A
    negative variance, or a correlation beyond +-1, is no covariance matrix; mapped to
    the nearest one it would silently start somewhere else than asked, so it is refused
    naming the term. A variance of 0 is a legal start (the fit leaves it when that
    raises the log-likelihood, :func:`mlglm.core.fit.optimize._leave_boundary`).
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


def _check_start_params(model, start_params) -> np.ndarray:
    """``start_params`` as floats, one per parameter of ``model``, all finite; else a
    clear error naming what the parameters are."""
    names = [str(n) for n in model.data.param_names]
    n_zi = 0 if model.exog_zi is None else model.exog_zi.shape[1]
    expected = model.k_fe + sum(t.q * (t.q + 1) // 2 for t in model.re_terms) + n_zi + (
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
            "covariance matrix" + (", then the zero part's coefficients" if n_zi else "")
            + (", then the dispersion" if model.fam.estimates_dispersion else ""))
    bad = ~np.isfinite(sp)
    if bad.any():
        which = [names[i] if len(names) == expected else str(i) for i in np.flatnonzero(bad)]
        raise MixedGLMInputError(f"start_params must be finite; {', '.join(which)} is NaN "
                                 "or inf")
    return sp


def _check_dense_memory(terms, gaussian: bool) -> None:
    """Refuse, before the fit allocates it, a dense part of the blocked factorisation
    (several factors: every linear mixed model, crossed GLMMs) that is too large or
    would not fit in memory, with the estimated figure (:mod:`mlglm.core.numerics.memory`)."""
    if len(terms) < 2 or not (gaussian or terms.kind == "crossed"):
        return                  # one factor, or nested GLMM factors: no dense block
    problem = dense_block_problem(terms, gaussian=gaussian)
    if problem:
        raise MixedGLMInputError(problem)


def _resolve_nagq(method, nagq, q, max_rows=None):
    """The number of quadrature points per dimension of a fit, validated: an integer
    (Python or numpy) >= 1 whose rule can be computed (at most
    :data:`~mlglm.core.numerics.quadrature.MAX_POINTS_PER_DIMENSION`), whose product grid of
    nagq^q points per group stays within :data:`~mlglm.core.numerics.quadrature.MAX_GRID_POINTS`
    and, with ``max_rows`` (the rows of the largest top-level group), whose chunk of
    rows x points fits in memory (:func:`mlglm.core.numerics.memory.grid_bytes`). The fit-time
    check's nagq + 2 points are not held to these limits: where they exceed them the
    check is skipped with a note (:func:`mlglm.core.numerics.quadrature.grid_problem`)."""
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
