"""Exact Gaussian linear mixed model with one grouping factor: profiled (RE)ML.

The model is

    y = X beta + Z b + e,    e ~ N(0, sigma^2 I_n),
    b_j = sigma Lambda(theta) u_j,    u_j ~ N(0, I_q),    j = 0..G-1,

so Var(b_j) = sigma^2 Lambda Lambda' (``covariance.py`` maps theta <-> Lambda).
As in lme4 (Bates, Maechler, Bolker & Walker 2015, "Fitting Linear
Mixed-Effects Models Using lme4", J. Stat. Softw. 67(1), section 3) beta and
sigma^2 are profiled out and only theta is optimised.

Penalised least squares at fixed theta
--------------------------------------
With the random effects on the lme4 scale (u_j with variance sigma^2 I, b_j =
Lambda u_j), beta and u minimise the penalised residual sum of squares

    r2(theta) = min_{beta, u} |y - X beta - Z Lambda u|^2 + |u|^2 .

For ONE grouping factor Z is block diagonal across groups, so lme4's sparse
Cholesky factor L (L L' = Lambda' Z' Z Lambda + I) is block diagonal with
q x q blocks L_j:  L_j L_j' = H_j = Lambda' Z_j'Z_j Lambda + I.  Everything
then runs on per-group sufficient statistics (Z_j'Z_j, Z_j'X_j, Z_j'y_j) and
the global X'X, X'y, y'y, so an evaluation costs O(G q^3 + G q^2 p + p^3),
whatever n is:

    R_ZX,j = L_j^{-1} Lambda' Z_j'X_j,      c_u,j = L_j^{-1} Lambda' Z_j'y_j,
    R_X'R_X = X'X - sum_j R_ZX,j' R_ZX,j,
    c_beta  = R_X^{-T} (X'y - sum_j R_ZX,j' c_u,j),    beta = R_X^{-1} c_beta,
    u_j     = L_j^{-T} (c_u,j - R_ZX,j beta),
    r2      = y'y - sum_j |c_u,j|^2 - |c_beta|^2 .

Profiled criteria (lme4's ``deviance()`` and ``REMLcrit()``), with
log|L|^2 = sum_j 2 log det L_j and log|R_X|^2 = 2 log det R_X:

    ML:    d(theta) = log|L|^2 + n (1 + log(2 pi r2 / n)),            sigma^2 = r2 / n
    REML:  d(theta) = log|L|^2 + log|R_X|^2
                      + (n - p) (1 + log(2 pi r2 / (n - p))),         sigma^2 = r2 / (n - p)

Exact gradient
--------------
Write A_j = Z_j'Z_j, B_j = Z_j'X_j, P_j = H_j^{-1}, C = (R_X'R_X)^{-1},
F_j = P_j Lambda' B_j and Z_j'r_j = Z_j'y_j - B_j beta - A_j Lambda u_j
(Z_j' times the conditional residual).  Differentiating in the entries of
Lambda (then keeping the lower-triangle entries theta refers to):

    d log|L|^2    / d Lambda =  2 sum_j A_j Lambda P_j
    d r2          / d Lambda = -2 sum_j (Z_j'r_j) u_j'         (envelope theorem:
                                                                beta, u are optimal)
    d log|R_X|^2  / d Lambda = -2 sum_j (B_j - A_j Lambda F_j) C F_j'

and d(theta) = [log|L|^2] + [log|R_X|^2, REML only] + m log r2 + const with
m = n (ML) or n - p (REML), so dd = d log|L|^2 + d log|R_X|^2 + (m / r2) d r2.
Every term is a sum over groups of q x q products, so the gradient costs about
as much as the criterion.

Prior weights
-------------
With frequency weights f_i (row i counts f_i times) and variance weights v_i
(Var e_i = sigma^2 / v_i, lmer's ``weights=``), the likelihood is that of the
rows scaled by sqrt(w_i), w = f v, with n replaced by N = sum_i f_i and the
term sum_i f_i log v_i (the determinant of the weights) added to the
log-likelihood:

    ML:    d(theta) = log|L|^2 + N (1 + log(2 pi r2 / N)) - sum_i f_i log v_i
    REML:  the same with log|R_X|^2 added and N - p for N.

So the statistics are those of sqrt(w) y, sqrt(w) X, sqrt(w) Z, ``n`` is N and
``ldW`` the weights' term (rows of weight 0 count as absent); an expanded data
set (row i repeated f_i times) gives the same criterion.

Numerical note
--------------
``y'y - sum |c_u|^2 - |c_beta|^2`` cancels when y is far from 0.  ``lmm_stats``
therefore stores the statistics of e = y - X beta_ols instead of y and keeps
beta_ols; the model for e is the same model with beta shifted by beta_ols, so
theta, r2 and both criteria are unchanged and beta = beta_ols + beta_e.  The
cancellation is then bounded by RSS_ols / r2, a property of the data rather
than of where y happens to be centred.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...spec.covpattern import CovPattern
from ...spec.covpattern import diagonal as diagonal_pattern
from ...spec.covpattern import unstructured
from .minimise import _minimise, _minimise_scalar
from ...spec.layouts import ParamLayout
from ...spec.record import SINGULAR_TOL, CoreFit, OptimizationRecord
from ...numerics.smallmat import chol_and_inverse

__all__ = ["LMMStats", "lmm_stats", "profiled_deviance", "profiled_deviance_grad",
           "lmm_fit", "lmm_evaluate", "lmm_record", "SINGULAR_TOL", "rank_deficient_columns",
           "RANK_TOL_FACTOR"]

LOG_2PI = np.log(2.0 * np.pi)

START_OFF_BOUNDARY = 0.1
"""A zero diagonal entry in a user's theta0 is moved here (zero is a stationary point)."""


