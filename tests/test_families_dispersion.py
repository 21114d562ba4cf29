"""Kernels with a dispersion parameter (negative binomial NB2, Gamma log and inverse) and
prior weights, in the core.

* ``mlglm.core.spec.families_dispersion``: d1, d2, d3 vs central differences of the kernel;
  the derivatives in the log dispersion t (dK/dt, d d1/dt, d d2/dt, the constants'
  d/dt) vs central differences in t; kernel + constants = scipy.stats' log density, with
  and without weights (a frequency weight multiplies the log density; a variance weight
  multiplies the NB log density, as ``sm.GLM``, and multiplies the Gamma shape); finite
  and log-concave (d2 >= 0) over the grid.
* ``MarginalLoglik.value_and_gradient`` vs central differences for every new family x
  link, q in {1, 2, 3}, Laplace and AGHQ (nagq 3, 5), correlated and diagonal, with
  weights; ``MultiLaplace`` (crossed factors) likewise.

No reference numbers: everything is checked against finite differences or scipy.stats.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.blockdiag.objective import MarginalLoglik

from tolerances import FAMILY_FD_ATOL, FAMILY_FD_RTOL, GRAD_ATOL, GRAD_RTOL, SAME_NUMBER_RTOL
from numdiff import fd_gradient as _fd, value_at  # noqa: F401


def fd_gradient(obj, x, h=1e-4):
    """numdiff.fd_gradient with this module's step."""
    return _fd(obj, x, h)

PAIRS = [("negative_binomial", "log"), ("gamma", "log"), ("gamma", "inverse")]
IDS = [f"{f}-{l}" for f, l in PAIRS]
#: log dispersions: theta = e^t (NB; 0.2 to 20) or phi = e^t (Gamma; 0.05 to 2)
T_VALUES = {"negative_binomial": (np.log(0.2), np.log(3.0), np.log(20.0)),
            "gamma": (np.log(0.05), np.log(0.5), np.log(2.0))}
#: (y, m): m is the prior weight (1, or a weight)
RESPONSES = {"negative_binomial": [(0, 1), (3, 1), (40, 1), (7, 2.5)],
             "gamma": [(0.05, 1), (1.0, 1), (30.0, 1), (2.0, 0.4)]}


def eta_grid(link):
    """The linear predictor where the family has a density (inverse link: eta > 0)."""
    return np.linspace(0.2, 6.0, 200) if link == "inverse" else np.linspace(-12.0, 12.0, 241)


def richardson(f, x, rel=1e-3):
    h = rel * (1.0 + np.abs(x))
    d = lambda s: (f(x + s) - f(x - s)) / (2 * s)  # noqa: E731
    return (4 * d(h) - d(2 * h)) / 3


