"""Small-sample inference for linear mixed models: Satterthwaite and Kenward-Roger.

The model is y = X beta + Z b + e with

    V = Var(y) = sigma^2 (I + Z Lambda Lambda' Z') = sigma^2 V_theta,

Lambda = blockdiag_t (I_{J_t} (x) Lambda_t) over the random-effects terms t (one
grouping factor or several, nested or crossed). The t and F tests of lmerTest
(Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13)) and pbkrtest
(Halekoh & Hojsgaard 2014, J. Stat. Softw. 59(9)) need, at the (RE)ML estimates,

* the covariance of the fixed effects Phi = (X'V^{-1}X)^{-1} and its derivatives
  dPhi / dphi_i = Phi X'V^{-1} V_i V^{-1} X Phi  (V_i = dV / dphi_i);
* Satterthwaite (lmerTest): the Hessian of the deviance in phi = (theta, sigma),
  the criterion lmerTest differentiates numerically (beta at its GLS value),

      dev(phi) = log|V| + r'V^{-1}r [+ log|X'V^{-1}X|, REML] + const,   r = y - X beta,

  whose exact Hessian (P = V^{-1} - V^{-1}X Phi X'V^{-1}, V_ij = d2V / dphi_i dphi_j) is

      REML: -tr(P V_i P V_j) + tr(P V_ij) + 2 y'P V_i P V_j P y - y'P V_ij P y
      ML:   -tr(V^{-1}V_i V^{-1}V_j) + tr(V^{-1}V_ij) + 2 y'P V_i P V_j P y - y'P V_ij P y,

  and A = 2 H^{-1}, the asymptotic covariance of phi-hat. For a contrast l,
  nu = 2 (l'Phi l)^2 / (g'A g) with g_i = l' dPhi/dphi_i l; a q-row contrast gets
  the F statistic and Fai & Cornelius's (1996) denominator df from the q
  independent t statistics of the eigen-decomposition of L Phi L', as lmerTest;
* Kenward & Roger (1997, Biometrics 53:983-997): V linear in the covariance
  parameters gamma (every free entry of every Sigma_t = sigma^2 Lambda_t Lambda_t',
  and sigma^2), V = sum_r gamma_r G_r, G_r = Z (I (x) E_r) Z' or I. With
  P_r = -X'V^{-1}G_r V^{-1}X, Q_rs = X'V^{-1}G_r V^{-1}G_s V^{-1}X and
  W = 2 [tr(Pi G_r Pi G_s)]^{-1} (Pi = P above; the inverse expected REML
  information), Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s)] Phi, and
  the df of a q-row L follow from A1 = sum W_rs tr(Theta Phi P_r Phi) tr(Theta Phi
  P_s Phi), A2 = sum W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi),
  Theta = L'(L Phi L')^{-1} L, as pbkrtest's ``Lb_ddf`` / ``KRmodcomp``.

The quantities are computed in the random effects' coordinates by
:mod:`mlglm.core.engines.lmm.levelspace` (Woodbury, per connected block of levels), whose
docstring has the formulas and the cost: linear in the number of groups for one factor
and nested factors, cubic in the number of levels of crossed factors, one pass over the
rows. The exact derivatives replace lmerTest's numerical ones (numDeriv's Richardson
differences, one deviance evaluation -- a sparse factorisation -- per stencil point)
and pbkrtest's dense n x n matrices, which cannot hold 10^5 rows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .levelspace import LevelSpace, VDeriv, dense_component_size
from ...spec.terms import ReTerms

__all__ = ["VDeriv", "LevelSpace", "Satterthwaite", "KenwardRoger", "satterthwaite",
           "kenward_roger", "satterthwaite_t", "satterthwaite_f", "kenward_roger_t",
           "kenward_roger_f", "f_ddf_from_t", "devfun_vp", "dense_component_size", "t_pvalue"]

HESSIAN_EIGEN_TOL = 1e-8
"""Eigenvalues of the deviance Hessian at or below this count as zero (lmerTest's tol):
A = 2 H^+ over the positive ones, and the fit is reported as not clearly converged."""

CONTRAST_EIGEN_EPS = np.sqrt(np.finfo(float).eps)
"""Relative rank tolerance for the eigenvalues of L Phi L' in an F test (lmerTest's)."""


# ------------------------------------------------------------------ parametrisations
def _theta_units(terms: ReTerms):
    """For every theta_k: (term, S_k = dLambda_t / dtheta_k)."""
    out = []
    for t, term in enumerate(terms):
        pat = term.pattern
        for k in range(pat.n_theta):
            S = np.zeros((pat.q, pat.q))
            sel = pat.idx == k
            S[pat.rows[sel], pat.cols[sel]] = 1.0
            out.append((t, S))
    return out


def _theta_sigma_derivs(terms: ReTerms, Lambdas, sigma: float):
    """First and second derivatives of V in phi = (theta, sigma) (lmerTest's varpar)."""
    units = _theta_units(terms)
    s2 = sigma * sigma
    LL = {t: L @ L.T for t, L in enumerate(Lambdas)}
    first = [VDeriv(0.0, {t: s2 * (S @ Lambdas[t].T + Lambdas[t] @ S.T)}) for t, S in units]
    first.append(VDeriv(2.0 * sigma, {t: 2.0 * sigma * M for t, M in LL.items()}))
    k = len(units)
    second = {}
    for i in range(k + 1):
        for j in range(i, k + 1):
            if j < k:                                    # theta_i theta_j
                (ti, Si), (tj, Sj) = units[i], units[j]
                second[i, j] = VDeriv(0.0, {ti: s2 * (Si @ Sj.T + Sj @ Si.T)}
                                      if ti == tj else {})
            elif i < k:                                  # theta_i sigma
                ti, Si = units[i]
                second[i, j] = VDeriv(0.0, {ti: 2.0 * sigma * (Si @ Lambdas[ti].T
                                                               + Lambdas[ti] @ Si.T)})
            else:                                        # sigma sigma
                second[i, j] = VDeriv(2.0, {t: 2.0 * M for t, M in LL.items()})
    return first, second


def _linear_derivs(terms: ReTerms):
    """G_r of Kenward-Roger's linear parametrisation: every free entry of every Sigma_t
    (lower triangle of each unstructured block, one variance per tied block), then
    sigma^2. Returns (derivatives, labels)."""
    out, labels = [], []
    for t, term in enumerate(terms):
        q = term.q
        for block, cs, _ in term.pattern.block_slices():
            if block.kind == "tied":
                E = np.zeros((q, q))
                E[np.arange(cs.start, cs.stop), np.arange(cs.start, cs.stop)] = 1.0
                out.append(VDeriv(0.0, {t: E}))
                labels.append((term.name, cs.start, cs.start))
                continue
            for b in range(cs.start, cs.stop):
                for a in range(b, cs.stop):
                    E = np.zeros((q, q))
                    E[a, b] = E[b, a] = 1.0
                    out.append(VDeriv(0.0, {t: E}))
                    labels.append((term.name, a, b))
    out.append(VDeriv(1.0, {}))
    labels.append(("residual", 0, 0))
    return out, labels


# ------------------------------------------------------------------ Satterthwaite
@dataclass(frozen=True, eq=False)
class Satterthwaite:
    """What lmerTest stores for Satterthwaite's method, computed exactly.

    Attributes
    ----------
    Phi : (p, p) covariance of beta-hat.
    jacobian : (n_par, p, p) dPhi / dphi_i, phi = (theta, sigma).
    hessian : (n_par, n_par) of the deviance in phi.
    A : (n_par, n_par) 2 H^+ (over the eigenvalues above HESSIAN_EIGEN_TOL).
    gradient : (n_par,) of the deviance in phi (zero at an interior optimum).
    eigenvalues : of the Hessian; ``problem``: None or a sentence when some are <= tol.
    """

    Phi: np.ndarray
    jacobian: np.ndarray
    hessian: np.ndarray
    A: np.ndarray
    gradient: np.ndarray
    eigenvalues: np.ndarray
    problem: str | None


def _deviance_derivatives(ls: LevelSpace, first, second, reml: bool):
    """Gradient and Hessian of dev(phi) (module docstring) from the level space."""
    p, s2 = ls.p, ls.sigma2
    Phi = ls.Phi
    X, R = slice(0, p), p                        # E = [X r]
    Bs = [ls.B(d) for d in first]
    k = len(first)
    grad = np.empty(k)
    for i, (d, B) in enumerate(zip(first, Bs)):
        trP = ls.T(d) / s2
        if reml:
            trP -= np.sum(Phi * B[X, X]) / s2 ** 2
        grad[i] = trP - B[R, R] / s2 ** 2
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            Cij = ls.C(first[i], first[j])
            tr_vv = ls.T2(first[i], first[j]) / s2 ** 2
            if reml:
                tr_vv += (-2.0 * np.sum(Phi * Cij[X, X]) / s2 ** 3
                          + np.sum((Phi @ Bs[i][X, X]) * (Phi @ Bs[j][X, X]).T) / s2 ** 4)
            dij = second[i, j]
            Bij = ls.B(dij)
            tr_vij = ls.T(dij) / s2
            if reml:
                tr_vij -= np.sum(Phi * Bij[X, X]) / s2 ** 2
            yPVPVPy = Cij[R, R] / s2 ** 3 - Bs[i][R, X] @ Phi @ Bs[j][X, R] / s2 ** 4
            H[i, j] = H[j, i] = -tr_vv + tr_vij + 2.0 * yPVPVPy - Bij[R, R] / s2 ** 2
    return grad, H, Bs


def satterthwaite(ls: LevelSpace, reml: bool) -> Satterthwaite:
    """Exact Jacobian of Phi and Hessian of the deviance in (theta, sigma) at the
    estimates held by ``ls`` (REML or ML deviance, as the fit)."""
    sigma = np.sqrt(ls.sigma2)
    first, second = _theta_sigma_derivs(ls.terms, ls.Lambdas, sigma)
    grad, H, Bs = _deviance_derivatives(ls, first, second, reml)
    p = ls.p
    Phi = ls.Phi
    jac = np.stack([Phi @ B[:p, :p] @ Phi / ls.sigma2 ** 2 for B in Bs])
    jac = 0.5 * (jac + np.swapaxes(jac, 1, 2))
    evals, evecs = np.linalg.eigh(H)
    pos = evals > HESSIAN_EIGEN_TOL
    A = 2.0 * (evecs[:, pos] / evals[pos]) @ evecs[:, pos].T
    problem = None
    if not pos.all():
        problem = (f"the Hessian of the {'REML' if reml else 'ML'} deviance in (theta, sigma) "
                   f"has {int((~pos).sum())} eigenvalue(s) <= {HESSIAN_EIGEN_TOL:g} "
                   f"({', '.join(f'{v:.1e}' for v in evals[~pos])}); Satterthwaite df use "
                   "its pseudo-inverse, as lmerTest")
    return Satterthwaite(Phi, jac, H, A, grad, evals, problem)


def satterthwaite_t(L, sat: Satterthwaite):
    """(variance, df) of l'beta-hat for every row l of L: var = l'Phi l,
    df = 2 var^2 / (g'A g), g_i = l' dPhi/dphi_i l."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    var = np.einsum("ra,ab,rb->r", L, sat.Phi, L)
    g = np.einsum("ra,iab,rb->ri", L, sat.jacobian, L)
    denom = np.einsum("ri,ij,rj->r", g, sat.A, g)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denom > 0, 2.0 * var ** 2 / denom, np.inf)
    return var, df


def f_ddf_from_t(nu) -> float:
    """Denominator df of an F built from q independent t statistics with df nu_m
    (Fai & Cornelius 1996, as lmerTest's ``get_Fstat_ddf``): E = sum nu/(nu - 2),
    ddf = 2E / (E - q); 2 when some nu <= 2; the common value when all are equal."""
    nu = np.asarray(nu, dtype=float).reshape(-1)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def satterthwaite_f(L, beta, sat: Satterthwaite, rhs=None):
    """F test of L beta = rhs by Satterthwaite's method (lmerTest's ``contestMD``).

    L Phi L' = P diag(d) P'; the rows of P'L with d above CONTRAST_EIGEN_EPS d_max give
    q independent t statistics t_m = (P'L beta)_m / sqrt(d_m) with df nu_m; F = sum t_m^2 / q
    and its denominator df :func:`f_ddf_from_t`. Returns (F, q, ddf).
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    beta = np.asarray(beta, dtype=float)
    if rhs is not None and np.any(np.asarray(rhs) != 0):
        beta = beta - np.linalg.pinv(L) @ np.asarray(rhs, dtype=float).reshape(-1)
    d, P = np.linalg.eigh(L @ sat.Phi @ L.T)
    d, P = d[::-1], P[:, ::-1]
    keep = d > max(CONTRAST_EIGEN_EPS * d[0], 0.0)
    q = int(keep.sum())
    if q == 0:
        return np.nan, 0, np.nan
    PtL = (P[:, keep].T @ L)
    t2 = (PtL @ beta) ** 2 / d[keep]
    _, nu = satterthwaite_t(PtL, sat)
    return float(t2.sum() / q), q, f_ddf_from_t(nu)


# ------------------------------------------------------------------ Kenward-Roger
@dataclass(frozen=True, eq=False)
class KenwardRoger:
    """pbkrtest's ``vcovAdj``: Phi, the adjusted Phi_A, the P_r and W of its df.

    ``labels``: (term, row, column) of every covariance parameter, ("residual", 0, 0)
    for sigma^2. ``condition``: smallest |eigenvalue| of the expected information
    (W uses the pseudo-inverse below 1e-10, as pbkrtest).
    """

    Phi: np.ndarray
    PhiA: np.ndarray
    P: np.ndarray
    W: np.ndarray
    labels: list
    condition: float


def kenward_roger(ls: LevelSpace) -> KenwardRoger:
    """Kenward-Roger's adjusted covariance of beta-hat at the REML estimates in ``ls``."""
    derivs, labels = _linear_derivs(ls.terms)
    p, s2 = ls.p, ls.sigma2
    X = slice(0, p)
    Phi = ls.Phi
    k = len(derivs)
    P = np.stack([-ls.B(d)[X, X] / s2 ** 2 for d in derivs])
    Q = {}
    IE2 = np.empty((k, k))
    for i in range(k):
        PhiPi = Phi @ P[i]
        for j in range(i, k):
            Q[i, j] = ls.C(derivs[i], derivs[j])[X, X] / s2 ** 3
            Q[j, i] = Q[i, j].T
            Ktr = ls.T2(derivs[i], derivs[j]) / s2 ** 2
            IE2[i, j] = IE2[j, i] = (Ktr - 2.0 * np.sum(Phi * Q[i, j])
                                     + np.sum(PhiPi * (Phi @ P[j]).T))   # tr(Phi P_i Phi P_j)
    ev = np.linalg.eigvalsh(IE2)
    cond = float(np.min(np.abs(ev)))
    W = 2.0 * (np.linalg.inv(IE2) if cond > 1e-10 else np.linalg.pinv(IE2))
    W = 0.5 * (W + W.T)
    U = np.zeros((p, p))
    for i in range(k):
        for j in range(k):
            U += W[i, j] * (Q[i, j] - P[i] @ Phi @ P[j])
    PhiA = Phi + 2.0 * Phi @ U @ Phi
    PhiA = 0.5 * (PhiA + PhiA.T)
    return KenwardRoger(Phi, PhiA, P, W, labels, cond)


def _kr_A1_A2(L, kr: KenwardRoger):
    Theta = L.T @ np.linalg.solve(L @ kr.Phi @ L.T, L)
    u = np.einsum("ab,bc,icd,de->iae", Theta, kr.Phi, kr.P, kr.Phi)
    tr = np.trace(u, axis1=1, axis2=2)
    A1 = float(tr @ kr.W @ tr)
    A2 = float(np.einsum("ij,iab,jba->", kr.W, u, u))
    return A1, A2


def _kr_ddf(q: int, A1: float, A2: float):
    """pbkrtest's denominator df and F scaling from A1, A2 (Kenward & Roger 1997, sec. 4)."""
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    V0 = 1.0 + c1 * B
    V1 = 1.0 - c2 * B
    V2 = 1.0 - c3 * B
    V0 = 0.0 if abs(V0) < 1e-10 else V0
    x = 1.0 - A2 / q
    ratio = 1.0 if (abs(x) < 1e-14 and abs(V1) < 1e-14) else x / V1
    rho = ratio ** 2 * V0 / V2 / q
    ddf = 4.0 + (q + 2) / (q * rho - 1.0)
    scaling = 1.0 if abs(ddf - 2.0) < 0.01 else ddf * (1.0 - A2 / q) / (ddf - 2.0)
    return ddf, scaling


def kenward_roger_t(L, kr: KenwardRoger):
    """(adjusted variance l'Phi_A l, df) for every row l of L (pbkrtest's ``Lb_ddf``)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    var = np.einsum("ra,ab,rb->r", L, kr.PhiA, L)
    df = np.array([_kr_ddf(1, *_kr_A1_A2(row[None, :], kr))[0] for row in L])
    return var, df


def kenward_roger_f(L, beta, kr: KenwardRoger, rhs=None):
    """Kenward-Roger F test of L beta = rhs (pbkrtest's ``KRmodcomp``).

    Returns (F_unscaled, q, ddf, scaling): F_unscaled = (L b)'(L Phi_A L')^{-1}(L b) / q,
    the test statistic is scaling * F_unscaled ~ F(q, ddf)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    beta = np.asarray(beta, dtype=float)
    if rhs is not None and np.any(np.asarray(rhs) != 0):
        beta = beta - np.linalg.pinv(L) @ np.asarray(rhs, dtype=float).reshape(-1)
    q = int(np.linalg.matrix_rank(L))
    if q == 0:
        return np.nan, 0, np.nan, np.nan
    A1, A2 = _kr_A1_A2(L, kr)
    ddf, scaling = _kr_ddf(q, A1, A2)
    Lb = L @ beta
    wald = float(Lb @ np.linalg.solve(L @ kr.PhiA @ L.T, Lb))
    return wald / q, q, ddf, scaling


# ------------------------------------------------------------------ the criterion itself
def devfun_vp(theta, sigma, X, y, terms: ReTerms, reml: bool, n=None, sqrt_w=None) -> float:
    """lmerTest's deviance in (theta, sigma), beta at its GLS value (dense, for tests
    of the derivatives on small data): log|V| + r'V^{-1}r [+ log|X'V^{-1}X|]
    + (n [- p]) log 2 pi, V = sigma^2 (I + Z Lambda Lambda' Z')."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if sqrt_w is not None:
        X = X * sqrt_w[:, None]
        y = y * sqrt_w
    nrow, p = X.shape
    Lams = terms.Lambdas(theta)
    V = np.eye(nrow)
    for term, L in zip(terms, Lams):
        Z = term.Z * (sqrt_w[:, None] if sqrt_w is not None else 1.0)
        ZL = np.zeros((nrow, term.n_levels, term.q))
        ZL[np.arange(nrow), term.codes] = Z @ L
        ZL = ZL.reshape(nrow, -1)
        V += ZL @ ZL.T
    V *= sigma ** 2
    cV = np.linalg.cholesky(V)
    ViX = np.linalg.solve(V, X)
    XVX = X.T @ ViX
    beta = np.linalg.solve(XVX, ViX.T @ y)
    r = y - X @ beta
    nn = nrow if n is None else n
    dev = 2.0 * np.log(np.diag(cV)).sum() + r @ np.linalg.solve(V, r) + nn * np.log(2 * np.pi)
    if reml:
        dev += np.linalg.slogdet(XVX)[1] - p * np.log(2 * np.pi)
    return float(dev)


def t_pvalue(t, df):
    """Two-sided p-value of t on df degrees of freedom (normal when df is infinite)."""
    t = np.asarray(t, dtype=float)
    df = np.broadcast_to(np.asarray(df, dtype=float), t.shape)
    return np.where(np.isinf(df), 2.0 * stats.norm.sf(np.abs(t)),
                    2.0 * stats.t.sf(np.abs(t), np.where(np.isinf(df), 1.0, df)))
