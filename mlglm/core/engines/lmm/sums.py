"""The several-factor profiled (RE)ML criterion as a sum over independent blocks of levels.

When every grouping factor is nested in a top-level one, H = Lambda'Z'Z Lambda + I
is block-diagonal over blocks of top-level groups (the shards of
:mod:`mlglm.distributed`), and so is everything :func:`~mlglm.core.engines.lmm.blocked.
multi_lmm_evaluate` computes from it. With E = [X e] (e = y - X beta_ols for the
*whole* data's beta_ols) and, per block s,

    D~_s = H_s^{-1} Lambda'Z_s'E            (the solves, one per column of E)
    E~_s = Z_s'E - A_s Lambda D~_s          (A_s = Z_s'Z_s)

the criterion needs only the sums

    log|H| = sum_s log|H_s|,      M = E'E - sum_s (Lambda'Z_s'E)' D~_s,

since M is the Schur complement whose Cholesky factor holds R_X, c_beta and
sqrt(r2) (the trailing block of the in-memory augmented factor). The gradient
(:mod:`mlglm.core.engines.lmm.blocked`'s formulas) needs, with gamma = (-beta_e, 1) so
that u = D~ gamma and Z'r = E~ gamma per level,

    d log|H| / d Lambda_k   = 2 sum_s G_{s,k}          (diagonal blocks of A Lambda Sigma)
    sum_l (Z'r)_{k,l} u_{k,l}' = T_k[gamma, gamma],    T_k = sum_s sum_l E~_{k,l} (x) D~_{k,l}
    REML: sum_l [(B - A Lambda F) C F']_{(k,l)} = T_k[:p, :p] contracted with C,

so a block returns :class:`BlockSums` -- log|H_s|, the (p+1)^2 matrix S_s, per
term the q_k^2 matrix G_{s,k} and the q_k^2 (p+1)^2 tensor T_{s,k} -- whatever
its rows; the beta-dependent contractions happen after the sum
(:func:`combine`). The shape is that of the one-factor version in
:mod:`mlglm.distributed.lmm`, with the blocked factor of
:mod:`mlglm.core.engines.crossed.blocked` doing each block's linear algebra.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..crossed.blocked import BlockedFactor
from ..crossed.crossprod import (diag_blocks_M_Lambda_Sigma, diag_blocks_scalar, lam_D_left,
                        split_by_term)
from .blocked import LOG_2PI, MultiLMMStats, conditional_effects
from ...spec.terms import ReTerms

__all__ = ["BlockSums", "block_sums", "block_effects", "Combined", "combine"]


@dataclass(frozen=True, eq=False)
class BlockSums:
    """One block's share of the criterion at theta (module docstring).

    ldH : log|H_s|.   S : (p+1, p+1) (Lambda'Z'E)' H^{-1} (Lambda'Z'E).
    G : per term (q_k, q_k) diagonal-block sums of A Lambda Sigma (or None).
    T : per term (q_k, p+1, q_k, p+1) sums of E~ (x) D~ (or None).
    """

    ldH: float
    S: np.ndarray
    G: tuple | None
    T: tuple | None


def _solves(theta, stats: MultiLMMStats):
    terms, st, p = stats.terms, stats.st, stats.p
    Lams = terms.Lambdas(np.asarray(theta, dtype=float))
    L1 = Lams[st.first]
    H11, HD1, HDD = stats.A.scaled(Lams)
    H1E = np.einsum("ra,jrm->jam", L1, stats.ZE1)
    HDE = lam_D_left(stats.plan, Lams, stats.ZED) if st.N_D else np.zeros((0, p + 1))
    f = BlockedFactor(st, H11, HD1, HDD)
    D1, DD = f.solve(H1E, HDE)
    return Lams, f, H1E, HDE, D1, DD


def block_sums(theta, stats: MultiLMMStats, gradient: bool = True) -> BlockSums:
    """:class:`BlockSums` of one block of whole top-level groups at theta.

    ``stats`` are the block's cross products, formed with the whole data's
    beta_ols (:func:`~mlglm.core.engines.lmm.blocked.multi_lmm_stats`).
    """
    Lams, f, H1E, HDE, D1, DD = _solves(theta, stats)
    S = np.einsum("jqa,jqb->ab", H1E, D1) + HDE.T @ DD
    if not gradient:
        return BlockSums(f.logdet, S, None, None)
    terms, st, plan = stats.terms, stats.st, stats.plan
    if all(t.q == 1 for t in terms):
        G = diag_blocks_scalar(stats.A, Lams, f)
    else:
        G = diag_blocks_M_Lambda_Sigma(stats.A, Lams, f.selected_inverse())
    LD1 = np.einsum("rc,jck->jrk", Lams[st.first], D1)
    LDD = lam_D_left(plan, Lams, DD, transpose=False) if st.N_D else DD
    AD1, ADD = stats.A.matvec(LD1, LDD)
    Et = split_by_term(plan, stats.ZE1 - AD1, stats.ZED - ADD)
    Dt = split_by_term(plan, D1, DD)
    T = tuple(np.einsum("jra,jsb->rasb", Et[k], Dt[k]) for k in range(len(terms)))
    return BlockSums(float(f.logdet), S, tuple(np.asarray(g) for g in G), T)


def block_effects(theta, stats: MultiLMMStats, beta_e, sigma2: float):
    """Per term (b_k, b_cov_k) of the block's levels at theta and beta = beta_ols + beta_e:
    u = D~ gamma with gamma = (-beta_e, 1) (module docstring)."""
    Lams, f, H1E, HDE, D1, DD = _solves(theta, stats)
    gamma = np.append(-np.asarray(beta_e, dtype=float), 1.0)
    u = split_by_term(stats.plan, D1 @ gamma, DD @ gamma)
    return conditional_effects(stats.terms, stats.st, Lams, u, f, sigma2)


@dataclass(frozen=True, eq=False)
class Combined:
    """The criterion at theta from the blocks' sums.

    criterion, gradient (d criterion / d theta, or None), beta_e (beta - beta_ols),
    r2, RXinv (R_X^{-1}), deviance_ml (-2 log L_ML at the profiled optimum of theta).
    """

    criterion: float
    gradient: np.ndarray | None
    beta_e: np.ndarray
    r2: float
    RXinv: np.ndarray
    deviance_ml: float


def combine(parts, EE, terms: ReTerms, n: int, reml: bool = True) -> Combined:
    """Sum the :class:`BlockSums` of all blocks and form the criterion (module docstring).

    EE is the whole data's [X e]'[X e]; ``terms`` give the theta layout (patterns).
    """
    p = EE.shape[0] - 1
    M = EE - sum(s.S for s in parts)
    LM = np.linalg.cholesky(M)
    LXX, cbeta = LM[:p, :p], LM[p, :p]
    r2 = float(LM[p, p] ** 2)
    RXinv = np.linalg.inv(LXX).T                       # R_X^{-1}, R_X = LXX'
    beta_e = RXinv @ cbeta
    ldH = float(sum(s.ldH for s in parts))
    ldRX2 = 2.0 * float(np.log(np.diag(LXX)).sum())
    m = n - p if reml else n
    crit = ldH + (ldRX2 if reml else 0.0) + m * (1.0 + LOG_2PI + np.log(r2 / m))
    dev_ml = ldH + n * (1.0 + LOG_2PI + np.log(r2 / n))
    grad = None
    if parts and parts[0].G is not None:
        gamma = np.append(-beta_e, 1.0)
        C = RXinv @ RXinv.T
        dLam = []
        for k, t in enumerate(terms):
            G = sum(s.G[k] for s in parts)
            T = sum(s.T[k] for s in parts)
            d = 2.0 * G - (2.0 * m / r2) * np.einsum("rasb,a,b->rs", T, gamma, gamma)
            if reml:
                d = d - 2.0 * np.einsum("rasb,ab->rs", T[:, :p, :, :p], C)
            dLam.append(d)
        grad = np.concatenate([t.pattern.gradient(g) for t, g in zip(terms, dLam)])
    return Combined(float(crit), grad, beta_e, r2, RXinv, float(dev_ml))