#: A column of X is a linear combination of the columns before it when the diagonal
#: entry of R (QR of X with unit-norm columns) is at most RANK_TOL_FACTOR max(n, p) eps
#: times the largest: for an exact duplicate or multiple it is ~eps (rounding), four or
#: more orders of magnitude below, whatever the CPU or BLAS kernel.
RANK_TOL_FACTOR = 10.0


def rank_deficient_columns(X) -> np.ndarray:
    """Indices of the columns of X that are (numerically) linear combinations of the
    columns before them, all-zero columns included.

    Householder QR of X with every column scaled to unit norm; column k is dependent
    when |R_kk| <= RANK_TOL_FACTOR max(n, p) eps max_j |R_jj|. A relative threshold on
    an orthogonal factorisation, not the failure of a Cholesky factorisation or a
    solve, which for a duplicated column succeeds or fails with the last bit of
    rounding (a test passed on one CPU and failed on another).
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] == 0:
        return np.zeros(0, dtype=np.intp)
    norm = np.sqrt(np.einsum("ij,ij->j", X, X))
    zero = ~(norm > 0)
    R = np.linalg.qr(X / np.where(zero, 1.0, norm), mode="r")
    d = np.abs(np.diagonal(R))
    if d.size < X.shape[1]:                      # fewer rows than columns
        d = np.concatenate([d, np.zeros(X.shape[1] - d.size)])
    tol = RANK_TOL_FACTOR * max(X.shape) * np.finfo(float).eps * max(float(d.max()), 1e-300)
    return np.flatnonzero(zero | (d <= tol))


def _readonly(a):
    a = np.asarray(a)
    a.setflags(write=False)  # results are frozen records; so are their arrays
    return a


# ----------------------------------------------------------------------------
# sufficient statistics
# ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LMMStats:
    """Sufficient statistics of a one-factor Gaussian LMM.

    Here "y" means the OLS residual e = y - X beta_ols (see the module notes);
    beta for the original y is ``beta_ols`` plus the beta fitted to e.

    Attributes
    ----------
    ZtZ, ZtX, Zty : (G, q, q), (G, q, p), (G, q) arrays
        Z_j'Z_j, Z_j'X_j and Z_j'e_j per group.
    XtX, Xty, yty : (p, p) array, (p,) array, float
        X'X; X'e (zero up to rounding, kept so the formulas hold exactly);
        e'e, the OLS residual sum of squares.
    beta_ols : (p,) array
        The shift: OLS coefficients of y on X.
    n, p, q, n_groups : int
        Rows (N = sum of the frequency weights with weights), fixed effects, random
        effects per group, groups.
    ldW : float
        sum_i f_i log v_i (0 without variance weights; module notes).
    """

    ZtZ: np.ndarray
    ZtX: np.ndarray
    Zty: np.ndarray
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    beta_ols: np.ndarray
    n: int
    p: int
    q: int
    n_groups: int
    ldW: float = 0.0


def _as_2d(a, n, name):
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite values")
    return a


def lmm_stats(y, X, Z, group, n_groups: int | None = None, freq=None, var=None) -> LMMStats:
    """Per-group and global sufficient statistics for :func:`profiled_deviance`.

    Parameters
    ----------
    y : (n,) array_like
        Response.
    X : (n, p) array_like
        Fixed-effects design, full column rank.
    Z : (n, q) array_like
        Random-effects design (the columns of one ``(... | g)`` term).
    group : (n,) array_like of int
        Group codes 0..G-1; rows need not be sorted by group.
    n_groups : int, optional
        G; defaults to ``max(group) + 1``.  Empty groups are allowed (they
        contribute H_j = I, i.e. nothing).
    freq, var : (n,) array_like, optional
        Prior weights (module notes, "Prior weights").

    Notes
    -----
    The per-group cross products are segment sums over the rows sorted by
    group: one stable argsort, the row products z_i [z_i', x_i', e_i], and one
    ``np.add.reduceat`` (a pass over the data, no sparse matrix to build).
    """
    y = np.asarray(y, dtype=float).ravel()
    n = y.size
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains non-finite values")
    X = _as_2d(X, n, "X")
    Z = _as_2d(Z, n, "Z")
    group = np.asarray(group).ravel()
    if group.size != n:
        raise ValueError(f"group must have {n} elements, got {group.size}")
    if group.dtype.kind not in "iu":
        try:
            codes = group.astype(float)
        except (TypeError, ValueError):
            codes = np.array([np.nan])
        if not np.all(codes == np.round(codes)):
            raise ValueError("group must hold integer codes 0..G-1")
        group = codes.astype(np.intp)
    if n and group.min() < 0:
        raise ValueError("group codes must be >= 0")
    G = int(group.max()) + 1 if n_groups is None else int(n_groups)
    if n and group.max() >= G:
        raise ValueError(f"group codes must be < n_groups={G}")
    p, q = X.shape[1], Z.shape[1]
    if n <= p:
        raise ValueError(f"need more rows than fixed effects (n={n}, p={p})")
    n_eff, ldW = n, 0.0
    if freq is not None or var is not None:
        y, X, Z, n_eff, ldW = weighted_rows(y, X, Z, freq, var)

    _check_full_rank(X)
    XtX = X.T @ X
    try:
        # Any beta_ols gives an exact reparametrisation; the normal equations are
        # accurate enough to remove the location of y and cost O(n p^2) once.
        beta_ols = np.linalg.solve(XtX, X.T @ y)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("X'X is singular: X is rank deficient") from None
    e = y - X @ beta_ols
    # Per-group sums of z_i [z_i', x_i', e_i] over the rows sorted by group
    # (stable, so each group's rows keep their order); groups without rows
    # (codes below n_groups that never occur) get zeros.
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group, minlength=G)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    Zs = Z[order]
    rows = Zs[:, :, None] * np.concatenate([Zs, X[order], e[order, None]], axis=1)[:, None, :]
    present = sizes > 0
    if present.all():
        W = np.add.reduceat(rows, starts, axis=0)
    else:
        W = np.zeros((G, q, q + p + 1))
        if n:
            W[present] = np.add.reduceat(rows, starts[present], axis=0)
    return LMMStats(ZtZ=_readonly(W[:, :, :q].copy()), ZtX=_readonly(W[:, :, q:q + p].copy()),
                    Zty=_readonly(W[:, :, q + p].copy()),
                    XtX=_readonly(XtX), Xty=_readonly(X.T @ e), yty=float(e @ e),
                    beta_ols=_readonly(beta_ols), n=n_eff, p=p, q=q, n_groups=G, ldW=ldW)


def _check_full_rank(X) -> None:
    """LinAlgError naming the dependent columns of X (:func:`rank_deficient_columns`)."""
    bad = rank_deficient_columns(X)
    if bad.size:
        raise np.linalg.LinAlgError(
            f"X is rank deficient: column(s) {', '.join(map(str, bad))} are linear "
            "combinations of the columns before them")


def weighted_rows(y, X, Z, freq, var):
    """(sqrt(w) y, sqrt(w) X, sqrt(w) Z, N, ldW) for prior weights w = f v (module notes);
    ``Z`` may be a list of arrays (several terms)."""
    n = y.shape[0]
    f = np.ones(n) if freq is None else np.asarray(freq, dtype=float)
    v = np.ones(n) if var is None else np.asarray(var, dtype=float)
    w = f * v
    present = w > 0
    r = np.sqrt(w)
    scale = (lambda a: a * (r[:, None] if a.ndim == 2 else r))   # noqa: E731
    Zs = [scale(z) for z in Z] if isinstance(Z, (list, tuple)) else scale(Z)
    return (r * y, scale(X), Zs, float(f[present].sum()),
            float(f[present] @ np.log(v[present])))


# ----------------------------------------------------------------------------
# the profiled criterion and its gradient
# ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class _PLS:
    """Solution of the penalised least-squares problem at one theta."""

    Lambda: np.ndarray    # (q, q)
    Linv: np.ndarray      # (G, q, q) L_j^{-1}, L_j L_j' = H_j
    LtB: np.ndarray       # (G, q, p) Lambda' Z_j'X_j
    RXinv: np.ndarray     # (p, p) R_X^{-1} (upper triangular)
    beta_e: np.ndarray    # (p,) beta for the shifted response
    u: np.ndarray         # (G, q) conditional modes, lme4 scale (variance sigma^2)
    r2: float             # penalised residual sum of squares
    ldL2: float           # log|L|^2
    ldRX2: float          # log|R_X|^2


def _pls(theta, stats: LMMStats, pattern: CovPattern) -> _PLS:
    """Penalised least squares at theta (formulas in the module docstring).

    The triangular factors are inverted explicitly (the q x q L_j, one p x p
    R_X) rather than used in solves: for blocks this small that is twice as fast
    as batched ``solve``, and as accurate, because H_j >= I makes every L_j well
    conditioned (singular values >= 1). For q <= 2 the factor and its inverse
    are closed forms (:func:`~mlglm.core.numerics.smallmat.chol_and_inverse`): batched
    LAPACK calls cost more in per-call overhead than the arithmetic here.
    """
    q, p, G = stats.q, stats.p, stats.n_groups
    Lambda = pattern.Lambda(theta)
    H = np.matmul(Lambda.T, stats.ZtZ) @ Lambda
    H[:, np.arange(q), np.arange(q)] += 1.0                  # H_j = Lambda' A_j Lambda + I
    L, Linv = chol_and_inverse(H)
    if not np.all(np.isfinite(Linv)):
        raise np.linalg.LinAlgError("H_j = Lambda'Z_j'Z_j Lambda + I is not positive definite")
    LtB = np.matmul(Lambda.T, stats.ZtX)                     # Lambda' B_j
    RZX = (Linv @ LtB).reshape(G * q, p)                      # R_ZX,j stacked over groups
    cu = (Linv @ (stats.Zty @ Lambda)[:, :, None]).reshape(-1)   # c_u,j stacked
    try:
        RXt = np.linalg.cholesky(stats.XtX - RZX.T @ RZX)    # R_X' (lower)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("R_X'R_X is not positive definite: X is (numerically) "
                                    "rank deficient") from None
    RXinv = np.linalg.inv(RXt).T
    cbeta = RXinv.T @ (stats.Xty - RZX.T @ cu)
    beta_e = RXinv @ cbeta
    v = (cu - RZX @ beta_e).reshape(G, q, 1)
    u = (np.swapaxes(Linv, 1, 2) @ v)[:, :, 0]               # u_j = L_j^{-T}(c_u,j - R_ZX,j beta)
    r2 = stats.yty - cu @ cu - cbeta @ cbeta
    ldL2 = 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
    ldRX2 = 2.0 * np.log(np.diag(RXt)).sum()
    return _PLS(Lambda, Linv, LtB, RXinv, beta_e, u, float(r2), float(ldL2), float(ldRX2))


def _criterion(s: _PLS, n: int, p: int, reml: bool, ldW: float = 0.0) -> float:
    """lme4's REMLcrit or ML deviance from the PLS solution (module docstring)."""
    if reml:
        m = n - p
        return s.ldL2 + s.ldRX2 + m * (1.0 + LOG_2PI + np.log(s.r2 / m)) - ldW
    return s.ldL2 + n * (1.0 + LOG_2PI + np.log(s.r2 / n)) - ldW


