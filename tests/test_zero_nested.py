"""Zero-inflated, hurdle and beta GLMMs with nested grouping factors (issue 23):
``mlglm.core.engines.nested.objective_aux.AuxiliaryNested`` (Laplace and AGHQ through
every level) and its safeguarded inner Newton
(``mlglm.core.engines.nested.modes_safeguarded``).

* nagq = 1 is the several-factor Laplace of ``AuxiliaryMultiLaplace`` (a different
  factorisation of the same H): value and gradient.
* The exact gradient in x = (beta, theta, gamma, t) against central differences, Laplace
  and AGHQ, a random slope at the top level included.
* AGHQ with 25 points against the brute-force iterated integral of
  ``tests/zi_oracle.py::nested_marginal_loglik`` (a fixed composite Gauss-Legendre grid,
  no mode, no curvature) to EXACT_RTOL.
* The modes of a nested group where the plain nested Newton iteration fails.
* Fits through ``glmer``: nagq > 1, the fit-time quadrature check and ``nagq="auto"``.

The data are simulated here (seeded): two nested random intercepts (1 | a/b), 6 top
groups of 3 inner groups of 1..9 rows, a zero part with an intercept and a covariate.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlglm
from mlglm.core.engines.crossed.objective_aux import AuxiliaryMultiLaplace
from mlglm.core.engines.nested.modes import NestedData, nested_modes
from mlglm.core.engines.nested.modes_safeguarded import safeguarded_nested_modes
from mlglm.core.engines.nested.objective_aux import AuxiliaryNested
from mlglm.core.engines.nested.tree import NestedLayout
from mlglm.core.spec.covpattern import unstructured
from mlglm.core.spec.errors import ModeFailure
from mlglm.core.spec.families_auxiliary import BoundAuxiliaryKernel
from mlglm.core.spec.families_beta import BetaLogit
from mlglm.core.spec.families_zero import HurdlePoisson, ZeroInflatedNB2, ZeroInflatedPoisson
from mlglm.core.spec.terms import ReTerm, ReTerms
from tolerances import EXACT_RTOL, GRAD_ATOL, GRAD_RTOL
from zi_oracle import nested_marginal_loglik

KERNELS = {"zipoisson": ZeroInflatedPoisson(), "zinb2": ZeroInflatedNB2(),
           "hurdle_poisson": HurdlePoisson(), "beta": BetaLogit()}

#: the nested engine and AuxiliaryMultiLaplace: the same Laplace value by two
#: factorisations (observed agreement ~1e-14)
MULTI_RTOL = 1e-10


def _simulate(family, seed=0, n_top=6, n_mid=3, top_slope=False):
    """(kernel, y, X, offset, X_zi, terms, x, labels): a seeded draw of the model of the
    module docstring at x = (beta, theta, gamma[, t]); labels = (top, inner) per row."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 10, size=n_top * n_mid)
    inner = np.repeat(np.arange(n_top * n_mid), sizes)
    top = inner // n_mid
    n = inner.size
    order = rng.permutation(n)                      # rows in no particular order
    top, inner = top[order], inner[order]
    z = rng.normal(size=n)
    X = np.column_stack([np.ones(n), z])
    X_zi = np.column_stack([np.ones(n), rng.normal(size=n)])
    offset = np.zeros(n)
    beta = np.array([0.6, 0.4]) if family != "beta" else np.array([-0.2, 0.5])
    gamma = np.array([-0.5, 0.8])
    sd_top, sd_in = 0.9, 0.7
    eta = X @ beta + sd_top * rng.normal(size=n_top)[top] + sd_in * rng.normal(
        size=n_top * n_mid)[inner]
    Z_top = X if top_slope else np.ones((n, 1))
    pi = 1.0 / (1.0 + np.exp(-(X_zi @ gamma)))
    t = None
    if family == "beta":
        t = np.log(8.0)
        mu = 1.0 / (1.0 + np.exp(-eta))
        y = rng.beta(mu * 8.0, (1 - mu) * 8.0)
        X_zi = None
    elif family == "zinb2":
        t = np.log(2.0)
        mu = np.exp(eta)
        y = rng.negative_binomial(2.0, 2.0 / (2.0 + mu)).astype(float)
        y[rng.random(n) < pi] = 0.0
    elif family == "zipoisson":
        y = rng.poisson(np.exp(eta)).astype(float)
        y[rng.random(n) < pi] = 0.0
    else:                                           # hurdle: zeros with probability pi
        y = 1.0 + rng.poisson(np.exp(eta)).astype(float)
        y[rng.random(n) < pi] = 0.0
    pattern_top = unstructured(Z_top.shape[1])
    terms = ReTerms((ReTerm("a", top, n_top, Z_top, pattern_top),
                     ReTerm("a:b", inner, n_top * n_mid, np.ones((n, 1)), unstructured(1))))
    theta_top = pattern_top.theta_from_Sigma(np.array([[0.8, 0.1], [0.1, 0.3]])) \
        if top_slope else np.array([sd_top])
    x = np.concatenate([beta + 0.05, theta_top, [sd_in]]
                       + ([gamma - 0.1] if X_zi is not None else [])
                       + ([[t + 0.1]] if t is not None else []))
    return KERNELS[family], y, X, offset, X_zi, terms, x, (top, inner)


