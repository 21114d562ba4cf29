"""A deliberately naive oracle for zero-inflated, hurdle and beta GLMMs with one random
intercept (issue 23): Python loops over groups, scipy.stats densities, scipy.optimize
for the conditional mode, finite differences for its curvature, scipy.integrate for the
exact integral. It imports nothing from ``mlglm``, so the kernels of
``mlglm.core.spec.families_zero`` / ``families_beta`` and the engines built on them can be
checked against it.

Model. Row i of group j: eta_i = x_i' beta + b_j, a_i = x_zi,i' gamma,
b_j ~ N(0, sigma^2), t the log dispersion (log theta for NB2, log phi for the beta);
the densities exactly as glmmTMB defines them (``glmmTMB.cpp``):

* ``zipoisson`` / ``zinb2``: pi = expit(a); y = 0 with probability pi + (1 - pi) f(0),
  y > 0 with (1 - pi) f(y); f Poisson(mu) or NB2(mu, theta) (scipy's nbinom with
  n = theta, p = theta / (theta + mu)), mu = exp(eta).
* ``hurdle_poisson`` / ``hurdle_nb2``: Pr(y = 0) = pi; y > 0 with
  (1 - pi) f(y) / (1 - f(0)), 1 - f(0) from scipy's ``logsf(0)``.
* ``beta``: scipy's beta with shapes mu phi and (1 - mu) phi, mu = expit(eta).

Per group, with h_j(b) = sum_i log p(y_i | eta_i(b), a_i, t) + log N(b; 0, sigma^2):

* Laplace (glmmTMB's logLik): log L_j = h_j(b_hat) + log(2 pi)/2 - log(-h_j''(b_hat))/2,
  b_hat by ``scipy.optimize.minimize_scalar`` (Brent, then a few Newton steps on
  finite differences), h'' by central differences with Richardson extrapolation.
  (TMB integrates over b = sigma u, glmmTMB's parametrisation, rather than the
  spherical u; the Laplace approximation is invariant under that linear change.)
* exact: log L_j = h_j(b_hat) + log int exp(h_j(b) - h_j(b_hat)) db by
  ``scipy.integrate.quad`` on each side of b_hat, out to 40 times the larger of the
  posterior scale 1 / sqrt(-h'') and sigma (beyond, the integrand is below e^-800).

Two nested random intercepts (``nested_marginal_loglik``): row i of inner group c in top
group j has eta_i = x_i' beta + sigma_top u_j + sigma_in v_c, u, v ~ N(0, 1); the
iterated integral

    L_j = int phi(u) prod_{c in j} [ int phi(v) prod_{i in c} p(y_i | eta_i, a_i, t) dv ] du

on a fixed tensor grid: a composite Gauss-Legendre rule on [-half_width, half_width]
for u and for v (no mode, no curvature, no adaptive centring), every sum a logsumexp.
The N(0, 1) mass outside |u| <= 9 is 2e-19; the panels are far narrower than the
posteriors of the test data (the test module records the agreement of two grids).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, stats
from scipy.special import logsumexp

__all__ = ["row_logpdf", "design_from_names", "group_loglik", "marginal_loglik",
           "nested_marginal_loglik", "FAMILIES"]

FAMILIES = ("zipoisson", "zinb2", "hurdle_poisson", "hurdle_nb2", "beta")


def _log_expit(x):
    return -np.logaddexp(0.0, -x)


def row_logpdf(family, y, eta, a=None, t=None):
    """log p(y_i | eta_i, a_i, t) per row, from scipy.stats (module docstring)."""
    y = np.asarray(y, dtype=float)
    eta = np.asarray(eta, dtype=float)
    if family == "beta":
        phi = np.exp(t)
        mu = 1.0 / (1.0 + np.exp(-eta))
        return stats.beta.logpdf(y, mu * phi, (1.0 - mu) * phi)
    mu = np.exp(eta)
    if family.endswith("poisson"):
        dist, args = stats.poisson, (mu,)
    else:
        theta = np.exp(t)
        dist, args = stats.nbinom, (theta, theta / (theta + mu))
    a = np.asarray(a, dtype=float)
    log_pi, log_1mpi = _log_expit(a), _log_expit(-a)
    logf = dist.logpmf(y, *args)
    if family.startswith("zi"):
        return np.where(y == 0, np.logaddexp(log_pi, log_1mpi + dist.logpmf(0, *args)),
                        log_1mpi + logf)
    if family.startswith("hurdle"):
        with np.errstate(divide="ignore", invalid="ignore"):
            positive = log_1mpi + logf - dist.logsf(0, *args)
        return np.where(y == 0, log_pi, positive)
    raise ValueError(family)


def design_from_names(data, names):
    """Columns of a treatment-coded design from R's coefficient names: ``(Intercept)``,
    a numeric column (``cover``), factor level indicators (``sppPR`` is spp == "PR"),
    and products of those joined by ``:`` (``sppPR:minedno``)."""
    cols = []
    for name in names:
        col = np.ones(len(data))
        if name != "(Intercept)":
            for part in name.split(":"):
                if part in data.columns:
                    col = col * data[part].to_numpy(dtype=float)
                    continue
                factor = next(c for c in data.columns
                              if part.startswith(c) and part[len(c):] in
                              set(data[c].astype(str)))
                col = col * (data[factor].astype(str) == part[len(factor):]).to_numpy(float)
        cols.append(col)
    return np.column_stack(cols)


def _second_difference(h, b, step=1e-3):
    def d2(s):
        return (h(b + s) - 2.0 * h(b) + h(b - s)) / (s * s)
    return (4.0 * d2(step) - d2(2.0 * step)) / 3.0


def group_loglik(family, y, eta0, a, t, sigma, method="laplace"):
    """log L_j of one group (module docstring); eta0 = x' beta, a = x_zi' gamma."""
    def h(b):
        return (float(np.sum(row_logpdf(family, y, eta0 + b, a, t)))
                - 0.5 * b * b / sigma ** 2 - 0.5 * math.log(2 * math.pi * sigma ** 2))

    res = optimize.minimize_scalar(lambda b: -h(b), bracket=(-1.0, 1.0),
                                   method="brent", tol=1e-12)
    b = float(res.x)
    for _ in range(3):                        # Newton polish on differences
        g = (h(b + 1e-5) - h(b - 1e-5)) / 2e-5
        b -= g / _second_difference(h, b)
    curv = -_second_difference(h, b)
    if method == "laplace":
        return h(b) + 0.5 * math.log(2 * math.pi) - 0.5 * math.log(curv), b
    if method == "exact":
        hb, scale = h(b), 1.0 / math.sqrt(curv)

        # the posterior of b is within 40 of its scales (the curvature's and the prior's,
        # which takes over where the rows stop informing b) of the mode
        reach = 40.0 * max(1.0, sigma / scale)

        def f(z):
            return math.exp(h(b + scale * z) - hb)

        lo = integrate.quad(f, -reach, 0.0, epsabs=0, epsrel=1e-11, limit=500)[0]
        hi = integrate.quad(f, 0.0, reach, epsabs=0, epsrel=1e-11, limit=500)[0]
        return hb + math.log(scale) + math.log(lo + hi), b
    raise ValueError(method)


def marginal_loglik(family, y, X, beta, groups, sigma, Xzi=None, gamma=None, t=None,
                    method="laplace"):
    """sum_j log L_j over the groups (labels in ``groups``)."""
    y = np.asarray(y, dtype=float)
    eta = X @ np.asarray(beta, dtype=float)
    a = None if Xzi is None else Xzi @ np.asarray(gamma, dtype=float)
    groups = np.asarray(groups)
    total = 0.0
    for g in np.unique(groups):
        rows = groups == g
        total += group_loglik(family, y[rows], eta[rows], None if a is None else a[rows],
                              t, sigma, method)[0]
    return total


def _composite_gauss_legendre(half_width, panels, points):
    """Nodes and weights of ``panels`` equal panels of a ``points``-point Gauss-Legendre
    rule on [-half_width, half_width]."""
    x, w = np.polynomial.legendre.leggauss(points)
    edges = np.linspace(-half_width, half_width, panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[:-1] + edges[1:])
    return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()


def nested_marginal_loglik(family, y, X, beta, top, inner, sigma_top, sigma_in, Xzi=None,
                           gamma=None, t=None, offset=None, half_width=9.0, panels=60,
                           points=8):
    """sum_j log L_j for two nested random intercepts by the iterated integral on a fixed
    grid (module docstring); ``top`` and ``inner`` label every row's groups (an inner
    label belongs to one top group)."""
    y = np.asarray(y, dtype=float)
    eta = X @ np.asarray(beta, dtype=float) + (0.0 if offset is None else offset)
    a = None if Xzi is None else Xzi @ np.asarray(gamma, dtype=float)
    nodes, weights = _composite_gauss_legendre(half_width, panels, points)
    log_w = np.log(weights) - 0.5 * nodes ** 2 - 0.5 * math.log(2 * math.pi)  # phi dz
    top, inner = np.asarray(top), np.asarray(inner)
    total = 0.0
    for j in np.unique(top):
        in_j = top == j
        s = np.zeros(nodes.size)                  # sum over children, per top node u
        for c in np.unique(inner[in_j]):
            rows = in_j & (inner == c)
            e = (eta[rows][:, None, None] + sigma_top * nodes[None, :, None]
                 + sigma_in * nodes[None, None, :])               # (rows, u, v)
            ai = None if a is None else a[rows][:, None, None]
            ll = row_logpdf(family, y[rows][:, None, None], e, ai, t).sum(axis=0)
            s += logsumexp(ll + log_w[None, :], axis=1)
        total += float(logsumexp(s + log_w))
    return total
