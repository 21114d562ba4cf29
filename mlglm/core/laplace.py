"""Laplace approximation to the marginal log-likelihood and its exact gradient.

Per group j, at the conditional mode u_hat (see :mod:`mlglm.core.modes`),

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
"""
from __future__ import annotations

import numpy as np

from .grouping import GroupedData, vech_pairs
from .modes import ModeState
from .smallmat import spd_inv, spd_logdet

__all__ = ["laplace_loglik", "laplace_gradient"]


def laplace_loglik(state: ModeState) -> np.ndarray:
    """Per-group Laplace log-likelihood without the response constants (G,)."""
    return state.h - 0.5 * spd_logdet(state.H)


def _leverage(data, A, P):
    """s_i = a_i' P_{j(i)} a_i for every row, one unique pair of P at a time."""
    q = A.shape[1]
    s = np.zeros(A.shape[0])
    for r, c in zip(*vech_pairs(q)):
        w = 1.0 if r == c else 2.0
        s += (A[:, r] * A[:, c]) * data.expand(w * P[:, r, c])
    return s


def laplace_gradient(data: GroupedData, state: ModeState, Lambda: np.ndarray):
    """Exact gradient of sum_j log L_j in beta (p,) and in Lambda (q, q, full matrix).

    The caller picks the theta entries out of the Lambda gradient.
    """
    A, u = state.A, state.u
    P = spd_inv(state.H)
    s = _leverage(data, A, P)
    c = state.d3 * s
    v = (P @ data.gsum(A * c[:, None])[:, :, None])[:, :, 0]
    av = A[:, 0] * data.expand(v[:, 0])
    for k in range(1, A.shape[1]):
        av += A[:, k] * data.expand(v[:, k])
    g_beta = data.X.T @ (state.d1 - 0.5 * (c - state.d2 * av))
    Zd1 = data.gsum(data.Z * state.d1[:, None])
    Zc = data.gsum(data.Z * c[:, None])
    PLM = P @ Lambda.T @ state.M      # P Lambda' M
    w = (state.M @ (v @ Lambda.T)[:, :, None])[:, :, 0]           # M Lambda v
    g_Lambda = (Zd1.T @ u - PLM.sum(axis=0).T
                - 0.5 * (Zc.T @ u + Zd1.T @ v - w.T @ u))
    return g_beta, g_Lambda
