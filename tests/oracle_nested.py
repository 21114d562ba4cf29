"""Brute-force oracle for nested random effects: iterated integrals on fixed grids.

Deliberately naive and independent of ``mlglm`` (numpy and scipy only, no mode,
no Hessian, no adaptive centring): for every top-level group the likelihood

    L_j = int phi(u_top) prod_c [ int phi(u_c) prod_d [ ... prod_i p(y_i | eta_i) ... ] du_c ]
          du_top

is computed level by level on a fixed tensor grid of composite Gauss-Legendre
rules over the box [-half_width, half_width]^q of each level's spherical
effects u (b = L u, u ~ N(0, I)): Python loops over the nodes of the tree, numpy
broadcasting over the grids of a node and all its ancestors (an array of shape
(rows of the node, M_top, ..., M_node)). Row log-likelihoods use the formulas of
:func:`oracle.cond_loglik_obs` (checked against scipy.stats there; every
constant included, 0 log 0 = 0), written here for a grid of eta per row, so
the result is the full marginal log-likelihood, comparable with the objective's.

The box truncates the N(0, I) prior at |u| <= 10 (mass outside ~1e-23) and the
panels are narrow enough for the narrowest posterior in the test data (the
refinement check in the test module's docstring records the agreement between
two resolutions).
"""
from __future__ import annotations

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy.special import logsumexp

from scipy.special import gammaln

from oracle import _check_family, _log_mu_and_log_1m_mu

__all__ = ["composite_gauss_legendre", "nested_loglik"]

LOG_2PI = float(np.log(2.0 * np.pi))


def composite_gauss_legendre(half_width: float, panels: int, points: int):
    """Nodes and weights of ``panels`` equal panels of a ``points``-point
    Gauss-Legendre rule on [-half_width, half_width]."""
    x, w = leggauss(points)
    edges = np.linspace(-half_width, half_width, panels + 1)
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    return (mid[:, None] + half[:, None] * x).ravel(), (half[:, None] * w).ravel()


def _level_grid(q, half_width, panels, points):
    """Product grid (M, q) and log of (weight x standard normal density)."""
    t, w = composite_gauss_legendre(half_width, panels, points)
    mesh = np.meshgrid(*([t] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in mesh], axis=1)
    logw = np.sum(np.meshgrid(*([np.log(w)] * q), indexing="ij"), axis=0).ravel()
    return nodes, logw - 0.5 * np.sum(nodes ** 2, axis=1) - 0.5 * q * LOG_2PI


def _row_loglik(eta, y, m, family, link):
    """log p(y | eta) for rows (axis 0) at a grid of eta each (the trailing axes)."""
    family, link = _check_family(family, link)
    if isinstance(family, tuple):       # (name, dispersion): scipy.stats, as oracle.py
        from oracle import _dispersed_loglik_function
        y = np.asarray(y, dtype=float)
        y = y.reshape(y.shape + (1,) * (np.ndim(eta) - y.ndim))
        return _dispersed_loglik_function(y, family, link)(eta)
    if family == "binomial":
        log_mu, log_1m_mu = _log_mu_and_log_1m_mu(eta, link)
        return (gammaln(m + 1) - gammaln(y + 1) - gammaln(m - y + 1)
                + np.where(y > 0, y * log_mu, 0.0) + np.where(m - y > 0, (m - y) * log_1m_mu, 0.0))
    return y * eta - np.exp(eta) - gammaln(y + 1)


def nested_loglik(y, X, beta, levels, family="binomial", link=None, m=None, offset=None,
                  grids=None):
    """Full marginal log-likelihood of a nested GLMM by iterated grid integration.

    Parameters
    ----------
    levels : list, top level first, of (codes (n,), Z (n, q), L (q, q)); each
        level's codes nest in the previous level's.
    grids : per level (half_width, panels, points); default (10, 80, 5) for
        every level.
    """
    y = np.asarray(y, dtype=float)
    n = y.size
    eta0 = np.asarray(X, dtype=float) @ np.asarray(beta, dtype=float)
    if offset is not None:
        eta0 = eta0 + offset
    m = np.ones(n) if m is None else np.asarray(m, dtype=float)
    T = len(levels)
    grids = grids or [(10.0, 80, 5)] * T
    prepared = []
    for (codes, Z, L), spec in zip(levels, grids):
        Z = np.asarray(Z, dtype=float).reshape(n, -1)
        nodes, logw = _level_grid(Z.shape[1], *spec)
        prepared.append((np.asarray(codes), Z @ np.asarray(L, dtype=float), nodes, logw))

    def node_log_integral(level, rows, eta):
        """log of the integral over this node's effects, for every grid point of its
        ancestors: eta is (len(rows), *ancestor grid shape)."""
        codes, A, nodes, logw = prepared[level]
        add = A[rows] @ nodes.T                       # (rows, M)
        eta_here = eta[..., None] + add.reshape(add.shape[:1] + (1,) * (eta.ndim - 1)
                                                + add.shape[1:])
        if level == T - 1:
            shape = (len(rows),) + (1,) * (eta_here.ndim - 1)
            ll = _row_loglik(eta_here, y[rows].reshape(shape), m[rows].reshape(shape),
                             family, link).sum(axis=0)
        else:
            child_codes = prepared[level + 1][0][rows]
            ll = 0.0
            for c in np.unique(child_codes):
                sub = child_codes == c
                ll = ll + node_log_integral(level + 1, rows[sub], eta_here[sub])
        return logsumexp(ll + logw, axis=-1)

    total = 0.0
    top_codes = prepared[0][0]
    for j in np.unique(top_codes):
        rows = np.flatnonzero(top_codes == j)
        total += float(node_log_integral(0, rows, eta0[rows]))
    return total
