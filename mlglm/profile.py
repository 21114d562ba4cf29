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
Parameters live in *working coordinates* w = (beta, log s, atanh z[, log sigma]
[, t]) (:mod:`mlglm.core.natural`; t = log theta or log phi, the log dispersion
of a negative binomial or Gamma fit): unconstrained, and each quantity of
interest -- a fixed effect, an SD, the first correlation, the residual SD, the
dispersion -- is one coordinate, or a fixed linear combination a'w (e.g.
log s - log sigma for a Gaussian ICC). A correlation other than the first is profiled in a problem
whose random-effect terms are permuted so its pair comes first.

Each profile point maximises l over the affine subspace a'w = c. Starting
point: the nearest solved point moved by the quadratic prediction
H^{-1}a (c - a'w)/(a'H^{-1}a), H the observed information in w at the
optimum; the search is BFGS with the exact gradient (GLMMs: chain rule
through w -> theta; Gaussian models: central differences of the cheap exact
likelihood of :mod:`mlglm.core.lmm_loglik`) in coordinates whitened by H, so
it takes a handful of iterations. The crossing of |zeta| = z is bracketed by
stepping out along the predicted (then secant-extrapolated) slope and found by
Brent's method. Boundaries: an SD's lower limit is 0 when zeta at s ~ 0
(log s 20 below its estimate) is still inside; a correlation's limit is +-1
when zeta at +-0.9999 is still inside.

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
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .core.covariance import Lambda_to_theta
from .core.grouping import make_grouped_data
from .core.lmm import lmm_stats
from .core.lmm_loglik import gaussian_loglik, permute_stats
from .core.errors import ModeFailure
from .core.natural import Lambda_to_natural, natural_to_Lambda, natural_vector
from .core.blockdiag_objective import MarginalLoglik

__all__ = ["profile_conf_int", "profile_direction", "LikelihoodProblem", "observed_information", "Profiler", "natural_names",
           "natural_values", "profile_label", "ProfileError"]

#: how far (in log s) below its estimate an SD is taken to be "at zero"
SD_ZERO_SHIFT = 20.0
#: a profile that finds a log-likelihood this much above the fit's maximum (its own
#: polished maximum, or the fit's reported one) refuses: the fit is not at the maximum
#: (lme4: "profiling detected new, lower deviance"), and intervals computed against it
#: would exclude the estimate
PROFILE_GAIN_TOL = 1e-4
#: correlations are evaluated at +-CORR_LIMIT for the "+-1" boundary test
CORR_LIMIT = 0.9999


def natural_names(results) -> tuple[list[str], list[str], list[str]]:
    """Row labels: fixed effects, ``sd(term)``, ``cor(term_l, term_k)`` (k > l)."""
    model = results.model
    fe = [str(n) for n in model.exog_names]
    re = [str(n) for n in (getattr(model.data, "exog_re_names", None)
                           or [f"re{k}" for k in range(model.q)])]
    gname = getattr(model, "group_name", None)
    re = ["Intercept" if n in (gname, "Group") else n for n in re]   # statsmodels names it so
    sd = [f"sd({n})" for n in re]
    k, l = np.tril_indices(model.q, -1)
    cor = [] if model.diagonal else [f"cor({re[j]}, {re[i]})" for i, j in zip(k, l)]
    return fe, sd, cor


def extra_names(model) -> list[str]:
    """The natural parameters after the correlations: ``sigma`` (Gaussian), the
    dispersion's name (``theta``, ``scale``) when a GLMM estimates it, else none."""
    if model.fam.is_gaussian:
        return ["sigma"]
    return [model.fam.dispersion_name] if model.fam.estimates_dispersion else []


def natural_values(results) -> pd.Series:
    """Estimates of the natural parameters: fixed effects, SDs, correlations[, sigma
    or the dispersion]."""
    fe, sd, cor = natural_names(results)
    gaussian = results.model.fam.is_gaussian
    vec = natural_vector(results.fe_params, results.cov_re, bool(cor),
                         np.sqrt(results.scale) if gaussian else None)
    if results.model.fam.estimates_dispersion:
        vec = np.append(vec, results.dispersion)
    return pd.Series(vec, index=fe + sd + cor + extra_names(results.model))


def profile_label(criterion: str) -> str:
    """The ``interval`` column's text for a row profiled on ``criterion``."""
    return "profile" if criterion == "glmm" else f"profile ({criterion.upper()})"


def fit_criterion(results) -> str:
    """What the fit maximised: "glmm" (Laplace/AGHQ), "reml" or "ml" (Gaussian)."""
    if not results.model.fam.is_gaussian:
        return "glmm"
    return "reml" if results.method == "reml" else "ml"


