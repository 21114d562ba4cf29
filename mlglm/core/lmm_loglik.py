"""The Gaussian LMM log-likelihood at *any* (beta, Sigma, sigma^2), not profiled.

:mod:`lmm` optimises a criterion with beta and sigma^2 profiled out, which is
the fast way to fit. Profile intervals and likelihood-ratio checks instead
need the likelihood with some of those held fixed, so here it is written out
for y_j ~ N(X_j beta, V_j), V_j = Z_j Sigma Z_j' + sigma^2 I, Sigma = Lambda Lambda'.
With the per-group cross products of :class:`~mlglm.core.lmm.LMMStats` and
M_j = I_q + Lambda' Z_j'Z_j Lambda / sigma^2 (Woodbury and the matrix
determinant lemma; never an n_j x n_j matrix):

    log|V_j|      = n_j log sigma^2 + log|M_j|
    r'V^{-1}r     = [r'r - sum_j c_j' M_j^{-1} c_j / sigma^2] / sigma^2,   c_j = Lambda' Z_j' r_j
    2 l_ML        = -n log 2 pi - sum_j log|V_j| - r'V^{-1}r,              r = y - X beta
    2 l_REML      = -(n - p) log 2 pi - sum_j log|V_j| - log|X'V^{-1}X| - r'V^{-1}r  at the GLS beta

(the REML form is lme4's: -2 l_REML equals its ``REMLcrit`` at sigma^2-hat).
The statistics are stored for the OLS residual e = y - X beta_ols, so
r = e - X delta with delta = beta - beta_ols.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gaussian_loglik"]

_LOG2PI = np.log(2.0 * np.pi)


def gaussian_loglik(beta, Lambda, sigma2, stats, reml: bool = False) -> float:
    """l_ML(beta, Lambda Lambda', sigma^2), or l_REML(Lambda Lambda', sigma^2) (beta unused).

    Parameters
    ----------
    beta : (p,) array (ignored when ``reml``).
    Lambda : (q, q) array, any factor of Sigma (absolute scale, not relative to sigma).
    sigma2 : float > 0, the residual variance.
    stats : :class:`~mlglm.core.lmm.LMMStats`.
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

