"""Exact Gaussian linear mixed model with several grouping factors: profiled (RE)ML.

The model and the criterion are those of :mod:`mlglm.core.lmm` (Bates et al.
2015, J. Stat. Softw. 67(1)) with u stacking the terms k = 1..T,
Lambda = blockdiag_k (I_{J_k} (x) Lambda_k) and H = Lambda'Z'Z Lambda + I:

    ML:    d(theta) = log|H| + n (1 + log(2 pi r2 / n))
    REML:  d(theta) = log|H| + log|R_X|^2 + (n - p)(1 + log(2 pi r2 / (n - p))).

One factorisation of the augmented system [[H, Lambda'Z'E], [E'Z Lambda, E'E]]
with E = [X e] (:class:`~mlglm.core.blocked.BlockedFactor`) gives log|H|,
R_X (the X block of the trailing factor), c_beta and sqrt(r2) (its last row),
as lme4's sparse factor does; the statistics are those of the OLS residual e
(see :mod:`mlglm.core.lmm`, "Numerical note").

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

from dataclasses import dataclass

import numpy as np

from .blocked import BlockedFactor, BlockedStructure
from .terms import ReTerms

__all__ = ["MultiLMMStats", "multi_lmm_stats", "MultiLMMEval", "multi_lmm_evaluate",
           "MultiLMMFit", "multi_lmm_fit", "multi_lmm_at"]

LOG_2PI = np.log(2.0 * np.pi)


@dataclass(frozen=True, eq=False)
class MultiLMMStats:
    """Cross products of a Gaussian LMM with several factors (on e = y - X beta_ols).

    Attributes
    ----------
    st : BlockedStructure (order, patterns).
    A11 : (J1, q1, q1) Z_1'Z_1 per level of the first term.
    cross : list per dense term of (P_d, q_d, q1) blocks Z_d'Z_1 on the pattern.
    ADD : (N_D, N_D) Z_D'Z_D (unscaled, dense).
    ZE1 : (J1, q1, p + 1) Z_1'[X e] per level.   ZED : (N_D, p + 1) Z_D'[X e].
    ADD_nz : non-zeros of ADD: (row, col, value, dense-term index of the row,
        row within its level block, first row of that block).
    EE : (p + 1, p + 1) [X e]'[X e].   beta_ols : (p,).
    n, p : rows, fixed effects.
    """

    terms: ReTerms
    st: BlockedStructure
    A11: np.ndarray
    cross: list
    ADD: np.ndarray
    ADD_nz: tuple
    ZE1: np.ndarray
    ZED: np.ndarray
    EE: np.ndarray
    beta_ols: np.ndarray
    n: int
    p: int


def _level_sums(codes, J, rows):
    """Per-level sums of the rows of a (n, k) array (bincount per column)."""
    out = np.empty((J, rows.shape[1]))
    for c in range(rows.shape[1]):
        out[:, c] = np.bincount(codes, weights=rows[:, c], minlength=J)
    return out


def _outer_rows(Za, Zb):
    """(n, qa * qb) row-wise outer products z_a z_b'."""
    return (Za[:, :, None] * Zb[:, None, :]).reshape(Za.shape[0], -1)


