"""Exact Gaussian linear mixed model with several grouping factors: profiled (RE)ML.

The model and the criterion are those of :mod:`mlglm.core.engines.lmm.blockdiag` (Bates et al.
2015, J. Stat. Softw. 67(1)) with u stacking the terms k = 1..T,
Lambda = blockdiag_k (I_{J_k} (x) Lambda_k) and H = Lambda'Z'Z Lambda + I:

    ML:    d(theta) = log|H| + n (1 + log(2 pi r2 / n))
    REML:  d(theta) = log|H| + log|R_X|^2 + (n - p)(1 + log(2 pi r2 / (n - p))).

One factorisation of the augmented system [[H, Lambda'Z'E], [E'Z Lambda, E'E]]
with E = [X e] (:class:`~mlglm.core.engines.crossed.blocked.BlockedFactor`) gives log|H|,
R_X (the X block of the trailing factor), c_beta and sqrt(r2) (its last row),
as lme4's sparse factor does; the statistics are those of the OLS residual e
(see :mod:`mlglm.core.engines.lmm.blockdiag`, "Numerical note").

Exact gradient (derivatives in the entries of each Lambda_k; A = Z'Z, B = Z'X,
Sigma = H^{-1}, F = Sigma Lambda'B, C = (R_X'R_X)^{-1}, Z'r = Z'e - B beta - A Lambda u):

    d log|H|     / d Lambda_k =  2 sum_{levels l of k} [A Lambda Sigma]_{(k,l),(k,l)}
    d r2         / d Lambda_k = -2 sum_l (Z'r)_{k,l} u_{k,l}'
    d log|R_X|^2 / d Lambda_k = -2 sum_l [(B - A Lambda F) C F']_{(k,l),(k,l)}

The first needs Sigma only where A is non-zero: the selected inverse of the
blocked factor. A is applied through its blocks (first term: per-level
blocks; first term x dense terms: the cross pairs; dense x dense: a dense
matrix), never as an n-row pass, so an evaluation costs what the
factorisation costs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..crossed.blocked import BlockedFactor, BlockedStructure
from .blockdiag import _check_full_rank
from ..crossed.crossprod import (Cross, CrossPlan, diag_blocks_M_Lambda_Sigma, diag_blocks_scalar,
                        lam_D_left, level_sums, outer_rows, split_by_term)
from ...spec.layouts import ParamLayout
from .blockdiag import START_OFF_BOUNDARY, gaussian_record, weighted_rows
from .minimise import _minimise, _minimise_log, _minimise_scalar
from ...spec.record import SINGULAR_TOL, CoreFit, OptimizationRecord
from ..crossed.scalar_schur import scalar_schur
from ...spec.terms import ReTerms

__all__ = ["MultiLMMStats", "multi_lmm_stats", "MultiLMMEval", "multi_lmm_evaluate",
           "multi_lmm_fit", "multi_lmm_at", "multi_gaussian_loglik",
           "moment_sums", "moment_theta", "conditional_effects", "package_fit",
           "minimise_theta"]

LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True, eq=False)
class MultiLMMStats:
    """Cross products of a Gaussian LMM with several factors (on e = y - X beta_ols).

    Attributes
    ----------
    terms : ReTerms.   plan : CrossPlan (order, patterns).
    A : Cross, Z'Z in the blocked layout (:mod:`mlglm.core.engines.crossed.crossprod`).
    ZE1 : (J1, q1, p + 1) Z_1'[X e] per level.   ZED : (N_D, p + 1) Z_D'[X e].
    EE : (p + 1, p + 1) [X e]'[X e].   beta_ols : (p,).
    n, p : rows (N = sum of the frequency weights with weights), fixed effects.
    ldW : sum_i f_i log v_i (prior weights: the rows are scaled by sqrt(f v), as in
    :mod:`mlglm.core.engines.lmm.blockdiag`, "Prior weights").
    """

    terms: ReTerms
    plan: CrossPlan
    A: Cross
    ZE1: np.ndarray
    ZED: np.ndarray
    EE: np.ndarray
    beta_ols: np.ndarray
    n: int
    p: int
    ldW: float = 0.0

    @property
    def st(self) -> BlockedStructure:
        return self.plan.st


def multi_lmm_stats(y, X, terms: ReTerms, st: BlockedStructure | None = None,
                    plan: CrossPlan | None = None, beta_ols=None, freq=None,
                    var=None) -> MultiLMMStats:
    """Cross products for :func:`multi_lmm_evaluate` (one pass over the rows).

    ``beta_ols`` (default: the OLS fit of these rows) fixes the shift e = y - X beta_ols;
    a block of rows of a larger data set passes the whole data's (see
    :mod:`mlglm.core.engines.lmm.sums`). With prior weights ``freq``, ``var`` the statistics
    are those of the rows scaled by sqrt(f v) (``plan`` is then built for the scaled
    terms; :mod:`mlglm.core.engines.lmm.blockdiag`, "Prior weights").
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    n_eff, ldW = n, 0.0
    if freq is not None or var is not None:
        y, X, Zs, n_eff, ldW = weighted_rows(y, X, [t.Z for t in terms], freq, var)
        terms = ReTerms(tuple(replace(t, Z=z) for t, z in zip(terms, Zs)))
        plan = None
    plan = CrossPlan(terms, st) if plan is None else plan
    st = plan.st
    if beta_ols is None:
        _check_full_rank(X)
        beta_ols = np.linalg.solve(X.T @ X, X.T @ y)
    beta_ols = np.asarray(beta_ols, dtype=float)
    E = np.column_stack([X, y - X @ beta_ols])
    t1 = terms[st.first]
    ZE1 = level_sums(t1.codes, st.J1, outer_rows(t1.Z, E)).reshape(st.J1, st.q1, p + 1)
    ZED = np.zeros((st.N_D, p + 1))
    for k, off in zip(st.dense, st.offsets):
        tk = terms[k]
        ZED[off:off + tk.size] = level_sums(tk.codes, tk.n_levels,
                                            outer_rows(tk.Z, E)).reshape(tk.size, p + 1)
    return MultiLMMStats(terms, plan, plan.cross(), ZE1, ZED, E.T @ E, beta_ols, n_eff, p, ldW)


