"""The level-space derivatives of mlglm.core.engines.lmm.ddf against dense n x n computations.

Every quantity Satterthwaite and Kenward-Roger need is checked on small designs where
V = sigma^2 (I + Z Lambda Lambda' Z') can be formed densely: one factor with a
correlated random slope, nested factors with unequal numbers of inner levels (several
batch shapes), crossed factors with a random slope on each, uncorrelated and tied
patterns, prior weights; at arbitrary (theta, sigma) (the formulas hold away from the
optimum when beta is its GLS value there):

* the bilinear forms and traces of the level space (B, C, T, T2) against the dense
  E'V^{-1}V_iV^{-1}E, ... (to 1e-10 relative);
* the gradient and Hessian of lmerTest's deviance in (theta, sigma) against central
  differences of the dense deviance with one Richardson step (``tests/numdiff.py``'s
  stencil; error O(h^4));
* the Jacobian of cov(beta) against central differences of the dense
  sigma^2 (X'V_theta^{-1}X)^{-1};
* Kenward-Roger's adjusted covariance and df against a dense transcription of Kenward &
  Roger (1997) (pbkrtest's ``vcovAdj`` / ``Lb_ddf`` written with n x n matrices).
"""
from __future__ import annotations

import numpy as np
import pytest

from mlglm.core.engines.lmm import ddf as D
from mlglm.core.spec.covpattern import CovBlock, CovPattern, diagonal, tied, unstructured
from mlglm.core.spec.terms import ReTerm, ReTerms

RTOL_EXACT = 1e-9      # two exact routes to the same number (rounding only)
RTOL_FD = 2e-6         # exact derivative vs Richardson central differences


# ------------------------------------------------------------------ designs
def _one_factor(seed=1):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(7), rng.integers(3, 9, size=7))
    n = g.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), x])
    terms = ReTerms((ReTerm("g", g, 7, Z, unstructured(2)),))
    y = X @ [1.0, 0.5, -0.3] + rng.normal(size=(7, 2))[g, 0] + 0.4 * x * rng.normal(size=7)[g] \
        + rng.normal(size=n)
    return X, y, terms, np.array([0.9, 0.2, 0.4])


def _nested(seed=2):
    rng = np.random.default_rng(seed)
    rows, outer, inner = [], [], []
    k = 0
    for j in range(5):
        for _ in range(rng.integers(1, 4)):       # 1-3 inner levels: several batch shapes
            m = rng.integers(2, 5)
            outer += [j] * m
            inner += [k] * m
            k += 1
    outer, inner = np.array(outer), np.array(inner)
    n = outer.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    terms = ReTerms((ReTerm("school", outer, 5, np.column_stack([np.ones(n), x]),
                            unstructured(2)),
                     ReTerm("school:class", inner, k, np.ones((n, 1)), unstructured(1))))
    y = 2.0 + 0.3 * x + rng.normal(size=5)[outer] + 0.5 * rng.normal(size=k)[inner] \
        + rng.normal(size=n)
    return X, y, terms, np.array([0.8, -0.1, 0.3, 0.6])


def _crossed(seed=3):
    rng = np.random.default_rng(seed)
    a = np.repeat(np.arange(6), 5)
    b = np.tile(np.arange(5), 6)
    keep = rng.random(a.size) > 0.15               # unbalanced, still connected
    a, b = a[keep], b[keep]
    n = a.size
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    terms = ReTerms((ReTerm("a", a, 6, np.column_stack([np.ones(n), x]), diagonal(2)),
                     ReTerm("b", b, 5, np.column_stack([np.ones(n), x, x ** 2]),
                            CovPattern((CovBlock("unstructured", 1),
                                        CovBlock("tied", 2))))))
    y = 1.0 + x + rng.normal(size=6)[a] + rng.normal(size=5)[b] + rng.normal(size=n)
    return X, y, terms, np.array([0.7, 0.3, 0.9, 0.25])


def _tied_one(seed=4):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(6), 4)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = rng.normal(size=(n, 2))
    terms = ReTerms((ReTerm("g", g, 6, Z, tied(2)),))
    return X, X @ [1, 1] + rng.normal(size=n), terms, np.array([0.8])