def _gradient(s: _PLS, stats: LMMStats, reml: bool, pattern: CovPattern) -> np.ndarray:
    """d criterion / d theta from the three matrix derivatives in the module docstring."""
    P = np.swapaxes(s.Linv, 1, 2) @ s.Linv                   # P_j = H_j^{-1}
    ALam = stats.ZtZ @ s.Lambda                              # A_j Lambda
    dLam = 2.0 * (ALam @ P).sum(axis=0)                      # d log|L|^2
    Zr = stats.Zty - stats.ZtX @ s.beta_e - (ALam @ s.u[:, :, None])[:, :, 0]
    m = stats.n - stats.p if reml else stats.n
    dLam -= (2.0 * m / s.r2) * (Zr.T @ s.u)                  # (m / r2) d r2
    if reml:
        F = P @ s.LtB                                        # F_j = P_j Lambda' B_j
        C = s.RXinv @ s.RXinv.T                              # (R_X'R_X)^{-1}
        DC = (stats.ZtX - ALam @ F) @ C                      # (B_j - A_j Lambda F_j) C
        dLam -= 2.0 * np.tensordot(DC, F, axes=([0, 2], [0, 2]))   # d log|R_X|^2
    return pattern.gradient(dLam)


def _pattern(q: int, diagonal: bool = False, pattern: CovPattern | None = None) -> CovPattern:
    """The covariance pattern of Lambda: ``pattern`` if given, else one unstructured block
    (or q independent effects with ``diagonal``)."""
    if pattern is not None:
        if pattern.q != q:
            raise ValueError(f"the covariance pattern {pattern!r} has {pattern.q} effects, "
                             f"Z has {q} columns")
        return pattern
    return diagonal_pattern(q) if diagonal else unstructured(q)


