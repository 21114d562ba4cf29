"""Brute-force per-group marginal likelihoods for the quadrature study (independent of mlglm).

The study (``quadrature_study.py``) and the comparison with ``glmm``
(``quadrature_vs_glmm.py``) need the *true* log L_j of every group, not another
quadrature rule. This module computes it with nothing from ``mlglm``: plain numpy,
its own conditional-mode iteration, and a composite tensor Gauss-Legendre rule over a
box found by scanning, checked for convergence.

Model of one group (DESIGN.md section 4): u ~ N(0, I_q), eta = eta0 + A u with
A = Z Lambda, and

    L_j = int exp(h(u)) du,   h(u) = sum_i l(y_i | eta_i) - u'u/2 - (q/2) log(2 pi),

with l(y | eta) = y eta - m log(1 + e^eta) (binomial, logit link) or y eta - e^eta
(Poisson, log link); the response constants (log C(m, y), -log y!) are left out, so
these are the log L_j of every rule below up to one constant per data set.

The integral is taken in coordinates t standardised at the mode, u = u_hat + S t with
S = R^{-T}, H = R R' the negative Hessian of h at u_hat (any factor would do; this one
makes the bulk of the integrand unit-scaled), so

    L_j = exp(h(u_hat)) |det S| int exp(h(u_hat + S t) - h(u_hat)) dt.

Box: h is concave, so {t : h(u_hat + S t) - h(u_hat) > -LOG_CUT} is convex. A coarse
grid (spacing 0.5) over [-B, B]^q locates it; the box is its bounding box padded by
one coarse cell, and B doubles until no point on the scan's border passes the cut.
What lies outside the box weighs less than exp(-LOG_CUT) times the peak per unit area
(e^-40 ~ 4e-18). Integral: composite Gauss-Legendre, ``GL_NODES`` nodes on panels of
width at most ``panel`` in t. :func:`brute_force_loglik` returns the values with
panels of width 1 and, as its error estimate, their difference from panels of width
1/2 (twice the nodes per dimension).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GroupProblem", "row_loglik", "conditional_modes", "log_integrand",
           "brute_force_loglik", "brute_force_total", "LOG_CUT"]

LOG_2PI = np.log(2.0 * np.pi)
#: the box holds every t whose integrand is above exp(-LOG_CUT) times its peak
LOG_CUT = 40.0
#: Gauss-Legendre nodes per panel
GL_NODES = 12


@dataclass
class GroupProblem:
    """G groups padded to n_max rows (``mask`` marks real rows).

    y, m, eta0, mask : (G, n_max); Z : (G, n_max, q) random-effects design;
    Lambda : (q, q) lower-triangular factor of Sigma; family "binomial" | "poisson".
    """

    y: np.ndarray
    m: np.ndarray
    eta0: np.ndarray
    Z: np.ndarray
    mask: np.ndarray
    Lambda: np.ndarray
    family: str

    @property
    def q(self):
        return self.Z.shape[2]

    @property
    def A(self):
        return self.Z @ self.Lambda           # (G, n, q): eta = eta0 + A u

    @classmethod
    def from_rows(cls, y, X, Z, groups, beta, Lambda, family, m=None, offset=None):
        """Pad row-level arrays (groups: integer codes 0..G-1) into a GroupProblem."""
        y = np.asarray(y, float)
        n = y.size
        m = np.ones(n) if m is None else np.asarray(m, float)
        eta0 = np.asarray(X, float) @ np.asarray(beta, float)
        if offset is not None:
            eta0 = eta0 + offset
        Z = np.asarray(Z, float).reshape(n, -1)
        groups = np.asarray(groups)
        G = int(groups.max()) + 1
        sizes = np.bincount(groups, minlength=G)
        nmax = int(sizes.max())
        order = np.argsort(groups, kind="stable")
        pos = np.empty(n, dtype=int)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        pos[order] = np.arange(n) - np.repeat(starts, sizes)
        out = {}
        for name, a, fill in (("y", y, 0.0), ("m", m, 0.0), ("eta0", eta0, 0.0)):
            P = np.full((G, nmax), fill)
            P[groups, pos] = a
            out[name] = P
        mask = np.zeros((G, nmax))
        mask[groups, pos] = 1.0
        Zp = np.zeros((G, nmax, Z.shape[1]))
        Zp[groups, pos] = Z
        return cls(out["y"], out["m"], out["eta0"], Zp, mask, np.asarray(Lambda, float), family)

    def subset(self, idx):
        return GroupProblem(self.y[idx], self.m[idx], self.eta0[idx], self.Z[idx],
                            self.mask[idx], self.Lambda, self.family)


def row_loglik(eta, y, m, family):
    """l(y | eta) without the response constant, and its first two eta-derivatives."""
    if family == "binomial":
        mu = 1.0 / (1.0 + np.exp(-eta))
        return y * eta - m * np.logaddexp(0.0, eta), y - m * mu, m * mu * (1.0 - mu)
    e = np.exp(eta)
    return y * eta - e, y - e, e


def log_integrand(prob, U):
    """h(u) for u = U[g, k, :] (G, K, q) -> (G, K)."""
    eta = prob.eta0[:, None, :] + np.einsum("gnq,gkq->gkn", prob.A, U)
    ll = row_loglik(eta, prob.y[:, None, :], prob.m[:, None, :], prob.family)[0]
    ll = (ll * prob.mask[:, None, :]).sum(axis=2)
    return ll - 0.5 * np.einsum("gkq,gkq->gk", U, U) - 0.5 * prob.q * LOG_2PI


def conditional_modes(prob, tol=1e-12, maxiter=200):
    """u_hat (G, q), H = -h''(u_hat) (G, q, q), h(u_hat) (G,): Newton with step halving."""
    G, q = prob.y.shape[0], prob.q
    A = prob.A
    u = np.zeros((G, q))
    f = log_integrand(prob, u[:, None, :])[:, 0]
    for _ in range(maxiter):
        eta = prob.eta0 + np.einsum("gnq,gq->gn", A, u)
        _, d1, d2 = row_loglik(eta, prob.y, prob.m, prob.family)
        g = np.einsum("gnq,gn->gq", A, d1 * prob.mask) - u
        H = np.einsum("gnq,gn,gnr->gqr", A, d2 * prob.mask, A) + np.eye(q)
        step = np.linalg.solve(H, g[..., None])[..., 0]
        t = np.ones(G)
        for _ in range(60):
            f_new = log_integrand(prob, (u + t[:, None] * step)[:, None, :])[:, 0]
            bad = ~(f_new >= f - 1e-13 * np.abs(f))
            if not bad.any():
                break
            t[bad] *= 0.5
        u = u + t[:, None] * step
        f = f_new
        if np.max(np.abs(t[:, None] * step)) < tol:
            break
    eta = prob.eta0 + np.einsum("gnq,gq->gn", A, u)
    _, _, d2 = row_loglik(eta, prob.y, prob.m, prob.family)
    H = np.einsum("gnq,gn,gnr->gqr", A, d2 * prob.mask, A) + np.eye(q)
    return u, H, f


def _gauss_legendre_panels(lo, hi, panel, nodes=GL_NODES):
    """Composite Gauss-Legendre nodes and weights on [lo, hi], panels of width <= panel."""
    n_pan = max(int(np.ceil((hi - lo) / panel)), 1)
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.linspace(lo, hi, n_pan + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[1:] + edges[:-1])
    return (mid[:, None] + half[:, None] * x[None, :]).ravel(), (half[:, None] * w[None, :]).ravel()


def _one_group_box(prob1, u_hat, S, h_hat, B0=24.0, delta=0.5):
    """Bounding box (q, 2) in t of {h - h_hat > -LOG_CUT}, from a coarse scan."""
    q = S.shape[0]
    B = B0
    while True:
        axis = np.arange(-B, B + delta / 2, delta)
        grids = np.meshgrid(*([axis] * q), indexing="ij")
        T = np.stack([g.ravel() for g in grids], axis=1)
        lf = _chunked_logf(prob1, u_hat, S, T) - h_hat
        inside = lf > -LOG_CUT
        border = np.any(np.abs(T) >= B - 1e-9, axis=1)
        if not np.any(inside & border):
            break
        B *= 2.0
        if B > 400:
            raise RuntimeError("brute force: integrand does not decay within |t| < 400")
    Ti = T[inside]
    return np.stack([Ti.min(axis=0) - delta, Ti.max(axis=0) + delta], axis=1)


def _chunked_logf(prob1, u_hat, S, T, chunk=200_000):
    out = np.empty(T.shape[0])
    for a in range(0, T.shape[0], chunk):
        U = u_hat[None, :] + T[a:a + chunk] @ S.T
        out[a:a + chunk] = log_integrand(prob1, U[None])[0]
    return out


def _box_integral(prob1, u_hat, S, h_hat, box, panel):
    """log int_box exp(h(u_hat + S t) - h_hat) dt by tensor composite Gauss-Legendre."""
    q = S.shape[0]
    rules = [_gauss_legendre_panels(box[d, 0], box[d, 1], panel) for d in range(q)]
    if q == 1:
        T = rules[0][0][:, None]
        logw = np.log(rules[0][1])
    else:
        grids = np.meshgrid(*[r[0] for r in rules], indexing="ij")
        wgrids = np.meshgrid(*[np.log(r[1]) for r in rules], indexing="ij")
        T = np.stack([g.ravel() for g in grids], axis=1)
        logw = np.sum([g.ravel() for g in wgrids], axis=0)
    a = _chunked_logf(prob1, u_hat, S, T) - h_hat + logw
    mx = a.max()
    return mx + np.log(np.sum(np.exp(a - mx)))


def _distinct_groups(prob):
    """(index of one representative per distinct group, map group -> representative).

    Groups with the same rows (response, trials, fixed part of eta, random design)
    have the same integral; binary data with an intercept SD of 8 are mostly all-0
    and all-1 groups that share a handful of designs.
    """
    G = prob.y.shape[0]
    key = np.concatenate([prob.y * prob.mask, prob.m * prob.mask, prob.eta0 * prob.mask,
                          (prob.Z * prob.mask[..., None]).reshape(G, -1), prob.mask], axis=1)
    _, first, inverse = np.unique(np.round(key, 12), axis=0, return_index=True,
                                  return_inverse=True)
    return first, np.asarray(inverse).ravel()


def brute_force_loglik(prob, modes=None, panel=1.0, check=True):
    """True log L_j (G,) and an error estimate (G,) (NaN when ``check`` is False).

    The estimate is |value(panel) - value(panel / 2)|: the same box with twice the
    Gauss-Legendre nodes per dimension. Each distinct group is integrated once.
    """
    u_hat, H, h_hat = conditional_modes(prob) if modes is None else modes
    first, inverse = _distinct_groups(prob)
    if first.size < u_hat.shape[0]:
        v, e = _brute_force_each(prob.subset(first), (u_hat[first], H[first], h_hat[first]),
                                 panel, check)
        return v[inverse], e[inverse]
    return _brute_force_each(prob, (u_hat, H, h_hat), panel, check)


def _brute_force_each(prob, modes, panel, check):
    u_hat, H, h_hat = modes
    G = u_hat.shape[0]
    out = np.empty(G)
    err = np.full(G, np.nan)
    for j in range(G):
        p1 = prob.subset([j])
        R = np.linalg.cholesky(H[j])
        S = np.linalg.inv(R).T
        logdetS = -np.log(np.diag(R)).sum()
        box = _one_group_box(p1, u_hat[j], S, h_hat[j])
        v = _box_integral(p1, u_hat[j], S, h_hat[j], box, panel)
        out[j] = h_hat[j] + logdetS + v
        if check:
            v2 = _box_integral(p1, u_hat[j], S, h_hat[j], box, panel / 2)
            err[j] = abs(v2 - v)
    return out, err



def brute_force_total(prob):
    """sum_j log L_j by brute force (each distinct group integrated once)."""
    return float(brute_force_loglik(prob, check=False)[0].sum())
