"""A deliberately naive reference implementation ("oracle") of the mlglm objective.

Everything here is written for clarity, not speed: Python loops over groups,
scipy.optimize for the conditional modes, finite differences for every
derivative of the log-likelihood, scipy.integrate for brute-force integrals. It uses only numpy and
scipy and imports nothing from ``mlglm``, so the vectorised core can be tested
against it.

Model (DESIGN.md section 4). Group j has response y_j, fixed design X_j
(n_j x p), random design Z_j (n_j x q), offset o_j and trials m_j.
Random effects b_j = L u_j with u_j ~ N(0, I_q) and L a lower-triangular
factor of Sigma (Sigma = L L'); the linear predictor is
eta_j = o_j + X_j beta + Z_j L u_j.

The log of the integrand ("h" below, as in DESIGN.md) is

    h_j(u) = sum_i log p(y_ij | eta_ij(u)) - u'u/2 - (q/2) log(2 pi),

so that exp(h_j(u)) = prod_i p(y_ij | eta_ij(u)) * phi_q(u) and the marginal
likelihood of group j is L_j = int exp(h_j(u)) du. (The constant
-(q/2) log(2 pi) does not move the mode or the Hessian.)

Approximations of log L_j, with u_hat the mode of h_j and H = -h_j''(u_hat)
(the negative Hessian), H = R R' (lower Cholesky):

* Laplace:  log L_j = h_j(u_hat) + (q/2) log(2 pi) - (1/2) log det H
                    = l_j(u_hat) - u_hat'u_hat/2 - (1/2) log det H,
  where l_j(u) = sum_i log p(y_ij | eta_ij(u)).

* AGHQ with K points per dimension. Substitute u = u_hat + R^{-T} t, so that
  du = |det R|^{-1} dt and h_j(u) is approximately h_j(u_hat) - t't/2:

      L_j = |det R|^{-1} int exp(h_j(u(t))) dt
          = |det R|^{-1} int [exp(h_j(u(t)) + t't/2 + (q/2) log(2 pi))] phi_q(t) dt.

  The bracket is nearly constant, so integrate it against phi_q with the
  product Gauss-Hermite rule for the standard normal: from the physicists'
  rule (z_k, w_k) = hermgauss(K) (weight exp(-z^2)), t_k = sqrt(2) z_k and
  normalised weights w_k / sqrt(pi) (they sum to 1). Hence

      log L_j = -(1/2) log det H + log sum_grid [prod_d w_kd / sqrt(pi)]
                    * exp(h_j(u_hat + R^{-T} t) + t't/2 + (q/2) log(2 pi)).

  K = 1 gives z = 0, w = sqrt(pi): exactly the Laplace formula.

  For q >= 2 the result at finite K depends on how the grid is oriented;
  aghq_grid="b" gives GLMMadaptive's orientation instead (see group_loglik).

* Exact: the integral of exp(h_j(u) - h_j(u_hat)) by scipy.integrate in the
  same standardised coordinates t, with h_j(u_hat) added back on the log scale
  (q = 1: quad on (-inf, 0] and [0, inf); q = 2: dblquad on the box |t_k| <= 12).

Mode and Hessian: BFGS then Newton polish; the gradient and Hessian in u come
from the chain rule through eta = eta0 + Z L u with the per-row derivatives in
eta taken by finite differences of the log-likelihood itself (no analytic
derivative of any family or link appears here).

lme4 conventions (see :func:`saturated_loglik`): glmer's nAGQ > 1 logLik is the
full log-likelihood minus the saturated one.

Families with a dispersion are given as a pair ``family=(name, dispersion)``:
``("negative_binomial", theta)`` (NB2, log link; scipy.stats.nbinom with size
theta and p = theta / (theta + mu)) and ``("gamma", phi)`` (links log and inverse;
scipy.stats.gamma with shape 1/phi and scale mu phi; no density where the
inverse link's mean 1/eta is not positive).

Gaussian (linear) models are handled separately and exactly:
:func:`marginal_loglik_gaussian` and :func:`reml_criterion_gaussian`.
"""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
from scipy import integrate, optimize, special, stats

__all__ = [
    "cond_loglik_obs",
    "row_loglik_function",
    "saturated_loglik",
    "cholesky_psd",
    "group_log_integrand",
    "group_mode",
    "group_loglik",
    "marginal_loglik",
    "marginal_loglik_gaussian",
    "reml_criterion_gaussian",
]