def _check_theta(theta, pattern: CovPattern):
    theta = np.asarray(theta, dtype=float).ravel()
    if theta.size != pattern.n_theta:
        raise ValueError(f"theta must have {pattern.n_theta} elements for {pattern!r}")
    return theta


def profiled_deviance(theta, stats: LMMStats, reml: bool = True, diagonal: bool = False,
                      pattern: CovPattern | None = None) -> float:
    """Profiled REML criterion (lme4 ``REMLcrit``) or ML deviance (lme4 ``deviance``).

    Returns log|L|^2 + log|R_X|^2 + (n-p)(1 + log(2 pi r2/(n-p))) when ``reml``,
    else log|L|^2 + n(1 + log(2 pi r2/n)); see the module docstring.  This is
    -2 times the (restricted) log-likelihood maximised over beta and sigma^2
    at fixed theta.
    """
    pattern = _pattern(stats.q, diagonal, pattern)
    theta = _check_theta(theta, pattern)
    return _criterion(_pls(theta, stats, pattern), stats.n, stats.p, reml, stats.ldW)


def profiled_deviance_grad(theta, stats: LMMStats, reml: bool = True, diagonal: bool = False,
                           pattern: CovPattern | None = None) -> tuple[float, np.ndarray]:
    """The profiled criterion and its exact gradient in theta (module docstring)."""
    pattern = _pattern(stats.q, diagonal, pattern)
    theta = _check_theta(theta, pattern)
    s = _pls(theta, stats, pattern)
    return _criterion(s, stats.n, stats.p, reml, stats.ldW), _gradient(s, stats, reml, pattern)


