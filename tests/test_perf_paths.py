"""Code paths added for speed give the same numbers as the plain ones.

* ``MarginalLoglik.value_and_gradient`` answers a repeated point from its last
  evaluation (same value, gradient, state; not counted as an evaluation).
* ``GroupedData.m_rows`` is the scalar 1 for one-trial rows, and the binomial
  kernels give the same kernel and derivatives with it as with an array of ones.
* ``lmm_stats`` (segment sums over rows sorted by group) equals the per-group
  cross products written out, also with group codes that never occur.
* ``smallmat.chol_and_inverse`` equals numpy.linalg's Cholesky factor and inverse.
* The binomial random-slope fit with many small groups (the benchmark's shape,
  scaled down) converges to the same optimum from the fast paths as a direct
  maximisation of the objective (checked by a zero gradient and a PD Hessian).
"""
from __future__ import annotations

import numpy as np
import pytest

from mlglm.core.spec.covariance import theta_to_Lambda
from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.lmm.blockdiag import lmm_stats
from mlglm.core.engines.blockdiag.objective import MarginalLoglik
from mlglm.core.numerics.smallmat import chol_and_inverse


def _binomial_data(trials, seed=5, G=40):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), rng.integers(2, 9, size=G))
    rng.shuffle(g)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    Z = np.column_stack([np.ones(n), X[:, 1]])
    m = rng.integers(1, 5, size=n).astype(float) if trials else np.ones(n)
    b = rng.normal(size=(G, 2)) * [0.8, 0.4]
    eta = X @ [-0.2, 0.6, -0.3] + np.einsum("nq,nq->n", Z, b[g])
    y = rng.binomial(m.astype(int), 1 / (1 + np.exp(-eta))).astype(float)
    return make_grouped_data(y, X, Z, g, m=m)


def test_repeated_point_is_answered_from_the_last_evaluation():
    data = _binomial_data(False)
    obj = MarginalLoglik(Family("binomial", "logit").kernel(), data)
    x = np.array([-0.2, 0.6, -0.3, 0.7, 0.1, 0.4])
    v1, g1 = obj.value_and_gradient(x)
    state1, n1 = obj.state, obj.n_evals
    g1[:] = 0.0                                   # the caller owns what it got
    obj.value_and_gradient(x + 0.01)
    assert obj.n_evals == n1 + 1
    v2, g2 = obj.value_and_gradient(x + 0.01)     # repeated: not re-evaluated
    assert obj.n_evals == n1 + 1
    v3, g3 = obj.value_and_gradient(x)            # not the last point: evaluated
    assert obj.n_evals == n1 + 2
    assert v3 == pytest.approx(v1, abs=1e-9)
    assert np.all(g3 != 0.0)
    assert obj.state is not state1
    obj.u = None
    v4, g4 = obj.value_and_gradient(x)            # still the last point: same answer
    assert (v4, obj.n_evals) == (v3, n1 + 2)
    np.testing.assert_array_equal(g4, g3)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_unit_trials_scalar_gives_the_same_kernel(link):
    data = _binomial_data(False)
    assert data.m_rows == 1.0 and np.ndim(data.m_rows) == 0
    assert _binomial_data(True).m_rows is not None and np.ndim(_binomial_data(True).m_rows) == 1
    fl = Family("binomial", link).kernel()
    eta = np.linspace(-40, 40, data.n)
    a = fl.kernel_derivatives(eta, data.y, 1.0)
    b = fl.kernel_derivatives(eta, data.y, np.ones(data.n))
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(fl.third(eta, data.y, 1.0, a[1], a[2]),
                                  fl.third(eta, data.y, np.ones(data.n), b[1], b[2]))