DESIGNS = {"one_factor": _one_factor, "nested": _nested, "crossed": _crossed,
           "tied": _tied_one}


# ------------------------------------------------------------------ dense oracle
def _Zfull(term):
    n = term.Z.shape[0]
    Zf = np.zeros((n, term.n_levels, term.q))
    Zf[np.arange(n), term.codes] = term.Z
    return Zf.reshape(n, -1)


def _dense_V(terms, theta, sigma):
    n = terms.n
    V = np.eye(n)
    for term, L in zip(terms, terms.Lambdas(theta)):
        ZL = _Zfull(term) @ np.kron(np.eye(term.n_levels), L)
        V += ZL @ ZL.T
    return sigma ** 2 * V


def _dense_deriv(terms, dv: D.VDeriv):
    M = dv.c * np.eye(terms.n)
    for t, d in dv.d.items():
        Zf = _Zfull(terms[t])
        M += Zf @ np.kron(np.eye(terms[t].n_levels), d) @ Zf.T
    return M


def _gls(X, y, V):
    ViX = np.linalg.solve(V, X)
    return np.linalg.solve(X.T @ ViX, ViX.T @ y)


def _level_space(X, y, terms, theta, sigma, sqrt_w=None, n=None):
    Xw, yw = (X, y) if sqrt_w is None else (X * sqrt_w[:, None], y * sqrt_w)
    termsw = terms if sqrt_w is None else ReTerms(tuple(
        ReTerm(t.name, t.codes, t.n_levels, t.Z * sqrt_w[:, None], t.pattern) for t in terms))
    beta = _gls(Xw, yw, _dense_V(termsw, theta, sigma))
    ls = D.LevelSpace(X, y - X @ beta, terms, terms.Lambdas(theta), sigma ** 2,
                      terms.n if n is None else n, sqrt_w)
    return ls, beta


def _phi(theta, sigma, X, terms):
    V = _dense_V(terms, theta, sigma)
    return np.linalg.inv(X.T @ np.linalg.solve(V, X))


def _richardson(f, x, i, h):
    e = np.zeros(x.size)
    e[i] = h

    def d(s):
        return (f(x + s * e) - f(x - s * e)) / (2 * s * h)
    return (4 * d(1.0) - d(2.0)) / 3


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", list(DESIGNS))
def test_level_space_forms_equal_dense(name):
    X, y, terms, theta = DESIGNS[name]()
    sigma = 1.3
    ls, beta = _level_space(X, y, terms, theta, sigma)
    V = _dense_V(terms, theta, sigma) / sigma ** 2          # V_theta
    Vi = np.linalg.inv(V)
    E = np.column_stack([X, y - X @ beta])
    first, second = D._theta_sigma_derivs(terms, terms.Lambdas(theta), sigma)
    lin, _ = D._linear_derivs(terms)
    derivs = first + list(second.values()) + lin
    dense = [_dense_deriv(terms, d) for d in derivs]
    scale = np.abs(E.T @ Vi @ E).max()
    assert np.allclose(ls.N1, E.T @ Vi @ E, rtol=0, atol=RTOL_EXACT * scale)
    assert np.isclose(ls.tr2, np.trace(Vi @ Vi), rtol=RTOL_EXACT)
    for d, M in zip(derivs, dense):
        Bd = E.T @ Vi @ M @ Vi @ E
        assert np.allclose(ls.B(d), Bd, rtol=0, atol=RTOL_EXACT * max(np.abs(Bd).max(), 1e-300))
        assert np.isclose(ls.T(d), np.trace(Vi @ M), rtol=RTOL_EXACT, atol=1e-12)
    for i in range(0, len(derivs), 3):
        for j in range(1, len(derivs), 4):
            Cd = E.T @ Vi @ dense[i] @ Vi @ dense[j] @ Vi @ E
            assert np.allclose(ls.C(derivs[i], derivs[j]), Cd, rtol=0,
                               atol=RTOL_EXACT * max(np.abs(Cd).max(), 1e-300))
            T2 = np.trace(Vi @ dense[i] @ Vi @ dense[j])
            assert np.isclose(ls.T2(derivs[i], derivs[j]), T2, rtol=RTOL_EXACT, atol=1e-12)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("name", list(DESIGNS))