# ----------------------------------------------------------------------------
# the fit
# ----------------------------------------------------------------------------

def _projected_grad_norm(theta, g, lower) -> float:
    """Infinity norm of theta - max(theta - g, lower): the gradient, with the
    components that push against an active bound set to zero."""
    return float(np.max(np.abs(theta - np.maximum(theta - g, lower)), initial=0.0))


def lmm_fit(y, X, Z, group, reml: bool = True, diagonal: bool = False, theta0=None,
            stats: LMMStats | None = None, gtol: float = 1e-8, freq=None,
            var=None, pattern: CovPattern | None = None) -> CoreFit:
    """Fit y = X beta + Z b + e with one grouping factor by profiled REML or ML.

    Minimises :func:`profiled_deviance` with its exact gradient (:func:`_minimise`),
    maps theta onto Lambda's non-negative diagonal (``pattern.canonical``: a column's
    sign does not change Lambda Lambda') and evaluates there everything lme4's
    ``lmer`` reports (:func:`lmm_record`).

    Parameters
    ----------
    y, X, Z, group
        As for :func:`lmm_stats`; not used when ``stats`` is given.
    reml : bool
        REML (default, as lmer) or ML.
    diagonal : bool
        Uncorrelated random effects (Lambda diagonal, lme4's ``||``).
    theta0 : array_like, optional
        Start; default lme4's (Lambda = I).  A zero on the diagonal is moved to
        ``START_OFF_BOUNDARY`` (zero is a stationary point, :func:`_escape_saddle`).
    stats : LMMStats, optional
        Precomputed statistics (e.g. to fit REML and ML from one pass).
    gtol : float
        ``converged`` means projected gradient norm <= gtol (1 + |criterion|):
        the criterion is O(n), and so is the rounding level of its gradient.
    freq, var : array_like, optional
        Prior weights (frequency; variance: Var e_i = sigma^2 / v_i), module notes.
    pattern : CovPattern, optional
        The covariance pattern of Lambda (blocks, tied blocks); overrides ``diagonal``.
    """
    if stats is None:
        stats = lmm_stats(y, X, Z, group, freq=freq, var=var)
    pattern = _pattern(stats.q, diagonal, pattern)
    on_diag = pattern.theta_on_diagonal
    if theta0 is None:
        theta0 = on_diag.astype(float)
    theta0 = pattern.canonical(_check_theta(theta0, pattern))
    theta0 = np.where(on_diag & (theta0 == 0.0), START_OFF_BOUNDARY, theta0)

    count = [0]
    recent = {}    # theta bytes -> (criterion, gradient, PLS solution), the last few points

    def solve(theta):
        theta = _check_theta(theta, pattern)
        key = theta.tobytes()
        hit = recent.get(key)
        if hit is None:
            # The minimiser asks again for points it has seen (the end of BFGS is
            # where the polish starts; the polished point is checked and then
            # packaged): those are answered from here, not re-evaluated.
            count[0] += 1
            s = _pls(theta, stats, pattern)
            hit = (_criterion(s, stats.n, stats.p, reml, stats.ldW),
                   _gradient(s, stats, reml, pattern), s)
            if len(recent) >= 4:
                del recent[next(iter(recent))]
            recent[key] = hit
        return hit

    def fg(theta):
        f, g, _ = solve(theta)
        return f, g.copy()

    found = _minimise_scalar(theta0, fg) if theta0.size == 1 else None
    theta, message = found if found is not None else _minimise(theta0, fg, gtol)
    theta = pattern.canonical(theta)
    return lmm_record(theta, stats, reml, pattern, gtol, n_evals=count[0], message=message,
                      pls=solve(theta)[2])


