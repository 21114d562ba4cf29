"""Adaptive Gauss-Hermite quadrature through every level of nested random effects.

Per top-level group j (levels and paths as in :mod:`mlglm.core.engines.nested.tree`)
the likelihood is the nested integral

    L_j = int phi(u_top) prod_{children c} [ int phi(u_c) prod_{children d of c} [ ...
              prod_{rows i of the level-0 node} p(y_i | eta_i) du_0 ] ... du_c ] du_top.

Following Pinheiro and Chao (2006, J. Comput. Graph. Stat. 15:58-81) every
level is centred and scaled from the joint mode u_hat and the blocks of the
tree elimination of H there: the top at u_top = u_hat_top + S_top t_top, and
each node c below at the conditional mode of the quadratic approximation given
its ancestors' current nodes, shifted linearly,

    u_c = u_hat_c - C_c (u_anc - u_hat_anc) + S_c t_c,   S_c = R_c^{-T}, R_c R_c' = A_c,

(A_c: c's pivot block once its descendants are eliminated, i.e. the curvature
of the integrand in u_c with the levels below integrated out; C_c = A_c^{-1}E_c
its coupling to the ancestors). This map t -> u is triangular with Jacobian
prod_c |R_c|^{-1}, and it turns the quadratic part of h into -|t|^2/2 level by
level, so with the product rule of nagq points per dimension at every level
(normalised nodes t, log-weights lw, :mod:`mlglm.core.numerics.quadrature`) the nested
sums are, bottom-up, for node c at level l and each combination k of its
ancestors' nodes,

    log L_c(k) = -log|R_c| + logsumexp_{t_c} [ lw + |t_c|^2/2 - |u_c|^2/2
                 + (sum of log L_d(k, t_c) over children d | sum of the row
                    log-likelihoods l(y_i | eta_i) at level 0) ],

and log L_j = log L_top. (The normal densities' (q/2) log 2 pi cancel between
u and t.) nagq = 1 gives t = 0: h(u_hat) - (1/2) log|H|, the Laplace value.
Arrays are (nodes, combinations): level l has N_l = prod_{m >= l} nagq^q_m
combinations (own index last), and rows x N_0 is the largest array, so top-level
groups are processed in chunks that keep it below a budget.

Gradient: :func:`aghq_block` also returns what the chain rule needs from the
quadrature (the objective combines it with the derivatives of u_hat, A_c and C_c,
:mod:`mlglm.core.engines.nested.objective`). With the path weights omega (products of the nested
softmax weights down the levels), the adjoint of a node position is

    Gbar_c(k) = Lambda_l' sum_{rows i below c} z_il D_i(k) - omega_c(k) u_c(k),
    D_i(k) = sum over the lower levels' indices of omega_0 d1_i,

and back-propagating through u_c = u_hat_c - C_c (u_anc - u_hat_anc) + S_c t_c
(level by level, innermost first, the ancestors collecting -C_c'Gamma_c) gives
the total adjoints Gamma_c and hence

    d/d u_hat_c : nu_c = sum_k Gbar_c(k),
    d/d S_c     : Sbar_c = sum_k Gamma_c(k) t_k',
    d/d C_c     : Cbar_c = -sum_k Gamma_c(k) (u_anc(k) - u_hat_anc)',

plus the explicit derivatives at fixed nodes: X' dbar (dbar_i = sum_k omega d1_i)
for beta and sum_k Y_c(k) u_c(k)' (Y: the z-weighted D sums) for Lambda_l.
"""
from __future__ import annotations

from math import prod

import numpy as np

from .tree import Block, expand, reduce
from ...numerics.quadrature import product_grid

__all__ = ["aghq_block", "DEFAULT_CHUNK_ELEMENTS", "grid_sizes"]

#: rows x quadrature combinations per chunk of top-level groups
DEFAULT_CHUNK_ELEMENTS = 2_000_000


