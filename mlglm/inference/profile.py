"""Profile-likelihood confidence intervals for fixed effects, SDs and correlations.

For a scalar parameter c the profile log-likelihood is the maximum over all
other parameters with c held fixed, and the signed root

    zeta(c) = sign(c - c_hat) sqrt(2 [l(hat) - l_profile(c)])

is approximately standard normal; the interval is {c : |zeta(c)| <= z_{1-alpha/2}}
(lme4's ``confint(method = "profile")``). Unlike Wald intervals it follows the
likelihood: skewed for SDs, bounded for correlations, and an SD whose profile
never reaches the critical value gets the lower limit 0.

How it is computed
------------------
Parameters live in *working coordinates*

    w = (beta [absent for "reml"], w_re, [gamma], log sigma [Gaussian] or t [a GLMM's log
         dispersion]),

w_re the natural-parameter coordinates of every term and covariance block
(:class:`~mlglm.core.spec.natural_layout.NaturalLayout`: log s per effect -- per tied
block one -- and atanh of the canonical partial correlations z within each
unstructured block, :mod:`mlglm.core.spec.natural`), t = log theta or log phi (negative
binomial, Gamma, beta), gamma the zero-part coefficients of a zero-inflated or hurdle
model. They are unconstrained, and each quantity of interest -- a
fixed effect, an SD, the first correlation of a block, the residual SD, the
dispersion -- is one coordinate, or a fixed linear combination a'w (e.g.
log s - log sigma for a Gaussian ICC). A correlation other than the first of its
block is profiled in a layout whose block is permuted so that its pair comes
first (:meth:`~mlglm.core.spec.natural_layout.NaturalLayout.permuted_for`).

The log-likelihood l(w), by the model's terms (however many; the engine is the
one the core chooses for their structure):

* GLMMs: the fit's own objective (``model.problem.objective(nagq)``: Laplace or
  AGHQ, the per-group engine for one term) at x = (beta, theta(w_re)[, t]), with
  its exact gradient chained through w: dl/dw_re = (dtheta/dw_re)' dl/dtheta (the
  Jacobian of the closed-form map by central differences);
* Gaussian models: the unprofiled ML or REML log-likelihood at (beta, Sigma_k,
  sigma^2) -- for one term :func:`~mlglm.core.engines.lmm.loglik.gaussian_loglik` from
  per-group statistics (q x q work per group) with its exact gradient
  (:func:`~mlglm.core.engines.lmm.loglik.gaussian_loglik_grad`, chained through the factor
  of Sigma: dl/dw_re = (dvec Lambda/dw_re)' dl/dvec Lambda); for several
  :func:`~mlglm.core.engines.lmm.blocked.multi_gaussian_loglik` (one blocked factorisation
  per value) with the gradient by central differences.

Each profile point maximises l over the affine subspace a'w = c. Starting
point: the nearest solved point moved by the quadratic prediction
H^{-1}a (c - a'w)/(a'H^{-1}a), H the observed information in w at the
optimum; the search is BFGS in coordinates whitened by H, so it takes a handful
of iterations. The crossing of |zeta| = z is bracketed by stepping out along the
predicted (then secant-extrapolated) slope and found by Brent's method.
Boundaries: an SD's lower limit is 0 when zeta at s ~ 0 (log s 20 below its
estimate) is still inside; a correlation's limit is +-1 when zeta at +-0.9999 is
still inside.

Gaussian fits: by default SDs, correlations and the residual SD are profiled on
the fit's criterion (REML for a REML fit, beta at its GLS value), so the
intervals go with the REML estimates in the table's ``estimate`` column; fixed
effects on the ML likelihood, as REML likelihoods of different fixed effects are
not comparable. lme4's ``confint(method = "profile")`` profiles a REML fit on the
ML deviance throughout (its ``devfun2`` refits by ML), i.e. around the ML
estimates; ``criterion="ml"`` does the same and gives lme4's numbers. Which
likelihood each row was profiled on is in the ``interval`` column
(``"profile (REML)"``, ``"profile (ML)"``; GLMMs: ``"profile"``, the fit's
Laplace or AGHQ likelihood) and ``attrs["criterion"]`` names the one of the
variance parameters.

Row labels (:func:`~mlglm.design.mixedlm_view.natural_label`): ``sd(x)`` and ``cor(a, b)``
for a model with one term, however it was spelled; ``sd(x | g)`` and
``cor(a, b | g)`` with several.
"""
from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..core.spec.errors import ModeFailure
from ..core.engines.lmm.blockdiag import lmm_stats
from ..core.engines.lmm.loglik import gaussian_loglik, gaussian_loglik_grad
from ..core.engines.lmm.blocked import multi_gaussian_loglik, multi_lmm_stats
from ..core.spec.natural_layout import NaturalLayout
from ..design.mixedlm_view import natural_label