def test_deviance_gradient_and_hessian_vs_differences(name, reml):
    X, y, terms, theta = DESIGNS[name]()
    sigma = 1.1
    ls, _ = _level_space(X, y, terms, theta, sigma)
    sat = D.satterthwaite(ls, reml)
    phi = np.append(theta, sigma)

    def dev(v):
        return D.devfun_vp(v[:-1], v[-1], X, y, terms, reml)

    def grad(v):
        ls_v, _ = _level_space(X, y, terms, v[:-1], v[-1])
        return D.satterthwaite(ls_v, reml).gradient

    h = 1e-3
    g_fd = np.array([_richardson(dev, phi, i, h) for i in range(phi.size)])
    assert np.allclose(sat.gradient, g_fd, rtol=RTOL_FD, atol=RTOL_FD * np.abs(g_fd).max())
    # the Hessian against differences of the dense deviance's values ...
    H_fd = np.array([[_richardson(lambda v: _richardson(dev, v, j, h), phi, i, h)
                      for j in range(phi.size)] for i in range(phi.size)])
    assert np.allclose(sat.hessian, H_fd, rtol=1e-4, atol=1e-4 * np.abs(H_fd).max())
    # ... and, tighter, against differences of the exact gradient
    H_g = np.column_stack([_richardson(grad, phi, i, h) for i in range(phi.size)])
    assert np.allclose(sat.hessian, H_g, rtol=RTOL_FD, atol=RTOL_FD * np.abs(H_g).max())


@pytest.mark.parametrize("name", list(DESIGNS))
def test_covariance_jacobian_vs_differences(name):
    X, y, terms, theta = DESIGNS[name]()
    sigma = 0.9
    ls, _ = _level_space(X, y, terms, theta, sigma)
    sat = D.satterthwaite(ls, True)
    phi = np.append(theta, sigma)
    assert np.allclose(sat.Phi, _phi(theta, sigma, X, terms), rtol=RTOL_EXACT)
    for i in range(phi.size):
        J_fd = _richardson(lambda v: _phi(v[:-1], v[-1], X, terms), phi, i, 1e-3)
        assert np.allclose(sat.jacobian[i], J_fd, rtol=RTOL_FD,
                           atol=RTOL_FD * np.abs(J_fd).max())


def test_weights_scale_the_rows():
    """Prior weights: the level space of the scaled rows equals the dense computation on
    sqrt(w)-scaled rows (Var e_i = sigma^2 / w_i)."""
    X, y, terms, theta = _nested()
    w = np.random.default_rng(9).uniform(0.5, 2.0, size=terms.n)
    ls, _ = _level_space(X, y, terms, theta, 1.2, sqrt_w=np.sqrt(w))
    sat = D.satterthwaite(ls, True)
    phi = np.append(theta, 1.2)

    def dev(v):
        return D.devfun_vp(v[:-1], v[-1], X, y, terms, True, sqrt_w=np.sqrt(w))
    g_fd = np.array([_richardson(dev, phi, i, 1e-3) for i in range(phi.size)])
    assert np.allclose(sat.gradient, g_fd, rtol=RTOL_FD, atol=RTOL_FD * np.abs(g_fd).max())