def grid_sizes(q: tuple, nagq: int) -> tuple:
    """(G_l, N_l): nodes per level and combinations from the top down to level l."""
    G = tuple(nagq ** ql for ql in q)
    N = tuple(prod(G[l:]) for l in range(len(q)))
    return G, N


def aghq_block(fl, data, st, Lams, nagq: int, blk: Block, gradient: bool = False,
               dispersion: bool = False, aux: bool = False):
    """Nested AGHQ over the top-level groups of ``blk``.

    Returns (J_top,) log L_j without the response constants and, with
    ``gradient``, a dict of the chain-rule pieces for the block: ``g_beta`` (p,),
    and per level ``YU`` (q_l, q_l), ``nu`` (J_l, q_l), ``Sbar`` (J_l, q_l, q_l),
    ``Cbar`` (J_l, q_l, Q_{l+1}) (module docstring); with ``dispersion`` (a plain
    kernel's log dispersion) or ``aux`` (a
    :class:`~mlglm.core.spec.families_auxiliary.BoundAuxiliaryKernel` restricted to the
    block's rows: the zero part and the log dispersion) also ``g_extra``, the explicit
    derivatives in those coordinates at fixed nodes: sum over rows and combinations of
    omega_0 dK/dt, and X_zi' (sum over combinations of omega_0 dK/da) for the zero part.
    """
    lay = data.layout
    T, q, top = lay.T, lay.q, lay.T - 1
    grids = [product_grid(nagq, ql) for ql in q]
    G, N = grid_sizes(q, nagq)
    N = N + (1,)
    J = blk.J
    fac = st.factor
    R = [fac.R[l][blk.nodes[l]] for l in range(T)]
    Cm = [fac.C[l][blk.nodes[l]] for l in range(T - 1)]
    S = [np.swapaxes(np.linalg.inv(Rl), 1, 2) if q[l] > 1 else 1.0 / Rl
         for l, Rl in enumerate(R)]
    logdetR = [np.log(np.diagonal(Rl, axis1=1, axis2=2)).sum(axis=1) for Rl in R]
    # node positions, top-down
    own = [np.einsum("jab,kb->jka", S[l], grids[l][0]) for l in range(T)]
    delta, Panc = [None] * T, [None] * T
    delta[top] = path = own[top]
    for l in range(T - 2, -1, -1):
        pa = expand(blk, path, l, l + 1)                     # (J_l, N_{l+1}, Q_{l+1})
        Panc[l] = pa
        shift = -np.einsum("jkb,jab->jka", pa, Cm[l])
        d = shift[:, :, None, :] + own[l][:, None, :, :]     # (J_l, N_{l+1}, G_l, q_l)
        delta[l] = d.reshape(J[l], N[l], q[l])
        if l:
            tail = np.broadcast_to(pa[:, :, None, :], d.shape[:3] + (pa.shape[2],))
            path = np.concatenate([d, tail], axis=3).reshape(J[l], N[l], -1)
    U = [st.u[l][blk.nodes[l]][:, None, :] + delta[l] for l in range(T)]
    # linear predictor at every row and combination
    rows, n = blk.rows, blk.n
    eta = np.empty((n, N[0]))
    eta[:] = st.eta_fixed[rows][:, None]
    for l in range(T):
        ATl = st.AT[lay.off[l]:lay.off[l] + q[l], rows]
        contrib = None
        for r in range(q[l]):
            part = expand(blk, U[l][:, :, r], -1, l)
            part *= ATl[r][:, None]
            contrib = part if contrib is None else contrib + part
        eta.reshape(n, N[l], -1)[...] += contrib[:, :, None]
    y = data.y[rows][:, None]
    m = data.m_rows if np.ndim(data.m_rows) == 0 else data.m_rows[rows][:, None]
    dK = None
    if gradient and aux:
        ker, d1, dK = fl.kernel_aux_nodes(eta, y, m)
        d1 = np.require(d1, requirements="W")        # (scaled in place below)
    elif gradient and dispersion:
        ker, d1, dK = fl.kernel_ddisp(eta, y, m)
    elif gradient:
        ker, d1 = fl.kernel_d1(eta, y, m)
    else:
        ker, d1 = fl.kernel(eta, y, m), None
    del eta
    # nested sums, bottom-up
    s = reduce(blk, ker, -1, 0)
    del ker
    pis = []
    for l in range(T):
        t, lw = grids[l]
        const = lw + 0.5 * np.einsum("kq,kq->k", t, t)
        f = (s - 0.5 * np.einsum("jkq,jkq->jk", U[l], U[l])).reshape(J[l], N[l + 1], G[l])
        f += const
        fmax = f.max(axis=2)
        f -= fmax[:, :, None]
        np.exp(f, out=f)
        tot = f.sum(axis=2)
        if gradient:
            f /= tot[:, :, None]
            pis.append(f)                                    # softmax weights
        L = np.log(tot) + fmax - logdetR[l][:, None]
        if l < top:
            s = reduce(blk, L, l, l + 1)
    value = L[:, 0]
    if not gradient:
        return value, None
    designs = fl.designs if aux else None
    return value, _adjoints(data, blk, Lams, grids, G, N, J, Cm, U, Panc, pis, d1, dK,
                            designs)