@dataclass(frozen=True, eq=False)
class MultiLMMEval:
    """The profiled criterion at one theta and what packaging a fit needs."""

    theta: np.ndarray
    criterion: float
    gradient: np.ndarray | None
    beta: np.ndarray
    r2: float
    ldH: float
    ldRX2: float
    u: tuple                    # per term (J_k, q_k), lme4 scale (variance sigma^2)
    RXinv: np.ndarray
    factor: BlockedFactor


def multi_lmm_evaluate(theta, stats: MultiLMMStats, reml: bool = True,
                       gradient: bool = True) -> MultiLMMEval:
    """Profiled REML criterion / ML deviance at theta, and its exact gradient."""
    terms, st, p, n = stats.terms, stats.st, stats.p, stats.n
    theta = np.asarray(theta, dtype=float)
    Lams = terms.Lambdas(theta)
    L1 = Lams[st.first]
    N = st.N_D
    schur = scalar_schur(stats.A)
    H11, HD1, HDD = stats.A.scaled(Lams, dense=schur is None)
    H1E = np.einsum("ra,jrm->jam", L1, stats.ZE1)
    HDE = lam_D_left(stats.plan, Lams, stats.ZED) if N else np.zeros((0, p + 1))
    moments = None
    if schur is not None:        # crossed scalar terms: S from the fixed map (no product)
        lam_D = [float(Lams[k][0, 0]) for k in st.dense]
        HDD, V2, sum_inv_h = schur.schur_upper(float(L1[0, 0]), lam_D)
        moments = (lam_D, V2, sum_inv_h)
    f = BlockedFactor(st, H11, HD1, HDD, H1E, HDE, stats.EE, schur_upper=schur is not None)
    LXX = f.LT[N:N + p, N:N + p]
    cbeta = f.LT[N + p, N:N + p]
    r2 = float(f.LT[N + p, N + p] ** 2)
    ldRX2 = 2.0 * float(np.log(np.diag(LXX)).sum())
    RXinv = np.linalg.inv(LXX).T                       # R_X^{-1}, R_X = LXX'
    beta_e = RXinv @ cbeta
    m = n - p if reml else n
    crit = f.logdet + (ldRX2 if reml else 0.0) + m * (1.0 + LOG_2PI + np.log(r2 / m)) - stats.ldW
    # u = H^{-1} Lambda'Z'(e - X beta_e)
    b1 = H1E[:, :, p] - H1E[:, :, :p] @ beta_e
    bD = HDE[:, p] - HDE[:, :p] @ beta_e
    u1, uD = f.solve(b1, bD)
    u = _split_u(stats, u1, uD)
    grad = None
    if gradient:
        grad = _gradient(stats, Lams, f, u, u1, uD, beta_e, RXinv, r2, m, reml, H1E, HDE,
                         schur, moments)
    return MultiLMMEval(theta, float(crit), grad, stats.beta_ols + beta_e, r2, f.logdet,
                        ldRX2, u, RXinv, f)