LOG_2PI = math.log(2.0 * math.pi)

_CANONICAL = {"binomial": "logit", "poisson": "log", "negative_binomial": "log",
              "gamma": "log"}
_LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log",),
          "negative_binomial": ("log",), "gamma": ("log", "inverse")}
_DISPERSED = ("negative_binomial", "gamma")


# ---------------------------------------------------------------------------
# Conditional log-likelihood of one observation
# ---------------------------------------------------------------------------

def _check_family(family, link):
    dispersion = None
    if isinstance(family, tuple):                   # (name, dispersion)
        family, dispersion = family
        if not float(dispersion) > 0:
            raise ValueError("the dispersion must be positive")
    family = str(family).lower()
    if family not in _LINKS:
        raise ValueError(f"family must be one of {list(_LINKS)}, got {family!r}")
    if (family in _DISPERSED) != (dispersion is not None):
        raise ValueError(f"give {family} as (name, dispersion)" if family in _DISPERSED
                         else f"{family} has no dispersion")
    if link is None:
        link = _CANONICAL[family]
    link = str(link).lower()
    if link not in _LINKS[family]:
        raise ValueError(f"link {link!r} not available for family {family!r}")
    return (family if dispersion is None else (family, float(dispersion))), link


def _log_mu_and_log_1m_mu(eta, link):
    """log(mu) and log(1 - mu) for a binomial link, computed without cancellation."""
    if link == "logit":
        return special.log_expit(eta), special.log_expit(-eta)
    if link == "probit":
        return special.log_ndtr(eta), special.log_ndtr(-eta)
    if link == "cloglog":
        # mu = 1 - exp(-exp(eta)); 1 - mu = exp(-exp(eta)).
        # log(1 - exp(-a)), a = exp(eta) > 0: log(-expm1(-a)) for a < log 2,
        # log1p(-exp(-a)) otherwise (Maechler's log1mexp), accurate everywhere.
        with np.errstate(over="ignore"):
            a = np.exp(eta)
        small = a < math.log(2.0)
        log_mu = np.where(small, np.log(-np.expm1(-np.where(small, a, 1.0))),
                          np.log1p(-np.exp(-np.where(small, 1.0, a))))
        return log_mu, -a
    raise ValueError(link)


def row_loglik_function(y, family="binomial", link=None, m=None):
    """f(eta) -> per-row log p(y | eta) for fixed y (and m): the formulas of
    :func:`cond_loglik_obs` with the constants and masks computed once, so that
    the function is cheap to call many times (optimisation, integration).
    Terms y log(mu) and (m - y) log(1 - mu) are skipped where their factor is 0,
    so 0 log 0 = 0 even when log(mu) = -inf.
    """
    family, link = _check_family(family, link)
    y = np.array(y, dtype=float)
    if isinstance(family, tuple):
        return _dispersed_loglik_function(y, family, link)
    if family == "binomial":
        m = np.ones_like(y) if m is None else np.broadcast_to(np.asarray(m, dtype=float), y.shape)
        f = m - y
        if np.any(y < 0) or np.any(f < 0):
            raise ValueError("binomial: need 0 <= y <= m (y successes out of m trials)")
        const = special.gammaln(m + 1) - special.gammaln(y + 1) - special.gammaln(f + 1)
        ypos, fpos = y != 0, f != 0
        y_s, f_s = y[ypos], f[fpos]

        def loglik(eta):
            log_mu, log_1m_mu = _log_mu_and_log_1m_mu(eta, link)
            out = const.copy()
            out[ypos] += y_s * log_mu[ypos]
            out[fpos] += f_s * log_1m_mu[fpos]
            return out

        return loglik

    if np.any(y < 0):
        raise ValueError("poisson: need y >= 0")
    const = -special.gammaln(y + 1)
    ypos = y != 0
    y_s = y[ypos]

    def loglik(eta):  # poisson, log link: y eta - exp(eta) - log(y!)
        with np.errstate(over="ignore"):
            out = const - np.exp(eta)
        out[ypos] += y_s * eta[ypos]
        return out

    return loglik