class LikelihoodProblem:
    """log-likelihood l(w) in working coordinates for one order of the RE terms.

    Parameters
    ----------
    results : fitted MixedGLMResults.
    perm : order of the random-effect terms (first pair = first correlation).
    criterion : ``"glmm"`` (Laplace/AGHQ as fitted), ``"ml"`` or ``"reml"`` (Gaussian).

    w = (beta [absent for "reml"], log s (permuted order), atanh z [if correlated],
    log sigma [Gaussian] or t = log dispersion [a GLMM that estimates it]).
    """

    def __init__(self, results, perm, criterion):
        model = results.model
        if not getattr(model, "rows_on_driver", True):      # a sharded fit (mlglm.distributed)
            raise NotImplementedError("profile likelihoods re-evaluate the likelihood from the "
                                      "rows, which this fit keeps on a Dask cluster; fit the "
                                      "data in memory for profile intervals")
        self.perm = np.asarray(perm)
        self.criterion = criterion
        self.q, self.p = model.q, model.k_fe
        self.diagonal = model.diagonal or self.q == 1
        self.n_beta = 0 if criterion == "reml" else self.p
        self.n_z = 0 if self.diagonal else self.q * (self.q - 1) // 2
        # one trailing coordinate: log sigma (Gaussian) or the log dispersion t
        self.n_sigma = 0 if criterion == "glmm" and not model.fam.estimates_dispersion else 1
        self.dim = self.n_beta + self.q + self.n_z + self.n_sigma
        Z = np.asarray(model.exog_re, dtype=float)[:, self.perm]
        if criterion == "glmm":
            data = make_grouped_data(model.endog, model.exog, Z, model.group_codes,
                                     offset=model.offset, m=model.n_trials,
                                     freq=model.freq_weights, var=model.var_weights)
            self.obj = MarginalLoglik(model.fam.kernel(), data, nagq=results.nagq or 1,
                                      diagonal=model.diagonal,
                                      estimate_dispersion=model.fam.estimates_dispersion)
        else:
            st = lmm_stats(np.asarray(model.endog) - model.offset, model.exog, model.exog_re,
                           model.group_codes, n_groups=model.n_groups,
                           freq=model.freq_weights, var=model.var_weights)
            self.stats = permute_stats(st, self.perm)

    # ----------------------------------------------------------- coordinates
    def unpack(self, w):
        w = np.asarray(w, dtype=float)
        i = self.n_beta
        beta, log_s = w[:i], w[i:i + self.q]
        a = w[i + self.q:i + self.q + self.n_z]
        log_sigma = w[-1] if self.n_sigma else 0.0
        return beta, log_s, a, log_sigma

    def Lambda(self, w) -> np.ndarray:
        """Factor of the permuted Sigma (absolute scale)."""
        _, log_s, a, _ = self.unpack(w)
        return natural_to_Lambda(log_s, a, self.q, self.diagonal)

    def pack(self, beta, Sigma, sigma2=None, min_sd=1e-5) -> np.ndarray:
        """w for (beta, Sigma in the original order, sigma^2 -- or, for a GLMM with a
        dispersion, the dispersion itself); SDs floored at ``min_sd`` (a zero SD has
        no log)."""
        Sp = np.asarray(Sigma, dtype=float)[np.ix_(self.perm, self.perm)]
        try:
            L = np.linalg.cholesky(Sp)
        except np.linalg.LinAlgError:
            L = np.linalg.cholesky(Sp + 1e-12 * np.eye(self.q))
        s, z = Lambda_to_natural(L, self.diagonal)
        parts = [np.asarray(beta, float)[:self.n_beta], np.log(np.maximum(s, min_sd)),
                 np.arctanh(np.clip(z, -CORR_LIMIT, CORR_LIMIT))]
        if self.n_sigma:
            parts.append([np.log(sigma2) if self.criterion == "glmm" else 0.5 * np.log(sigma2)])
        return np.concatenate(parts)

    def _x(self, beta, theta, w):
        """x = (beta, theta[, t]) of the objective."""
        return np.concatenate([beta, theta] + ([w[-1:]] if self.n_sigma else []))

    # ------------------------------------------------------------- functions
    def value(self, w) -> float:
        beta, log_s, a, log_sigma = self.unpack(w)
        Lam = natural_to_Lambda(log_s, a, self.q, self.diagonal)
        if self.criterion == "glmm":
            x = self._x(beta, Lambda_to_theta(Lam, self.obj.diagonal), w)
            try:
                return self.obj(x)
            except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
                return -np.inf
        return gaussian_loglik(beta, Lam, np.exp(2 * log_sigma), self.stats,
                               reml=self.criterion == "reml")

    def value_and_gradient(self, w):
        """(l, dl/dw); exact chain rule for GLMMs, central differences for Gaussian."""
        w = np.asarray(w, dtype=float)
        if self.criterion != "glmm":
            f0 = self.value(w)
            g = np.empty_like(w)
            for i in range(w.size):
                h = 1e-5 * max(1.0, abs(w[i]))
                e = np.zeros_like(w)
                e[i] = h
                g[i] = (self.value(w + e) - self.value(w - e)) / (2 * h)
            return f0, g
        beta, log_s, a, _ = self.unpack(w)
        re = w[self.n_beta:w.size - self.n_sigma]
        diag = self.obj.diagonal

        def theta_of(r):
            return Lambda_to_theta(natural_to_Lambda(r[:self.q], r[self.q:], self.q,
                                                     self.diagonal), diag)
        x = self._x(beta, theta_of(re), w)
        try:
            f, gx = self.obj.value_and_gradient(x)
        except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
            return -np.inf, np.zeros_like(w)
        k = self.obj.n_theta
        J = np.empty((k, re.size))
        for i in range(re.size):       # w -> theta is a cheap closed form: difference it
            h = 1e-6 * max(1.0, abs(re[i]))
            e = np.zeros_like(re)
            e[i] = h
            J[:, i] = (theta_of(re + e) - theta_of(re - e)) / (2 * h)
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
            w, ll = self._maximise(w0, a, c)
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