def _split_u(stats, u1, uD):
    return tuple(split_by_term(stats.plan, u1, uD))


def _gradient(stats, Lams, f, u, u1, uD, beta_e, RXinv, r2, m, reml, H1E, HDE,
              schur=None, moments=None):
    """d criterion / d theta (module docstring)."""
    terms, st, p = stats.terms, stats.st, stats.p
    N = st.N_D
    first = st.first
    L1 = Lams[first]
    G = None
    if schur is not None:        # crossed scalar terms: the trace identity
        lam_D, V2, sum_inv_h = moments
        G = schur.gradient_G(float(L1[0, 0]), lam_D, f.inverse_DD_lower(), V2, sum_inv_h)
    if G is not None:
        dLam = [2.0 * g for g in G]
    elif all(t.q == 1 for t in terms):
        dLam = [2.0 * G for G in diag_blocks_scalar(stats.A, Lams, f)]
    else:
        dLam = [2.0 * G for G in diag_blocks_M_Lambda_Sigma(stats.A, Lams, f.selected_inverse())]
    # Z'r = Z'e - B beta_e - A Lambda u  (unscaled), then d r2 = -2 sum_l (Z'r)_l u_l'
    Lu1 = u1 @ L1.T
    LuD = lam_D_left(stats.plan, Lams, uD[:, None], transpose=False)[:, 0] if N else uD
    Au1, AuD = stats.A.matvec(Lu1, LuD)
    Zr1 = stats.ZE1[:, :, p] - stats.ZE1[:, :, :p] @ beta_e - Au1
    ZrD = stats.ZED[:, p] - stats.ZED[:, :p] @ beta_e - AuD
    Zr = _split_u(stats, Zr1, ZrD)
    for k in range(len(terms)):
        dLam[k] -= (2.0 * m / r2) * np.einsum("jr,jc->rc", Zr[k], u[k])
    if reml:
        F1, FD = f.solve(H1E[:, :, :p], HDE[:, :p])                  # Sigma Lambda'Z'X
        C = RXinv @ RXinv.T
        LF1 = np.einsum("rc,jck->jrk", L1, F1)
        LFD = lam_D_left(stats.plan, Lams, FD, transpose=False) if N else FD
        AF1, AFD = stats.A.matvec(LF1, LFD)
        D1 = (stats.ZE1[:, :, :p] - AF1) @ C                          # (B - A Lambda F) C
        DD = (stats.ZED[:, :p] - AFD) @ C
        Dk = _split_u(stats, D1, DD)
        Fk = _split_u(stats, F1, FD)
        for k in range(len(terms)):
            dLam[k] -= 2.0 * np.einsum("jrp,jcp->rc", Dk[k], Fk[k])
    return np.concatenate([t.pattern.gradient(g) for t, g in zip(terms, dLam)])


# ------------------------------------------------------------------------------ the fit
def _criterion_ml(ev, n, ldW=0.0):
    return ev.ldH + n * (1.0 + LOG_2PI + np.log(ev.r2 / n)) - ldW


def _moment_start(y, X, terms: ReTerms, on_diag) -> np.ndarray:
    """A start for theta: lme4's Lambda = I, except that a random intercept (a term whose
    Z is one column of ones) gets a moment estimate -- its level means of the OLS
    residual e have variance ~ tau_k + sigma^2 / n_k (n_k the rows-weighted level size),
    so tau_k ~ var(means) - s^2 / n_k with s^2 = var(e) - sum tau, and theta_k =
    sqrt(tau_k / s^2). A start near the optimum saves BFGS iterations (InstEval 13 -> 10,
    Penicillin 12 -> 7 evaluations), and each costs a dense factorisation."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    e = y - X @ np.linalg.lstsq(X, y, rcond=None)[0]
    return moment_theta(terms, on_diag, moment_sums(e, terms))


def _scalar_intercepts(terms: ReTerms) -> list:
    return [k for k, t in enumerate(terms) if t.q == 1 and np.all(t.Z == 1.0)]


def moment_sums(e, terms: ReTerms) -> dict:
    """The additive sums behind :func:`_moment_start`: e'e, n and, per random-intercept
    term k, (sum_l S_l^2 / n_l, sum_l n_l^2) with S_l the level sums of e. Sums over
    blocks of rows holding whole levels add up to the whole data's."""
    e = np.asarray(e, dtype=float)
    out = {"ee": float(e @ e), "n": int(e.size)}
    for k in _scalar_intercepts(terms):
        t = terms[k]
        cnt = np.bincount(t.codes, minlength=t.n_levels).astype(float)
        S = np.bincount(t.codes, weights=e, minlength=t.n_levels)
        out[k] = (float(np.sum(S * S / np.maximum(cnt, 1.0))), float(cnt @ cnt))
    return out