def multi_lmm_stats(y, X, terms: ReTerms, st: BlockedStructure | None = None) -> MultiLMMStats:
    """Cross products for :func:`multi_lmm_evaluate` (one pass over the rows)."""
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    n, p = X.shape
    st = BlockedStructure(terms) if st is None else st
    beta_ols = np.linalg.solve(X.T @ X, X.T @ y)
    E = np.column_stack([X, y - X @ beta_ols])
    t1 = terms[st.first]
    Z1 = t1.Z
    A11 = _level_sums(t1.codes, st.J1, _outer_rows(Z1, Z1)).reshape(st.J1, st.q1, st.q1)
    ZE1 = _level_sums(t1.codes, st.J1, _outer_rows(Z1, E)).reshape(st.J1, st.q1, p + 1)
    cross = []
    for cp in st.pairs:
        Zd = terms[cp.term].Z
        cross.append(_level_sums(cp.row_pair, cp.lev.size, _outer_rows(Zd, Z1))
                     .reshape(-1, cp.q, st.q1))
    N = st.N_D
    ADD = np.zeros((N, N))
    ZED = np.zeros((N, p + 1))
    for i, (k, off) in enumerate(zip(st.dense, st.offsets)):
        tk = terms[k]
        blk = _level_sums(tk.codes, tk.n_levels, _outer_rows(tk.Z, tk.Z))
        blk = blk.reshape(tk.n_levels, tk.q, tk.q)
        base = off + np.arange(tk.n_levels)[:, None] * tk.q + np.arange(tk.q)[None, :]
        ADD[base[:, :, None], base[:, None, :]] = blk
        ZED[off:off + tk.size] = _level_sums(tk.codes, tk.n_levels,
                                             _outer_rows(tk.Z, E)).reshape(tk.size, p + 1)
        for k2, off2 in zip(st.dense[i + 1:], st.offsets[i + 1:]):
            t2 = terms[k2]
            key = tk.codes.astype(np.int64) * t2.n_levels + t2.codes
            uniq, inv = np.unique(key, return_inverse=True)
            blk = _level_sums(inv, uniq.size, _outer_rows(tk.Z, t2.Z)).reshape(-1, tk.q, t2.q)
            ra = off + (uniq // t2.n_levels)[:, None] * tk.q + np.arange(tk.q)[None, :]
            cb = off2 + (uniq % t2.n_levels)[:, None] * t2.q + np.arange(t2.q)[None, :]
            ADD[ra[:, :, None], cb[:, None, :]] = blk
            ADD[cb[:, None, :], ra[:, :, None]] = blk
    ra, ca = np.nonzero(ADD)
    term_of = np.zeros(N, dtype=np.intp)
    r_in = np.zeros(N, dtype=np.intp)
    bstart = np.zeros(N, dtype=np.intp)
    for i, (k, off) in enumerate(zip(st.dense, st.offsets)):
        tk = terms[k]
        rows = np.arange(tk.size)
        term_of[off:off + tk.size] = i
        r_in[off:off + tk.size] = rows % tk.q
        bstart[off:off + tk.size] = off + (rows // tk.q) * tk.q
    nz = (ra, ca, ADD[ra, ca], term_of[ra], r_in[ra], bstart[ra])
    return MultiLMMStats(terms, st, A11, cross, ADD, nz, ZE1, ZED, E.T @ E, beta_ols, n, p)


# ------------------------------------------------------------------ Lambda_D helpers
def _lam_D_left(stats, Lams, M, transpose=True):
    """Lambda_D' M (transpose=True) or Lambda_D M for an (N_D, k) array."""
    st, out = stats.st, np.empty_like(M)
    for k, off in zip(st.dense, st.offsets):
        t = stats.terms[k]
        seg = M[off:off + t.size].reshape(t.n_levels, t.q, -1)
        L = Lams[k].T if transpose else Lams[k]
        out[off:off + t.size] = np.einsum("rc,jck->jrk", L, seg).reshape(t.size, -1)
    return out


def _dense_blocks(stats, V):
    """Split an (N_D, ...) array into per-dense-term (J_d, q_d, ...) views."""
    st = stats.st
    for k, off in zip(st.dense, st.offsets):
        t = stats.terms[k]
        yield k, V[off:off + t.size].reshape((t.n_levels, t.q) + V.shape[1:])


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
    q1 = st.q1
    H11 = np.einsum("ra,jrs,sb->jab", L1, stats.A11, L1)
    H11[:, np.arange(q1), np.arange(q1)] += 1.0
    HD1 = st.scatter_D1([np.einsum("ra,prs,sb->pab", Lams[cp.term], B, L1)
                         for cp, B in zip(st.pairs, stats.cross)])
    N = st.N_D
    HDD = _lam_D_left(stats, Lams, _lam_D_left(stats, Lams, stats.ADD).T) if N else \
        np.zeros((0, 0))
    HDD[np.arange(N), np.arange(N)] += 1.0
    H1E = np.einsum("ra,jrm->jam", L1, stats.ZE1)
    HDE = _lam_D_left(stats, Lams, stats.ZED) if N else np.zeros((0, p + 1))
    f = BlockedFactor(st, H11, HD1, HDD, H1E, HDE, stats.EE)
    LXX = f.LT[N:N + p, N:N + p]
    cbeta = f.LT[N + p, N:N + p]
    r2 = float(f.LT[N + p, N + p] ** 2)
    ldRX2 = 2.0 * float(np.log(np.diag(LXX)).sum())
    RXinv = np.linalg.inv(LXX).T                       # R_X^{-1}, R_X = LXX'
    beta_e = RXinv @ cbeta
    m = n - p if reml else n
    crit = f.logdet + (ldRX2 if reml else 0.0) + m * (1.0 + LOG_2PI + np.log(r2 / m))
    # u = H^{-1} Lambda'Z'(e - X beta_e)
    b1 = H1E[:, :, p] - H1E[:, :, :p] @ beta_e
    bD = HDE[:, p] - HDE[:, :p] @ beta_e
    u1, uD = f.solve(b1, bD)
    u = _split_u(stats, u1, uD)
    grad = None
    if gradient:
        grad = _gradient(stats, Lams, f, u, u1, uD, beta_e, RXinv, r2, m, reml, H1E, HDE)
    return MultiLMMEval(theta, float(crit), grad, stats.beta_ols + beta_e, r2, f.logdet,
                        ldRX2, u, RXinv, f)


def _split_u(stats, u1, uD):
    out = [None] * len(stats.terms)
    out[stats.st.first] = u1
    for k, blk in _dense_blocks(stats, uD):
        out[k] = blk
    return tuple(out)


def _A_times(stats, x1, xD):
    """(A x) for A = Z'Z (unscaled) and x = (x1 (J1, q1[, k]), xD (N_D[, k]))."""
    st = stats.st
    multi = x1.ndim == 3
    if not multi:
        x1, xD = x1[:, :, None], xD[:, None]
    y1 = stats.A11 @ x1
    yD = stats.ADD @ xD
    for cp, B in zip(st.pairs, stats.cross):
        t = stats.terms[cp.term]
        xd = xD[cp.offset:cp.offset + t.size].reshape(t.n_levels, t.q, -1)
        # y1[j] += B' x_d[l];  y_d[l] += B x1[j]
        c1 = np.einsum("prs,prk->psk", B, xd[cp.lev])
        for s in range(st.q1):
            for kk in range(c1.shape[2]):
                y1[:, s, kk] += np.bincount(cp.col, weights=c1[:, s, kk], minlength=st.J1)
        cd = B @ x1[cp.col]
        ydv = yD[cp.offset:cp.offset + t.size].reshape(t.n_levels, t.q, -1)
        for r in range(t.q):
            for kk in range(cd.shape[2]):
                ydv[:, r, kk] += np.bincount(cp.lev, weights=cd[:, r, kk], minlength=t.n_levels)
    if not multi:
        return y1[:, :, 0], yD[:, 0]
    return y1, yD


def _gradient(stats, Lams, f, u, u1, uD, beta_e, RXinv, r2, m, reml, H1E, HDE):
    """d criterion / d theta (module docstring)."""
    terms, st, p = stats.terms, stats.st, stats.p
    N = st.N_D
    first = st.first
    L1 = Lams[first]
    S11, Y, SDD = f.selected_inverse()
    dLam = [np.zeros((t.q, t.q)) for t in terms]
    # d log|H| : 2 sum_l [A Lambda Sigma]_{ll}
    dLam[first] += 2.0 * np.einsum("jrs,sa,jab->rb", stats.A11, L1, S11)
    if N:
        Yb = st.gather_D1(Y)                      # Sigma_{(d,l),(1,j)} blocks (P_d, q_d, q1)
        for cp, B, Yd in zip(st.pairs, stats.cross, Yb):
            Ld = Lams[cp.term]
            # first term: B' Lambda_d Sigma_{(d,l),(1,j)};  dense term: B Lambda_1 Sigma_{(1,j),(d,l)}
            dLam[first] += 2.0 * np.einsum("prs,ra,pab->sb", B, Ld, Yd)
            dLam[cp.term] += 2.0 * np.einsum("prs,sa,pba->rb", B, L1, Yd)
        # dense x dense: diagonal blocks of A_DD Lambda_D Sigma_DD, from A_DD's
        # non-zeros (a, c): [A Lambda Sigma]_{a, b} = sum_c A[a, c] (Lambda_D Sigma_DD)[c, b]
        LS = _lam_D_left(stats, Lams, SDD, transpose=False)          # Lambda_D Sigma_DD
        ra, ca, val, term_of, r_in, bstart = stats.ADD_nz
        for i, k in enumerate(st.dense):
            sel = term_of == i
            q = terms[k].q
            G = val[sel, None] * LS[ca[sel, None], bstart[sel, None] + np.arange(q)[None, :]]
            for c in range(q):
                dLam[k][:, c] += 2.0 * np.bincount(r_in[sel], weights=G[:, c], minlength=q)
    # Z'r = Z'e - B beta_e - A Lambda u  (unscaled), then d r2 = -2 sum_l (Z'r)_l u_l'
    Lu1 = u1 @ L1.T
    LuD = _lam_D_left(stats, Lams, uD[:, None], transpose=False)[:, 0] if N else uD
    Au1, AuD = _A_times(stats, Lu1, LuD)
    Zr1 = stats.ZE1[:, :, p] - stats.ZE1[:, :, :p] @ beta_e - Au1
    ZrD = stats.ZED[:, p] - stats.ZED[:, :p] @ beta_e - AuD
    Zr = _split_u(stats, Zr1, ZrD)
    for k in range(len(terms)):
        dLam[k] -= (2.0 * m / r2) * np.einsum("jr,jc->rc", Zr[k], u[k])
    if reml:
        F1, FD = f.solve(H1E[:, :, :p], HDE[:, :p])                  # Sigma Lambda'Z'X
        C = RXinv @ RXinv.T
        LF1 = np.einsum("rc,jck->jrk", L1, F1)
        LFD = _lam_D_left(stats, Lams, FD, transpose=False) if N else FD
        AF1, AFD = _A_times(stats, LF1, LFD)
        D1 = (stats.ZE1[:, :, :p] - AF1) @ C                          # (B - A Lambda F) C
        DD = (stats.ZED[:, :p] - AFD) @ C
        Dk = _split_u(stats, D1, DD)
        Fk = _split_u(stats, F1, FD)
        for k in range(len(terms)):
            dLam[k] -= 2.0 * np.einsum("jrp,jcp->rc", Dk[k], Fk[k])
    return np.concatenate([t.pattern.gradient(g) for t, g in zip(terms, dLam)])


# ------------------------------------------------------------------------------ the fit
@dataclass(frozen=True, eq=False)
class MultiLMMFit:
    """A fitted Gaussian LMM with several factors (what lme4's ``lmer`` reports).

    Per-term quantities are tuples in term order: ``Lambdas`` (relative
    factors), ``cov_re`` (sigma2 Lambda_k Lambda_k'), ``b`` ((J_k, q_k)
    conditional modes Lambda_k u_k) and ``b_cov`` ((J_k, q_k, q_k) conditional
    covariances sigma2 Lambda_k Sigma_{(k,l),(k,l)} Lambda_k' with beta known).
    ``cov_beta`` is sigma2 (R_X'R_X)^{-1}; ``llf`` is -criterion / 2.
    """

    theta: np.ndarray
    Lambdas: tuple
    beta: np.ndarray
    sigma2: float
    cov_re: tuple
    cov_beta: np.ndarray
    llf: float
    reml_criterion: float | None
    deviance_ml: float
    b: tuple
    b_cov: tuple
    n_evals: int
    converged: bool
    message: str
    grad_norm: float
    singular: np.ndarray         # per theta on a diagonal: below SINGULAR_TOL
    reml: bool

    @property
    def n_params(self) -> int:
        return self.beta.size + self.theta.size + 1


def _criterion_ml(ev, n):
    return ev.ldH + n * (1.0 + LOG_2PI + np.log(ev.r2 / n))


def multi_lmm_fit(y, X, terms: ReTerms, reml: bool = True, theta0=None,
                  stats: MultiLMMStats | None = None, gtol: float = 1e-8) -> MultiLMMFit:
    """Fit a Gaussian LMM with several factors by profiled REML or ML.

    The criterion and its exact gradient (:func:`multi_lmm_evaluate`) go to the
    same minimiser as one factor's (:mod:`mlglm.core.lmm_minimise`:
    unconstrained BFGS, Newton polish, saddle escape); theta is then mapped to
    non-negative diagonals (same criterion) and everything is evaluated there.
    The start is lme4's (Lambda_k = I) unless ``theta0`` is given.
    """
    from .lmm import SINGULAR_TOL, START_OFF_BOUNDARY
    from .lmm_minimise import _minimise, _minimise_scalar
    stats = multi_lmm_stats(y, X, terms) if stats is None else stats
    on_diag = terms.theta_on_diagonal()
    if theta0 is None:
        theta0 = on_diag.astype(float)
    theta0 = terms.canonical(np.asarray(theta0, dtype=float))
    theta0 = np.where(on_diag & (theta0 == 0.0), START_OFF_BOUNDARY, theta0)
    recent, count = {}, [0]

    def fg(theta):
        theta = np.asarray(theta, dtype=float)
        key = theta.tobytes()
        hit = recent.get(key)
        if hit is None:
            count[0] += 1
            ev = multi_lmm_evaluate(theta, stats, reml)
            hit = (ev.criterion, ev.gradient)
            if len(recent) >= 4:
                del recent[next(iter(recent))]
            recent[key] = hit
        return hit[0], hit[1].copy()

    found = _minimise_scalar(theta0, fg) if theta0.size == 1 else None
    theta, message = found if found is not None else _minimise(theta0, fg, gtol)
    theta = terms.canonical(theta)
    ev = multi_lmm_evaluate(theta, stats, reml)
    return _package(ev, stats, reml, gtol, count[0] + 1, message)


def multi_lmm_at(theta, stats: MultiLMMStats, reml: bool = True) -> MultiLMMFit:
    """Everything :func:`multi_lmm_fit` reports, at a given theta (not optimised)."""
    theta = stats.terms.canonical(np.asarray(theta, dtype=float))
    ev = multi_lmm_evaluate(theta, stats, reml)
    return _package(ev, stats, reml, 1e-8, 1, "evaluated at the given theta (not optimised)")


def _package(ev, stats, reml, gtol, n_evals, message) -> MultiLMMFit:
    from .lmm import SINGULAR_TOL
    terms, st, n, p = stats.terms, stats.st, stats.n, stats.p
    sigma2 = ev.r2 / (n - p if reml else n)
    Lams = tuple(terms.Lambdas(ev.theta))
    S11, _, SDD = ev.factor.selected_inverse()
    Sig = [None] * len(terms)
    Sig[st.first] = S11
    for k, off in zip(st.dense, st.offsets):
        t = terms[k]
        idx = off + np.arange(t.n_levels)[:, None] * t.q + np.arange(t.q)[None, :]
        Sig[k] = SDD[idx[:, :, None], idx[:, None, :]]
    b = tuple(u @ L.T for u, L in zip(ev.u, Lams))
    b_cov = tuple(sigma2 * np.einsum("ra,jab,cb->jrc", L, S, L) for L, S in zip(Lams, Sig))
    on_diag = terms.theta_on_diagonal()
    # a gradient pushing a zero diagonal entry below 0 is not a failure (boundary optimum)
    at_zero = on_diag & (np.abs(ev.theta) < SINGULAR_TOL)
    grad_norm = float(np.max(np.abs(np.where(at_zero, 0.0, ev.gradient)), initial=0.0))
    return MultiLMMFit(
        theta=ev.theta.copy(), Lambdas=Lams, beta=ev.beta, sigma2=float(sigma2),
        cov_re=tuple(sigma2 * L @ L.T for L in Lams),
        cov_beta=sigma2 * ev.RXinv @ ev.RXinv.T, llf=-ev.criterion / 2.0,
        reml_criterion=ev.criterion if reml else None,
        deviance_ml=_criterion_ml(ev, n), b=b, b_cov=b_cov, n_evals=n_evals,
        converged=bool(grad_norm <= gtol * (1.0 + abs(ev.criterion))), message=message,
        grad_norm=grad_norm, singular=on_diag & (np.abs(ev.theta) < SINGULAR_TOL),
        reml=bool(reml))