def _adjoints(data, blk, Lams, grids, G, N, J, Cm, U, Panc, pis, d1, dK=None, designs=None):
    """The chain-rule pieces of the nested AGHQ gradient (module docstring)."""
    lay = data.layout
    T, q, top = lay.T, lay.q, lay.T - 1
    rows, n = blk.rows, blk.n
    omega = [None] * T
    omega[top] = pis[top].reshape(J[top], N[top])
    for l in range(T - 2, -1, -1):
        omega[l] = (expand(blk, omega[l + 1], l, l + 1)[:, :, None] * pis[l]).reshape(J[l], N[l])
    w0 = expand(blk, omega[0], -1, 0)
    if designs is not None:             # auxiliary coordinates: node-weighted dK per row
        extra = []
        for design, dKc in zip(designs, dK):
            rw = np.einsum("ik,ik->i", dKc, w0)
            extra.append([rw.sum()] if design is None else design.T @ rw)
        g_extra = np.concatenate(extra)
    Wd = d1
    Wd *= w0                                                 # omega_0 d1 at every row, combination
    out = {"g_beta": data.X[rows].T @ Wd.sum(axis=1), "YU": [], "nu": [], "Sbar": [],
           "Cbar": []}
    if designs is not None:
        out["g_extra"] = g_extra
    elif dK is not None:                # the log dispersion's explicit part, node-weighted
        out["g_extra"] = np.array([np.sum(dK * w0)])
    Gbar = []
    for l in range(T):
        Dl = Wd.reshape(n, N[l], -1).sum(axis=2)
        Zl = data.Z[l][rows]
        Y = np.stack([reduce(blk, Zl[:, r][:, None] * Dl, -1, l) for r in range(q[l])], axis=2)
        out["YU"].append(np.einsum("jkr,jks->rs", Y, U[l]))
        Gb = Y @ Lams[l] - omega[l][:, :, None] * U[l]
        Gbar.append(Gb)
        out["nu"].append(Gb.sum(axis=1))
    Psi = None
    for l in range(T):
        Gam = Gbar[l] if Psi is None else Gbar[l] + Psi[:, :, :q[l]]
        Gam4 = Gam.reshape(J[l], N[l + 1], G[l], q[l])
        out["Sbar"].append(np.einsum("jkgq,gr->jqr", Gam4, grids[l][0]))
        if l == top:
            break
        Gs = Gam4.sum(axis=2)                                # (J_l, N_{l+1}, q_l)
        out["Cbar"].append(-np.einsum("jkq,jkb->jqb", Gs, Panc[l]))
        adj = -(Gs @ Cm[l])                                  # -C_c' Gamma_c per combination
        if Psi is not None:
            adj += Psi[:, :, q[l]:].reshape(J[l], N[l + 1], G[l], -1).sum(axis=2)
        Psi = reduce(blk, adj, l, l + 1)
    return out