def moment_theta(terms: ReTerms, on_diag, sums: dict) -> np.ndarray:
    """theta from :func:`moment_sums` (see :func:`_moment_start`)."""
    theta0 = on_diag.astype(float)
    scalar = [k for k in sums if not isinstance(k, str)]
    if not scalar:
        return theta0
    n = sums["n"]
    total = sums["ee"] / n
    raw = {k: sums[k][0] / n for k in scalar}
    nbar = {k: sums[k][1] / n for k in scalar}
    s2 = max(total - sum(raw.values()), 0.1 * total)
    for k in scalar:
        tau = max(raw[k] - s2 / nbar[k], 1e-4 * total)
        theta0[terms.theta_slices[k].start] = np.sqrt(tau / s2)
    return theta0


def multi_lmm_fit(y, X, terms: ReTerms, reml: bool = True, theta0=None,
                  stats: MultiLMMStats | None = None, gtol: float = 1e-8, freq=None,
                  var=None) -> CoreFit:
    """Fit a Gaussian LMM with several factors by profiled REML or ML.

    The criterion and its exact gradient (:func:`multi_lmm_evaluate`) go to
    :func:`~mlglm.core.engines.lmm.minimise._minimise_log` (BFGS in log SDs, then Newton
    in theta; one factor's minimiser takes over at boundaries and saddles), since
    an evaluation here costs a dense factorisation; theta is then mapped to
    non-negative diagonals (same criterion) and everything is evaluated there.
    The start is :func:`_moment_start` (lme4's Lambda_k = I, moment estimates for random
    intercepts) unless ``theta0`` is given.
    """
    stats = multi_lmm_stats(y, X, terms, freq=freq, var=var) if stats is None else stats
    if theta0 is None:
        theta0 = _moment_start(y, X, terms, terms.theta_on_diagonal())

    last = {}                    # the latest evaluation, kept whole: usually the optimum

    def criterion(theta):
        ev = multi_lmm_evaluate(theta, stats, reml)
        last.clear()
        last[ev.theta.tobytes()] = ev
        return ev.criterion, ev.gradient

    theta, message, n_evals = minimise_theta(terms, theta0, criterion, gtol,
                                             _log_sd_curvature(terms, theta0))
    ev = last.get(np.asarray(theta, dtype=float).tobytes())
    if ev is None:
        ev, n_evals = multi_lmm_evaluate(theta, stats, reml), n_evals + 1
    return _package(ev, stats, reml, gtol, n_evals, message)


def _log_sd_curvature(terms: ReTerms, theta0):
    """A diagonal start for BFGS's Hessian in log SDs when every term is a random
    intercept (else None): term k alone, a one-way model, has the (RE)ML deviance's
    curvature 4 sum_l w_l^2 in log theta_k, w_l = n_l theta_k^2 / (1 + n_l theta_k^2)
    the shrinkage weight of level l (its Fisher information in log tau_k is
    sum_l w_l^2 / 2). The first BFGS step is then about a Newton step instead of a
    step of unit length that the line search must cut back (InstEval: 10 -> 8
    evaluations, Penicillin 9 -> 6)."""
    if len(_scalar_intercepts(terms)) != len(terms):
        return None
    out = []
    for t, th in zip(terms, np.asarray(theta0, dtype=float)):
        n_l = np.bincount(t.codes, minlength=t.n_levels)
        w = n_l * th * th / (1.0 + n_l * th * th)
        out.append(max(4.0 * float(w @ w), 1.0))
    return np.array(out)