def _dispersed_loglik_function(y, family, link):
    """f(eta) for the negative binomial and the Gamma by scipy.stats (module docstring)."""
    name, d = family
    if name == "negative_binomial":
        def loglik(eta):
            with np.errstate(over="ignore", invalid="ignore"):
                mu = np.exp(eta)
                out = stats.nbinom.logpmf(y, d, d / (d + mu))
            # mu overflowing (eta -> inf in a tail of an integral): the density is 0
            return np.where(np.isnan(out), -np.inf, out)
        return loglik
    shape = 1.0 / d

    def loglik(eta):
        eta = np.asarray(eta, dtype=float)
        with np.errstate(over="ignore", divide="ignore"):
            mu = np.exp(eta) if link == "log" else 1.0 / np.where(eta > 0, eta, np.nan)
        out = stats.gamma.logpdf(y, shape, scale=mu / shape)
        return np.where(np.isnan(out), -np.inf, out)
    return loglik


def cond_loglik_obs(eta, y, family="binomial", link=None, m=None):
    """Per-row conditional log-likelihood log p(y | eta), all constants included.

    binomial: log C(m, y) + y log(mu) + (m - y) log(1 - mu), y successes of m
              trials (m = 1 by default: Bernoulli); links logit, probit, cloglog.
    poisson:  y eta - exp(eta) - log(y!), link log.
    """
    eta, y = np.broadcast_arrays(np.asarray(eta, dtype=float), np.asarray(y, dtype=float))
    if m is not None:
        m = np.broadcast_to(np.asarray(m, dtype=float), y.shape)
    return row_loglik_function(y, family, link, m)(eta)


def saturated_loglik(y, family="binomial", m=None):
    """sum_i log p(y_i | mu_i = y_i / m_i) (binomial) or (mu_i = y_i) (poisson), constants included.

    lme4's ``logLik`` for glmer with nAGQ > 1 is the full marginal log-likelihood
    minus this (its issue #567); for Bernoulli rows it is exactly 0.
    """
    family, _ = _check_family(family, None)
    y = np.asarray(y, dtype=float)
    if family == "binomial":
        m = np.ones_like(y) if m is None else np.asarray(m, dtype=float)
        p = y / m
        return float(np.sum(special.gammaln(m + 1) - special.gammaln(y + 1) - special.gammaln(m - y + 1)
                            + special.xlogy(y, p) + special.xlogy(m - y, 1 - p)))
    return float(np.sum(special.xlogy(y, y) - y - special.gammaln(y + 1)))


# ---------------------------------------------------------------------------
# Small numerical helpers
# ---------------------------------------------------------------------------