@pytest.mark.parametrize("n_groups", [None, 9])
def test_lmm_stats_segment_sums(n_groups):
    rng = np.random.default_rng(11)
    g = rng.choice([0, 1, 3, 4, 6], size=60)        # codes 2 and 5 (and 7, 8) never occur
    X = np.column_stack([np.ones(60), rng.normal(size=60)])
    Z = np.column_stack([np.ones(60), rng.normal(size=60)])
    y = 3 + X[:, 1] + rng.normal(size=60)
    st = lmm_stats(y, X, Z, g, n_groups=n_groups)
    G = 7 if n_groups is None else n_groups
    assert st.ZtZ.shape == (G, 2, 2) and st.n_groups == G
    e = y - X @ st.beta_ols
    for j in range(G):
        rows = g == j
        np.testing.assert_allclose(st.ZtZ[j], Z[rows].T @ Z[rows], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(st.ZtX[j], Z[rows].T @ X[rows], rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(st.Zty[j], Z[rows].T @ e[rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("q", [1, 2, 3])
def test_chol_and_inverse(q):
    rng = np.random.default_rng(q)
    B = rng.normal(size=(50, q, q)) * rng.uniform(0.01, 30, size=(50, 1, 1))
    H = B @ np.swapaxes(B, 1, 2) + np.eye(q)
    L, Linv = chol_and_inverse(H)
    np.testing.assert_allclose(L, np.linalg.cholesky(H), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Linv, np.linalg.inv(np.linalg.cholesky(H)), rtol=1e-10,
                               atol=1e-12)


def test_many_small_groups_fit_is_a_stationary_point():
    """10 rows per group, random intercept and slope (the 10^5-row benchmark's shape at
    2,000 rows): the fitted x has a zero gradient and a PD observed information."""
    import pandas as pd
    import mlglm
    rng = np.random.default_rng(2026)
    G, m = 200, 10
    g = np.repeat(np.arange(G), m)
    x1, x2 = rng.normal(size=G * m), rng.normal(size=G * m)
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky([[0.6, 0.15], [0.15, 0.3]]).T
    eta = -0.5 + 0.8 * x1 - 0.4 * x2 + b[g, 0] + b[g, 1] * x1
    df = pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x1": x1, "x2": x2,
                       "g": g})
    res = mlglm.glmer("y ~ x1 + x2 + (1 + x1 | g)", df)
    assert res.converged
    obj = res.model.objective(1)
    Lambda = np.linalg.cholesky(np.asarray(res.cov_re))
    x = np.concatenate([np.asarray(res.fe_params), Lambda[[0, 1, 1], [0, 0, 1]]])
    v, grad = obj.value_and_gradient(x)
    assert v == pytest.approx(res.llf, abs=1e-8)
    assert np.max(np.abs(grad)) < 1e-3
    assert np.all(np.linalg.eigvalsh(res.cov_params().to_numpy()) > 0)
    assert theta_to_Lambda(x[3:], 2).shape == (2, 2)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("truth", [0.0, 0.3, 3.0])
@pytest.mark.parametrize("theta0", [None, [0.01], [40.0]])
def test_one_parameter_search_matches_bfgs(reml, truth, theta0):
    """q = 1 fits use the bracket + Brent search on the derivative; they reach the
    minimum the general BFGS + Newton-polish search reaches (to 1e-9 in theta), from
    starts on both sides, and a zero variance ends at theta = 0, converged."""
    from mlglm.core.engines.lmm import blockdiag as lmm
    from mlglm.core.engines.lmm.minimise import _minimise
    rng = np.random.default_rng(int(10 * truth) + 3)
    G = 30
    g = np.repeat(np.arange(G), rng.integers(2, 12, size=G))
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    y = 5 + X[:, 1] + truth * rng.normal(size=G)[g] + rng.normal(size=n)
    stats = lmm.lmm_stats(y, X, np.ones((n, 1)), g)
    fit = lmm.lmm_fit(None, None, None, None, reml=reml, stats=stats, theta0=theta0)
    assert fit.converged and "Brent" in fit.record.message

    def fg(t):
        return lmm.profiled_deviance_grad(t, stats, reml)

    ref, _ = _minimise(np.array([1.0]), fg, gtol=1e-8)
    ref = np.abs(ref)
    if truth == 0.0 and ref[0] < lmm.SINGULAR_TOL:
        assert fit.singular.any() and fit.theta[0] < lmm.SINGULAR_TOL
        assert fit.reml_criterion is None or fit.reml_criterion <= fg(ref)[0] + 1e-9
    else:
        np.testing.assert_allclose(fit.theta, ref, rtol=1e-9)
    assert -2 * fit.llf <= fg(ref)[0] + 1e-9 * abs(fg(ref)[0])