def _central_gradient(obj, x, h=1e-4):
    """Richardson-extrapolated central differences, every evaluation from a cold start."""
    def f(z):
        obj.u, obj._last, obj._pred = None, None, None
        return obj.value_and_gradient(z)[0]
    fd = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        d1 = (f(x + e) - f(x - e)) / (2 * h)
        d2 = (f(x + 2 * e) - f(x - 2 * e)) / (4 * h)
        fd.append((4 * d1 - d2) / 3)
    return np.array(fd)


@pytest.mark.parametrize("family", ["zinb2", "hurdle_poisson", "beta"])
def test_nested_laplace_is_the_several_factor_laplace(family):
    k, y, X, o, X_zi, terms, x, _ = _simulate(family, seed=1)
    v, g = AuxiliaryNested(k, y, X, o, terms, 1, X_zi=X_zi).value_and_gradient(x)
    v2, g2 = AuxiliaryMultiLaplace(k, y, X, o, terms, X_zi=X_zi).value_and_gradient(x)
    assert v == pytest.approx(v2, rel=MULTI_RTOL)
    np.testing.assert_allclose(g, g2, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("family,nagq,top_slope", [
    ("zinb2", 1, False), ("zinb2", 5, False), ("zipoisson", 3, True),
    ("hurdle_poisson", 1, True), ("hurdle_poisson", 4, False), ("beta", 1, False),
    ("beta", 5, False)])
def test_nested_gradient_against_central_differences(family, nagq, top_slope):
    k, y, X, o, X_zi, terms, x, _ = _simulate(family, seed=2, top_slope=top_slope)
    obj = AuxiliaryNested(k, y, X, o, terms, nagq, X_zi=X_zi)
    g = obj.value_and_gradient(x)[1]
    # observed: |g - fd| <= 1.7e-9 (Laplace and AGHQ, every family here)
    np.testing.assert_allclose(g, _central_gradient(obj, x), rtol=GRAD_RTOL, atol=GRAD_ATOL)


def test_chunked_nested_aghq_equals_unchunked():
    k, y, X, o, X_zi, terms, x, _ = _simulate("zinb2", seed=3)
    v, g = AuxiliaryNested(k, y, X, o, terms, 5, X_zi=X_zi).value_and_gradient(x)
    small = AuxiliaryNested(k, y, X, o, terms, 5, X_zi=X_zi, chunk_elements=300)
    assert len(list(small.layout.chunks(25, 300))) > 2
    v2, g2 = small.value_and_gradient(x)
    assert v2 == pytest.approx(v, rel=1e-12)
    np.testing.assert_allclose(g2, g, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("family", ["zinb2", "hurdle_poisson", "beta"])
def test_nested_aghq25_against_the_brute_force_integral(family):
    # tests/zi_oracle.py::nested_marginal_loglik (60 panels x 8 Gauss-Legendre nodes per
    # level on [-9, 9]; with 90 panels it agrees to 1e-15). Observed: AGHQ(25) within
    # 7e-13 relative; Laplace off by 0.06 to 0.16
    k, y, X, o, X_zi, terms, x, (top, inner) = _simulate(family, seed=4, n_top=4)
    obj = AuxiliaryNested(k, y, X, o, terms, 25, X_zi=X_zi)
    lay = obj.param_layout
    beta, theta = obj.split(x)
    gamma = lay.zi(x) if X_zi is not None else None
    exact = nested_marginal_loglik(family, y, X, beta, top, inner, theta[0], theta[1], X_zi,
                                   gamma, lay.log_dispersion(x))
    value = obj(x)
    assert value == pytest.approx(exact, rel=EXACT_RTOL)
    # and Laplace is measurably off (so the comparison can fail)
    assert abs(obj.with_nagq(1)(x) - exact) > 100 * EXACT_RTOL * abs(exact)


def test_nagq1_of_the_aghq_objective_is_laplace():
    k, y, X, o, X_zi, terms, x, _ = _simulate("zinb2", seed=5)
    aghq = AuxiliaryNested(k, y, X, o, terms, 7, X_zi=X_zi)
    lap = AuxiliaryNested(k, y, X, o, terms, 1, X_zi=X_zi)
    assert aghq.laplace()(x) == pytest.approx(lap(x), rel=1e-13)
    assert aghq.with_nagq(1).value_and_gradient(x)[0] == pytest.approx(lap(x), rel=1e-13)


# --------------------------------------------------------- the inner Newton iteration
def _hard_nested_group():
    """The ZIP group of test_zero_engine._hard_group (30 zeros and a 3, eta0 = 0.5,
    pi = 1/2, sigma = 3) as the only inner group of the only top group; the inner level
    has Lambda = 0, so the top mode is the one-term mode, b = -1.99186 (the oracle's)."""
    n = 31
    y = np.r_[np.zeros(30), 3.0]
    X = np.ones((n, 1))
    codes = np.zeros(n, dtype=int)
    terms = ReTerms((ReTerm("a", codes, 1, np.ones((n, 1)), unstructured(1)),
                     ReTerm("a:b", codes, 1, np.ones((n, 1)), unstructured(1))))
    lay = NestedLayout(terms)
    data = NestedData.build(lay, terms, y, np.ones(n), X, np.zeros(n))
    fl = BoundAuxiliaryKernel(ZeroInflatedPoisson(), np.zeros(n), None, np.ones((n, 1)))
    Lams = [np.array([[0.0]]), np.array([[3.0]])]    # level order: inner, top
    return fl, data, np.array([0.5]), Lams


def test_plain_nested_newton_fails_where_the_safeguarded_iteration_converges():
    fl, data, beta, Lams = _hard_nested_group()
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            plain = nested_modes(fl, data, beta, Lams, maxiter=30)
        plain_b = float(plain.u[1][0, 0] * 3.0)
    except (ModeFailure, np.linalg.LinAlgError):
        plain_b = None
    st = safeguarded_nested_modes(fl, data, beta, Lams)
    assert float(st.u[1][0, 0] * 3.0) == pytest.approx(-1.99186, abs=1e-5)
    assert plain_b is None or abs(plain_b + 1.99186) > 1.0
    for start in (-8.0, 0.5, 10.0):
        far = safeguarded_nested_modes(fl, data, beta, Lams,
                                       u0=[np.zeros((1, 1)), np.array([[start]])])
        assert far.u[1][0, 0] == pytest.approx(st.u[1][0, 0], abs=1e-8)


# --------------------------------------------------------------------- fits
def _frame(family, seed=6):
    k, y, X, o, X_zi, terms, x, (top, inner) = _simulate(family, seed=seed, n_top=12)
    return pd.DataFrame({"y": y, "z": X[:, 1], "w": X_zi[:, 1],
                         "a": [f"A{i}" for i in top], "b": [f"B{i % 3}" for i in inner]})


def test_nested_aghq_fit_with_the_quadrature_check_and_auto():
    d = _frame("zipoisson")
    formula = "y ~ z + (1 | a/b)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lap = mlglm.glmer(formula, d, family="poisson", ziformula="~ w")
        res = mlglm.glmer(formula, d, family="poisson", ziformula="~ w", nagq=5)
        auto = mlglm.glmer(formula, d, family="poisson", ziformula="~ w", nagq="auto")
    assert isinstance(res.model.objective(5), AuxiliaryNested)
    assert lap.converged and res.converged and auto.converged
    # the AGHQ optimum is the AGHQ objective's maximum: at least its value at Laplace's
    obj = res.model.objective(5)
    assert res.llf >= obj(np.asarray(lap.outcome.x)) - 1e-8
    chk = res.optim.quadrature_check
    assert chk is not None and chk.nagq == 5 and chk.nagq_check == 7
    assert np.isfinite(chk.llf_check) and chk.adequate
    assert auto.optim.auto is not None and auto.optim.auto.settled
    assert auto.llf == pytest.approx(res.llf, abs=1e-2)
    assert "zi_w" in res.zi_params.index and np.all(np.isfinite(res.bse))
