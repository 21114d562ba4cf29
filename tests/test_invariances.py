"""Invariances of the fitted model (DESIGN.md section 6).

Row order, group labels, Bernoulli rows vs the aggregated binomial, exposure vs a log
offset, Sigma -> 0 vs an ordinary ``sm.GLM``, and the rescaling of a covariate. Each is
checked on the log-likelihood at fixed parameters (tight: INVARIANCE_LLF_RTOL) and on
refitted estimates (REFIT_PARAM_ATOL). Property tests (hypothesis) draw small data sets
for row order and for nagq = 1 AGHQ == Laplace.

No reference numbers: each side of every comparison is computed here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

import mlglm
from mlglm.core.engines.blockdiag.aghq import aghq_loglik
from mlglm.core.spec.covariance import theta_is_diagonal_entry, theta_to_Lambda
from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.blockdiag.laplace import laplace_loglik
from mlglm.core.engines.blockdiag.modes import conditional_modes
from mlglm.core.engines.blockdiag.objective import MarginalLoglik

from tolerances import (INVARIANCE_LLF_RTOL, REFIT_LLF_ATOL, REFIT_PARAM_ATOL,
                        SAME_NUMBER_RTOL)


def binary_data(seed, n_groups=25):
    """Bernoulli data with discrete covariates (x in {0, 1}, z with three levels), so that
    rows can be aggregated into binomial cells, and a random slope on x."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rng.integers(8, 30, size=n_groups))
    n = g.size
    x = rng.binomial(1, 0.5, size=n)
    z = rng.integers(0, 3, size=n)
    b = rng.normal(size=(n_groups, 2)) * [0.8, 0.5]
    eta = -0.3 + 0.7 * x - 0.4 * (z == 1) + 0.3 * (z == 2) + b[g, 0] + b[g, 1] * x
    y = rng.binomial(1, special.expit(eta))
    return pd.DataFrame({"y": y, "x": x, "z": pd.Categorical(z),
                         "g": [f"s{k:02d}" for k in g]})