__all__ = ["profile_conf_int", "profile_direction", "LikelihoodProblem", "observed_information",
           "Profiler", "natural_layout", "natural_names", "natural_values", "term_Sigmas",
           "profile_label", "fit_criterion", "profile_limits", "ProfileError"]

#: how far (in log s) below its estimate an SD is taken to be "at zero"
SD_ZERO_SHIFT = 20.0
#: a profile that finds a log-likelihood this much above the fit's maximum (its own
#: polished maximum, or the fit's reported one) refuses: the fit is not at the maximum
#: (lme4: "profiling detected new, lower deviance"), and intervals computed against it
#: would exclude the estimate
PROFILE_GAIN_TOL = 1e-4
#: correlations are evaluated at +-CORR_LIMIT for the "+-1" boundary test
CORR_LIMIT = 0.9999


def natural_layout(model) -> NaturalLayout:
    """The identity layout of the natural parameters of a model's random-effects terms."""
    return NaturalLayout([t.pattern for t in model.re_terms])


def extra_names(model) -> list[str]:
    """The natural parameters after the random part: ``sigma`` (Gaussian), the
    dispersion's name (``theta``, ``scale``) when a GLMM estimates it, else none."""
    if model.fam.is_gaussian:
        return ["sigma"]
    return [model.fam.dispersion_name] if model.fam.estimates_dispersion else []


def natural_names(model) -> tuple[list[str], list[str], list[str]]:
    """Row labels (fixed effects, the natural variance parameters in layout order,
    :func:`extra_names`): ``sd(x)`` / ``cor(a, b)`` for one term, ``sd(x | g)`` /
    ``cor(a, b | g)`` with several (:func:`~mlglm.design.mixedlm_view.natural_label`)."""
    fe = [str(n) for n in model.exog_names]
    re = [natural_label(model.re_terms, e) for e in natural_layout(model).entries]
    return fe, re, extra_names(model)


def term_Sigmas(results) -> list[np.ndarray]:
    """Sigma_k per term (absolute scale), in term order."""
    return [np.asarray(S, dtype=float) for S in results.outcome.Sigmas]


def natural_values(results) -> pd.Series:
    """Estimates of the natural parameters: fixed effects, SDs and correlations per term
    (layout order), then sigma (Gaussian) or the estimated dispersion."""
    model = results.model
    fe, re, extra = natural_names(model)
    vals = [np.asarray(results.fe_params, dtype=float),
            natural_layout(model).natural(term_Sigmas(results))]
    if model.fam.is_gaussian:
        vals.append([np.sqrt(results.scale)])
    elif model.fam.estimates_dispersion:
        vals.append([results.dispersion])
    return pd.Series(np.concatenate(vals), index=fe + re + extra)


def profile_label(criterion: str) -> str:
    """The ``interval`` column's text for a row profiled on ``criterion``."""
    return "profile" if criterion == "glmm" else f"profile ({criterion.upper()})"


def fit_criterion(results) -> str:
    """What the fit maximised: "glmm" (Laplace/AGHQ), "reml" or "ml" (Gaussian)."""
    if not results.model.fam.is_gaussian:
        return "glmm"
    return "reml" if results.method == "reml" else "ml"


def _groups_innermost(a) -> np.ndarray:
    """``a`` (groups first) with the same shape and values, stored with the group axis
    last in memory."""
    return np.ascontiguousarray(np.moveaxis(a, 0, -1)).transpose((a.ndim - 1,) +
                                                                 tuple(range(a.ndim - 1)))


