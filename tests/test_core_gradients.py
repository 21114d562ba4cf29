"""Exact gradients of the core objective, family derivatives and quadrature rules.

* ``MarginalLoglik.value_and_gradient`` vs central differences of
  ``MarginalLoglik.__call__`` for every family x link (binomial logit / probit /
  cloglog with Bernoulli rows and with trials m > 1, Poisson log with an offset),
  q in {1, 2, 3}, Laplace and AGHQ (nagq 3 and 5), correlated and diagonal
  random effects (DESIGN.md section 4: "Check every gradient against central
  differences in tests").
* AGHQ in chunks of groups gives the same values and gradients; nagq = 1 AGHQ is
  the Laplace approximation.
* ``mlglm.core.spec.families``: d1, d2, d3 vs finite differences over |eta| <= 30, no
  NaN/inf, d2 >= 0, full log-likelihood vs scipy.stats.
* ``mlglm.core.numerics.quadrature``: normalised, symmetric rules of the right degree and
  their product grids.

No reference numbers are hard-coded here: everything is checked against finite
differences, closed forms or scipy.stats.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from mlglm.core.engines.blockdiag.aghq import aghq_loglik
from mlglm.core.spec.covariance import n_theta, theta_is_diagonal_entry, theta_index, theta_to_Lambda
from mlglm.core.spec.family import KERNEL_PAIRS, Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.blockdiag.laplace import laplace_gradient, laplace_loglik
from mlglm.core.engines.blockdiag.modes import conditional_modes
from mlglm.core.engines.blockdiag.objective import MarginalLoglik
from mlglm.core.numerics.quadrature import MAX_GRID_POINTS, gauss_hermite, product_grid

from tolerances import (FAMILY_FD_ATOL, FAMILY_FD_RTOL, GRAD_ATOL, GRAD_RTOL,
                        SAME_NUMBER_RTOL)
from numdiff import fd_gradient, value_at

# (family, link, binomial trials > 1)
FAMILY_CASES = [
    ("binomial", "logit", False),
    ("binomial", "probit", False),
    ("binomial", "cloglog", False),
    ("binomial", "logit", True),
    ("binomial", "probit", True),
    ("binomial", "cloglog", True),
    ("poisson", "log", False),      # with an offset
]
FAMILY_IDS = [f"{f}-{l}{'-trials' if t else ''}" for f, l, t in FAMILY_CASES]


def simulate_core(family, link, q, trials, seed, n_groups=12, n_per=8, p=3):
    """Small data from the model itself; Z = [1, independent normals] (q columns).

    Returns (Kernel, GroupedData, beta_true). Group sizes vary (n_per +- 3) and
    the Poisson case carries a non-zero offset.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(max(n_per - 3, 1), n_per + 4, size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(g)                                   # rows not sorted by group
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    Sigma = 0.3 * np.eye(q) + 0.1
    b = rng.normal(size=(n_groups, q)) @ np.linalg.cholesky(Sigma).T
    beta = np.array([-0.3, 0.5, -0.4, 0.2])[:p]
    offset = rng.normal(scale=0.3, size=n) if family == "poisson" else None
    eta = X @ beta + np.einsum("nq,nq->n", Z, b[g]) + (0.0 if offset is None else offset)
    fl = Family(family, link).kernel()
    mu = fl.inverse_link(eta)
    if family == "binomial":
        m = rng.integers(1, 7, size=n).astype(float) if trials else np.ones(n)
        y = rng.binomial(m.astype(int), mu).astype(float)
    else:
        m = None
        y = rng.poisson(mu).astype(float)
    return fl, make_grouped_data(y, X, Z, g, offset=offset, m=m), beta


def parameter_point(beta, q, diagonal, seed, diag_scale=0.7):
    """x = (beta, theta) away from the truth, with non-zero off-diagonal theta."""
    rng = np.random.default_rng(seed)
    nt = n_theta(q, diagonal)
    is_diag = theta_is_diagonal_entry(q, diagonal)
    theta = np.where(is_diag, diag_scale * (0.8 + 0.4 * rng.random(nt)), 0.3 * rng.normal(size=nt))
    return np.concatenate([beta + 0.1 * rng.normal(size=beta.size), theta])


def exact_gradient(obj, x):
    obj.u = None
    return obj.value_and_gradient(x)


def assert_gradient_close(g, g_fd):
    err = np.abs(g - g_fd)
    bound = GRAD_ATOL + GRAD_RTOL * np.abs(g_fd)
    assert np.all(err <= bound), (
        f"exact vs finite-difference gradient: max |diff| {err.max():.3e}; "
        f"exact {g}, fd {g_fd}")


# ------------------------------------------------------------------ gradient vs FD
@pytest.mark.parametrize("nagq", [1, 3, 5], ids=["laplace", "aghq3", "aghq5"])
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("family, link, trials", FAMILY_CASES, ids=FAMILY_IDS)
def test_gradient_matches_central_differences(family, link, trials, q, nagq):
    fl, data, beta = simulate_core(family, link, q, trials, seed=100 + q)
    obj = MarginalLoglik(fl, data, nagq=nagq)
    x = parameter_point(beta, q, False, seed=7 * q + nagq)
    value, g = exact_gradient(obj, x)
    assert np.isfinite(value) and np.all(np.isfinite(g))
    assert value == pytest.approx(value_at(obj, x), rel=SAME_NUMBER_RTOL)
    assert_gradient_close(g, fd_gradient(obj, x))


@pytest.mark.parametrize("nagq", [1, 3, 5], ids=["laplace", "aghq3", "aghq5"])
@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("family, link, trials", FAMILY_CASES, ids=FAMILY_IDS)
def test_gradient_diagonal_matches_central_differences(family, link, trials, q, nagq):
    fl, data, beta = simulate_core(family, link, q, trials, seed=200 + q)
    obj = MarginalLoglik(fl, data, nagq=nagq, diagonal=True)
    x = parameter_point(beta, q, True, seed=11 * q + nagq)
    assert x.size == data.p + q
    value, g = exact_gradient(obj, x)
    assert value == pytest.approx(value_at(obj, x), rel=SAME_NUMBER_RTOL)
    assert_gradient_close(g, fd_gradient(obj, x))


@pytest.mark.parametrize("diag_scale", [0.05, 2.5], ids=["small-sd", "large-sd"])
@pytest.mark.parametrize("nagq", [1, 5])
@pytest.mark.parametrize("family, link, trials", [FAMILY_CASES[0], FAMILY_CASES[5],
                                                  FAMILY_CASES[6]],
                         ids=[FAMILY_IDS[0], FAMILY_IDS[5], FAMILY_IDS[6]])
def test_gradient_extreme_variances(family, link, trials, nagq, diag_scale):
    """Near the boundary (SD ~ 0.05) and with large SDs (~ 2.5) the gradient still agrees."""
    fl, data, beta = simulate_core(family, link, 2, trials, seed=300)
    obj = MarginalLoglik(fl, data, nagq=nagq)
    x = parameter_point(beta, 2, False, seed=3, diag_scale=diag_scale)
    value, g = exact_gradient(obj, x)
    assert_gradient_close(g, fd_gradient(obj, x, h=min(1e-3, diag_scale / 20)))


@pytest.mark.parametrize("nagq", [1, 5])
def test_gradient_in_theta_vanishes_at_zero_variance_q1(nagq):
    """For q = 1, log L is even in theta (Lambda = -theta gives the same Sigma), so the
    theta-derivative at theta = 0 is exactly zero and the beta part is the GLM score."""
    fl, data, beta = simulate_core("binomial", "logit", 1, False, seed=400)
    obj = MarginalLoglik(fl, data, nagq=nagq)
    x = np.concatenate([beta, [0.0]])
    value, g = exact_gradient(obj, x)
    assert g[-1] == pytest.approx(0.0, abs=1e-12)
    d1, _ = fl.derivatives(data.X @ beta + data.offset, data.y, data.m)
    np.testing.assert_allclose(g[:-1], data.X.T @ d1, rtol=1e-10, atol=1e-10)
    glm_llf = np.sum(fl.loglik(data.X @ beta + data.offset, data.y, data.m))
    assert value == pytest.approx(glm_llf, rel=SAME_NUMBER_RTOL)


# ------------------------------------------------------------------ AGHQ chunking
@pytest.mark.parametrize("q, nagq, diagonal", [(1, 5, False), (2, 3, False), (2, 3, True),
                                                (2, 5, False), (2, 5, True), (3, 3, False),
                                                (3, 3, True)])
@pytest.mark.parametrize("family, link, trials", [FAMILY_CASES[1], FAMILY_CASES[3],
                                                  FAMILY_CASES[6]],
                         ids=[FAMILY_IDS[1], FAMILY_IDS[3], FAMILY_IDS[6]])
def test_aghq_chunking_gives_identical_values_and_gradients(family, link, trials, q, nagq,
                                                           diagonal):
    fl, data, beta = simulate_core(family, link, q, trials, seed=500 + q)
    x = parameter_point(beta, q, diagonal, seed=5)
    whole = MarginalLoglik(fl, data, nagq=nagq, diagonal=diagonal)
    # a budget below one group's rows x nodes: one group per chunk
    for chunk in (1, 7 * nagq ** q, 30 * nagq ** q):
        chunked = MarginalLoglik(fl, data, nagq=nagq, diagonal=diagonal, chunk_elements=chunk)
        whole.u = chunked.u = None
        np.testing.assert_allclose(chunked.per_group(x), whole.per_group(x),
                                   rtol=SAME_NUMBER_RTOL, atol=0)
        v1, g1 = exact_gradient(whole, x)
        v2, g2 = exact_gradient(chunked, x)
        assert v2 == pytest.approx(v1, rel=SAME_NUMBER_RTOL)
        np.testing.assert_allclose(g2, g1, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------- nagq = 1 is Laplace
@pytest.mark.parametrize("q, diagonal", [(1, False), (2, False), (2, True), (3, False),
                                         (3, True)])
@pytest.mark.parametrize("family, link, trials", FAMILY_CASES, ids=FAMILY_IDS)
def test_aghq_one_node_is_laplace(family, link, trials, q, diagonal):
    """mlglm.core.engines.blockdiag.aghq.aghq_loglik(nagq=1) == mlglm.core.engines.blockdiag.laplace.laplace_loglik per group,
    and the AGHQ gradient with one node equals the Laplace gradient."""
    fl, data, beta = simulate_core(family, link, q, trials, seed=600 + q)
    x = parameter_point(beta, q, diagonal, seed=17)
    p = data.p
    theta = x[p:]
    Lambda = theta_to_Lambda(theta, q, diagonal)
    state = conditional_modes(fl, data, x[:p], Lambda)
    lap = laplace_loglik(state)
    rc = theta_index(q, diagonal)
    agh, g_agh = aghq_loglik(fl, data, state, Lambda, 1, theta_rc=rc, gradient=True)
    np.testing.assert_allclose(agh, lap, rtol=SAME_NUMBER_RTOL, atol=0)
    np.testing.assert_allclose(aghq_loglik(fl, data, state, Lambda, 1), lap,
                               rtol=SAME_NUMBER_RTOL, atol=0)
    g_beta, g_Lambda = laplace_gradient(data, state, Lambda)
    g_lap = np.concatenate([g_beta, g_Lambda[rc]])
    np.testing.assert_allclose(g_agh, g_lap, rtol=1e-9, atol=1e-9)


def test_objective_routes_nagq1_to_laplace():
    fl, data, beta = simulate_core("binomial", "logit", 2, False, seed=700)
    x = parameter_point(beta, 2, False, seed=1)
    obj = MarginalLoglik(fl, data, nagq=1)
    obj.u = None
    state = obj.modes(x)
    expected = laplace_loglik(state).sum() + np.sum(fl.log_const(data.y, data.m))
    assert value_at(obj, x) == pytest.approx(expected, rel=SAME_NUMBER_RTOL)


# ===================================================================== families
ETA = np.linspace(-30.0, 30.0, 241)
# (y, m) combinations: Bernoulli 0/1, binomial out of 5, Poisson counts (m = 1: the
# prior weight)
RESPONSES = {"binomial": [(0, 1), (1, 1), (0, 5), (2, 5), (5, 5)],
             "poisson": [(0, 1), (3, 1), (40, 1)]}
# the families without a dispersion (those with one: tests/test_families_dispersion.py)
BASE_PAIRS = [pair for pair in KERNEL_PAIRS if pair[0] in RESPONSES]
FL_IDS = [f"{f}-{l}" for f, l in BASE_PAIRS]


def _richardson(f, x):
    """Central differences with one Richardson extrapolation; the step grows with |eta|
    because in the tails the functions are smooth but computed with absolute noise
    ~ eps * eta^2 (e.g. probit Mills ratios at |eta| ~ 27), which a small step amplifies."""
    h = 1e-3 * (1.0 + np.abs(x))
    d = lambda s: (f(x + s) - f(x - s)) / (2 * s)  # noqa: E731
    return (4 * d(h) - d(2 * h)) / 3


def _assert_fd(analytic, fd, what, m=1.0):
    err = np.abs(analytic - fd)
    bound = FAMILY_FD_ATOL * m + FAMILY_FD_RTOL * np.abs(fd)
    bad = err > bound
    assert not bad.any(), (f"{what}: {bad.sum()} points off, worst at eta="
                           f"{ETA[np.argmax(err / bound)]}: analytic "
                           f"{analytic[np.argmax(err / bound)]}, fd {fd[np.argmax(err / bound)]}")


@pytest.mark.parametrize("family, link", BASE_PAIRS, ids=FL_IDS)
def test_family_derivatives_match_finite_differences(family, link):
    fl = Family(family, link).kernel()
    for y0, m0 in RESPONSES[family]:
        y, m = np.full_like(ETA, y0), np.full_like(ETA, m0)
        ker = lambda e: fl.kernel(e, y, m)                              # noqa: E731
        d1 = lambda e: fl.derivatives(e, y, m)[0]                       # noqa: E731
        d2 = lambda e: fl.derivatives(e, y, m)[1]                       # noqa: E731
        a1, a2, a3 = fl.derivatives(ETA, y, m, third=True)
        b1, b2 = fl.derivatives(ETA, y, m)
        np.testing.assert_array_equal(a1, b1)
        np.testing.assert_array_equal(a2, b2)
        what = f"{family}/{link} y={y0} m={m0}"
        _assert_fd(a1, _richardson(ker, ETA), f"{what}: d1", m0)
        _assert_fd(a2, -_richardson(d1, ETA), f"{what}: d2", m0)
        _assert_fd(a3, _richardson(d2, ETA), f"{what}: d3", m0)


@pytest.mark.parametrize("family, link", BASE_PAIRS, ids=FL_IDS)
def test_family_finite_and_log_concave_at_extremes(family, link):
    """No NaN/inf (and no floating-point error other than underflow) for |eta| <= 30,
    and d2 >= 0 everywhere (the inner Newton problem is concave)."""
    fl = Family(family, link).kernel()
    eta = np.linspace(-30.0, 30.0, 6001)
    for y0, m0 in RESPONSES[family]:
        y, m = np.full_like(eta, y0), np.full_like(eta, m0)
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            k = fl.kernel(eta, y, m)
            d1, d2, d3 = fl.derivatives(eta, y, m, third=True)
            mu = fl.inverse_link(eta)
        for name, a in (("kernel", k), ("d1", d1), ("d2", d2), ("d3", d3), ("mu", mu)):
            assert np.all(np.isfinite(a)), f"{family}/{link} y={y0} m={m0}: {name} not finite"
        assert np.all(d2 >= 0.0)
        assert np.all(k <= 1e-12) or family == "poisson"
        assert np.all((mu >= 0) & (mu <= 1)) or family == "poisson"


@pytest.mark.parametrize("family, link", BASE_PAIRS, ids=FL_IDS)
def test_family_loglik_matches_scipy(family, link):
    """kernel + log_const is the full log p(y | eta) (constants included). eta <= 1.5 so
    that 1 - mu is well represented in the float mu scipy gets (for larger eta ours is
    the more accurate one: it never forms 1 - mu)."""
    rng = np.random.default_rng(1)
    fl = Family(family, link).kernel()
    eta = rng.uniform(-4, 1.5, size=200)
    mu = fl.inverse_link(eta)
    if family == "binomial":
        m = rng.integers(1, 12, size=eta.size).astype(float)
        y = rng.binomial(m.astype(int), 0.4).astype(float)
        expected = stats.binom.logpmf(y, m, mu)
    else:
        m = np.ones_like(eta)
        y = rng.poisson(3.0, size=eta.size).astype(float)
        expected = stats.poisson.logpmf(y, mu)
    np.testing.assert_allclose(fl.loglik(eta, y, m), expected, rtol=1e-11, atol=1e-12)


def test_family_closed_forms_at_zero():
    """At eta = 0: logit d2 = m/4, d3 = 0; probit d1 = (y - (m - y)) phi(0) / Phi(0);
    cloglog mu = 1 - 1/e; Poisson d1 = y - 1, d2 = d3 = 1."""
    y, m, e = np.array([2.0]), np.array([5.0]), np.array([0.0])
    d1, d2, d3 = Family("binomial", "logit").kernel().derivatives(e, y, m, third=True)
    assert (d1[0], d2[0], d3[0]) == pytest.approx((2 - 2.5, 5 / 4, 0.0), abs=1e-15)
    d1, d2, _ = Family("binomial", "probit").kernel().derivatives(e, y, m, third=True)
    r = stats.norm.pdf(0) / 0.5
    assert d1[0] == pytest.approx(2 * r - 3 * r, rel=1e-14)
    assert d2[0] == pytest.approx(5 * r * r, rel=1e-14)   # k(0) = r (0 + r)
    assert Family("binomial", "cloglog").kernel().inverse_link(e)[0] == pytest.approx(
        1 - np.exp(-1), rel=1e-15)
    d1, d2, d3 = Family("poisson", "log").kernel().derivatives(e, np.array([3.0]),
                                                                np.array([1.0]), third=True)
    assert (d1[0], d2[0], d3[0]) == (2.0, 1.0, 1.0)


def test_family_constants():
    y, m = np.array([0.0, 2.0, 5.0]), np.array([5.0, 5.0, 5.0])
    np.testing.assert_allclose(Family("binomial", "logit").kernel().log_const(y, m),
                               np.log([1.0, 10.0, 1.0]), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(Family("poisson", "log").kernel().log_const(y, m),
                               -special.gammaln(y + 1), rtol=1e-14)


def test_unsupported_family_link_raises():
    with pytest.raises(ValueError, match="unsupported"):
        Family("poisson", "identity").kernel()
    with pytest.raises(ValueError):
        Family("gamma", "logit").kernel()


# =================================================================== quadrature
def _normal_moment(k):
    return 0.0 if k % 2 else float(special.factorial2(k - 1)) if k else 1.0


@pytest.mark.parametrize("K", [1, 2, 3, 4, 5, 7, 9, 11, 15, 20, 25, 30])
def test_gauss_hermite_rule(K):
    t, w = gauss_hermite(K)
    assert t.shape == w.shape == (K,)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert np.all(w > 0)
    np.testing.assert_array_equal(t, -t[::-1])          # exactly antisymmetric
    np.testing.assert_array_equal(w, w[::-1])           # exactly symmetric
    assert np.all(np.diff(t) > 0)
    if K % 2:
        assert t[K // 2] == 0.0
    for k in range(2 * K):                               # exact up to degree 2K - 1
        got = np.sum(w * t ** k)
        scale = np.sum(w * np.abs(t) ** k)
        assert abs(got - _normal_moment(k)) <= 1e-13 * scale, (K, k, got)
    if K <= 11:                                          # ... and not beyond
        assert abs(np.sum(w * t ** (2 * K)) - _normal_moment(2 * K)) > 1e-6
    assert not t.flags.writeable and not w.flags.writeable


def test_gauss_hermite_one_point_is_laplace():
    t, w = gauss_hermite(1)
    assert t.tolist() == [0.0] and w.tolist() == [1.0]


def test_gauss_hermite_rejects_zero_points():
    with pytest.raises(ValueError):
        gauss_hermite(0)


@pytest.mark.parametrize("K, q", [(1, 1), (1, 3), (3, 1), (3, 2), (5, 2), (4, 3), (7, 3),
                                  (11, 2), (3, 5)])
def test_product_grid(K, q):
    nodes, logw = product_grid(K, q)
    t, w = gauss_hermite(K)
    assert nodes.shape == (K ** q, q) and logw.shape == (K ** q,)
    assert np.exp(logw).sum() == pytest.approx(1.0, abs=1e-13)
    # every combination of 1-D nodes appears once, with the product of its weights
    idx = np.searchsorted(t, nodes)
    np.testing.assert_array_equal(t[idx], nodes)
    assert len({tuple(r) for r in idx}) == K ** q
    np.testing.assert_allclose(logw, np.log(w)[idx].sum(axis=1), rtol=1e-14, atol=1e-14)
    # exact for separable monomials of degree <= 2K - 1 in each coordinate
    W = np.exp(logw)
    rng = np.random.default_rng(K * 10 + q)
    for _ in range(10):
        a = rng.integers(0, 2 * K, size=q)
        got = np.sum(W * np.prod(nodes ** a, axis=1))
        scale = np.sum(W * np.prod(np.abs(nodes) ** a, axis=1))
        expected = np.prod([_normal_moment(k) for k in a])
        assert abs(got - expected) <= 1e-13 * max(scale, 1.0)
    # symmetric under t -> -t (odd moments vanish exactly)
    assert np.sum(W * nodes[:, 0]) == pytest.approx(0.0, abs=1e-15)
    assert not nodes.flags.writeable and not logw.flags.writeable
    assert product_grid(K, q)[0] is nodes                # cached


def test_product_grid_size_limit():
    K = int(np.ceil(MAX_GRID_POINTS ** (1 / 3))) + 1
    with pytest.raises(ValueError, match="lower nagq"):
        product_grid(K, 3)
