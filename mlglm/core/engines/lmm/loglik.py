"""The Gaussian LMM log-likelihood at *any* (beta, Sigma, sigma^2), not profiled.

:mod:`lmm` optimises a criterion with beta and sigma^2 profiled out, which is
the fast way to fit. Profile intervals and likelihood-ratio checks instead
need the likelihood with some of those held fixed, so here it is written out
for y_j ~ N(X_j beta, V_j), V_j = Z_j Sigma Z_j' + sigma^2 I, Sigma = Lambda Lambda'.
With the per-group cross products of :class:`~mlglm.core.engines.lmm.blockdiag.LMMStats` and
M_j = I_q + Lambda' Z_j'Z_j Lambda / sigma^2 (Woodbury and the matrix
determinant lemma; never an n_j x n_j matrix):

    log|V_j|      = n_j log sigma^2 + log|M_j|
    r'V^{-1}r     = [r'r - sum_j c_j' M_j^{-1} c_j / sigma^2] / sigma^2,   c_j = Lambda' Z_j' r_j
    2 l_ML        = -n log 2 pi - sum_j log|V_j| - r'V^{-1}r,              r = y - X beta
    2 l_REML      = -(n - p) log 2 pi - sum_j log|V_j| - log|X'V^{-1}X| - r'V^{-1}r  at the GLS beta

(the REML form is lme4's: -2 l_REML equals its ``REMLcrit`` at sigma^2-hat).
The statistics are stored for the OLS residual e = y - X beta_ols, so
r = e - X delta with delta = beta - beta_ols.

Exact gradient (:func:`gaussian_loglik_grad`), for any factor Lambda (not only a
triangular one), with A_j = Z_j'Z_j, B_j = Z_j'X_j, b_j = Z_j'r_j, u_j = M_j^{-1} c_j,
T = sum_j c_j'u_j and, for REML, W = (X'V^{-1}X)^{-1}, F_j = M_j^{-1} Lambda'B_j,
S = sum_j B_j'Lambda F_j:

    d log|M_j| / d Lambda     = 2 A_j Lambda M_j^{-1} / sigma^2
    d T / d Lambda            = sum_j [2 b_j u_j' - 2 A_j Lambda u_j u_j' / sigma^2]
    d log|X'V^{-1}X| / dLambda = -sum_j [2 B_j W F_j' - 2 A_j Lambda F_j W F_j' / sigma^2] / sigma^4
    d log|M_j| / d sigma^2    = -(q - tr M_j^{-1}) / sigma^2
    d T / d sigma^2           = (T - sum_j u_j'u_j) / sigma^2
    d S / d sigma^2           = (S - sum_j F_j'F_j) / sigma^2
    d T / d delta             = -2 sum_j B_j'Lambda u_j

and r'V^{-1}r = (r'r - T / sigma^2) / sigma^2. REML's beta is the GLS one, where
r'V^{-1}r is stationary in beta, so its derivatives are taken at that beta held
fixed (the envelope theorem).
"""
from __future__ import annotations

import numpy as np

__all__ = ["gaussian_loglik", "gaussian_loglik_grad"]

_LOG2PI = np.log(2.0 * np.pi)


def gaussian_loglik(beta, Lambda, sigma2, stats, reml: bool = False) -> float:
    """l_ML(beta, Lambda Lambda', sigma^2), or l_REML(Lambda Lambda', sigma^2) (beta unused).

    Parameters
    ----------
    beta : (p,) array (ignored when ``reml``).
    Lambda : (q, q) array, any factor of Sigma (absolute scale, not relative to sigma).
    sigma2 : float > 0, the residual variance.
    stats : :class:`~mlglm.core.engines.lmm.blockdiag.LMMStats`.
    """
    n, p, q = stats.n, stats.p, stats.q
    Lambda = np.asarray(Lambda, dtype=float)
    sigma2 = float(sigma2)
    if not sigma2 > 0:
        return -np.inf
    LtZtZ = np.einsum("kq,gkl->gql", Lambda, stats.ZtZ)        # Lambda' Z_j'Z_j
    M = np.eye(q) + np.einsum("gql,lr->gqr", LtZtZ, Lambda) / sigma2
    sign, logdetM = np.linalg.slogdet(M)
    if np.any(sign <= 0):
        return -np.inf
    D = np.einsum("kq,gkp->gqp", Lambda, stats.ZtX)             # Lambda' Z_j'X_j
    ce = stats.Zty @ Lambda                                       # Lambda' Z_j'e_j, (G, q)
    if reml:
        MinvD = np.linalg.solve(M, D)
        MinvCe = np.linalg.solve(M, ce[:, :, None])[:, :, 0]
        XVX = (stats.XtX - np.einsum("gqp,gqr->pr", D, MinvD) / sigma2) / sigma2
        XVe = (stats.Xty - np.einsum("gqp,gq->p", D, MinvCe) / sigma2) / sigma2
        sign_x, logdet_x = np.linalg.slogdet(XVX)
        if sign_x <= 0:
            return -np.inf
        delta = np.linalg.solve(XVX, XVe)
    else:
        delta = np.asarray(beta, dtype=float) - stats.beta_ols
        logdet_x = 0.0
    c = ce - D @ delta
    rr = stats.yty - 2.0 * delta @ stats.Xty + delta @ stats.XtX @ delta
    quad = (rr - np.sum(c * np.linalg.solve(M, c[:, :, None])[:, :, 0]) / sigma2) / sigma2
    logdetV = n * np.log(sigma2) - stats.ldW + logdetM.sum()     # weights: lmm module notes
    n_eff = n - p if reml else n
    return -0.5 * (n_eff * _LOG2PI + logdetV + logdet_x + quad)