def _natural_start(problem, results):
    """w of the fit for this problem (Gaussian REML variance parameters as fitted)."""
    sigma2 = None
    if problem.n_sigma:
        sigma2 = results.dispersion if problem.criterion == "glmm" else results.scale
    return problem.pack(results.fe_params, results.cov_re, sigma2)


def profile_limits(prof, idx: int, kind: str, z_crit: float):
    """(lower, upper) of the natural parameter ``idx`` of a :class:`Profiler`, on its
    reporting scale: a fixed effect as is, an SD (log scale; the lower end is 0 when
    the profile does not cross before the SD vanishes) and sigma as exp, a correlation
    (atanh scale, within +-CORR_LIMIT) as tanh (+-1 when the profile stays below the
    cut-off up to the limit)."""
    a = np.zeros(prof.w_hat.size)
    a[idx] = 1.0
    if kind == "beta":
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
    and the identity term order); ``lower_shift`` puts a boundary that far
    below c-hat (returned as None when the profile stays inside to there).
    Returns (c_hat, lower, upper) on the working scale.
    """
    crit = fit_criterion(results)
    prob = LikelihoodProblem(results, np.arange(results.model.q), crit)
    prof = Profiler(prob, _natural_start(prob, results), fit_loglik(results, crit))
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
    which : optional list of row labels (fixed-effect names, ``sd(term)``,
        ``cor(a, b)``, ``sigma``) to profile; default all.
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
    extra = extra_names(model)           # ["sigma"], [dispersion name] or []
    q = model.q
    z_crit = stats.norm.ppf(0.5 + level / 2.0)
    fe, sd, cor = natural_names(results)
    pairs = list(zip(*np.tril_indices(q, -1))) if cor else []
    rows, n_fits = {}, 0
    wanted = None if which is None else set(which)
    want = (lambda name: wanted is None or name in wanted)
    estimates = natural_values(results)
    var_crit = fit_criterion(results)
    if criterion not in (None, "ml", "reml"):
        raise ValueError("criterion must be None, 'ml' or 'reml'")
    if gaussian and criterion is not None:
        if criterion == "reml" and results.method != "reml":
            raise ValueError("criterion='reml' needs a REML fit")
        var_crit = criterion

    def run(problem_perm, crit, jobs):
        nonlocal n_fits
        if not jobs:
            return
        prob = LikelihoodProblem(results, problem_perm, crit)
        prof = Profiler(prob, _natural_start(prob, results), fit_loglik(results, crit))
        for name, idx, kind in jobs:
            lo, hi = profile_limits(prof, idx, kind, z_crit)
            rows[name] = (float(estimates[name]), lo, hi, profile_label(crit))
        n_fits += prof.n_fits

    ident = np.arange(q)
    prob_dims = (0 if var_crit == "reml" else model.k_fe)
    jobs = []
    if not gaussian:
        jobs += [(n, i, "beta") for i, n in enumerate(fe) if want(n)]
    jobs += [(n, prob_dims + k, "sd") for k, n in enumerate(sd) if want(n)]
    if pairs and want(cor[0]):
        jobs.append((cor[0], prob_dims + q, "cor"))
    if extra and want(extra[0]):
        jobs.append((extra[0], -1, "sigma"))    # log sigma or log dispersion: exp back
    run(ident, var_crit, jobs)
    for (k, l), name in list(zip(pairs, cor))[1:]:
        if want(name):
            perm = np.array([l, k] + [t for t in range(q) if t not in (k, l)])
            run(perm, var_crit, [(name, prob_dims + q, "cor")])
    if gaussian:
        run(ident, "ml", [(n, i, "beta") for i, n in enumerate(fe) if want(n)])
    order = [n for n in fe + sd + cor + extra if n in rows]
    unknown = (wanted or set()) - set(order)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; choose from "
                         f"{fe + sd + cor + extra}")
    out = pd.DataFrame([rows[n] for n in order], index=order,
                       columns=["estimate", "lower", "upper", "interval"])
    out.attrs["criterion"] = var_crit
    out.attrs["n_fits"] = n_fits
    out.attrs["level"] = level
    return out
