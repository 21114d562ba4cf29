"""Laplace approximation to the marginal log-likelihood and its exact gradient.

Per group j, at the conditional mode u_hat (see :mod:`mlglm.core.engines.blockdiag.modes`),

    log L_j = h_j(u_hat) - (1/2) log det H_j,
    h_j(u) = sum_i log p(y_i | eta_i) - u'u/2,  H_j = Lambda' M_j Lambda + I,

(the (q/2) log 2 pi of the normal density cancels against the Gaussian
integral). The normalising constants of p(y | eta) are added once by the
caller's ``log_const``; they are part of the value, so Laplace, AGHQ and an
ordinary GLM give comparable log-likelihoods.

Gradient (psi = beta or an element Lambda_rc). At the mode dh/du = 0, so
d log L_j = dh_j/dpsi|_u - (1/2) tr(H_j^{-1} dH_j/dpsi), where dH/dpsi carries
the movement of the mode through d2's derivative d3. With a_i = Lambda'z_i,
P_j = H_j^{-1}, s_i = a_i'P_j a_i, c_i = d3_i s_i, v_j = P_j sum_i c_i a_i and
w_j = M_j Lambda v_j, summing over rows and groups:

    d/dbeta      = X' [d1 - (c - d2 (a'v)) / 2]
    d/dLambda_rc = sum_j [ (Z'd1)_jr u_jc - (P_j Lambda' M_j)_cr
                   - ((Z'c)_jr u_jc + v_jc (Z'd1)_jr - w_jr u_jc) / 2 ]

Every term is a segment sum over rows, so once the modes have converged one
more pass gives the whole gradient (checked against central differences in
the tests).

A parameter t that enters only the kernel (the log dispersion of the negative
binomial and Gamma families) moves the log-likelihood of every row directly
(dK_i/dt), the mode through dg/dt = Lambda'Z'(d d1/dt) (du = P dg), and H
through sum_i (d d2_i/dt + d3_i a_i'du) z_i z_i'. With the same s_i and
a_i'v_j as above, tr(P_j dH_j/dt) = sum_i [s_i d d2_i/dt + (a_i'v_j) d d1_i/dt],
so it is one more dot product over the rows:

    d/dt = sum_i [dK_i/dt - (s_i d d2_i/dt + (a_i'v_j) d d1_i/dt) / 2]

(beta is the case dK/dbeta = d1 x, d d1/dbeta = -d2 x, d d2/dbeta = d3 x of the
same formula).

Shape of the computation (groups along the last axis, symmetric per-group
matrices as their unique entries, see :mod:`mlglm.core.engines.blockdiag.modes`): the leverage
is s_i = z_i' Q_j z_i with Q_j = Lambda P_j Lambda', so it needs the constant
products z_r z_c and one np.repeat of Q's unique entries, no per-evaluation
(n, q) products; sum_i c_i a_i = Lambda' Z'c and a_i'v_j = z_i' (Lambda v_j),
so one segment sum (Z'c) serves both v and the Lambda gradient, and Z'd1 comes
from the mode iteration. sum_j P_j Lambda' M_j is a contraction of
C = sum_j vec(P_j) vec(M_j)', one (q^2 x G) @ (G x q^2) product.
"""
from __future__ import annotations

import numpy as np

from .grouping import GroupedData
from .modes import ModeState
from ...numerics.smallmat import (congruence, pair_index, pairs_cross_sum, pairs_inv, pairs_logdet,
                       pairs_matvec)

__all__ = ["laplace_loglik", "laplace_gradient"]


def laplace_loglik(state: ModeState) -> np.ndarray:
    """Per-group Laplace log-likelihood without the response constants (G,)."""
    return state.h - 0.5 * pairs_logdet(state.Hp)


def _rows_dot(data, Vp, rowsT):
    """sum_k rowsT[k]_i Vp[k, j(i)] for every row i: per-group coefficients Vp
    (k, G) repeated onto the rows (one np.repeat) and contracted with (k, n) rows."""
    R = np.repeat(Vp, data.sizes, axis=1)
    R *= rowsT
    out = R[0].copy()
    for k in range(1, R.shape[0]):
        out += R[k]
    return out


def laplace_gradient(data: GroupedData, state: ModeState, Lambda: np.ndarray, fl=None,
                     aux=None):
    """Exact gradient of sum_j log L_j in beta (p,) and in Lambda (q, q, full matrix),
    and, when the kernel ``fl`` with a dispersion is given, in its log dispersion t
    (the eta-dependent part; the constants' derivative is the caller's).

    ``aux``: the auxiliary coordinates of a zero-inflated, hurdle or beta kernel
    (:class:`~mlglm.core.spec.families_auxiliary.BoundAuxiliaryKernel`), a list of per-row
    triples (dK/dpsi, d d1/dpsi, d d2/dpsi) at the modes, one per coordinate psi
    taken as a separate value on every row; for each the per-row array
    r_i = dK_i - (s_i d d2_i + (a_i'v_j) d d1_i) / 2 is returned, whose sum is the
    gradient in a constant psi and whose product X_zi' r the gradient in the
    coefficients of a predictor psi_i = x_zi,i' gamma (the module docstring's
    formula for t, row by row).

    The caller picks the theta entries out of the Lambda gradient.
    Returns (g_beta, g_Lambda), with ``fl`` (g_beta, g_Lambda, g_t), with ``aux``
    (g_beta, g_Lambda, [r per coordinate]).
    """
    uT = state.u.T                                     # (q, G)
    Pp = pairs_inv(state.Hp)                           # P_j = H_j^{-1}
    # s_i = a_i'P_j a_i = z_i'Q_j z_i, Q_j = Lambda P_j Lambda'; off-diagonal pairs count twice
    Qp = congruence(Lambda.T) @ Pp
    r, c = pair_index(data.q)
    Qp[r != c] *= 2.0
    s = _rows_dot(data, Qp, data.ZZT)
    cvec = state.d3 * s
    Zc = np.add.reduceat(data.ZT * cvec, data.starts, axis=1)      # (q, G) Z_j'c
    v = pairs_matvec(Pp, Lambda.T @ Zc)                # v_j = P_j sum_i c_i a_i
    Lv = Lambda @ v                                     # Lambda v_j
    av = _rows_dot(data, Lv, data.ZT)                   # a_i'v_j = z_i'Lambda v_j
    if fl is not None:
        dK, dd1, dd2 = fl.dispersion_derivatives(state.eta, data.y, data.m_rows, state.d1,
                                                 state.d2, state.d3)
        g_t = float(np.sum(dK) - 0.5 * (s @ dd2 + av @ dd1))
    if aux is not None:
        aux_rows = [dK - 0.5 * (s * dd2 + av * dd1) for dK, dd1, dd2 in aux]
    # d1 - (c - d2 (a'v)) / 2, in place
    av *= state.d2
    av -= cvec
    av *= 0.5
    av += state.d1
    g_beta = data.X.T @ av
    Zd1 = state.Zd1
    S = np.einsum("xaby,ba->xy", pairs_cross_sum(Pp, state.Mp), Lambda)   # sum_j P_j Lambda'M_j
    w = pairs_matvec(state.Mp, Lv)                      # M_j Lambda v_j
    u = uT.T
    g_Lambda = Zd1 @ u - S.T - 0.5 * (Zc @ u + Zd1 @ v.T - w @ u)
    if fl is not None:
        return g_beta, g_Lambda, g_t
    if aux is not None:
        return g_beta, g_Lambda, aux_rows
    return g_beta, g_Lambda
