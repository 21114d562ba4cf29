"""Adaptive Gauss-Hermite quadrature (any q, product rule) and its exact gradient.

With H_j = R_j R_j' (lower Cholesky), S_j = R_j^{-T}, normalised nodes t_k and
log-weights lw_k (:mod:`mlglm.core.numerics.quadrature`), u_jk = u_hat_j + S_j t_k:

    log L_j = -log det R_j + logsumexp_k f_jk,
    f_jk    = lw_k + sum_i l(y_i | eta_ik) - |u_jk|^2/2 + |t_k|^2/2.

(The change of variables u = u_hat + S t has Jacobian det S = 1/det R; the
normal density of u over that of t leaves exp(-|u|^2/2 + |t|^2/2).) K = 1 is the
Laplace approximation exactly.

Orientation. Any S with S S' = H^{-1} gives an AGHQ rule, and a product grid is
not rotation invariant. The study of issue 13 (benchmarks/QUADRATURE.md) compared
eleven orientations, pruned and sparse grids on fifteen hard designs against
brute-force integration. GLMMadaptive's b-space factor and the grid turned by 45
degrees were often several times more accurate, but each breaks a property the
fits rely on: the b-space factor needs Lambda^{-1} and at a zero slope variance
its value depends on the direction from which theta got there (by 4.3
log-likelihood units on the hard design); the turned grid no longer reduces a
model with a zero variance exactly to the smaller model, so likelihood-ratio tests
of a variance component would be biased. The orientations that keep both (this
one, the reverse order, the symmetric square root) were, over the designs, equally
accurate, this one with the smallest worst case, so it stays. R^{-T} depends on
Lambda only through H, is smooth in theta, and is aligned with a random effect
whose variance is zero.

Gradient. With pi_jk = softmax_k f_jk and g_jk = Lambda'(Z'd1_k)_j - u_jk (the
gradient of h at the node),

    d log L_j = -(1/2) tr(P_j dH_j) + sum_k pi_jk [ dl/dpsi|_u(u_jk)
                + g_jk'(du_hat_j + dS_j t_k) ],

where du_hat = P (dg/dpsi) (implicit function theorem at the mode),
dH = Lambda'(sum_i d3_i deta_i z_i z_i')Lambda (+ E'M Lambda + Lambda'M E for
psi = Lambda_rc, E the unit matrix at (r, c)), deta_i = dpsi-derivative of eta
at the mode including du_hat, dR = R Phi(R^{-1} dH R^{-T}) (Phi: lower
triangle, halved diagonal: the derivative of a Cholesky factor), and
dS = -S dR' S. The node sums reduce to ubar_j-type quantities
(Q_j = sum_k pi_jk t_k g_jk'), so the cost is a few passes over the rows
times the K^q nodes. Groups are processed in chunks so that rows x nodes
stays below ``chunk_elements`` whatever the data size.

The log dispersion t of a negative binomial or Gamma kernel is one more psi:
it moves the kernel at every node (dl/dpsi|_u = sum_i dK_ik/dt), the mode
through dg = Lambda'Z'(d d1/dt) and H through the direct term
Lambda'(sum_i d d2_i/dt z_i z_i')Lambda besides d3 deta (``dispersion=True``).
The auxiliary coordinates of a zero-inflated, hurdle or beta kernel (``aux=True``,
:class:`~mlglm.core.spec.families_auxiliary.BoundAuxiliaryKernel`) enter the same way,
each a per-row value with a design D (X_zi for the zero part, a column of ones for
t): dl/dpsi|_u = D'(sum_k pi_k dK_k/dpsi), dg = Lambda'Z' diag(d d1/dpsi) D and the
direct term of dH, sum_i (d d2_i/dpsi) D_i z_i z_i'.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .grouping import GroupedData, sym_from_pairs
from .modes import ModeState
from ...numerics.quadrature import product_grid
from ...numerics.smallmat import spd_inv

__all__ = ["aghq_loglik", "DEFAULT_CHUNK_ELEMENTS"]

DEFAULT_CHUNK_ELEMENTS = 2_000_000


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
                chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, dispersion: bool = False,
                aux: bool = False):
    """Per-group AGHQ log-likelihood (G,) without response constants.

    With ``gradient=True`` also returns the gradient in (beta, theta[, t]) where
    theta_rc = (rows, cols) names the free entries of Lambda and ``dispersion``
    adds the kernel's log dispersion t (module docstring); ``aux`` (a kernel bound to
    auxiliary predictors) adds its coordinates (beta, theta, gamma, t) instead.
    """
    t, lw = product_grid(nagq, data.q)
    out = np.empty(data.n_groups)
    grad = None
    for lo, hi in _chunks(data, t.shape[0], chunk_elements):
        d = data.subset_groups(lo, hi) if (lo, hi) != (0, data.n_groups) else data
        s = _slice_state(state, data, lo, hi) if d is not data else state
        fc = fl if d is data else fl.rows(slice(data.starts[lo], data.starts[lo] + d.n))
        val, g = _aghq_block(fc, d, s, Lambda, t, lw, theta_rc, gradient, dispersion, aux)
        out[lo:hi] = val
        if gradient:
            grad = g if grad is None else grad + g
    return (out, grad) if gradient else out


def _aghq_block(fl, data, state, Lambda, t, lw, theta_rc, gradient, dispersion=False,
                aux=False):
    q = data.q
    R = np.linalg.cholesky(state.H)
    S = np.swapaxes(np.linalg.inv(R), 1, 2)                      # R^{-T}, upper
    U = state.u[:, None, :] + np.einsum("gij,kj->gki", S, t)    # (G, K, q)
    eta = state.eta_fixed[:, None] + np.einsum("nq,nkq->nk", state.A, data.expand(U))
    if gradient and aux:
        ker, d1k, dKk = fl.kernel_aux_nodes(eta, data.y[:, None], data.m[:, None])
    elif gradient and dispersion:
        ker, d1k, dKk = fl.kernel_ddisp(eta, data.y[:, None], data.m[:, None])
    elif gradient:
        ker, d1k = fl.kernel_d1(eta, data.y[:, None], data.m[:, None])
    else:
        ker = fl.kernel(eta, data.y[:, None], data.m[:, None])
    f = (lw[None, :] + data.gsum(ker) - 0.5 * np.einsum("gkq,gkq->gk", U, U)
         + 0.5 * np.einsum("kq,kq->k", t, t)[None, :])
    logdetR = np.log(np.diagonal(R, axis1=1, axis2=2)).sum(axis=1)
    lse = logsumexp(f, axis=1)
    value = lse - logdetR
    if not gradient:
        return value, None

    pi = np.exp(f - lse[:, None])                                 # (G, K)
    X, Z = data.X, data.Z
    P = spd_inv(state.H)
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
    blocks = [dg_beta, dg_theta]
    if aux:             # each coordinate: rows dK, d d1, d d2 at the mode with a design D
        coords = fl.coordinates(state.eta, data.y)
        designs = [np.ones((data.n, 1)) if D is None else D for D in fl.designs]
        for (_, dd1, _), D in zip(coords, designs):
            blocks.append(data.gsum((A * dd1[:, None])[:, :, None] * D[:, None, :]))
    if dispersion:      # the mode's and the curvature's direct derivatives in t
        _, dd1, dd2 = fl.dispersion_derivatives(state.eta, data.y, data.m, state.d1, d2, d3)
        blocks.append((data.gsum(Z * dd1[:, None]) @ Lambda)[:, :, None])
    dg = np.concatenate(blocks, axis=2)                                     # (G, q, npsi)
    du = P @ dg                                   # (G, q, npsi)
    deta = np.einsum("nq,nqp->np", A, data.expand(du))
    deta[:, :p] += X
    for l, (r, c) in enumerate(zip(rows, cols)):
        deta[:, p + l] += Z[:, r] * data.expand(u[:, c])
    curv = d3[:, None] * deta
    if dispersion:
        curv[:, -1] += dd2
    if aux:
        k = p + nt
        for (_, _, dd2a), D in zip(coords, designs):
            curv[:, k:k + D.shape[1]] += dd2a[:, None] * D
            k += D.shape[1]
    T = data.gsum(curv[:, :, None] * data.ZZ[:, None, :])                   # (G, npsi, npairs)
    dH = Lambda.T @ sym_from_pairs(T, q) @ Lambda
    ML = M @ Lambda                                # M Lambda
    for l, (r, c) in enumerate(zip(rows, cols)):
        extra = np.zeros((data.n_groups, q, q))
        extra[:, c, :] = ML[:, r, :]
        dH[:, p + l] += extra + np.swapaxes(extra, 1, 2)
    # dR = R Phi(R^{-1} dH R^{-T});  dS = -S dR' S;  d logdet R = tr(P dH)/2
    Rinv = np.linalg.inv(R)
    Y = Rinv[:, None] @ dH @ np.swapaxes(Rinv, 1, 2)[:, None]
    Phi = np.tril(Y)
    Phi[..., np.arange(q), np.arange(q)] *= 0.5
    dR = R[:, None] @ Phi
    dS = -(S[:, None] @ np.swapaxes(dR, 2, 3) @ S[:, None])
    dlogdetR = 0.5 * np.einsum("gij,gpji->gp", P, dH)
    g_all = (np.einsum("gi,gip->p", gbar, du)
             + np.einsum("gpab,gba->p", dS, Q)
             - dlogdetR.sum(axis=0))
    g_all[:p] += g_beta_u
    g_all[p:p + nt] += g_L_u[rows, cols]
    if dispersion:
        g_all[-1] += np.sum(dKk * data.expand(pi))
    if aux:
        k = p + nt
        pi_rows = data.expand(pi)
        for dK, D in zip(dKk, designs):
            g_all[k:k + D.shape[1]] += D.T @ np.einsum("nk,nk->n", dK, pi_rows)
            k += D.shape[1]
    return value, g_all