# ------------------------------------------------------------------ Kenward-Roger
def _dense_kr(X, y, terms, theta, sigma):
    """Kenward & Roger (1997) with n x n matrices, V linear in the covariance entries."""
    V = _dense_V(terms, theta, sigma)
    Vi = np.linalg.inv(V)
    G = []
    for t, term in enumerate(terms):
        for block, cs, _ in term.pattern.block_slices():
            pairs = ([(None, None)] if block.kind == "tied" else
                     [(a, b) for b in range(cs.start, cs.stop) for a in range(b, cs.stop)])
            for a, b in pairs:
                E = np.zeros((term.q, term.q))
                if a is None:
                    E[cs, cs] = np.eye(block.size)
                else:
                    E[a, b] = E[b, a] = 1.0
                Zf = _Zfull(term)
                G.append(Zf @ np.kron(np.eye(term.n_levels), E) @ Zf.T)
    G.append(np.eye(terms.n))
    Phi = np.linalg.inv(X.T @ Vi @ X)
    Pi = Vi - Vi @ X @ Phi @ X.T @ Vi
    P = [-X.T @ Vi @ g @ Vi @ X for g in G]
    k = len(G)
    Q = [[X.T @ Vi @ G[i] @ Vi @ G[j] @ Vi @ X for j in range(k)] for i in range(k)]
    I = np.array([[np.trace(Pi @ G[i] @ Pi @ G[j]) for j in range(k)] for i in range(k)])
    W = 2 * np.linalg.inv(I)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j]) for i in range(k) for j in range(k))
    return Phi, Phi + 2 * Phi @ U @ Phi, np.array(P), W


@pytest.mark.parametrize("name", list(DESIGNS))
def test_kenward_roger_vs_dense(name):
    X, y, terms, theta = DESIGNS[name]()
    sigma = 1.05
    ls, beta = _level_space(X, y, terms, theta, sigma)
    kr = D.kenward_roger(ls)
    Phi, PhiA, P, W = _dense_kr(X, y, terms, theta, sigma)
    assert np.allclose(kr.Phi, Phi, rtol=RTOL_EXACT)
    assert np.allclose(kr.PhiA, PhiA, rtol=1e-8)
    assert np.allclose(kr.P, P, rtol=0, atol=1e-9 * np.abs(P).max())
    assert np.allclose(kr.W, W, rtol=1e-8, atol=1e-8 * np.abs(W).max())
    # df of one contrast: 2 / A (A1 = A2 for a single row), lambda = 1
    L = np.ones((1, X.shape[1]))
    Theta = L.T @ np.linalg.solve(L @ Phi @ L.T, L)
    u = [Theta @ Phi @ Pi @ Phi for Pi in P]
    A = sum(W[i, j] * np.trace(u[i]) * np.trace(u[j]) for i in range(len(P))
            for j in range(len(P)))
    var, df = D.kenward_roger_t(L, kr)
    assert np.isclose(df[0], 2.0 / A, rtol=1e-8)
    assert np.isclose(var[0], (L @ PhiA @ L.T)[0, 0], rtol=1e-10)
    Fu, q, ddf, scaling = D.kenward_roger_f(L, beta, kr)
    assert q == 1 and np.isclose(ddf, df[0], rtol=1e-10) and scaling == pytest.approx(1.0)


def test_f_ddf_from_t_rules():
    """Fai & Cornelius's pooling of q t-statistics' df (lmerTest's get_Fstat_ddf)."""
    assert D.f_ddf_from_t([7.5]) == 7.5
    assert D.f_ddf_from_t([10.0, 10.0, 10.0]) == pytest.approx(10.0)
    assert D.f_ddf_from_t([10.0, 1.5]) == 2.0
    nu = np.array([12.0, 30.0])
    E = np.sum(nu / (nu - 2))
    assert D.f_ddf_from_t(nu) == pytest.approx(2 * E / (E - 2))


def test_components_batches_cover_every_effect():
    """Every random effect sits in exactly one component block; nested designs give one
    component per outer level, crossed designs one component."""
    for name, expect in (("nested", 5), ("crossed", 1), ("one_factor", 7)):
        X, y, terms, theta = DESIGNS[name]()
        ls, _ = _level_space(X, y, terms, theta, 1.0)
        cols = np.concatenate([b.idx.ravel() for b in ls.batches])
        assert np.array_equal(np.sort(cols), np.arange(ls.dim_u))
        assert sum(b.m for b in ls.batches) == expect
    X, y, terms, theta = _nested()
    assert D.dense_component_size(terms) == 2 + 3      # a school's slope pair + 3 classes