def lmm_evaluate(theta, stats: LMMStats, reml: bool = True, diagonal: bool = False,
                 gtol: float = 1e-8, pattern: CovPattern | None = None) -> CoreFit:
    """Everything :func:`lmm_fit` reports, at a given theta instead of the optimum.

    E.g. another program's fit from its variance components (theta from
    ``pattern.theta_from_Sigma(cov_re / sigma2)``), and how far from stationary it is
    (``record.grad_norm``).  Columns of Lambda with a negative diagonal are flipped.
    """
    pattern = _pattern(stats.q, diagonal, pattern)
    theta = pattern.canonical(_check_theta(theta, pattern))
    return lmm_record(theta, stats, reml, pattern, gtol, n_evals=1,
                      message="evaluated at the given theta (not optimised)")


def lmm_record(theta, stats, reml, pattern, gtol, n_evals, message, pls=None) -> CoreFit:
    """The :class:`~mlglm.core.spec.record.CoreFit` at theta: PLS solution (``pls`` if already
    computed there), criteria, sigma^2, covariances (lme4's ``lmer`` quantities:
    cov(beta) = sigma^2 (R_X'R_X)^{-1} conditional on theta; b_j = Lambda u_j; conditional
    covariances sigma^2 Lambda H_j^{-1} Lambda' with beta known)."""
    p, n = stats.p, stats.n
    s = _pls(theta, stats, pattern) if pls is None else pls
    crit = _criterion(s, n, p, reml, stats.ldW)
    on_diag = pattern.theta_on_diagonal
    grad_norm = _projected_grad_norm(theta, _gradient(s, stats, reml, pattern),
                                     np.where(on_diag, 0.0, -np.inf))
    sigma2 = float(s.r2 / (n - p if reml else n))
    Lam = s.Lambda
    LamLinvT = Lam @ np.swapaxes(s.Linv, 1, 2)                 # Lambda L_j^{-T}
    beta = stats.beta_ols + s.beta_e
    singular = on_diag & (theta < SINGULAR_TOL)
    converged = bool(grad_norm <= gtol * (1.0 + abs(crit)))
    record = OptimizationRecord(
        optimizer="profiled (RE)ML, exact gradient", n_evals=n_evals, n_iter=0,
        message=message, grad_norm=grad_norm, newton_decrement=np.nan, hessian_pd=False,
        converged=converged)
    return gaussian_record(
        reml=reml, layout=ParamLayout(p, pattern.n_theta), beta=beta, theta=theta,
        patterns=(pattern,), Lambdas=(Lam,), sigma2=sigma2,
        cov_beta=sigma2 * s.RXinv @ s.RXinv.T, criterion=crit,
        deviance_ml=_criterion(s, n, p, False, stats.ldW), b=(s.u @ Lam.T,),
        b_cov=(sigma2 * LamLinvT @ np.swapaxes(LamLinvT, 1, 2),), singular=singular,
        record=record)