def minimise_theta(terms: ReTerms, theta0, criterion, gtol: float = 1e-8, hess0=None):
    """Minimise ``criterion(theta) -> (value, gradient)`` from theta0; returns (theta in
    canonical form, message, evaluations). Brent's method for one theta; else, for one
    term, the one-factor fit's minimiser (:func:`~mlglm.core.engines.lmm.minimise._minimise`:
    BFGS in theta, then Newton steps to the gradient's rounding level, as
    :func:`~mlglm.core.engines.lmm.blockdiag.lmm_fit`, so that a fit from sums -- a sharded one -- agrees
    with it to rounding), and for several terms
    :func:`~mlglm.core.engines.lmm.minimise._minimise_log` (fewer evaluations, each a dense
    factorisation). A zero diagonal start is moved off the boundary (log SDs need it).
    The last few evaluations are cached."""
    on_diag = terms.theta_on_diagonal()
    theta0 = terms.canonical(np.asarray(theta0, dtype=float))
    theta0 = np.where(on_diag & (theta0 == 0.0), START_OFF_BOUNDARY, theta0)
    recent, count = {}, [0]

    def fg(theta):
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        hit = recent.get(key)
        if hit is None:
            count[0] += 1
            hit = criterion(theta)
            if len(recent) >= 4:
                del recent[next(iter(recent))]
            recent[key] = hit
        return hit[0], hit[1].copy()

    found = _minimise_scalar(theta0, fg) if theta0.size == 1 else None
    if found is None and terms.kind == "single":
        found = _minimise(theta0, fg, gtol)
    theta, message = found if found is not None else _minimise_log(theta0, fg, gtol, on_diag,
                                                                  hess0=hess0)
    return terms.canonical(theta), message, count[0]


def multi_lmm_at(theta, stats: MultiLMMStats, reml: bool = True) -> CoreFit:
    """Everything :func:`multi_lmm_fit` reports, at a given theta (not optimised)."""
    theta = stats.terms.canonical(np.asarray(theta, dtype=float))
    ev = multi_lmm_evaluate(theta, stats, reml)
    return _package(ev, stats, reml, 1e-8, 1, "evaluated at the given theta (not optimised)")


def _package(ev, stats, reml, gtol, n_evals, message) -> CoreFit:
    terms, st, n = stats.terms, stats.st, stats.n
    sigma2 = ev.r2 / (n - stats.p if reml else n)
    Lams = tuple(terms.Lambdas(ev.theta))
    b, b_cov = conditional_effects(terms, st, Lams, ev.u, ev.factor, sigma2,
                                   scalar_schur(stats.A))
    return package_fit(terms, ev.theta, ev.criterion, ev.gradient, ev.beta, sigma2, ev.RXinv,
                       _criterion_ml(ev, n, stats.ldW), b, b_cov, reml, gtol, n_evals, message)


def package_fit(terms: ReTerms, theta, criterion, gradient, beta, sigma2, RXinv, deviance_ml,
                b, b_cov, reml, gtol, n_evals, message) -> CoreFit:
    """The :class:`~mlglm.core.spec.record.CoreFit` from the criterion at the optimum and the
    random effects (:func:`mlglm.core.engines.lmm.blockdiag.gaussian_record`)."""
    theta = np.array(theta, dtype=float)
    on_diag = terms.theta_on_diagonal()
    # a gradient pushing a zero diagonal entry below 0 is not a failure (boundary optimum)
    at_zero = on_diag & (np.abs(theta) < SINGULAR_TOL)
    grad_norm = float(np.max(np.abs(np.where(at_zero, 0.0, gradient)), initial=0.0))
    record = OptimizationRecord(
        optimizer="profiled (RE)ML, exact gradient", n_evals=n_evals, n_iter=0,
        message=message, grad_norm=grad_norm, newton_decrement=np.nan, hessian_pd=False,
        converged=bool(grad_norm <= gtol * (1.0 + abs(criterion))))
    return gaussian_record(
        reml=reml, layout=ParamLayout(len(beta), terms.n_theta), beta=beta, theta=theta,
        patterns=tuple(t.pattern for t in terms), Lambdas=tuple(terms.Lambdas(theta)),
        sigma2=float(sigma2), cov_beta=sigma2 * RXinv @ RXinv.T, criterion=criterion,
        deviance_ml=deviance_ml, b=b, b_cov=b_cov, singular=at_zero, record=record)