def assert_fd(analytic, fd, what, scale=1.0):
    err = np.abs(analytic - fd)
    bound = FAMILY_FD_ATOL * scale + FAMILY_FD_RTOL * np.abs(fd)
    assert np.all(err <= bound), f"{what}: worst |diff| {err.max():.3e} (bound {bound.min():.1e})"


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_eta_derivatives_match_finite_differences(family, link):
    eta = eta_grid(link)
    for t in T_VALUES[family]:
        fl = Family(family, link).kernel().at(t)
        for y0, m0 in RESPONSES[family]:
            y, m = np.full_like(eta, y0 * m0), np.full_like(eta, m0)
            d1, d2, d3 = fl.derivatives(eta, y, m, third=True)
            k, k1, k2 = fl.kernel_derivatives(eta, y, m)
            np.testing.assert_allclose(k, fl.kernel(eta, y, m), rtol=SAME_NUMBER_RTOL)
            np.testing.assert_array_equal(k1, d1)
            np.testing.assert_array_equal(k2, d2)
            scale = np.maximum(np.abs(d2), 1.0)
            what = f"{family}/{link} t={t:.2f} y={y0} m={m0}"
            assert_fd(d1, richardson(lambda e: fl.kernel(e, y, m), eta), what + " d1", scale)
            assert_fd(d2, -richardson(lambda e: fl.derivatives(e, y, m)[0], eta),
                      what + " d2", scale)
            assert_fd(d3, richardson(lambda e: fl.derivatives(e, y, m)[1], eta),
                      what + " d3", scale)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_dispersion_derivatives_match_finite_differences(family, link):
    """dK/dt, d d1/dt, d d2/dt per row and the constants' d/dt, by central differences
    in t (h = 1e-4, Richardson)."""
    eta = eta_grid(link)
    base = Family(family, link).kernel()
    for t in T_VALUES[family]:
        fl = base.at(t)
        for y0, m0 in RESPONSES[family]:
            y, m = np.full_like(eta, y0 * m0), np.full_like(eta, m0)
            d1, d2, d3 = fl.derivatives(eta, y, m, third=True)
            dK, dd1, dd2 = fl.dispersion_derivatives(eta, y, m, d1, d2, d3)
            K, d1n, dKn = fl.kernel_ddisp(eta, y, m)
            # two formulas for d1 (the quadrature's fused one and the modes'): equal to
            # rounding, not bit for bit
            np.testing.assert_allclose(d1n, d1, rtol=SAME_NUMBER_RTOL, atol=1e-12)
            np.testing.assert_allclose(dKn, dK, rtol=1e-12, atol=1e-12)

            def in_t(f):
                h = 1e-4
                g = lambda s: (f(base.at(t + s)) - f(base.at(t - s))) / (2 * s)  # noqa: E731
                return (4 * g(h) - g(2 * h)) / 3
            scale = np.maximum(np.abs(K), 1.0)
            what = f"{family}/{link} t={t:.2f} y={y0}"
            assert_fd(dK, in_t(lambda f: f.kernel(eta, y, m)), what + " dK/dt", scale)
            assert_fd(dd1, in_t(lambda f: f.derivatives(eta, y, m)[0]), what + " dd1/dt", scale)
            assert_fd(dd2, in_t(lambda f: f.derivatives(eta, y, m)[1]), what + " dd2/dt", scale)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weights"])
