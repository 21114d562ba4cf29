"""Candidate AGHQ rules for q >= 2, written plainly for the study (not the core's code).

Every rule here is adaptive quadrature centred at the conditional mode u_hat with a
factor M of the Laplace covariance, M M' = H^{-1}:

    u = u_hat + M t,
    log L_j ~= log|det M| + log sum_k w_k exp(h(u_hat + M t_k) + |t_k|^2/2 + (q/2) log 2 pi),

with (t_k, w_k) a rule for the standard normal N(0, I_q). The rules differ in

* the **orientation** M (which factor of H^{-1}): a product rule is not rotation
  invariant, so M = (lower Cholesky of H)^{-T} (mlglm before issue 13), its b-space
  counterpart (GLMMadaptive's and the issue's), reversed and pivoted orders, the
  eigenvectors of H, the symmetric square root;
* the **node set** (t_k, w_k): the full product grid, a product grid pruned of nodes
  whose weight is below ``eps`` times the largest, a Smolyak sparse grid built from
  Gauss-Hermite rules.
"""
from __future__ import annotations

import itertools
from functools import lru_cache
from math import comb

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

from quadrature_oracle import LOG_2PI, log_integrand

__all__ = ["ORIENTATIONS", "orientation", "floor_of", "product_rule", "pruned_rule",
           "smolyak_rule", "rule_loglik", "mean_variance_loglik"]


@lru_cache(maxsize=None)
def gauss_hermite(K):
    """K-point rule for E f(T), T ~ N(0, 1), symmetrised (weights sum to 1)."""
    t, w = hermegauss(K)
    t = (t - t[::-1]) / 2
    w = (w + w[::-1]) / 2
    return t, w / w.sum()


@lru_cache(maxsize=None)
def product_rule(K, q):
    t1, w1 = gauss_hermite(K)
    idx = np.array(list(itertools.product(range(K), repeat=q)))
    return t1[idx], np.log(w1[idx]).sum(axis=1)


@lru_cache(maxsize=None)
def pruned_rule(K, q, eps):
    """The K^q product rule without the nodes whose weight is below eps x the largest."""
    t, lw = product_rule(K, q)
    keep = lw >= lw.max() + np.log(eps)
    # renormalise so the rule still integrates constants exactly
    lw = lw[keep] - np.log(np.exp(lw[keep]).sum())
    return t[keep], lw


@lru_cache(maxsize=None)
def smolyak_rule(level, q):
    """Smolyak sparse grid of Gauss-Hermite rules with 2l - 1 points at level l.

    A(L, q) = sum_{L-q+1 <= |i| <= L} (-1)^{L-|i|} C(q-1, L-|i|) U^{i_1} x ... x U^{i_q},
    levels i_d >= 1; equal nodes are merged. Weights can be negative, so the rule
    returns signed weights (t, w), not log-weights.
    """
    nodes = {}
    for i in itertools.product(range(1, level + 1), repeat=q):
        s = sum(i)
        if not (level - q + 1 <= s <= level):
            continue
        c = (-1) ** (level - s) * comb(q - 1, level - s)
        rules = [gauss_hermite(2 * k - 1) for k in i]
        for combo in itertools.product(*[range(len(r[0])) for r in rules]):
            t = tuple(round(float(rules[d][0][combo[d]]), 12) for d in range(q))
            w = c * np.prod([rules[d][1][combo[d]] for d in range(q)])
            nodes[t] = nodes.get(t, 0.0) + w
    t = np.array([k for k, v in nodes.items() if abs(v) > 1e-300])
    w = np.array([v for v in nodes.values() if abs(v) > 1e-300])
    return t, w


def _upper_factor(C):
    """Upper-triangular B with B B' = C (the inverse-transposed lower Cholesky factor of C^{-1})."""
    P = np.eye(C.shape[-1])[::-1]
    L = np.linalg.cholesky(P @ C @ P)
    return P @ L @ P


def _pivoted_lower(C):
    """Lower Cholesky factor of C after ordering by decreasing variance, mapped back
    (M = P L with C = P L L' P')."""
    out = np.empty_like(C)
    for j in range(C.shape[0]):
        order = np.argsort(-np.diag(C[j]))
        P = np.eye(C.shape[-1])[:, order]
        out[j] = P @ np.linalg.cholesky(P.T @ C[j] @ P)
    return out


def _sym_sqrt(C):
    d, V = np.linalg.eigh(C)
    return (V * np.sqrt(d)[:, None, :]) @ np.swapaxes(V, 1, 2)


def _eig_factor(C):
    d, V = np.linalg.eigh(C)
    return V * np.sqrt(d)[:, None, :]


