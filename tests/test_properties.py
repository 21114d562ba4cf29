"""Property tests (hypothesis) over random small data sets: group relabelling, covariate
scaling, and Sigma -> 0 giving statsmodels GLM's log-likelihood."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from hypothesis import given, settings, strategies as st

import mlglm

FAM = {"binomial": sm.families.Binomial(), "poisson": sm.families.Poisson()}


def _frame(seed, family, n_groups):
    rng = np.random.default_rng(seed)
    size = rng.integers(4, 12, n_groups)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    eta = 0.2 + 0.6 * x + rng.normal(scale=0.8, size=n_groups)[g]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta))) if family == "binomial" else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "g": np.char.add("grp", g.astype(str))})


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["binomial", "poisson"]),
       n_groups=st.integers(8, 20))
def test_group_relabelling_changes_nothing(seed, family, n_groups):
    d = _frame(seed, family, n_groups)
    labels = d["g"].unique()
    perm = dict(zip(labels, np.random.default_rng(seed).permutation(
        [f"L{k:03d}" for k in range(len(labels))])))
    a = mlglm.glmer("y ~ x + (1 | g)", d, family=family)
    b = mlglm.glmer("y ~ x + (1 | g)", d.assign(g=d["g"].map(perm)), family=family)
    assert b.llf == pytest.approx(a.llf, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(b.fe_params, a.fe_params, atol=1e-5)
    for old, new in perm.items():
        assert b.random_effects[new].iloc[0] == pytest.approx(a.random_effects[old].iloc[0],
                                                              abs=1e-5)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["binomial", "poisson"]),
       c=st.sampled_from([0.01, 0.5, 3.0, 100.0]))
def test_scaling_a_covariate_scales_its_coefficient(seed, family, c):
    d = _frame(seed, family, 12)
    a = mlglm.glmer("y ~ x + (1 | g)", d, family=family)
    b = mlglm.glmer("y ~ x + (1 | g)", d.assign(x=c * d["x"]), family=family)
    assert b.llf == pytest.approx(a.llf, abs=1e-6)
    assert b.fe_params["x"] == pytest.approx(a.fe_params["x"] / c, rel=1e-4, abs=1e-7)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["binomial", "poisson"]),
       nagq=st.sampled_from([1, 5]))
def test_zero_covariance_is_the_glm_loglik(seed, family, nagq):
    d = _frame(seed, family, 10)
    glm = smf.glm("y ~ x", d, family=FAM[family]).fit()
    m = mlglm.MixedGLM.from_formula("y ~ x", d, groups="g", family=FAM[family])
    params = np.concatenate([np.asarray(glm.params), [0.0]])
    method = "laplace" if nagq == 1 else "aghq"
    assert m.loglike(params, method=method, nagq=nagq) == pytest.approx(glm.llf, rel=1e-10)