@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_loglik_matches_scipy_and_constants(family, link, weighted):
    """sum of kernel(eta, f v y, f v m) + constants = sum f log p(y | mu, dispersion_i) by
    scipy.stats, with dispersion_i as sm.GLM's variance weights make it (NB: v multiplies
    the log density; Gamma: shape v / phi); the constants' value, per_row and
    derivative agree with each other."""
    rng = np.random.default_rng(3)
    n = 300
    eta = rng.uniform(0.2, 2.0, n) if link == "inverse" else rng.uniform(-2.0, 3.0, n)
    fl0 = Family(family, link).kernel()
    mu = fl0.inverse_link(eta)
    f = rng.integers(0, 4, n).astype(float) if weighted else np.ones(n)
    v = rng.uniform(0.3, 3.0, n) if weighted else np.ones(n)
    for t in T_VALUES[family]:
        fl = fl0.at(t)
        d = np.exp(t)
        if family == "negative_binomial":
            y = rng.negative_binomial(d, d / (d + mu)).astype(float)
            expected = f * v * stats.nbinom.logpmf(y, d, d / (d + mu))
        else:
            y = rng.gamma(1 / d, mu * d)
            shape = v / d
            expected = f * stats.gamma.logpdf(y, shape, scale=mu / shape)
        w = f * v
        consts = fl.row_constants(y, np.ones(n), f if weighted else None,
                                  v if weighted else None)
        ours = fl.kernel(eta, w * y, w) + consts.per_row(t)
        np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-10)
        assert consts.value(t) == pytest.approx(consts.per_row(t).sum(), rel=1e-12)
        h = 1e-5
        fd = (consts.value(t + h) - consts.value(t - h)) / (2 * h)
        assert consts.derivative(t) == pytest.approx(fd, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_finite_and_log_concave(family, link):
    """No NaN/inf over the grid (no floating-point error but underflow), d2 >= 0: the
    inner Newton problem is concave; the inverse link's eta <= 0 is no density (-inf),
    with the derivatives of the kernel's quadratic extension from eta = 0.01 / y, which
    point back into the domain (d1 > 0, d2 > 0: issue 21 item 9)."""
    eta = np.linspace(-30.0, 30.0, 6001) if link == "log" else np.linspace(1e-3, 30.0, 3001)
    for t in T_VALUES[family]:
        fl = Family(family, link).kernel().at(t)
        for y0, m0 in RESPONSES[family]:
            y, m = np.full_like(eta, y0 * m0), np.full_like(eta, m0)
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                k = fl.kernel(eta, y, m)
                d1, d2, d3 = fl.derivatives(eta, y, m, third=True)
            for name, a in (("kernel", k), ("d1", d1), ("d2", d2), ("d3", d3)):
                assert np.all(np.isfinite(a)), f"{family}/{link} y={y0}: {name} not finite"
            assert np.all(d2 >= 0.0)
    if link == "inverse":
        fl = Family(family, link).kernel().at(0.0)
        e = np.array([-1.0, 0.0, 0.5])
        k, d1, d2 = fl.kernel_derivatives(e, np.ones(3), np.ones(3))
        assert np.all(np.isneginf(k[:2])) and np.isfinite(k[2])
        # quadratic extension from eps = 0.01 / y = 0.01 (y = 1, shape 1):
        # d1 = (2 eps - eta) / eps^2 - y, d2 = 1 / eps^2
        np.testing.assert_allclose(d1[:2], [(0.02 + 1.0) / 1e-4 - 1.0, 0.02 / 1e-4 - 1.0],
                                   rtol=1e-12)
        np.testing.assert_allclose(d2[:2], [1e4, 1e4], rtol=1e-12)


# ------------------------------------------------------------- objective gradients
def simulate_core(family, link, q, seed, weights=False, n_groups=12):
    """Small data from the model; Z = [1, normals]; rows interleaved; an offset; with
    ``weights`` integer frequency weights and uniform variance weights."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(4, 11, size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(g)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 2))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    b = rng.normal(size=(n_groups, q)) * 0.3
    offset = rng.normal(scale=0.1, size=n)
    if link == "inverse":
        eta = X @ [1.0, 0.1, -0.1] + 0.3 * (Z * b[g]).sum(1) + 0.1 * offset
        offset = 0.1 * offset
    else:
        eta = X @ [0.5, 0.3, -0.2] + (Z * b[g]).sum(1) + offset
    fl = Family(family, link).kernel()
    mu = fl.inverse_link(eta)
    if family == "negative_binomial":
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
    else:
        y = rng.gamma(3.0, mu / 3.0)
    f = rng.integers(1, 4, n).astype(float) if weights else None
    v = rng.uniform(0.5, 2.0, n) if weights else None
    return fl, make_grouped_data(y, X, Z, g, offset=offset, freq=f, var=v)


def assert_gradient_close(g, g_fd):
    err = np.abs(g - g_fd)
    assert np.all(err <= GRAD_ATOL + GRAD_RTOL * np.abs(g_fd)), (
        f"max |exact - fd| {err.max():.3e}; exact {g}, fd {g_fd}")


def parameter_point(obj, seed):
    """The GLM start moved off the optimum: every coordinate, theta off-diagonals too."""
    rng = np.random.default_rng(seed)
    x = obj.start()
    x = x + 0.05 * rng.normal(size=x.size)
    x[obj.p:obj.p + obj.n_theta] += np.where(obj.theta_on_diagonal, 0.0,
                                             0.2 * rng.normal(size=obj.n_theta))
    return x


@pytest.mark.parametrize("nagq", [1, 3, 5], ids=["laplace", "aghq3", "aghq5"])
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_gradient_matches_central_differences(family, link, q, nagq):
    fl, data = simulate_core(family, link, q, seed=40 + q)
    obj = MarginalLoglik(fl, data, nagq=nagq)
    assert obj.n_disp == 1 and obj.param_layout.size == data.p + q * (q + 1) // 2 + 1
    x = parameter_point(obj, seed=q + nagq)
    obj.u = None
    value, g = obj.value_and_gradient(x)
    assert value == pytest.approx(value_at(obj, x), rel=SAME_NUMBER_RTOL)
    assert_gradient_close(g, fd_gradient(obj, x))


@pytest.mark.parametrize("nagq", [1, 5], ids=["laplace", "aghq5"])
@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_gradient_with_weights_and_diagonal(family, link, nagq):
    fl, data = simulate_core(family, link, 2, seed=60, weights=True)
    obj = MarginalLoglik(fl, data, nagq=nagq, diagonal=True)
    x = parameter_point(obj, seed=nagq)
    obj.u = None
    assert_gradient_close(obj.value_and_gradient(x)[1], fd_gradient(obj, x))


@pytest.mark.parametrize("family, link", PAIRS, ids=IDS)
def test_fixed_dispersion_has_no_slot(family, link):
    """estimate_dispersion=False: x = (beta, theta), the kernel's own dispersion held, and
    the log-likelihood equals the estimating objective's at that dispersion."""
    fl, data = simulate_core(family, link, 1, seed=70)
    t = 0.3
    held = MarginalLoglik(fl.at(t), data, estimate_dispersion=False)
    free = MarginalLoglik(fl, data)
    x = parameter_point(held, seed=1)
    assert held.n_disp == 0 and x.size == data.p + 1
    assert value_at(held, x) == pytest.approx(value_at(free, np.append(x, t)), rel=1e-13)
    held.u = None
    assert_gradient_close(held.value_and_gradient(x)[1], fd_gradient(held, x))


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weights"])
@pytest.mark.parametrize("family, link", PAIRS[:2], ids=IDS[:2])
def test_several_factors_gradient(family, link, weighted):
    """MultiLaplace with a correlated crossed factor and a random intercept: exact
    gradient including d/dt vs central differences."""
    from mlglm.core.spec.covpattern import unstructured
    from mlglm.core.engines.crossed.objective import MultiLaplace
    from mlglm.core.spec.terms import ReTerm, ReTerms
    rng = np.random.default_rng(5)
    n = 300
    a, c = rng.integers(0, 15, n), rng.integers(0, 8, n)
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z2 = np.column_stack([np.ones(n), rng.normal(size=n)])
    terms = ReTerms((ReTerm("a", a, 15, Z2, unstructured(2)),
                     ReTerm("c", c, 8, np.ones((n, 1)), unstructured(1))))
    mu = np.exp(X @ [0.5, 0.3] + 0.4 * rng.normal(size=15)[a] + 0.3 * rng.normal(size=8)[c])
    y = (rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
         if family == "negative_binomial" else rng.gamma(3.0, mu / 3.0))
    kw = dict(freq=rng.integers(1, 4, n).astype(float), var=rng.uniform(.5, 2, n)) \
        if weighted else {}
    obj = MultiLaplace(Family(family, link).kernel(), y, np.ones(n), X, np.zeros(n), terms, **kw)
    x = obj.start() + 0.05
    obj.u = None
    value, g = obj.value_and_gradient(x)
    assert value == pytest.approx(value_at(obj, x), rel=SAME_NUMBER_RTOL)
    assert_gradient_close(g, fd_gradient(obj, x))


@pytest.mark.parametrize("name,link", [("negative_binomial", "log"), ("gamma", "log"),
                                       ("gamma", "inverse")])
def test_dispersion_start_from_moments_added_over_pieces(name, link):
    """The dispersion start is a function of row sums, so data held in pieces (the shards
    of a Dask fit) give the same start by adding their pieces' sums; the definitions: NB
    theta = sum mu^2 / sum((y - mu)^2 - y), Gamma phi = sum((y - mu) / mu)^2 / (n - p)."""
    rng = np.random.default_rng(4)
    mu = np.exp(rng.normal(0.5, 0.4, 300))
    y = (rng.negative_binomial(2, 2 / (2 + mu)).astype(float) if name == "negative_binomial"
         else rng.gamma(2.0, mu / 2))                    # theta = 2; Gamma shape 2
    w = np.ones_like(y)
    fl = Family(name, link).kernel()
    whole = fl.distribution.dispersion_start(y, mu, w, 3)
    parts = sum(fl.dispersion_moments(y[s], mu[s], w[s]) for s in (slice(0, 120), slice(120, None)))
    assert fl.dispersion_from_moments(parts, 3) == pytest.approx(whole, rel=1e-12)
    if name == "negative_binomial":
        direct = np.log(np.clip(np.sum(mu * mu) / np.sum((y - mu) ** 2 - y), 1e-2, 1e4))
    else:
        direct = np.log(np.sum(((y - mu) / mu) ** 2) / (y.size - 3))
    assert whole == pytest.approx(direct, rel=1e-12)