def gaussian_loglik_grad(beta, Lambda, sigma2, stats, reml: bool = False):
    """:func:`gaussian_loglik` and its exact gradient (module notes).

    Returns
    -------
    (l, dl/dbeta, dl/dLambda, dl/dsigma2): a float, a (p,) array (zeros for REML,
    whose beta is not a parameter), a (q, q) array (Lambda any factor of Sigma,
    absolute scale) and a float; l = -inf (and NaN derivatives) where V is not
    positive definite or sigma^2 <= 0.
    """
    n, p, q = stats.n, stats.p, stats.q
    L = np.asarray(Lambda, dtype=float)
    s2 = float(sigma2)
    nan = (-np.inf, np.full(p, np.nan), np.full((q, q), np.nan), np.nan)
    if not s2 > 0:
        return nan
    A, B = stats.ZtZ, stats.ZtX
    AL = A @ L                                                    # A_j Lambda
    M = np.eye(q) + np.einsum("ka,gkb->gab", L, AL) / s2
    sign, logdetM = np.linalg.slogdet(M)
    if np.any(sign <= 0):
        return nan
    Minv = np.linalg.inv(M)
    D = np.einsum("ka,gkp->gap", L, B)                           # Lambda' B_j
    ce = stats.Zty @ L                                            # Lambda' Z_j'e_j
    logdet_x = 0.0
    if reml:
        F = Minv @ D
        S = np.einsum("gqp,gqr->pr", D, F)
        XVX = (stats.XtX - S / s2) / s2
        XVe = (stats.Xty - np.einsum("gqp,gqr,gr->p", D, Minv, ce) / s2) / s2
        sign_x, logdet_x = np.linalg.slogdet(XVX)
        if sign_x <= 0:
            return nan
        W = np.linalg.inv(XVX)
        delta = W @ XVe
    else:
        delta = np.asarray(beta, dtype=float) - stats.beta_ols
    b = stats.Zty - B @ delta                                     # Z_j'r_j
    c = b @ L
    u = np.einsum("gab,gb->ga", Minv, c)
    T = float(np.sum(c * u))
    rr = stats.yty - 2.0 * delta @ stats.Xty + delta @ stats.XtX @ delta
    quad = (rr - T / s2) / s2
    logdetV = n * np.log(s2) - stats.ldW + logdetM.sum()
    n_eff = n - p if reml else n
    ll = -0.5 * (n_eff * _LOG2PI + logdetV + logdet_x + quad)

    ALu = np.einsum("gab,gb->ga", AL, u)
    dT_dL = 2.0 * (b.T @ u) - 2.0 * (ALu.T @ u) / s2
    d2l_dL = 2.0 * np.einsum("gab,gbc->ac", AL, Minv) / s2 - dT_dL / s2 ** 2
    uu = float(np.sum(u * u))
    dT_ds2 = (T - uu) / s2
    d2l_ds2 = (n - (q * len(M) - np.trace(Minv, axis1=1, axis2=2).sum())) / s2 \
        - rr / s2 ** 2 - dT_ds2 / s2 ** 2 + 2.0 * T / s2 ** 3
    if reml:
        FW = F @ W
        d2l_dL = d2l_dL - (2.0 * np.einsum("gap,gbp->ab", B, FW)
                           - 2.0 * np.einsum("gap,gbp->ab", AL @ F, FW) / s2) / s2 ** 2
        dS_ds2 = (S - np.einsum("gqp,gqr->pr", F, F)) / s2
        dXVX = -stats.XtX / s2 ** 2 + 2.0 * S / s2 ** 3 - dS_ds2 / s2 ** 2
        d2l_ds2 += float(np.sum(W * dXVX))
        dbeta = np.zeros(p)
    else:
        dT_dd = -2.0 * np.einsum("gqp,gq->p", D, u)
        drr_dd = -2.0 * stats.Xty + 2.0 * stats.XtX @ delta
        dbeta = -0.5 * (drr_dd - dT_dd / s2) / s2
    return ll, dbeta, -0.5 * d2l_dL, -0.5 * d2l_ds2
