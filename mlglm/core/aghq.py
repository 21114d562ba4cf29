"""Adaptive Gauss-Hermite quadrature (any q, product rule) and its exact gradient.

Rule. With H_j the negative Hessian of h_j at the mode u_hat_j and P_j = H_j^{-1}
(the Laplace covariance of u_j), any M_j with M_j M_j' = P_j gives an AGHQ rule
u_jk = u_hat_j + M_j t_k (normalised nodes t_k, log-weights lw_k from
:mod:`mlglm.core.quadrature`):

    log L_j = log |det M_j| + logsumexp_k f_jk,     log |det M_j| = -(1/2) log det H_j,
    f_jk    = lw_k + sum_i l(y_i | eta_ik) - |u_jk|^2/2 + |t_k|^2/2.

(The change of variables has Jacobian |det M_j|; the normal density of u over that
of t leaves exp(-|u|^2/2 + |t|^2/2).) K = 1 is the Laplace approximation exactly,
and so is any rule for a normal posterior.

Orientation. A product rule is not rotation invariant, so the choice of M_j matters
when the posterior is far from normal (binary data, few rows, large SDs). The
study of issue 13 (benchmarks/QUADRATURE.md: 10 orientations, pruned and sparse
grids, 15 hard and easy designs, against brute-force integration) chose the
orientation in b = Lambda u space of GLMMadaptive: with C_j = W P_j W' and U_j its
UPPER-triangular Cholesky factor (U_j U_j' = C_j),

    M_j = W^{-1} U_j,      W = Lambda with its diagonal replaced by
                           sqrt(Lambda_kk^2 + (B_FLOOR / rms(z_k))^2),

so b moves along the axes of the conditional of the intercept given the slopes,
and the last random effect's marginal has an axis of its own. It was the most
accurate cheap rule in most designs and never more than 2.2 times worse than the
best one in any; the u-space factor used before (M = R^{-T}, H = R R') was up to
60 times worse. W = Lambda is the exact b-space rule; the floor (rms(z_k): the
root mean square of column k of Z, weighted by trials, so that it scales with
the covariate) keeps W invertible where a random effect's variance is zero, and
the rule a smooth function of theta there: without it the rule at a zero slope
variance would depend on the direction from which (Lambda_21, Lambda_22) reached
0. The floor changes the rule only where a random effect moves the linear
predictor by less than about B_FLOOR.

Gradient. With pi_jk = softmax_k f_jk and g_jk = Lambda'(Z'd1_k)_j - u_jk (the
gradient of h at the node),

    d log L_j = -(1/2) tr(P_j dH_j) + sum_k pi_jk [ dl/dpsi|_u(u_jk)
                + g_jk'(du_hat_j + dM_j t_k) ],

where du_hat = P (dg/dpsi) (implicit function theorem at the mode),
dH = Lambda'(sum_i d3_i deta_i z_i z_i')Lambda (+ E'M Lambda + Lambda'M E for
psi = Lambda_rc, E the unit matrix at (r, c)), deta_i = dpsi-derivative of eta
at the mode including du_hat, and for the orientation, from W M = U,
dP = -P dH P, dC = dW P W' + W dP W' + W P dW' and the derivative of an upper
Cholesky factor (dU = U Phi(U^{-1} dC U^{-T}), Phi: upper triangle with halved
diagonal), dM = W^{-1}(dU - dW M). The node sums reduce to
Q_j = sum_k pi_jk t_k g_jk', so the cost is a few passes over the rows times the
K^q nodes. Groups are processed in chunks so that rows x nodes stays below
``chunk_elements`` whatever the data size.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .grouping import GroupedData, sym_from_pairs
from .modes import ModeState
from .quadrature import product_grid
from .smallmat import spd_inv

__all__ = ["aghq_loglik", "orientation_basis", "DEFAULT_CHUNK_ELEMENTS", "B_FLOOR"]

DEFAULT_CHUNK_ELEMENTS = 2_000_000

#: A random effect whose SD moves the linear predictor by less than about this
#: (per root-mean-square unit of its column of Z) gets an axis-aligned grid; see
#: the module notes ("Orientation").
B_FLOOR = 0.01


def _chunks(data: GroupedData, n_nodes: int, chunk_elements: int):
    """Contiguous group ranges whose rows x nodes stay under chunk_elements."""
    G = data.n_groups
    ends = np.cumsum(data.sizes)
    budget = max(chunk_elements // max(n_nodes, 1), 1)
    lo = 0
    while lo < G:
        base = ends[lo - 1] if lo else 0
        hi = int(np.searchsorted(ends, base + budget, side="right"))
        hi = min(max(hi, lo + 1), G)
        yield lo, hi
        lo = hi


def _slice_state(state: ModeState, data: GroupedData, lo: int, hi: int) -> ModeState:
    r0 = data.starts[lo]
    r1 = data.starts[hi] if hi < data.n_groups else data.n
    rs = slice(r0, r1)
    gs = slice(lo, hi)
    return ModeState(state.u[gs], state.eta[rs], state.eta_fixed[rs], state.AT[:, rs],
                     state.d1[rs], state.d2[rs], state.d3[rs], state.Zd1[:, gs], state.Mp[:, gs],
                     state.Hp[:, gs], state.h[gs], state.iterations)


def aghq_loglik(fl, data: GroupedData, state: ModeState, Lambda: np.ndarray, nagq: int,
                theta_rc=None, gradient: bool = False,
                chunk_elements: int = DEFAULT_CHUNK_ELEMENTS):
    """Per-group AGHQ log-likelihood (G,) without response constants.

    With ``gradient=True`` also returns the gradient in (beta, theta) where
    theta_rc = (rows, cols) names the free entries of Lambda.
    """
    t, lw = product_grid(nagq, data.q)
    W, dW_diag = orientation_basis(data, Lambda)       # from all groups: chunks agree
    out = np.empty(data.n_groups)
    grad = None
    for lo, hi in _chunks(data, t.shape[0], chunk_elements):
        d = data.subset_groups(lo, hi) if (lo, hi) != (0, data.n_groups) else data
        s = _slice_state(state, data, lo, hi) if d is not data else state
        val, g = _aghq_block(fl, d, s, Lambda, W, dW_diag, t, lw, theta_rc, gradient)
        out[lo:hi] = val
        if gradient:
            grad = g if grad is None else grad + g
    return (out, grad) if gradient else out


def orientation_basis(data, Lambda):
    """W (q, q) of the module notes, and dW_kk / dLambda_kk (q,).

    W = Lambda with W_kk = sqrt(Lambda_kk^2 + f_k^2), f_k = B_FLOOR / rms(z_k),
    rms(z_k) = sqrt(sum_i m_i z_ik^2 / sum_i m_i) (trials as weights, so that
    Bernoulli rows and their aggregated binomial give the same rule).
    """
    m = data.m
    rms = np.sqrt((data.ZT * data.ZT) @ m / m.sum())
    floor = B_FLOOR / np.where(rms > 0, rms, 1.0)
    W = np.array(Lambda, dtype=float)
    lam = np.diag(Lambda)
    w = np.sqrt(lam * lam + floor * floor)
    W[np.diag_indices_from(W)] = w
    return W, lam / w


def _upper_cholesky(C):
    """Upper-triangular U with U U' = C for a (G, q, q) stack (closed form for q <= 2)."""
    q = C.shape[-1]
    if q == 1:
        return np.sqrt(C)
    if q == 2:
        u22 = np.sqrt(C[:, 1, 1])
        u12 = C[:, 0, 1] / u22
        U = np.zeros_like(C)
        U[:, 0, 0] = np.sqrt(C[:, 0, 0] - u12 * u12)
        U[:, 0, 1] = u12
        U[:, 1, 1] = u22
        return U
    J = np.eye(q)[::-1]
    return J @ np.linalg.cholesky(J @ C @ J) @ J