def gaussian_record(reml, layout, beta, theta, patterns, Lambdas, sigma2, cov_beta, criterion,
                    deviance_ml, b, b_cov, singular, record) -> CoreFit:
    """A Gaussian fit's :class:`~mlglm.core.spec.record.CoreFit` (one factor or several, in
    memory or sharded): Sigma_k = sigma^2 Lambda_k Lambda_k'; cov_params has the fixed
    effects' block sigma^2 (R_X'R_X)^{-1}, zero covariance with the variance parameters
    (the information is block diagonal between beta and the variance components), and
    NaN for the variance block (no Wald SEs: profile intervals)."""
    p = layout.p
    k = sum(pat.q * (pat.q + 1) // 2 for pat in patterns)
    cov = np.full((p + k, p + k), np.nan)
    cov[:p, :p] = cov_beta
    cov[:p, p:] = cov[p:, :p] = 0.0
    theta = np.array(theta, dtype=float)
    return CoreFit(
        method="reml" if reml else "ml", nagq=None, layout=layout,
        x=np.concatenate([beta, theta]), beta=_readonly(np.array(beta, dtype=float)),
        theta=_readonly(theta), patterns=tuple(patterns),
        Lambdas=tuple(_readonly(L) for L in Lambdas),
        Sigmas=tuple(_readonly(sigma2 * L @ L.T) for L in Lambdas),
        b=tuple(_readonly(x) for x in b), b_cov=tuple(_readonly(x) for x in b_cov),
        dispersion=float(sigma2), llf=-criterion / 2.0, cov_params=cov,
        free=np.concatenate([np.ones(p, dtype=bool), ~np.asarray(singular, dtype=bool)]),
        singular=np.asarray(singular, dtype=bool), record=record,
        n_params=p + theta.size + 1, reml_criterion=criterion if reml else None,
        deviance_ml=float(deviance_ml))