def cholesky_psd(Sigma, tol=1e-13):
    """Lower-triangular L with L L' = Sigma for a positive SEMI-definite Sigma.

    Plain Cholesky-Banachiewicz; a pivot that is zero (up to ``tol`` times the
    largest diagonal element) gives a zero column, so singular Sigma (e.g. a zero
    variance) is allowed. For positive definite Sigma this is the usual
    Cholesky factor (unique with positive diagonal).
    """
    Sigma = np.atleast_2d(np.asarray(Sigma, dtype=float))
    q = Sigma.shape[0]
    if Sigma.shape != (q, q):
        raise ValueError("Sigma must be square")
    if not np.allclose(Sigma, Sigma.T, rtol=1e-12, atol=0):
        raise ValueError("Sigma must be symmetric")
    scale = max(float(np.max(np.abs(np.diag(Sigma)))) if q else 0.0, 0.0)
    L = np.zeros((q, q))
    for j in range(q):
        d = Sigma[j, j] - L[j, :j] @ L[j, :j]
        if d <= tol * scale:
            if d < -1e-10 * max(scale, 1e-300):
                raise ValueError("Sigma is not positive semi-definite")
            continue  # zero pivot: zero column
        L[j, j] = math.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (Sigma[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    if not np.allclose(L @ L.T, Sigma, rtol=1e-8, atol=1e-10 * max(scale, 1e-300)):
        raise ValueError("Sigma is not positive semi-definite")
    return L


def _fd_gradient(f, x, step):
    """Central differences with one Richardson extrapolation: error O(step^4)."""
    x = np.asarray(x, dtype=float)
    g = np.empty(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = 1.0

        def d(s):
            return (f(x + s * e) - f(x - s * e)) / (2.0 * s)

        g[k] = (4.0 * d(step) - d(2.0 * step)) / 3.0
    return g


def _fd_hessian(f, x, step):
    """Central second differences with one Richardson extrapolation: error O(step^4).

    Diagonal: (f(x+s e_k) - 2 f(x) + f(x-s e_k)) / s^2;
    off-diagonal: (f(++) - f(+-) - f(-+) + f(--)) / (4 s^2).
    Both error expansions contain only even powers of s, so
    (4 D(s) - D(2s)) / 3 removes the s^2 term.
    """
    x = np.asarray(x, dtype=float)
    q = x.size
    f0 = f(x)
    eye = np.eye(q)

    def second(k, j, s):
        if k == j:
            return (f(x + s * eye[k]) - 2.0 * f0 + f(x - s * eye[k])) / s**2
        ek, ej = s * eye[k], s * eye[j]
        return (f(x + ek + ej) - f(x + ek - ej) - f(x - ek + ej) + f(x - ek - ej)) / (4.0 * s**2)

    H = np.empty((q, q))
    for k in range(q):
        for j in range(k, q):
            H[k, j] = H[j, k] = (4.0 * second(k, j, step) - second(k, j, 2.0 * step)) / 3.0
    return H


def _logsumexp(a):
    a = np.asarray(a, dtype=float)
    mx = np.max(a)
    if not np.isfinite(mx):
        return float(mx)
    return float(mx + math.log(np.sum(np.exp(a - mx))))


# ---------------------------------------------------------------------------
# One group
# ---------------------------------------------------------------------------

def _as_2d(Z, n):
    Z = np.asarray(Z, dtype=float)
    if Z.ndim == 1:
        Z = Z.reshape(n, 1)
    return Z


def group_log_integrand(y, X, Z, beta, L, family="binomial", link=None, m=None, offset=None):
    """The function h(u) = sum_i log p(y_i | eta_i(u)) - u'u/2 - (q/2) log(2 pi) of one group."""
    family, link = _check_family(family, link)
    y = np.asarray(y, dtype=float)
    n = y.size
    X = np.asarray(X, dtype=float).reshape(n, -1)
    Z = _as_2d(Z, n)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    q = Z.shape[1]
    if L.shape != (q, q):
        raise ValueError(f"L must be {q} x {q}")
    o = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    eta0 = o + X @ np.asarray(beta, dtype=float)
    A = Z @ L  # eta = eta0 + A u
    loglik = row_loglik_function(y, family, link, m)
    c = 0.5 * q * LOG_2PI

    def h(u):
        u = np.asarray(u, dtype=float)
        return float(np.sum(loglik(eta0 + A @ u)) - 0.5 * (u @ u) - c)

    return h


def _fd_eta_derivatives(eta, y, family, link, m, step=4e-3):
    """First and second derivatives of each row's log-likelihood in eta, by central
    differences of :func:`cond_loglik_obs` with one Richardson extrapolation
    (error O(step^4); per-row curvature varies on a scale of order 1 in eta, and a
    step of a few 1e-3 balances truncation against rounding)."""
    f = row_loglik_function(y, family, link, m)
    f0 = f(eta)
    fp1, fm1, fp2, fm2 = f(eta + step), f(eta - step), f(eta + 2 * step), f(eta - 2 * step)
    d1_s = (fp1 - fm1) / (2 * step)
    d1_2s = (fp2 - fm2) / (4 * step)
    d2_s = (fp1 - 2 * f0 + fm1) / step**2
    d2_2s = (fp2 - 2 * f0 + fm2) / (4 * step**2)
    return (4 * d1_s - d1_2s) / 3, (4 * d2_s - d2_2s) / 3


def group_mode(y, X, Z, beta, L, family="binomial", link=None, m=None, offset=None, u0=None,
               return_value=False):
    """Conditional mode u_hat of one group and the negative Hessian H = -h''(u_hat).

    h(u) = sum_i l_i(eta_i) - u'u/2 (+ a constant), eta = o + X beta + A u with
    A = Z L. Because eta is linear in u, the chain rule gives
        grad h = A' d1 - u,      -hess h = I - A' diag(d2) A,
    with d1, d2 the first and second derivatives of each row's log-likelihood in
    eta -- taken here by finite differences of :func:`cond_loglik_obs` (no
    analytic derivative of any family or link is used). Per-row differences are
    much less affected by rounding than differences of the summed h.
    h is concave (H >= I) for all supported family/link pairs. The maximiser is
    found by BFGS and then polished by Newton steps with step-halving until the
    Newton step is below 1e-10 in every coordinate (or stops shrinking below 1e-8,
    the finite-difference noise floor for groups with very large counts; the
    effect on h(u_hat) is second order, ~ step' H step).
    Returns (u_hat, H), or (u_hat, H, h(u_hat)) with return_value=True, where
    h includes the constant -(q/2) log(2 pi).
    """
    family, link = _check_family(family, link)
    h = group_log_integrand(y, X, Z, beta, L, family, link, m, offset)
    y = np.asarray(y, dtype=float)
    n = y.size
    X = np.asarray(X, dtype=float).reshape(n, -1)
    Z = _as_2d(Z, n)
    L = np.atleast_2d(np.asarray(L, dtype=float))
    q = Z.shape[1]
    o = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    eta0 = o + X @ np.asarray(beta, dtype=float)
    A = Z @ L

    def grad_and_negHess(u):
        d1, d2 = _fd_eta_derivatives(eta0 + A @ u, y, family, link, m)
        g = A.T @ d1 - u
        H = np.eye(q) - A.T @ (d2[:, None] * A)
        return g, 0.5 * (H + H.T)

    u = np.zeros(q) if u0 is None else np.asarray(u0, dtype=float).copy()

    # 1. BFGS on -h.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = optimize.minimize(lambda v: -h(v), u, jac=lambda v: -grad_and_negHess(v)[0],
                                method="BFGS", options={"gtol": 1e-10, "maxiter": 1000})
    if np.all(np.isfinite(res.x)) and h(res.x) >= h(u):
        u = res.x

    # 2. Newton polish with step-halving. Stop when the step is below 1e-10, or
    #    when it stops shrinking at a level (< 1e-8) set by finite-difference noise.
    prev = np.inf
    for _ in range(100):
        g, H = grad_and_negHess(u)
        step = np.linalg.solve(H, g)
        h_old = h(u)
        lam = 1.0
        while True:
            u_new = u + lam * step
            if h(u_new) >= h_old - 1e-13 * max(1.0, abs(h_old)) or lam < 1e-10:
                break
            lam *= 0.5
        u = u_new
        size = float(np.max(np.abs(lam * step)))
        if size < 1e-10 or (size < 1e-8 and size > 0.5 * prev):
            break
        prev = size
    else:
        warnings.warn("oracle group_mode: Newton polish did not converge")

    # 3. Hessian at the final mode.
    _, H = grad_and_negHess(u)
    if return_value:
        return u, H, h(u)
    return u, H


def _gh_normal(K):
    """Gauss-Hermite rule for N(0, 1): nodes t_k = sqrt(2) z_k, weights w_k / sqrt(pi)."""
    z, w = np.polynomial.hermite.hermgauss(K)
    return math.sqrt(2.0) * z, w / math.sqrt(math.pi)


def group_loglik(y, X, Z, beta, L, family="binomial", link=None, m=None, offset=None,
                 method="laplace", nagq=None, epsabs=None, epsrel=None, aghq_grid="u"):
    """log L_j of one group by "laplace", "aghq" (nagq points per dimension) or "exact".

    aghq_grid: orientation of the product grid (matters only for q >= 2 and finite nagq).
      "u" (default; DESIGN.md, and lme4's for q = 1): u = u_hat + R^{-T} t, H = R R'.
      "b" (GLMMadaptive's): b = b_hat + U_b^{-1} t in b = L u, where H_b = U_b' U_b is
          the upper Cholesky factorisation of the negative Hessian in b,
          H_b = L^{-T} H L^{-1}; needs L nonsingular.
    Both are u = u_hat + M t with M M' = H^{-1}, so the Jacobian is det(H)^{-1/2}
    either way; they differ by a rotation of the standardised grid.
    """
    family, link = _check_family(family, link)
    y = np.asarray(y, dtype=float)
    n = y.size
    Z = _as_2d(Z, n)
    q = Z.shape[1]
    h = group_log_integrand(y, X, Z, beta, L, family, link, m, offset)
    if q == 0:  # no random effects: the GLM log-likelihood
        return h(np.zeros(0))
    u_hat, H = group_mode(y, X, Z, beta, L, family, link, m, offset)
    R = np.linalg.cholesky(H)
    logdet_H = 2.0 * float(np.sum(np.log(np.diag(R))))
    h_hat = h(u_hat)
    S = np.linalg.inv(R).T  # u = u_hat + S t

    if method == "laplace":
        return h_hat + 0.5 * q * LOG_2PI - 0.5 * logdet_H

    if method == "aghq":
        if nagq is None or int(nagq) < 1:
            raise ValueError("method='aghq' needs nagq >= 1")
        if aghq_grid == "u":
            M = S
        elif aghq_grid == "b":
            Lm = np.atleast_2d(np.asarray(L, dtype=float))
            Linv = np.linalg.inv(Lm)
            U_b = np.linalg.cholesky(Linv.T @ H @ Linv).T  # H_b = U_b' U_b, U_b upper
            M = Linv @ np.linalg.inv(U_b)                  # u = L^{-1} b
        else:
            raise ValueError("aghq_grid must be 'u' or 'b'")
        t1, w1 = _gh_normal(int(nagq))
        terms = []
        for idx in itertools.product(range(int(nagq)), repeat=q):
            t = t1[list(idx)]
            logw = float(np.sum(np.log(w1[list(idx)])))
            terms.append(logw + h(u_hat + M @ t) + 0.5 * (t @ t) + 0.5 * q * LOG_2PI)
        return -0.5 * logdet_H + _logsumexp(terms)

    if method == "exact":
        # int exp(h(u)) du = exp(h_hat) |det R|^{-1} int exp(h(u_hat + S t) - h_hat) dt
        # default tolerances: 1e-11 (q = 1, cheap), 1e-10 (q = 2); the integral in t is ~ (2 pi)^(q/2)
        if epsabs is None:
            epsabs = 1e-11 if q == 1 else 1e-10
        if epsrel is None:
            epsrel = epsabs
        opts = dict(epsabs=epsabs, epsrel=epsrel, limit=200)
        if q == 1:
            s = S[0, 0]

            def f1(t):
                return math.exp(h(u_hat + s * np.array([t])) - h_hat)

            # split at the mode; infinite ranges (QUADPACK qagi) so no tail is cut off
            left = integrate.quad(f1, -np.inf, 0.0, **opts)[0]
            right = integrate.quad(f1, 0.0, np.inf, **opts)[0]
            integral = left + right
        elif q == 2:
            def f2(t2, t1):
                return math.exp(h(u_hat + S @ np.array([t1, t2])) - h_hat)

            B = 12.0  # +-12 conditional SDs in the standardised coordinates
            integral = integrate.dblquad(f2, -B, B, -B, B, epsabs=epsabs, epsrel=epsrel)[0]
        else:
            raise NotImplementedError("method='exact' is implemented for q <= 2 only")
        return h_hat - 0.5 * logdet_H + math.log(integral)

    raise ValueError(f"unknown method {method!r}")


# ---------------------------------------------------------------------------
# All groups
# ---------------------------------------------------------------------------

def _split_groups(groups):
    groups = np.asarray(groups)
    labels, codes = np.unique(groups, return_inverse=True)
    return labels, codes.reshape(-1)


def marginal_loglik(y, X, Z, groups, beta, Sigma, family="binomial", link=None, m=None,
                    offset=None, method="laplace", nagq=None, per_group=False, Lambda=None,
                    aghq_grid="u"):
    """Marginal log-likelihood sum_j log L_j of a two-level GLMM, all constants included.

    Parameters are plain numpy arrays: y (n,), X (n, p), Z (n, q) or (n,),
    groups (n,) labels of any sortable type, beta (p,), Sigma (q, q) positive
    semi-definite (zero variances allowed), m (n,) binomial trials (default 1),
    offset (n,). ``link`` defaults to the canonical link (logit / log).
    ``Lambda``: optionally the lower-triangular factor itself (then Sigma is
    ignored and may be None) -- AGHQ, unlike Laplace and exact integration, is
    not invariant to the choice of factor when Sigma is singular.

    method: "laplace", "aghq" (needs nagq, points per dimension, product grid)
    or "exact" (scipy.integrate, q <= 2). aghq_grid: "u" (default, DESIGN.md) or
    "b" (GLMMadaptive's orientation), see :func:`group_loglik`.
    Returns a float, or with per_group=True the array of log L_j in sorted-label order.
    """
    family, link = _check_family(family, link)
    y = np.asarray(y, dtype=float).reshape(-1)
    n = y.size
    X = np.asarray(X, dtype=float).reshape(n, -1)
    Z = _as_2d(Z, n)
    q = Z.shape[1]
    if Lambda is None:
        L = cholesky_psd(Sigma) if q else np.zeros((0, 0))
    else:
        L = np.atleast_2d(np.asarray(Lambda, dtype=float)).reshape(q, q)
    m = None if m is None else np.broadcast_to(np.asarray(m, dtype=float), (n,))
    offset = None if offset is None else np.broadcast_to(np.asarray(offset, dtype=float), (n,))
    labels, codes = _split_groups(groups)
    out = np.empty(labels.size)
    for j in range(labels.size):
        r = codes == j
        out[j] = group_loglik(y[r], X[r], Z[r], beta, L, family, link,
                              None if m is None else m[r], None if offset is None else offset[r],
                              method=method, nagq=nagq, aghq_grid=aghq_grid)
    return out if per_group else float(np.sum(out))


# ---------------------------------------------------------------------------
# Gaussian (linear mixed) model, exact
# ---------------------------------------------------------------------------

def _gaussian_blocks(y, X, Z, groups, Sigma, sigma2):
    y = np.asarray(y, dtype=float).reshape(-1)
    n = y.size
    X = np.asarray(X, dtype=float).reshape(n, -1)
    Z = _as_2d(Z, n)
    Sigma = np.atleast_2d(np.asarray(Sigma, dtype=float))
    labels, codes = _split_groups(groups)
    for j in range(labels.size):
        r = codes == j
        Zj = Z[r]
        V = Zj @ Sigma @ Zj.T + sigma2 * np.eye(Zj.shape[0])
        yield y[r], X[r], V


def marginal_loglik_gaussian(y, X, Z, groups, beta, Sigma, sigma2, per_group=False):
    """Exact Gaussian LMM log-likelihood sum_j log N(y_j; X_j beta, Z_j Sigma Z_j' + sigma2 I)."""
    out = np.array([stats.multivariate_normal.logpdf(yj, mean=Xj @ np.asarray(beta, float), cov=V)
                    for yj, Xj, V in _gaussian_blocks(y, X, Z, groups, Sigma, sigma2)])
    return out if per_group else float(np.sum(out))


def reml_criterion_gaussian(y, X, Z, groups, Sigma, sigma2, return_beta=False):
    """-2 x REML log-likelihood at (Sigma, sigma2), lme4's ``REMLcrit`` convention:

        (n - p) log(2 pi) + log det V + log det(X' V^{-1} X) + r' V^{-1} r,

    r = y - X beta_hat, beta_hat the GLS estimate at the given Sigma, sigma2;
    V = blockdiag_j(Z_j Sigma Z_j' + sigma2 I). With return_beta=True returns
    (criterion, beta_hat).
    """
    y = np.asarray(y, dtype=float).reshape(-1)
    n = y.size
    p = np.asarray(X, dtype=float).reshape(n, -1).shape[1]
    blocks = list(_gaussian_blocks(y, X, Z, groups, Sigma, sigma2))
    XtVX = np.zeros((p, p))
    XtVy = np.zeros(p)
    logdet_V = 0.0
    for yj, Xj, V in blocks:
        C = np.linalg.cholesky(V)
        logdet_V += 2.0 * float(np.sum(np.log(np.diag(C))))
        XtVX += Xj.T @ np.linalg.solve(V, Xj)
        XtVy += Xj.T @ np.linalg.solve(V, yj)
    beta_hat = np.linalg.solve(XtVX, XtVy)
    quad = 0.0
    for yj, Xj, V in blocks:
        r = yj - Xj @ beta_hat
        quad += float(r @ np.linalg.solve(V, r))
    sign, logdet_XtVX = np.linalg.slogdet(XtVX)
    crit = (n - p) * LOG_2PI + logdet_V + logdet_XtVX + quad
    return (crit, beta_hat) if return_beta else crit