class LikelihoodProblem:
    """log-likelihood l(w) in working coordinates for one layout (module docstring).

    Parameters
    ----------
    results : fitted MixedGLMResults (rows in memory).
    layout : NaturalLayout of the model's terms (the identity layout, or one
        permuted so that a later correlation is a coordinate).
    criterion : ``"glmm"`` (Laplace/AGHQ as fitted), ``"ml"`` or ``"reml"`` (Gaussian).

    Attributes
    ----------
    dim : len(w).   n_beta : leading fixed-effect coordinates (0 for "reml").
    n_zi : zero-part coefficients after w_re (zero-inflated and hurdle fits).
    n_sigma : 1 when w ends with log sigma or t, else 0.
    """

    def __init__(self, results, layout: NaturalLayout, criterion: str):
        model = results.model
        if not getattr(model, "rows_on_driver", True):      # a sharded fit (mlglm.distributed)
            raise NotImplementedError("profile likelihoods re-evaluate the likelihood from the "
                                      "rows, which this fit keeps on a Dask cluster; fit the "
                                      "data in memory for profile intervals")
        self.layout = layout
        self._last_w_re = self._last_factors = None
        self.criterion = criterion
        self.p = model.k_fe
        self.n_beta = 0 if criterion == "reml" else self.p
        # one trailing coordinate: log sigma (Gaussian) or the log dispersion t (GLMM)
        self.n_sigma = 0 if criterion == "glmm" and not model.fam.estimates_dispersion else 1
        self.n_zi = int(results.outcome.zi.size)
        # zero-inflated, hurdle and beta likelihoods can have several local maxima along
        # a profile (a zero part running off to -inf in one, not in the other): each
        # profile point is maximised from the nearest solved point and from the optimum,
        # and the higher kept
        self.multistart = bool(model.fam.auxiliary)
        self.dim = self.n_beta + layout.dim + self.n_zi + self.n_sigma
        problem = model.problem
        if criterion == "glmm":
            self.obj = problem.objective(results.nagq or 1)
            return
        r = problem.y - problem.offset
        if problem.terms.kind == "single":       # per-group statistics: q x q work per group
            t = problem.terms[0]
            st = lmm_stats(r, problem.X, t.Z, t.codes, n_groups=t.n_levels,
                           freq=problem.freq, var=problem.var)
            # the per-group arrays with the group axis innermost in memory: the small
            # q x q products over all groups then run along contiguous memory (about
            # 1.5x faster for the ML likelihood on 160 groups; same values)
            self._stats = replace(st, ZtZ=_groups_innermost(st.ZtZ),
                                  ZtX=_groups_innermost(st.ZtX), Zty=_groups_innermost(st.Zty))
            self._loglik = lambda beta, Lams, s2, reml: gaussian_loglik(
                beta, Lams[0], s2, self._stats, reml=reml)
            self._exact_gradient = True
        else:                                    # one blocked factorisation per value
            self._stats = multi_lmm_stats(r, problem.X, problem.terms, plan=problem.plan,
                                          freq=problem.freq, var=problem.var)
            self._loglik = lambda beta, Lams, s2, reml: multi_gaussian_loglik(
                beta, Lams, s2, self._stats, reml=reml)
            self._exact_gradient = False

    # ----------------------------------------------------------- coordinates
    def unpack(self, w):
        """(beta, w_re, log sigma or t) of w (beta empty and log sigma 0 when absent)."""
        w = np.asarray(w, dtype=float)
        beta = w[:self.n_beta]
        w_re = w[self.n_beta:self.n_beta + self.layout.dim]
        log_sigma = w[-1] if self.n_sigma else 0.0
        return beta, w_re, log_sigma

    def pack(self, beta, Sigmas, sigma2=None, min_sd=1e-5, zi=()) -> np.ndarray:
        """w of (beta, Sigma_k per term (absolute), the zero part ``zi``, sigma^2 -- or,
        for a GLMM with a dispersion, the dispersion itself); SDs floored at ``min_sd``
        (a zero SD has no log)."""
        parts = [np.asarray(beta, float)[:self.n_beta],
                 self.layout.to_working(Sigmas, min_sd, CORR_LIMIT), np.asarray(zi, float)]
        if self.n_sigma:
            parts.append([np.log(sigma2) if self.criterion == "glmm" else 0.5 * np.log(sigma2)])
        return np.concatenate(parts)

    def start(self, results) -> np.ndarray:
        """w of the fit (Gaussian REML variance parameters as fitted)."""
        sigma2 = None
        if self.n_sigma:
            sigma2 = results.dispersion if self.criterion == "glmm" else results.scale
        return self.pack(results.fe_params, term_Sigmas(results), sigma2,
                         zi=results.outcome.zi)

    def _x(self, beta, theta, w):
        """x = (beta, theta[, gamma][, t]) of the objective."""
        k = self.n_beta + self.layout.dim
        return np.concatenate([beta, theta, w[k:k + self.n_zi]]
                              + ([w[-1:]] if self.n_sigma else []))

    # ------------------------------------------------------------- functions
    def value(self, w) -> float:
        beta, w_re, log_sigma = self.unpack(w)
        if self.criterion == "glmm":
            try:
                return float(self.obj(self._x(beta, self.layout.theta(w_re), w)))
            except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
                return -np.inf
        return self._loglik(beta, self._factors(w_re), np.exp(2 * log_sigma),  # REML: no beta
                            self.criterion == "reml")

    def _factors(self, w_re):
        """A factor of every Sigma_k, remembered for the last w_re (the central
        differences in beta and log sigma leave it unchanged)."""
        key = w_re.tobytes()
        if key != self._last_w_re:
            self._last_w_re, self._last_factors = key, self.layout.Lambdas(w_re,
                                                                           triangular=False)
        return self._last_factors

    def value_and_gradient(self, w):
        """(l, dl/dw): the exact gradient chained through w (GLMMs, Gaussian with one
        term), central differences of the exact likelihood (Gaussian, several terms)."""
        w = np.asarray(w, dtype=float)
        if self.criterion != "glmm" and self._exact_gradient:
            beta, w_re, log_sigma = self.unpack(w)
            s2 = np.exp(2 * log_sigma)
            f, dbeta, dF, ds2 = gaussian_loglik_grad(beta, self._factors(w_re)[0], s2,
                                                     self._stats, reml=self.criterion == "reml")
            if not np.isfinite(f):
                return -np.inf, np.zeros_like(w)
            dw_re = self.layout.factor_jacobian(w_re).T @ dF.ravel()     # chain rule
            return f, np.concatenate([dbeta[:self.n_beta], dw_re, [2.0 * s2 * ds2]])
        if self.criterion != "glmm":
            f0 = self.value(w)
            g = np.empty_like(w)
            for i in range(w.size):
                h = 1e-5 * max(1.0, abs(w[i]))
                e = np.zeros_like(w)
                e[i] = h
                g[i] = (self.value(w + e) - self.value(w - e)) / (2 * h)
            return f0, g
        beta, w_re, _ = self.unpack(w)
        try:
            f, gx = self.obj.value_and_gradient(self._x(beta, self.layout.theta(w_re), w))
        except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
            return -np.inf, np.zeros_like(w)
        J = self.layout.theta_jacobian(w_re)
        k = J.shape[0]
        return f, np.concatenate([gx[:self.p], J.T @ gx[self.p:self.p + k], gx[self.p + k:]])