ORIENTATIONS = {
    "u-chol": "u = u_hat + R^{-T} t, H = R R' (mlglm's rule, before and after issue 13; glmm's)",
    "u-chol-rev": "u-space, coordinates in reverse order (lower Cholesky factor of H^{-1})",
    "u-pivot": "u-space, pivoted: largest conditional variance first (lower factor of H^{-1})",
    "u-eig": "u-space eigenvectors of H, M = V D^{-1/2}",
    "u-sym": "u-space symmetric square root M = H^{-1/2}",
    "b-chol": "b = b_hat + R_b^{-T} t, H_b = R_b R_b' (GLMMadaptive, the issue's rule)",
    "b-chol-rev": "b-space, reverse order (lower Cholesky factor of H_b^{-1})",
    "b-pivot": "b-space, pivoted: largest conditional variance first",
    "b-eig": "b-space eigenvectors of H_b",
    "b-sym": "b-space symmetric square root H_b^{-1/2}",
    "b-chol-floor": "b-chol with W = Lambda, diagonal sqrt(Lambda_kk^2 + (0.01/rms z_k)^2)",
    "u-chol@45": "u-chol with the standardised grid turned by 45 degrees (t -> Q t)",
    "u-chol-rev@45": "u-chol-rev with the grid turned by 45 degrees",
}

#: the 45-degree turn of a 2-D grid: its diagonals onto the axes
Q45 = np.array([[1.0, -1.0], [1.0, 1.0]]) / np.sqrt(2.0)


def floor_of(prob, b_floor=0.01):
    """0.01 / rms(z_k) over the rows of a GroupProblem (trials as weights), as mlglm.core.engines.blockdiag.aghq."""
    w = prob.m * prob.mask
    rms = np.sqrt(np.einsum("gn,gnq->q", w, prob.Z ** 2) / w.sum())
    return b_floor / np.where(rms > 0, rms, 1.0)


def orientation(kind, H, Lambda, floor=None):
    """M (G, q, q) with M M' = H^{-1} for the named orientation (``floor``: see floor_of)."""
    if kind.endswith("@45"):
        return orientation(kind[:-3], H, Lambda, floor) @ Q45
    C = np.linalg.inv(H)
    if kind == "b-chol-floor":
        W = np.array(Lambda, dtype=float)
        W[np.diag_indices_from(W)] = np.sqrt(np.diag(W) ** 2 + np.asarray(floor) ** 2)
        return np.linalg.solve(W, _upper_factor(W @ C @ W.T))
    space, how = kind.split("-", 1)
    if space == "b":
        C = Lambda @ C @ Lambda.T            # Laplace covariance of b = Lambda u
    if how == "chol":
        B = _upper_factor(C)
    elif how == "chol-rev":
        B = np.linalg.cholesky(C)
    elif how == "pivot":
        B = _pivoted_lower(C)
    elif how == "eig":
        B = _eig_factor(C)
    elif how == "sym":
        B = _sym_sqrt(C)
    else:
        raise ValueError(kind)
    if space == "b":
        B = np.linalg.solve(Lambda, B)       # back to u = Lambda^{-1} b
    return B


def rule_loglik(prob, modes, M, t, logw=None, w=None, chunk=400):
    """log L_j (G,) by the rule (t, log-weights or signed weights) oriented by M."""
    u_hat, _, _ = modes
    q = prob.q
    G = u_hat.shape[0]
    out = np.empty(G)
    logdetM = np.log(np.abs(np.linalg.det(M)))
    for a in range(0, G, chunk):
        sl = slice(a, a + chunk)
        sub = prob.subset(np.arange(G)[sl])
        U = u_hat[sl, None, :] + np.einsum("gij,kj->gki", M[sl], t)
        f = log_integrand(sub, U) + 0.5 * np.einsum("kq,kq->k", t, t) + 0.5 * q * LOG_2PI
        mx = f.max(axis=1, keepdims=True)
        if logw is not None:
            s = np.log(np.exp(f - mx + logw[None, :]).sum(axis=1))
        else:
            tot = (np.exp(f - mx) * w[None, :]).sum(axis=1)
            s = np.where(tot > 0, np.log(np.where(tot > 0, tot, 1.0)), np.nan)
        out[sl] = logdetM[sl] + mx[:, 0] + s
    return out


def mean_variance_loglik(prob, modes, M, K):
    """Mean-variance AGHQ (Naylor and Smith; Stata's default): the posterior mean mu_j
    and covariance V_j from the K^q-point mode-curvature rule oriented by M, then the
    K^q-point rule centred at mu_j with the lower Cholesky factor of V_j. Twice the
    points of the mode-curvature rule per evaluation."""
    u_hat = modes[0]
    t, lw = product_rule(K, prob.q)
    U = u_hat[:, None, :] + np.einsum("gij,kj->gki", M, t)
    f = log_integrand(prob, U) + 0.5 * np.einsum("kq,kq->k", t, t) + lw
    pi = np.exp(f - f.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    mu = np.einsum("gk,gkq->gq", pi, U)
    D = U - mu[:, None, :]
    F = np.linalg.cholesky(np.einsum("gk,gka,gkb->gab", pi, D, D))
    return rule_loglik(prob, (mu, None, None), F, t, logw=lw)