def count_data(seed, n_groups=20):
    """Poisson counts with an exposure (rates), a continuous covariate and a random slope."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rng.integers(5, 15, size=n_groups))
    n = g.size
    x = rng.normal(size=n)
    expo = rng.uniform(0.5, 4.0, size=n)
    b = rng.normal(size=(n_groups, 2)) * [0.5, 0.3]
    mu = expo * np.exp(0.2 + 0.4 * x + b[g, 0] + b[g, 1] * x)
    return pd.DataFrame({"y": rng.poisson(mu), "x": x, "expo": expo,
                         "g": [f"h{k:02d}" for k in g]})


def binomial_model(df, formula="y ~ x + z", re_formula="~x", **kw):
    return mlglm.MixedGLM.from_formula(formula, df, groups="g", re_formula=re_formula,
                                       family=sm.families.Binomial(), **kw)


def poisson_model(df, re_formula="~x", **kw):
    return mlglm.PoissonMixedGLM.from_formula("y ~ x", df, groups="g", re_formula=re_formula,
                                              **kw)


METHODS = [dict(method="laplace"), dict(method="aghq", nagq=5)]
METHOD_IDS = ["laplace", "aghq5"]


@pytest.fixture(scope="module")
def bin_df():
    return binary_data(3)


@pytest.fixture(scope="module")
def bin_fits(bin_df):
    """Reference fits of the Bernoulli data, one per method (cached)."""
    model = binomial_model(bin_df)
    return model, [model.fit(**kw) for kw in METHODS]


def assert_same_fit(a, b, llf_shift=0.0):
    assert list(a.params.index) == list(b.params.index)
    np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=0,
                               atol=REFIT_PARAM_ATOL)
    assert a.llf == pytest.approx(b.llf + llf_shift, abs=REFIT_LLF_ATOL)


# -------------------------------------------------------------------------- row order
@pytest.mark.parametrize("k", [0, 1], ids=METHOD_IDS)
def test_row_order(bin_df, bin_fits, k):
    model, fits = bin_fits
    res = fits[k]
    perm = np.random.default_rng(11).permutation(len(bin_df))
    shuffled = bin_df.iloc[perm].reset_index(drop=True)
    m2 = binomial_model(shuffled)
    assert m2.loglike(np.asarray(res.params), **METHODS[k]) == pytest.approx(
        res.llf, rel=INVARIANCE_LLF_RTOL)
    res2 = m2.fit(**METHODS[k])
    assert_same_fit(res2, res)
    # random effects follow their group, not the row order
    for g in ("s00", "s13", "s24"):
        np.testing.assert_allclose(res2.random_effects[g], res.random_effects[g], atol=1e-6)
    # fitted values come back in the caller's row order
    np.testing.assert_allclose(np.asarray(res2.fittedvalues), np.asarray(res.fittedvalues)[perm],
                               atol=1e-6)


# --------------------------------------------------------------------- group labels
@pytest.mark.parametrize("k", [0, 1], ids=METHOD_IDS)
def test_group_relabelling(bin_df, bin_fits, k):
    """Permuting the labels (so the groups sort in another order) changes nothing."""
    model, fits = bin_fits
    res = fits[k]
    labels = sorted(bin_df["g"].unique())
    rng = np.random.default_rng(5)
    new = dict(zip(labels, [f"L{v:03d}" for v in rng.permutation(len(labels)) * 7]))
    m2 = binomial_model(bin_df.assign(g=bin_df["g"].map(new)))
    assert m2.loglike(np.asarray(res.params), **METHODS[k]) == pytest.approx(
        res.llf, rel=INVARIANCE_LLF_RTOL)
    res2 = m2.fit(**METHODS[k])
    assert_same_fit(res2, res)
    for old, lab in list(new.items())[:5]:
        np.testing.assert_allclose(res2.random_effects[lab], res.random_effects[old], atol=1e-6)


# ------------------------------------------------------- Bernoulli rows == aggregated
@pytest.mark.parametrize("k", [0, 1], ids=METHOD_IDS)
def test_bernoulli_rows_equal_aggregated_binomial(bin_df, bin_fits, k):
    """Aggregating rows with equal covariates within a group into (successes, failures)
    cells changes the log-likelihood by exactly sum log C(m, y) and the estimates not."""
    model, fits = bin_fits
    res = fits[k]
    agg = (bin_df.groupby(["g", "x", "z"], observed=True)
           .agg(s=("y", "sum"), m=("y", "size")).reset_index())
    agg["f"] = agg["m"] - agg["s"]
    assert len(agg) < len(bin_df) / 3
    const = float(np.sum(special.gammaln(agg["m"] + 1) - special.gammaln(agg["s"] + 1)
                         - special.gammaln(agg["f"] + 1)))
    ma = binomial_model(agg, formula="s + f ~ x + z")
    assert ma.loglike(np.asarray(res.params), **METHODS[k]) == pytest.approx(
        res.llf + const, rel=INVARIANCE_LLF_RTOL)
    res_a = ma.fit(**METHODS[k])
    assert_same_fit(res_a, res, llf_shift=const)
    np.testing.assert_allclose(np.asarray(res_a.bse), np.asarray(res.bse), rtol=1e-4)


# ------------------------------------------------------------ exposure == log offset
@pytest.mark.parametrize("k", [0, 1], ids=METHOD_IDS)
def test_exposure_equals_log_offset(k):
    df = count_data(7)
    m_exp = poisson_model(df, exposure="expo")
    m_off = poisson_model(df, offset=np.log(df["expo"].to_numpy()))
    r_exp = m_exp.fit(**METHODS[k])
    assert m_off.loglike(np.asarray(r_exp.params), **METHODS[k]) == pytest.approx(
        r_exp.llf, rel=INVARIANCE_LLF_RTOL)
    assert_same_fit(m_off.fit(**METHODS[k]), r_exp)
    # and the array API with offset= is the same model again
    m_arr = mlglm.PoissonMixedGLM(m_exp.endog, m_exp.exog, m_exp.groups,
                                  exog_re=m_exp.exog_re, exposure=df["expo"].to_numpy())
    assert m_arr.loglike(np.asarray(r_exp.params), **METHODS[k]) == pytest.approx(
        r_exp.llf, rel=INVARIANCE_LLF_RTOL)


# ----------------------------------------------------------- Sigma -> 0 gives sm.GLM
def _glm_cases():
    bern = binary_data(21, n_groups=15)
    agg = (bern.groupby(["g", "x", "z"], observed=True)
           .agg(s=("y", "sum"), m=("y", "size")).reset_index())
    agg["f"] = agg["m"] - agg["s"]
    counts = count_data(22)
    return {
        "bernoulli-logit": (binomial_model(bern, re_formula=None),
                            sm.GLM.from_formula("y ~ x + z", bern, family=sm.families.Binomial())),
        "bernoulli-probit": (
            mlglm.MixedGLM.from_formula("y ~ x + z", bern, groups="g",
                                        family=sm.families.Binomial(sm.families.links.Probit())),
            sm.GLM.from_formula("y ~ x + z", bern,
                                family=sm.families.Binomial(sm.families.links.Probit()))),
        "binomial-trials-cloglog": (
            mlglm.MixedGLM.from_formula(
                "s + f ~ x + z", agg, groups="g", re_formula="~x",
                family=sm.families.Binomial(link=sm.families.links.CLogLog())),
            sm.GLM.from_formula("s + f ~ x + z", agg,
                                family=sm.families.Binomial(link=sm.families.links.CLogLog()))),
        "poisson-exposure": (poisson_model(counts, exposure="expo"),
                             sm.GLM.from_formula("y ~ x", counts, family=sm.families.Poisson(),
                                                 exposure=counts["expo"])),
    }


@pytest.mark.parametrize("case", ["bernoulli-logit", "bernoulli-probit",
                                  "binomial-trials-cloglog", "poisson-exposure"])
def test_zero_covariance_gives_glm_loglik(case):
    """model.loglike at (GLM estimates, Sigma = 0) == sm.GLM(...).fit().llf, for Laplace
    and AGHQ (at Sigma = 0 both are exact), constants included."""
    model, glm = _glm_cases()[case]
    gres = glm.fit()
    assert list(gres.params.index) == list(model.exog_names)
    k = model.q * (model.q + 1) // 2
    params = np.concatenate([np.asarray(gres.params), np.zeros(k)])
    for kw in METHODS:
        assert model.loglike(params, **kw) == pytest.approx(gres.llf, rel=INVARIANCE_LLF_RTOL)
    # continuity: a tiny variance changes the log-likelihood by next to nothing
    small = params.copy()
    small[model.k_fe] = 1e-10
    assert model.loglike(small) == pytest.approx(gres.llf, rel=1e-8)


# --------------------------------------------------------------- covariate scaling
@pytest.mark.parametrize("c", [10.0, 0.05])
def test_covariate_scaling(bin_df, bin_fits, c):
    """x -> c x: the coefficient of x becomes beta_x / c, the random slope's SD sd / c,
    the intercept-slope covariance cov / c, and the log-likelihood is unchanged."""
    model, fits = bin_fits
    res = fits[0]
    res_c = binomial_model(bin_df.assign(x=bin_df["x"] * c)).fit()
    assert res_c.llf == pytest.approx(res.llf, abs=REFIT_LLF_ATOL)
    fe, fe_c = res.fe_params, res_c.fe_params
    assert fe_c["x"] * c == pytest.approx(fe["x"], abs=REFIT_PARAM_ATOL)
    for name in ("Intercept", "z[T.1]", "z[T.2]"):
        assert fe_c[name] == pytest.approx(fe[name], abs=REFIT_PARAM_ATOL)
    S, S_c = np.asarray(res.cov_re), np.asarray(res_c.cov_re)
    D = np.diag([1.0, c])
    np.testing.assert_allclose(D @ S_c @ D, S, atol=REFIT_PARAM_ATOL)
    assert res_c.bse_fe["x"] * c == pytest.approx(res.bse_fe["x"], rel=1e-3)


# ================================================================ property tests
def small_data(seed, family, q, n_groups):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 9, size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    eta = X @ [0.1, 0.5] + np.einsum("nq,nq->n", Z, rng.normal(scale=0.7, size=(n_groups, q))[g])
    if family == "poisson":
        y, m = rng.poisson(np.exp(eta)), None
    else:
        m = rng.integers(1, 4, size=n)
        y = rng.binomial(m, special.expit(eta))
    diag = theta_is_diagonal_entry(q)
    theta = np.where(diag, rng.uniform(0.2, 1.5, size=diag.size), rng.normal(scale=0.3,
                                                                           size=diag.size))
    return dict(y=y, X=X, Z=Z, g=g, m=m, beta=np.array([0.1, 0.5]) + rng.normal(scale=0.2, size=2),
                theta=theta)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["binomial", "poisson"]),
       q=st.integers(1, 2), n_groups=st.integers(2, 12), nagq=st.sampled_from([1, 3, 7]))
def test_property_row_order(seed, family, q, n_groups, nagq):
    """Any permutation of the rows gives the same log-likelihood (core objective)."""
    d = small_data(seed, family, q, n_groups)
    fl = Family(family, "logit" if family == "binomial" else "log").kernel()
    x = np.concatenate([d["beta"], d["theta"]])
    data = make_grouped_data(d["y"], d["X"], d["Z"], d["g"], m=d["m"])
    perm = np.random.default_rng(seed ^ 0x5A5A).permutation(len(d["y"]))
    data_p = make_grouped_data(d["y"][perm], d["X"][perm], d["Z"][perm], d["g"][perm],
                               m=None if d["m"] is None else d["m"][perm])
    v = MarginalLoglik(fl, data, nagq=nagq)(x)
    v_p = MarginalLoglik(fl, data_p, nagq=nagq)(x)
    assert v_p == pytest.approx(v, rel=INVARIANCE_LLF_RTOL)


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), family=st.sampled_from(["binomial", "poisson"]),
       link_i=st.integers(0, 2), q=st.integers(1, 3), n_groups=st.integers(2, 12))
def test_property_one_node_aghq_is_laplace(seed, family, link_i, q, n_groups):
    d = small_data(seed, family, q, n_groups)
    link = ("logit", "probit", "cloglog")[link_i] if family == "binomial" else "log"
    fl = Family(family, link).kernel()
    data = make_grouped_data(d["y"], d["X"], d["Z"], d["g"], m=d["m"])
    Lambda = theta_to_Lambda(d["theta"], q)
    state = conditional_modes(fl, data, d["beta"], Lambda)
    np.testing.assert_allclose(aghq_loglik(fl, data, state, Lambda, 1), laplace_loglik(state),
                               rtol=SAME_NUMBER_RTOL, atol=0)
    x = np.concatenate([d["beta"], d["theta"]])
    assert MarginalLoglik(fl, data, nagq=1)(x) == pytest.approx(
        laplace_loglik(state).sum() + np.sum(fl.log_const(data.y, data.m)), rel=SAME_NUMBER_RTOL)


# ------------------------------------------------------------ warm starts (bug found)
def test_objective_value_does_not_depend_on_warm_start():
    """The log-likelihood is a function of x alone; where the inner Newton iteration starts
    (``obj.u``, the modes of the previous evaluation) must not matter.

    Regression test for a bug this suite found (fixed in commit 8d04143): for the
    Poisson random-slope data of test_results_api.make_data(2024) (exposure, 40 groups),
    evaluating at x_prev and then at x_next (two consecutive points of the BFGS line
    search of ``fit()``, rounded to 6 digits; column 1 of Lambda flips sign and grows,
    Lambda_11: -0.137 -> -3.689) raised ModeFailure("conditional modes did not converge
    in 100 Newton steps (largest step 0.0525)"): from the warm start exp(eta) overshot
    by ~e^50 and Newton with step halving needed 104 steps; from u = 0, 11."""
    from test_results_api import build_model, make_data
    model = build_model(make_data(2024), "poisson")
    x_prev = np.array([0.111089, 0.278535, -0.110492, 1.657834, -0.278095, -0.136552,
                       3.957675, 2.256209])
    x_next = np.array([-0.030073, 0.422523, -0.020389, 1.661686, -0.316493, -3.689205,
                       1.312847, 5.169604])
    cold = model.objective(1)
    v_cold, g_cold = cold.value_and_gradient(x_next)
    warm = model.objective(1)
    warm.value_and_gradient(x_prev)
    v_warm, g_warm = warm.value_and_gradient(x_next)
    assert v_warm == pytest.approx(v_cold, rel=INVARIANCE_LLF_RTOL)
    np.testing.assert_allclose(g_warm, g_cold, rtol=1e-6, atol=1e-6)