def observed_information(problem, w):
    """-d2 l/dw2 at w by central differences of the gradient, eigenvalues floored
    (a positive definite matrix for whitening even at a boundary)."""
    k = w.size
    H = np.empty((k, k))
    for i in range(k):
        h = 1e-4 * max(1.0, abs(w[i]))
        e = np.zeros(k)
        e[i] = h
        H[:, i] = -(problem.value_and_gradient(w + e)[1]
                    - problem.value_and_gradient(w - e)[1]) / (2 * h)
    H = 0.5 * (H + H.T)
    lam, V = np.linalg.eigh(H)
    floor = 1e-6 * max(lam.max(), 1.0)
    return (V * np.maximum(lam, floor)) @ V.T


class Profiler:
    """Maximise l over {w : a'w = c} and find where |zeta| crosses a critical value.

    ``w_hat`` is polished to the exact optimum of this problem first (the
    reported fit may be converged only to the optimiser's tolerance, and a
    zeta computed against a slightly low maximum would be biased). With ``ll_fit``
    (the fit's own maximum on this criterion) a polish that climbs more than
    PROFILE_GAIN_TOL above it, or a profile point above the polished maximum, raises
    :class:`ProfileError`: the fit is not at the maximum (as lme4's
    "profiling detected new, lower deviance"), and intervals computed against it would
    exclude the estimate.
    """

    def __init__(self, problem: LikelihoodProblem, w_start, ll_fit=None):
        self.problem = problem
        # the information at the fit's estimates whitens every search and predicts
        # the profile paths; the polish below moves w by ~the optimiser's tolerance,
        # far too little to change it
        self.H = observed_information(self.problem, np.asarray(w_start, float))
        self.Hinv = np.linalg.inv(self.H)
        self.w_hat, self.ll_hat = self._maximise(np.asarray(w_start, float), None, None)
        if ll_fit is not None and self.ll_hat > ll_fit + PROFILE_GAIN_TOL:
            _not_at_maximum(self.ll_hat, ll_fit, "maximising from the fit's estimates")
        self.n_fits = 0

    def _maximise(self, w0, a, c):
        """argmax l(w) over a'w = c (unconstrained if a is None), BFGS from w0."""
        k = w0.size
        if a is None:
            N = np.eye(k)
            base = w0
        else:
            base = w0 + a * (c - a @ w0) / (a @ a)
            N = np.linalg.svd(a[None, :])[2][1:].T          # orthonormal basis of a-perp
        HN = N.T @ self.H @ N
        lam, V = np.linalg.eigh(0.5 * (HN + HN.T))
        C = N @ (V / np.sqrt(np.maximum(lam, 1e-12 * max(lam.max(), 1.0))))

        def f(v):
            val, g = self.problem.value_and_gradient(base + C @ v)
            if not np.isfinite(val):
                return 1e300, np.zeros_like(v)
            return -val, -(C.T @ g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = optimize.minimize(f, np.zeros(C.shape[1]), jac=True, method="BFGS",
                                  options={"gtol": 1e-6, "maxiter": 500})
        w = base + C @ r.x
        return w, -float(r.fun)

    def zeta(self, a, c, cache, boundary=False):
        """Signed root of the likelihood-ratio statistic at a'w = c (cached per a).

        Start: the nearest solved point (unless ``boundary``), else the
        optimum, moved onto a'w = c along the quadratic prediction when the
        move is within a few SEs (beyond that the prediction is meaningless and
        only the constrained coordinate moves). A start where the likelihood
        cannot be evaluated is skipped for the next candidate.
        """
        if c in cache:
            return cache[c][0]
        Ha = self.Hinv @ a
        se = np.sqrt(a @ Ha)
        starts = [self.w_hat]
        if cache and not boundary:
            starts.insert(0, cache[min(cache, key=lambda ci: abs(ci - c))][1])
        w, ll = None, -np.inf
        for w0 in starts:
            d = c - a @ w0
            w0 = w0 + (Ha * d / (a @ Ha) if abs(d) <= 4 * se else a * d / (a @ a))
            if not np.isfinite(self.problem.value(w0)):
                continue
            w_k, ll_k = self._maximise(w0, a, c)
            if ll_k > ll:
                w, ll = w_k, ll_k
            if not self.problem.multistart:
                break
        self.n_fits += 1
        if ll > self.ll_hat + PROFILE_GAIN_TOL:
            _not_at_maximum(ll, self.ll_hat, f"a profile point (working coordinate {c:.6g})")
        c_hat = a @ self.w_hat
        z = np.sign(c - c_hat) * np.sqrt(max(0.0, 2.0 * (self.ll_hat - ll)))
        if w is not None and not boundary:
            cache[c] = (z, w)
        return z

    def bound(self, a, side, z_crit, limit=None, cache=None):
        """The c on ``side`` (+1/-1) with |zeta(c)| = z_crit, or None if |zeta| stays
        below z_crit up to ``limit`` (a parameter boundary), or +-inf if unbounded."""
        cache = {} if cache is None else cache
        c_hat = float(a @ self.w_hat)
        se = float(np.sqrt(a @ self.Hinv @ a))
        prev_c, prev_z = c_hat, 0.0
        if limit is not None:
            zl = abs(self.zeta(a, limit, {}, boundary=True))
            if zl < z_crit:
                return None
        c = c_hat + side * z_crit * se
        for _ in range(40):
            if limit is not None and side * (c - limit) >= 0:
                c = limit
            z = abs(self.zeta(a, c, cache))
            if z >= z_crit:
                break
            if c == limit:
                return None
            slope = (z - prev_z) / abs(c - prev_c)
            step = abs(c - prev_c)
            step = 2.0 * step if slope <= 0 else min(4 * step, max(1.1 * (z_crit - z) / slope,
                                                                    0.05 * se))
            prev_c, prev_z = c, z
            c = c + side * step
        else:
            return side * np.inf
        lo, hi = sorted((prev_c, c))
        return optimize.brentq(lambda t: abs(self.zeta(a, t, cache)) - z_crit, lo, hi,
                               xtol=1e-7 * max(1.0, abs(c_hat)), rtol=1e-9)


class ProfileError(RuntimeError):
    """A profile found a higher log-likelihood than the fit: the fit is not at the
    maximum and its profile intervals would be wrong (the message says what to do)."""


def _not_at_maximum(ll, ll_ref, where):
    raise ProfileError(
        f"profiling found a higher log-likelihood than the fit: {ll:.6f} at {where}, "
        f"{ll - ll_ref:+.3g} above {ll_ref:.6f}; the fit is not at the maximum (a fit "
        "that stopped short, or one left on a boundary it should have left), so profile "
        "intervals around it would be wrong. Refit (other start_params, or the default "
        "start) and profile the new fit")


def fit_loglik(results, criterion):
    """The fit's maximised log-likelihood on ``criterion`` (None if the profile uses
    another criterion than the fit maximised, e.g. ML profiles of a REML fit)."""
    return float(results.llf) if criterion == fit_criterion(results) else None


def profile_limits(prof, idx: int, kind: str, z_crit: float):
    """(lower, upper) of the natural parameter ``idx`` of a :class:`Profiler`, on its
    reporting scale: a fixed effect as is, an SD (log scale; the lower end is 0 when
    the profile does not cross before the SD vanishes) and sigma as exp, a correlation
    (atanh scale, within +-CORR_LIMIT) as tanh (+-1 when the profile stays below the
    cut-off up to the limit)."""
    a = np.zeros(prof.w_hat.size)
    a[idx] = 1.0
    if kind in ("beta", "zi"):          # a fixed effect of the mean or of the zero part
        return _interval(prof, a, z_crit, None, None, lambda c, _s: float(c))
    if kind == "sd":
        return _interval(prof, a, z_crit, prof.w_hat[idx] - SD_ZERO_SHIFT, None,
                         lambda c, s: 0.0 if c is None else float(np.exp(c)))
    if kind == "sigma":
        return _interval(prof, a, z_crit, None, None, lambda c, _s: float(np.exp(c)))
    lim = np.arctanh(CORR_LIMIT)
    return _interval(prof, a, z_crit, -lim, lim, lambda c, s: (
        (-1.0 if s == "lower" else 1.0) if c is None else float(np.tanh(c))))


def _interval(profiler, a, z_crit, lower_limit, upper_limit, transform):
    cache = {}
    lo = profiler.bound(a, -1, z_crit, lower_limit, cache)
    hi = profiler.bound(a, +1, z_crit, upper_limit, cache)
    return transform(lo, "lower"), transform(hi, "upper")


def profile_direction(results, direction, level=0.95, lower_shift=None):
    """Profile interval of a linear combination c = a'w of working coordinates.

    ``direction(problem)`` returns a (the problem has the fit's own criterion
    and the identity layout, so ``problem.n_beta + j`` is the j-th natural
    variance parameter and ``problem.n_sigma`` says whether w ends with log sigma);
    ``lower_shift`` puts a boundary that far below c-hat (returned as None when the
    profile stays inside to there). Returns (c_hat, lower, upper) on the working scale.
    """
    crit = fit_criterion(results)
    prob = LikelihoodProblem(results, natural_layout(results.model), crit)
    prof = Profiler(prob, prob.start(results), fit_loglik(results, crit))
    a = np.asarray(direction(prob), dtype=float)
    c_hat = float(a @ prof.w_hat)
    z_crit = stats.norm.ppf(0.5 + level / 2.0)
    limit = None if lower_shift is None else c_hat - lower_shift
    return (c_hat,) + _interval(prof, a, z_crit, limit, None, lambda c, _s: c)


def profile_conf_int(results, level=0.95, which=None, criterion=None) -> pd.DataFrame:
    """Profile-likelihood intervals (see the module notes) as a DataFrame.

    Parameters
    ----------
    results : MixedGLMResults.
    level : coverage, 0.95 by default.
    which : optional list of row labels (fixed-effect names, ``sd(x)``,
        ``cor(a, b)`` -- ``sd(x | g)``, ``cor(a, b | g)`` with several grouping
        factors -- ``sigma``, the dispersion's name) to profile; default all.
    criterion : Gaussian fits only: ``None`` (default) profiles the variance
        parameters on the fit's own criterion (REML for a REML fit, the intervals
        of the REML estimates); ``"ml"`` uses the ML likelihood for everything,
        which is what lme4's ``confint(method = "profile")`` does for REML fits
        (on the HSB random-slope model the SD limits then differ by about 0.02;
        on sleepstudy's random slope by about 0.9 for sd(Intercept)).

    Returns
    -------
    DataFrame indexed by parameter with columns ``estimate``, ``lower``,
    ``upper``, ``interval`` (``"profile"`` for GLMMs; ``"profile (REML)"`` or
    ``"profile (ML)"`` for Gaussian fits: the likelihood the row was profiled
    on); ``attrs["criterion"]`` is the variance parameters' (``"reml"``,
    ``"ml"`` or ``"glmm"``), ``attrs["n_fits"]`` counts the constrained refits.
    """
    model = results.model
    gaussian = model.fam.is_gaussian
    z_crit = stats.norm.ppf(0.5 + level / 2.0)
    fe, re, extra = natural_names(model)       # extra: ["sigma"], [dispersion name] or []
    zi = [str(n) for n in results.zi_params.index]      # a zero part's coefficients
    labels = fe + re + zi + extra
    wanted = None if which is None else set(which)
    if wanted is not None and wanted - set(labels):
        raise ValueError(f"unknown parameter(s) {sorted(wanted - set(labels))}; choose from "
                         f"{labels}")
    want = (lambda name: wanted is None or name in wanted)
    if criterion not in (None, "ml", "reml"):
        raise ValueError("criterion must be None, 'ml' or 'reml'")
    var_crit = fit_criterion(results)
    if gaussian and criterion is not None:
        if criterion == "reml" and results.method != "reml":
            raise ValueError("criterion='reml' needs a REML fit")
        var_crit = criterion
    estimates = pd.concat([natural_values(results), results.zi_params])
    rows, n_fits = {}, 0

    def run(layout, crit, jobs):
        """Profile ``jobs`` = [(label, index, kind)] in one problem: index counts
        fixed effects from 0, variance parameters from 0 within w_re, -1 the last."""
        nonlocal n_fits
        if not jobs:
            return
        prob = LikelihoodProblem(results, layout, crit)
        prof = Profiler(prob, prob.start(results), fit_loglik(results, crit))
        for name, idx, kind in jobs:
            if idx < 0:
                idx += prob.dim
            elif kind != "beta":
                idx += prob.n_beta
            lo, hi = profile_limits(prof, idx, kind, z_crit)
            rows[name] = (float(estimates[name]), lo, hi, profile_label(crit))
        n_fits += prof.n_fits

    ident = natural_layout(model)
    jobs = [] if gaussian else [(n, i, "beta") for i, n in enumerate(fe) if want(n)]
    permuted = []
    for j, (e, name) in enumerate(zip(ident.entries, re)):
        if not want(name):
            continue
        idx = ident.index_of(j)
        if idx is not None:
            jobs.append((name, idx, e.kind))
        else:
            permuted.append((j, name))
    jobs += [(n, ident.dim + i, "zi") for i, n in enumerate(zi) if want(n)]
    if extra and want(extra[0]):
        jobs.append((extra[0], -1, "sigma"))     # log sigma or log dispersion: exp back
    run(ident, var_crit, jobs)
    for j, name in permuted:
        layout, idx = ident.permuted_for(j)
        run(layout, var_crit, [(name, idx, "cor")])
    if gaussian:
        run(ident, "ml", [(n, i, "beta") for i, n in enumerate(fe) if want(n)])
    order = [n for n in labels if n in rows]
    out = pd.DataFrame([rows[n] for n in order], index=order,
                       columns=["estimate", "lower", "upper", "interval"])
    out.attrs["criterion"] = var_crit
    out.attrs["n_fits"] = n_fits
    out.attrs["level"] = level
    return out
