"""Numerical trouble handled: extreme linear predictors, all-0/1 groups, groups of size 1,
10^5 groups; property test: random small inputs end in a fit or a documented exception."""
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import mlglm
from mlglm.core.spec.family import Family
from mlglm.datasets import simulate_glmm

DOCUMENTED = (mlglm.MixedGLMInputError, mlglm.FormulaError, mlglm.FitError)


@pytest.mark.parametrize("family,link", [("binomial", "logit"), ("binomial", "probit"),
                                         ("binomial", "cloglog"), ("poisson", "log")])
def test_extreme_linear_predictors_stay_finite(family, link):
    fl = Family(family, link).kernel()
    eta = np.array([-800.0, -60.0, -30.0, 0.0, 30.0, 60.0, 800.0])
    y = np.array([0.0, 0, 1, 1, 1, 1, 1]) if family == "binomial" else np.arange(7.0)
    m = np.ones_like(eta)
    # no NaN anywhere; infinities only where the log-likelihood itself is -inf
    # (an observed success at probability exp(-800))
    for out in fl.derivatives(eta, y, m, third=True):
        assert not np.any(np.isnan(out))
    k, d1 = fl.kernel_d1(eta, y, m)
    assert not np.any(np.isnan(k)) and not np.any(np.isnan(d1))
    assert np.all(np.isfinite(fl.kernel(eta[1:-1], y[1:-1], m[1:-1])))


def test_groups_all_zero_or_all_one_and_size_one_fit():
    sim = simulate_glmm("binomial", n_groups=60, group_size=8, fe_params=[0.0, 0.7],
                        cov_re=1.0, seed=4)
    d = sim.data.copy()
    d.loc[d["g"] == "g0001", "y"] = 0
    d.loc[d["g"] == "g0002", "y"] = 1
    single = pd.DataFrame({"y": [1, 0, 1], "x1": [0.1, -0.3, 0.5], "g": ["s1", "s2", "s3"]})
    d = pd.concat([d, single], ignore_index=True)
    res = mlglm.glmer("y ~ x1 + (1 | g)", d)
    assert res.converged and np.isfinite(res.llf)
    b = res.random_effects
    assert b["g0001"].iloc[0] < 0 < b["g0002"].iloc[0]       # shrunk, finite
    assert abs(b["s1"].iloc[0]) < 2


def test_hundred_thousand_groups():
    sim = simulate_glmm("poisson", n_groups=100_000, group_size=2, fe_params=[0.3, 0.2],
                        cov_re=0.3, seed=8)
    res = mlglm.glmer("y ~ x1 + (1 | g)", sim.data, family="poisson")
    assert res.converged and res.n_groups == 100_000
    assert abs(res.cov_re.iloc[0, 0] - 0.3) < 0.05


def test_summary_advises_aghq_for_small_binary_groups():
    sim = simulate_glmm("binomial", n_groups=100, group_size=4, fe_params=[0.0, 0.5],
                        cov_re=1.0, seed=9)
    res = mlglm.glmer("y ~ x1 + (1 | g)", sim.data)
    assert "method='aghq'" in str(res.summary())


@settings(max_examples=25, deadline=None)
@given(n_groups=st.integers(1, 6), size=st.integers(1, 6), seed=st.integers(0, 10_000),
       family=st.sampled_from(["binomial", "poisson"]), slope=st.booleans(),
       nan=st.booleans(), nagq=st.sampled_from([1, 3]))
def test_random_inputs_fit_or_raise_documented_errors(n_groups, size, seed, family, slope, nan,
                                                       nagq):
    rng = np.random.default_rng(seed)
    n = n_groups * size
    x = rng.normal(size=n) * rng.choice([1e-3, 1.0, 1e3])
    if nan and n > 1:
        x[rng.integers(n)] = np.nan
    y = rng.integers(0, 2, n) if family == "binomial" else rng.poisson(2.0, n)
    d = pd.DataFrame({"y": y, "x": x, "g": np.repeat(np.arange(n_groups), size).astype(str)})
    formula = "y ~ x + (1 + x | g)" if slope else "y ~ x + (1 | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = mlglm.glmer(formula, d, family=family, nagq=nagq)
        except DOCUMENTED:
            return
    assert np.isfinite(res.llf)