def _triangular_inverse(U):
    """U^{-1} for a stack of upper-triangular matrices (closed form for q <= 2)."""
    q = U.shape[-1]
    if q == 1:
        return 1.0 / U
    if q == 2:
        out = np.zeros_like(U)
        out[:, 0, 0] = 1.0 / U[:, 0, 0]
        out[:, 1, 1] = 1.0 / U[:, 1, 1]
        out[:, 0, 1] = -U[:, 0, 1] * out[:, 0, 0] * out[:, 1, 1]
        return out
    return np.linalg.inv(U)


def _aghq_block(fl, data, state, Lambda, W, dW_diag, t, lw, theta_rc, gradient):
    q = data.q
    P = spd_inv(state.H)                                          # Laplace covariance of u
    Winv = np.linalg.inv(W)
    Uc = _upper_cholesky(W @ P @ W.T)                             # b-space factor
    L = Winv @ Uc                                                 # M = W^{-1} U, M M' = P
    U = state.u[:, None, :] + np.einsum("gij,kj->gki", L, t)    # (G, K, q)
    eta = state.eta_fixed[:, None] + np.einsum("nq,nkq->nk", state.A, data.expand(U))
    if gradient:
        ker, d1k = fl.kernel_d1(eta, data.y[:, None], data.m[:, None])
    else:
        ker = fl.kernel(eta, data.y[:, None], data.m[:, None])
    f = (lw[None, :] + data.gsum(ker) - 0.5 * np.einsum("gkq,gkq->gk", U, U)
         + 0.5 * np.einsum("kq,kq->k", t, t)[None, :])
    # log det M = log det U - log det W (both triangular) = -(1/2) log det H
    logdetL = (np.log(np.diagonal(Uc, axis1=1, axis2=2)).sum(axis=1)
               - np.log(np.diag(W)).sum())
    lse = logsumexp(f, axis=1)
    value = lse + logdetL
    if not gradient:
        return value, None

    pi = np.exp(f - lse[:, None])                                 # (G, K)
    X, Z = data.X, data.Z
    # dl/dpsi at fixed u, averaged over nodes with weights pi
    d1bar = np.einsum("nk,nk->n", d1k, data.expand(pi))
    g_beta_u = X.T @ d1bar
    Zd1k = data.gsum(Z[:, :, None] * d1k[:, None, :])            # (G, q, K)
    g_L_u = np.einsum("gk,grk,gkc->rc", pi, Zd1k, U)
    gk = np.einsum("ri,grk->gki", Lambda, Zd1k) - U               # (G, K, q)
    gbar = np.einsum("gk,gki->gi", pi, gk)
    Q = np.einsum("gk,ka,gkb->gab", pi, t, gk)                    # sum pi t g'

    # derivatives at the mode, one column per parameter psi = (beta, theta)
    rows, cols = theta_rc
    p, nt = X.shape[1], len(rows)
    A, u, M, d2, d3 = state.A, state.u, state.M, state.d2, state.d3
    Zd1 = data.gsum(Z * state.d1[:, None])                       # (G, q)
    # dg/dbeta = -Lambda' sum_i d2_i z_i x_i' ; dg/dLambda_rc = e_c (Z'd1)_r - Lambda'M e_r u_c
    dg_beta = -data.gsum((A * d2[:, None])[:, :, None] * X[:, None, :])     # (G, q, p)
    LM = Lambda.T @ M                               # Lambda' M
    dg_theta = np.empty((data.n_groups, q, nt))
    for l, (r, c) in enumerate(zip(rows, cols)):
        col = -LM[:, :, r] * u[:, c:c + 1]
        col[:, c] += Zd1[:, r]
        dg_theta[:, :, l] = col
    dg = np.concatenate([dg_beta, dg_theta], axis=2)                        # (G, q, npsi)
    du = P @ dg                                   # (G, q, npsi)
    deta = np.einsum("nq,nqp->np", A, data.expand(du))
    deta[:, :p] += X
    for l, (r, c) in enumerate(zip(rows, cols)):
        deta[:, p + l] += Z[:, r] * data.expand(u[:, c])
    T = data.gsum((d3[:, None] * deta)[:, :, None] * data.ZZ[:, None, :])   # (G, npsi, npairs)
    dH = Lambda.T @ sym_from_pairs(T, q) @ Lambda
    ML = M @ Lambda                                # M Lambda
    for l, (r, c) in enumerate(zip(rows, cols)):
        extra = np.zeros((data.n_groups, q, q))
        extra[:, c, :] = ML[:, r, :]
        dH[:, p + l] += extra + np.swapaxes(extra, 1, 2)
    # orientation: dM = W^{-1}(dU - dW M), dU = U Phi(U^{-1} dC U^{-T}), dP = -P dH P
    dW = np.zeros((p + nt, q, q))
    for l, (r, c) in enumerate(zip(rows, cols)):
        dW[p + l, r, c] = dW_diag[r] if r == c else 1.0
    dP = -(P[:, None] @ dH @ P[:, None])
    WP = W @ P                                                    # (G, q, q)
    dWPW = dW @ np.swapaxes(WP, 1, 2)[:, None]                    # dW P W'
    dC = dWPW + np.swapaxes(dWPW, 2, 3) + W @ dP @ W.T
    Ui = _triangular_inverse(Uc)
    Y = Ui[:, None] @ dC @ np.swapaxes(Ui, 1, 2)[:, None]
    Phi = np.triu(Y)
    Phi[..., np.arange(q), np.arange(q)] *= 0.5
    dL = Winv @ (Uc[:, None] @ Phi - dW @ L[:, None])
    dlogdetL = -0.5 * np.einsum("gij,gpji->gp", P, dH)
    g_all = (np.einsum("gi,gip->p", gbar, du)
             + np.einsum("gpab,gba->p", dL, Q)
             + dlogdetL.sum(axis=0))
    g_all[:p] += g_beta_u
    g_all[p:] += g_L_u[rows, cols]
    return value, g_all