def conditional_effects(terms: ReTerms, st: BlockedStructure, Lams, u, factor: BlockedFactor,
                        sigma2: float, schur=None):
    """Per term: b_k = u_k Lambda_k' and b_cov_k = sigma2 Lambda_k Sigma_(k,l),(k,l) Lambda_k'
    (Sigma = H^{-1} from the selected inverse of ``factor``; with crossed scalar terms'
    :class:`~mlglm.core.engines.crossed.scalar_schur.ScalarSchur`, its diagonal without the pair list)."""
    if schur is not None:
        SDD = factor.inverse_DD()
        lam_D = [float(Lams[k][0, 0]) for k in st.dense]
        S11 = schur.first_term_sigma(float(Lams[st.first][0, 0]), lam_D, SDD)[:, None, None]
    else:
        S11, _, SDD = factor.selected_inverse()
    Sig = [None] * len(terms)
    Sig[st.first] = S11
    for k, off in zip(st.dense, st.offsets):
        t = terms[k]
        idx = off + np.arange(t.n_levels)[:, None] * t.q + np.arange(t.q)[None, :]
        Sig[k] = SDD[idx[:, :, None], idx[:, None, :]]
    b = tuple(uk @ L.T for uk, L in zip(u, Lams))
    b_cov = tuple(sigma2 * np.einsum("ra,jab,cb->jrc", L, S, L) for L, S in zip(Lams, Sig))
    return b, b_cov


def multi_gaussian_loglik(beta, Lambdas, sigma2, stats: MultiLMMStats, reml: bool = False) -> float:
    """l_ML(beta, Sigma_k = Lambda_k Lambda_k', sigma^2), or l_REML(Sigma_k, sigma^2), unprofiled.

    With V = Z Sigma Z' + sigma^2 I = sigma^2 (Z Lambda_r Lambda_r' Z' + I),
    Lambda_r = Lambda / sigma (``Lambdas`` are on the absolute scale):

        log|V|   = n log sigma^2 + log|H(Lambda_r)|,
        r'V^{-1}r = (r'r - c'H^{-1}c) / sigma^2,   c = Lambda_r'Z'r,  r = y - X beta,
        2 l_ML   = -n log 2 pi - log|V| - r'V^{-1}r,
        2 l_REML = -(n - p) log 2 pi - log|V| - log|X'V^{-1}X| - r'V^{-1}r  at the GLS beta,

    with log|X'V^{-1}X| = log|R_X|^2 - p log sigma^2. One blocked factorisation
    with the extra columns [r] (ML) or [X e] (REML) gives every piece, as in
    :func:`multi_lmm_evaluate`. Used by profile intervals and checked against
    scipy's multivariate normal density in the tests.
    """
    st, p, n = stats.st, stats.p, stats.n
    sigma2 = float(sigma2)
    if not sigma2 > 0:
        return -np.inf
    sigma = np.sqrt(sigma2)
    Lams = [np.asarray(L, dtype=float) / sigma for L in Lambdas]
    N = st.N_D
    H11, HD1, HDD = stats.A.scaled(Lams)
    L1 = Lams[st.first]
    if reml:
        ZE1, ZED, EE = stats.ZE1, stats.ZED, stats.EE
    else:
        delta = np.asarray(beta, dtype=float) - stats.beta_ols
        w = np.concatenate([-delta, [1.0]])                  # r = [X e] w
        ZE1, ZED, EE = stats.ZE1 @ w, stats.ZED @ w, w @ stats.EE @ w
        ZE1, ZED, EE = ZE1[:, :, None], ZED[:, None], np.array([[EE]])
    H1E = np.einsum("ra,jrm->jam", L1, ZE1)
    HDE = lam_D_left(stats.plan, Lams, ZED) if N else np.zeros((0, ZE1.shape[2]))
    try:
        f = BlockedFactor(st, H11, HD1, HDD, H1E, HDE, EE)
    except np.linalg.LinAlgError:
        return -np.inf
    LT = f.LT
    quad = float(LT[-1, -1] ** 2) / sigma2
    if reml:
        ldRX2 = 2.0 * float(np.log(np.diag(LT[N:N + p, N:N + p])).sum())
        return -0.5 * ((n - p) * LOG_2PI + n * np.log(sigma2) + f.logdet + ldRX2
                       - p * np.log(sigma2) + quad - stats.ldW)
    return -0.5 * (n * LOG_2PI + n * np.log(sigma2) + f.logdet + quad - stats.ldW)
