"""Zero-inflated, hurdle and beta GLMMs through the front doors (issue 23):
``glmer(..., ziformula=)``, ``MixedGLM.from_formula(..., ziformula=)``, the results
(``zi_params``, ``params``, ``bse``, ``cov_params``, ``conf_int``, Wald tests,
``summary``) and the refusals of bad input.

References: ``tests/reference/zi_open.json``, made by ``tests/reference/references_zi.R``
with glmmTMB 1.1.5 (``glmmTMB(count ~ spp + mined + (1 | site), ziformula = ~ spp +
mined, family = poisson() | nbinom2() | truncated_nbinom2(), data = Salamanders)``,
``count ~ spp * mined + cover + (1 | site)`` with ``ziformula = ~ 1``, and
``beta_family()`` on ``beta_sim.csv``). Observed against them (Laplace): llf above
glmmTMB's by 2e-12 to 1.8e-8, fixed effects of both parts within 3e-5, dispersion
within 1.2e-5 relative, SD within 6e-6, fixed-effect SEs within 5e-6 relative.
"""
from __future__ import annotations

import json
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import mlglm
from conftest import reference_path
from mlglm.core.spec.families_zero import ZERO_KERNELS
from mlglm.inference.profile import ProfileError
from mlglm.core.engines.crossed.objective_aux import AuxiliaryMultiLaplace
from mlglm.core.engines.nested.objective_aux import AuxiliaryNested
from mlglm import MixedGLMInputError
from zi_oracle import row_logpdf

#: issue 23's bounds against glmmTMB (optimiser outputs): the maximised llf at or above
#: glmmTMB's and within ZI_LLF_WINDOW of it, fixed effects of both parts within
#: ZI_FE_ATOL, the dispersion within ZI_DISPERSION_RTOL; the SEs (from the observed
#: information at slightly different optima) within ZI_SE_RTOL
ZI_LLF_WINDOW = 0.05
ZI_FE_ATOL = 2e-3
ZI_DISPERSION_RTOL = 0.01
ZI_SE_RTOL = 1e-3
#: glmmTMB's optimum is ours to rounding: ours may be below it by this (log-likelihood
#: units) at most
ZI_LLF_SLACK = 1e-6

FAMILY = {"zipoisson": "poisson", "zinb2": "negative_binomial",
          "hurdle_nb2": "truncated_negative_binomial", "beta": "beta"}


def _refs():
    path = reference_path("zi_open.json")
    if path is None:
        pytest.skip("zi_open.json not found")
    with open(path) as fh:
        return json.load(fh)


def _data(ref):
    if ref["data"] == "salamanders.csv":
        return mlglm.datasets.load_salamanders()
    return pd.read_csv(reference_path(ref["data"]), dtype={"g": str})


def _r_name(name: str) -> str:
    """patsy's coefficient name in R's spelling: Intercept -> (Intercept),
    spp[T.PR]:mined[T.no] -> sppPR:minedno."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[T\.([^\]]+)\]", r"\1", name)


@pytest.fixture(scope="module")
def fits():
    out = {}
    for key, ref in _refs().items():
        zi = None if ref["ziformula"] == "~ 0" else ref["ziformula"]
        out[key] = (mlglm.glmer(ref["formula"], _data(ref), family=FAMILY[ref["family"]],
                                ziformula=zi), ref)
    return out


@pytest.mark.parametrize("key", ["sal_zip", "sal_zinb2", "sal_hurdle_nb2", "sal_zip_ri_zi1",
                                 "beta_sim"])
def test_fit_against_glmmtmb(fits, key):
    res, ref = fits[key]
    assert res.converged
    assert res.llf >= ref["loglik"] - ZI_LLF_SLACK
    assert res.llf - ref["loglik"] < ZI_LLF_WINDOW
    fe = pd.Series(res.fe_params.values, index=[_r_name(n) for n in res.fe_params.index])
    for name, value in ref["fixef_cond"].items():
        assert fe[name] == pytest.approx(value, abs=ZI_FE_ATOL), name
    zi = pd.Series(res.zi_params.values,
                   index=[_r_name(n.removeprefix("zi_")) for n in res.zi_params.index])
    fixef_zi = ref["fixef_zi"] or {}          # (the beta reference has none: [])
    assert list(zi.index) == list(fixef_zi)
    for name, value in fixef_zi.items():
        assert zi[name] == pytest.approx(value, abs=ZI_FE_ATOL), name
    if ref["family"] != "zipoisson":
        assert res.dispersion == pytest.approx(ref["dispersion"], rel=ZI_DISPERSION_RTOL)
    (sd,) = ref["sd"].values()
    assert np.sqrt(res.cov_re.iloc[0, 0]) == pytest.approx(sd, abs=ZI_FE_ATOL)
    se = pd.Series(np.asarray(res.bse_fe), index=fe.index)
    for name, value in ref["se_cond"].items():
        assert se[name] == pytest.approx(value, rel=ZI_SE_RTOL), name


def test_results_layout(fits):
    res, ref = fits["sal_zinb2"]
    names = list(res.params.index)
    p, k = len(res.fe_params), len(res.zi_params)
    # fixed effects, the variance, the zero part, the dispersion
    assert names[p] == "site Var"
    assert names[p + 1:p + 1 + k] == list(res.zi_params.index)
    assert all(n.startswith("zi_") for n in res.zi_params.index)
    assert names[-1] == "theta"
    assert res.cov_params().shape == (len(names), len(names))
    np.testing.assert_allclose(res.params[res.zi_params.index], res.zi_params)
    assert np.all(np.isfinite(res.bse))
    ci = res.conf_int()
    assert list(ci.index) == names
    row = ci.loc["zi_mined[T.no]"]
    se = res.bse["zi_mined[T.no]"]
    assert row[0] == pytest.approx(res.params["zi_mined[T.no]"] - 1.959963984540054 * se)
    w = res.wald_test("zi_mined[T.no] = 0", scalar=True)
    assert float(w.statistic) == pytest.approx((res.params["zi_mined[T.no]"] / se) ** 2)
    text = res.summary().as_text()
    assert "Zero-inflation model, logit Pr(structural zero):" in text
    assert "zi_spp[T.PR]" in text and "Dispersion (theta)" in text
    assert res.df_modelwc == len(names)       # AIC counts the zero part


def test_hurdle_summary_says_hurdle(fits):
    res, _ = fits["sal_hurdle_nb2"]
    assert "Zero (hurdle) model, logit Pr(y = 0):" in res.summary().as_text()


def test_statsmodels_spelling_equals_glmer(fits):
    res, _ = fits["sal_zinb2"]
    d = mlglm.datasets.load_salamanders()
    mod = mlglm.MixedGLM.from_formula("count ~ spp + mined", d, groups="site",
                                      family="negative_binomial", ziformula="~ spp + mined")
    res2 = mod.fit()
    assert res2.llf == pytest.approx(res.llf, rel=1e-10)
    np.testing.assert_allclose(res2.params, res.params, atol=1e-6)
    # the model's log-likelihood at the reported parameters is the fit's
    assert mod.loglike(res2.params) == pytest.approx(res2.llf, rel=1e-10)


def test_ziformula_zero_or_absent_is_no_zero_part():
    d = mlglm.datasets.load_salamanders()
    a = mlglm.glmer("count ~ mined + (1 | site)", d, family="negative_binomial")
    b = mlglm.glmer("count ~ mined + (1 | site)", d, family="negative_binomial",
                    ziformula="~ 0")
    assert b.llf == pytest.approx(a.llf, rel=1e-12)
    assert len(b.zi_params) == 0 and list(b.params.index) == list(a.params.index)


def test_constant_zero_inflation_is_an_intercept():
    d = mlglm.datasets.load_salamanders()
    res = mlglm.glmer("count ~ mined + (1 | site)", d, family="poisson", ziformula="~ 1")
    assert list(res.zi_params.index) == ["zi_Intercept"]
    # the structural-zero share is between 0 and the share of zeros (60%)
    pi = 1 / (1 + np.exp(-res.zi_params.iloc[0]))
    assert 0 < pi < np.mean(d["count"] == 0)


def test_aghq_fit_salamanders_zinb2(fits):
    # AGHQ (11 points) at its own optimum against Laplace's: the exact integral at
    # glmmTMB's estimates is 0.0515 above the Laplace value (test_zero_families), and the
    # AGHQ optimum is 0.052 above the Laplace optimum (observed 0.0522)
    lap, _ = fits["sal_zinb2"]
    d = mlglm.datasets.load_salamanders()
    res = mlglm.glmer("count ~ spp + mined + (1 | site)", d, family="negative_binomial",
                      ziformula="~ spp + mined", nagq=11)
    assert res.converged and res.method == "aghq"
    assert 0.04 < res.llf - lap.llf < 0.07
    assert res.optim.quadrature_check.adequate


# ------------------------------------------------------------------------ bad input
def _sal():
    return mlglm.datasets.load_salamanders()


def test_zero_part_naming_a_missing_column():
    with pytest.raises(MixedGLMInputError, match="ziformula.*minde|minde"):
        mlglm.glmer("count ~ mined + (1 | site)", _sal(), family="poisson",
                    ziformula="~ minde")


@pytest.mark.parametrize("bad,match", [(-1.0, "non-negative"), (2.5, "whole numbers")])
def test_counts_must_be_counts(bad, match):
    d = _sal()
    d["count"] = d["count"].astype(float)
    d.loc[3, "count"] = bad
    with pytest.raises(MixedGLMInputError, match=match):
        mlglm.glmer("count ~ mined + (1 | site)", d, family="negative_binomial",
                    ziformula="~ 1")
    with pytest.raises(MixedGLMInputError, match=match):
        mlglm.glmer("count ~ mined + (1 | site)", d, family="truncated_poisson",
                    ziformula="~ 1")


@pytest.mark.parametrize("value", [0.0, 1.0, 1.3])
def test_beta_response_outside_the_open_interval(value):
    b = pd.read_csv(reference_path("beta_sim.csv"), dtype={"g": str})
    b.loc[0, "y"] = value
    with pytest.raises(MixedGLMInputError, match="strictly between 0 and 1.*Smithson-Verkuilen"
                                                 ".*zero-one-inflated"):
        mlglm.glmer("y ~ x + (1 | g)", b, family="beta")


def test_hurdle_needs_zeros_and_positives():
    d = _sal()
    pos = d[d["count"] > 0]
    with pytest.raises(MixedGLMInputError, match="needs zeros"):
        mlglm.glmer("count ~ mined + (1 | site)", pos, family="truncated_poisson",
                    ziformula="~ 1")
    zeros = d.assign(count=0)
    with pytest.raises(MixedGLMInputError, match="needs positive counts"):
        mlglm.glmer("count ~ mined + (1 | site)", zeros, family="truncated_negative_binomial",
                    ziformula="~ 1")


def test_hurdle_without_ziformula_is_refused():
    with pytest.raises(MixedGLMInputError, match="needs ziformula"):
        mlglm.glmer("count ~ mined + (1 | site)", _sal(), family="truncated_poisson")


@pytest.mark.parametrize("family", ["binomial", "gamma", "beta"])
def test_zero_part_for_a_family_without_one(family):
    d = _sal()
    d["y"] = (d["count"] > 0).astype(float) if family == "binomial" else \
        (d["count"] + 0.5) / (d["count"].max() + 1.0)
    with pytest.raises(MixedGLMInputError, match="no zero-inflated version"):
        mlglm.glmer("y ~ mined + (1 | site)", d, family=family, ziformula="~ 1")


def test_quadrature_with_crossed_factors_refused_with_the_reason():
    d = _sal()
    with pytest.raises(MixedGLMInputError, match="crossed"):
        mlglm.glmer("count ~ mined + (1 | site) + (1 | spp)", d, family="poisson",
                    ziformula="~ 1", nagq=5)


def test_prior_weights_refused():
    d = _sal()
    with pytest.raises(MixedGLMInputError, match="prior weights"):
        mlglm.glmer("count ~ mined + (1 | site)", d, family="poisson", ziformula="~ 1",
                    weights=np.ones(len(d)))


def test_bar_term_in_the_zero_part_refused():
    with pytest.raises(MixedGLMInputError, match="random effects in the zero part"):
        mlglm.glmer("count ~ mined + (1 | site)", _sal(), family="poisson",
                    ziformula="~ mined + (1 | site)")


def test_rows_dropped_for_missing_values_in_the_zero_part():
    d = _sal()
    d["w"] = d["cover"]
    d.loc[:9, "w"] = np.nan
    with pytest.raises(MixedGLMInputError):
        mlglm.glmer("count ~ mined + (1 | site)", d, family="poisson", ziformula="~ w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("count ~ mined + (1 | site)", d, family="poisson", ziformula="~ w",
                          missing="drop")
        ref = mlglm.glmer("count ~ mined + (1 | site)", d.iloc[10:], family="poisson",
                          ziformula="~ w")
    assert res.nobs == len(d) - 10
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)


# ------------------------------------------------------------------------ prediction
def test_predict_scales_zero_inflation(fits):
    res, _ = fits["sal_zinb2"]
    d = mlglm.datasets.load_salamanders()
    mean = res.predict(which="mean", conditional=True)
    mu = res.predict(which="conditional_mean", conditional=True)
    eta = res.predict(which="linear", conditional=True)
    p0 = res.predict(which="zero_prob", conditional=True)
    X_zi = np.asarray(res.model.exog_zi)
    pi = 1 / (1 + np.exp(-(X_zi @ res.zi_params.to_numpy())))
    np.testing.assert_allclose(mu, np.exp(eta), rtol=1e-12)
    np.testing.assert_allclose(mean, (1 - pi) * mu, rtol=1e-12)
    theta = res.dispersion
    f0 = (theta / (theta + mu)) ** theta
    np.testing.assert_allclose(p0, pi + (1 - pi) * f0, rtol=1e-10)
    # new rows (a DataFrame) through both formulas: the fit's own rows again
    np.testing.assert_allclose(res.predict(d.iloc[:40], which="mean", conditional=True),
                               np.asarray(mean)[:40], rtol=1e-12)
    # the residuals are y - E y
    np.testing.assert_allclose(res.resid_response, d["count"].to_numpy() - np.asarray(mean),
                               rtol=1e-10, atol=1e-12)


def test_predict_hurdle_zero_share_is_the_observed_one(fits):
    # the hurdle's zero part is a logistic regression with an intercept and no random
    # effect, so its fitted Pr(y = 0) average the observed share of zeros (score equation)
    res, _ = fits["sal_hurdle_nb2"]
    d = mlglm.datasets.load_salamanders()
    p0 = np.asarray(res.predict(which="zero_prob", conditional=True))
    assert p0.mean() == pytest.approx(np.mean(d["count"] == 0), abs=1e-5)
    mu = np.asarray(res.predict(which="conditional_mean", conditional=True))
    theta = res.dispersion
    f0 = (theta / (theta + mu)) ** theta
    np.testing.assert_allclose(res.predict(which="mean", conditional=True),
                               (1 - p0) * mu / (1 - f0), rtol=1e-10)


def test_predict_refusals(fits):
    res, _ = fits["beta_sim"]
    with pytest.raises(ValueError, match="no zeros"):
        res.predict(which="zero_prob")
    with pytest.raises(ValueError, match="which must be"):
        res.predict(which="zprob")
    zinb, _ = fits["sal_zinb2"]
    with pytest.raises(NotImplementedError, match="marginal"):
        zinb.predict(marginal=True)
    with pytest.raises(NotImplementedError, match="population-averaged"):
        zinb.marginal_params()
    with pytest.raises(NotImplementedError, match="standard errors"):
        zinb.get_prediction()
    with pytest.raises(NotImplementedError, match="pooling"):
        zinb.compare_pooling()


def test_bootstrap_zero_inflated():
    # replicates carry the zero part; a replicate is the fit of the model to its simulated
    # response; replicate_params is in the layout of params
    d = mlglm.datasets.load_salamanders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("count ~ mined + (1 | site)", d, family="negative_binomial",
                          ziformula="~ mined")
        boot = res.bootstrap(6, seed=3)
    assert list(boot.replicates.columns) == ["Intercept", "mined[T.no]", "sd(Intercept)",
                                             "zi_Intercept", "zi_mined[T.no]", "theta"]
    assert list(boot.replicate_params().columns) == list(res.params.index)
    y = boot.response(2)
    assert np.all(y >= 0) and np.all(y == np.round(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = mlglm.glmer("count ~ mined + (1 | site)", d.assign(count=y),
                            family="negative_binomial", ziformula="~ mined")
    rep = boot.replicates.iloc[2]
    np.testing.assert_allclose(rep[list(res.zi_params.index)], refit.zi_params, atol=1e-5)
    np.testing.assert_allclose(rep["theta"], refit.dispersion, rtol=1e-5)
    ci = res.conf_int(method="bootstrap", boot=boot)
    assert list(ci.index) == list(res.params.index)


@pytest.mark.parametrize("key", ["sal_zinb2", "sal_hurdle_nb2", "sal_zip", "beta_sim"])
def test_simulate_matches_the_predicted_moments(fits, key):
    # 1000 replicates at the conditional modes: the simulated mean of every row and the
    # share of zeros, averaged over rows, against the predictions, within 5 Monte Carlo
    # standard errors (computed from the draws themselves)
    res, _ = fits[key]
    Y = res.simulate(1000, seed=23)
    assert Y.shape == (1000, res.nobs)
    mean = np.asarray(res.predict(which="mean", conditional=True))
    se = Y.mean(axis=1).std(ddof=1) / np.sqrt(Y.shape[0])
    assert abs(Y.mean() - mean.mean()) < 5 * se
    if res.model.fam.zero_part is not None:
        p0 = np.asarray(res.predict(which="zero_prob", conditional=True))
        zeros = (Y == 0).mean(axis=1)
        assert abs(zeros.mean() - p0.mean()) < 5 * zeros.std(ddof=1) / np.sqrt(Y.shape[0])
        if res.model.fam.zero_part == "hurdle":
            assert np.all(Y[Y > 0] >= 1)
    else:
        assert np.all((Y > 0) & (Y < 1))
    np.testing.assert_array_equal(res.simulate(3, seed=5), res.simulate(3, seed=5))


def _moments_by_summation(family, eta, a, t):
    """(E y, Var y) of one row by summing the oracle's scipy pmf over y = 0..3999."""
    y = np.arange(4000.0)
    p = np.exp(row_logpdf(family, y, np.full_like(y, eta), np.full_like(y, a), t))
    m1 = np.sum(y * p)
    return m1, np.sum(y * y * p) - m1 * m1


@pytest.mark.parametrize("family", ["zipoisson", "zinb2", "hurdle_poisson", "hurdle_nb2"])
def test_mean_zero_prob_and_variance_by_summation(family):
    names = {"zipoisson": "zipoisson", "zinb2": "zinbinom2", "hurdle_poisson": "truncated_poisson",
             "hurdle_nb2": "truncated_nbinom2"}
    k = ZERO_KERNELS[names[family]]()
    t = 0.4 if family.endswith("nb2") else None
    for eta, a in [(-2.0, -1.0), (0.3, 0.5), (2.5, -3.0), (4.0, 1.2)]:
        m1, var = _moments_by_summation(family, eta, a, t)
        assert float(k.mean(eta, a, t)) == pytest.approx(m1, rel=1e-9)
        assert float(k.variance(eta, a, t)) == pytest.approx(var, rel=1e-9)
        p0 = np.exp(row_logpdf(family, np.zeros(1), np.full(1, eta), np.full(1, a), t))[0]
        assert float(k.zero_prob(eta, a, t)) == pytest.approx(p0, rel=1e-12)


def test_pearson_residuals(fits):
    for key in ("sal_zinb2", "sal_hurdle_nb2", "beta_sim"):
        res, _ = fits[key]
        y = np.asarray(res.model.endog, dtype=float)
        mean = np.asarray(res.predict(which="mean", conditional=True))
        var = np.asarray(res.predict(which="variance", conditional=True))
        np.testing.assert_allclose(res.resid_pearson, (y - mean) / np.sqrt(var), rtol=1e-12)
        # roughly unit variance at the fit (a sanity bound, not a test of the model)
        assert 0.5 < np.var(res.resid_pearson) < 2.0
    res, _ = fits["beta_sim"]
    mu = np.asarray(res.predict(which="mean", conditional=True))
    np.testing.assert_allclose(res.predict(which="variance", conditional=True),
                               mu * (1 - mu) / (1 + res.dispersion), rtol=1e-12)


def test_beta_deviance_residuals_against_the_saturated_model(fits):
    # the saturated model at the fitted phi, independently: per row, scipy's Brent
    # (bounded) maximises scipy.stats.beta.logpdf over the mean, then
    # d_i = 2 [max - l(y_i | mu_i)], r_i = sign(y_i - mu_i) sqrt(d_i)
    from scipy import optimize, stats
    res, _ = fits["beta_sim"]
    y = np.asarray(res.model.endog, dtype=float)
    mu = np.asarray(res.predict(which="mean", conditional=True))
    phi = res.dispersion

    def ll(m, yi):
        return stats.beta.logpdf(yi, m * phi, (1 - m) * phi)
    want = []
    for yi, mi in zip(y, mu):
        best = optimize.minimize_scalar(lambda m: -ll(m, yi), bounds=(1e-9, 1 - 1e-9),
                                        method="bounded", options={"xatol": 1e-12})
        sat = max(-best.fun, ll(yi, yi))
        want.append(np.sign(yi - mi) * np.sqrt(max(2 * (sat - ll(mi, yi)), 0.0)))
    want = np.array(want)
    r = np.asarray(res.resid_deviance)
    # observed: agreement to 1e-9 (Brent's tolerance in m, squared in l)
    np.testing.assert_allclose(r, want, rtol=1e-6, atol=1e-6)
    # the saturated mean is not y itself (betareg's shortcut): there the "deviance" can
    # be negative on some rows
    sat_at_y = np.array([ll(yi, yi) for yi in y])
    assert np.any(sat_at_y < np.array([ll(mi, yi) for yi, mi in zip(y, mu)]))
    assert np.all(np.isfinite(r)) and 0.5 < np.var(r) < 2.0


@pytest.mark.parametrize("key", ["sal_zinb2", "sal_hurdle_nb2", "sal_zip"])
def test_zero_part_models_refuse_deviance_residuals_with_the_reason(fits, key):
    res, _ = fits[key]
    with pytest.raises(NotImplementedError, match="not defined for zero-inflated and hurdle"
                       ) as err:
        res.resid_deviance
    assert "resid_pearson" in str(err.value) and "resid_response" in str(err.value)
    # the residuals that are offered: y - E y with the zero part
    y = np.asarray(res.model.endog, dtype=float)
    mean = np.asarray(res.predict(which="mean", conditional=True))
    np.testing.assert_allclose(res.resid_response, y - mean, rtol=1e-12, atol=1e-12)
    assert np.all(np.isfinite(res.resid_pearson))


# ------------------------------------------------------------- several grouping factors
def _multi_refs():
    path = reference_path("zi_multi.json")
    if path is None:
        pytest.skip("zi_multi.json not found")
    with open(path) as fh:
        return json.load(fh)


@pytest.mark.parametrize("key", ["sal_zinb2_crossed", "sal_zip_nested"])
def test_several_factors_against_glmmtmb(key):
    # tests/reference/zi_multi.json, made by tests/reference/references_zi_multi.R
    # (glmmTMB 1.1.5): count ~ mined + (1 | site) + (1 | spp), ziformula = ~ mined, nbinom2;
    # count ~ spp + mined + (1 | site) + (1 | site:sample), ziformula = ~ mined, poisson.
    # Observed: llf above glmmTMB's by 4e-11 and 1e-9, fixed effects of both parts within
    # 8e-6, SEs within 6e-6 relative.
    ref = _multi_refs()[key]
    d = mlglm.datasets.load_salamanders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer(ref["formula"], d, family=FAMILY[ref["family"]],
                          ziformula=ref["ziformula"])
    assert res.converged
    assert ref["loglik"] - ZI_LLF_SLACK <= res.llf < ref["loglik"] + ZI_LLF_WINDOW
    fe = dict(zip([_r_name(n) for n in res.fe_params.index], res.fe_params))
    zi = dict(zip([_r_name(n.removeprefix("zi_")) for n in res.zi_params.index],
                  res.zi_params))
    for name, value in ref["fixef_cond"].items():
        assert fe[name] == pytest.approx(value, abs=ZI_FE_ATOL), name
    for name, value in ref["fixef_zi"].items():
        assert zi[name] == pytest.approx(value, abs=ZI_FE_ATOL), name
    for factor, sd in ref["sd"].items():
        assert np.sqrt(res.params[f"{factor} Var"]) == pytest.approx(sd[0] if isinstance(
            sd, list) else sd, abs=ZI_FE_ATOL)
    if ref["family"] != "zipoisson":
        assert res.dispersion == pytest.approx(ref["dispersion"], rel=ZI_DISPERSION_RTOL)
    se = dict(zip(fe, np.asarray(res.bse_fe)))
    for name, value in ref["se_cond"].items():
        assert se[name] == pytest.approx(value, rel=ZI_SE_RTOL), name
    # the log-likelihood at glmmTMB's estimates is glmmTMB's
    params = res.params.copy()
    for n in res.fe_params.index:
        params[n] = ref["fixef_cond"][_r_name(n)]
    for n in res.zi_params.index:
        params[n] = ref["fixef_zi"][_r_name(n.removeprefix("zi_"))]
    for factor, sd in ref["sd"].items():
        params[f"{factor} Var"] = (sd[0] if isinstance(sd, list) else sd) ** 2
    if ref["family"] != "zipoisson":
        params["theta"] = ref["dispersion"]
    assert res.model.loglike(params.to_numpy()) == pytest.approx(ref["loglik"], rel=1e-6)


def _central_gradient(obj, x):
    def f(z):
        obj.u, obj._last, obj._pred = None, None, None
        return obj.value_and_gradient(z)[0]
    fd = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = 1e-3
        d1 = (f(x + e) - f(x - e)) / 2e-3
        d2 = (f(x + 2 * e) - f(x - 2 * e)) / 4e-3
        fd.append((4 * d1 - d2) / 3)
    return np.array(fd)


def test_several_factor_engine_on_one_factor_is_the_one_term_engine(fits):
    res, _ = fits["sal_zinb2"]
    m = res.model
    pb = m.problem
    obj = AuxiliaryMultiLaplace(m.fam.kernel(), pb.y, pb.X, pb.offset, m.re_terms,
                                X_zi=m.exog_zi)
    assert obj.value_and_gradient(np.asarray(res.outcome.x))[0] == \
        pytest.approx(res.llf, rel=1e-12)


@pytest.mark.parametrize("formula,family,zi", [
    ("count ~ mined + (1 | site) + (1 | spp)", "negative_binomial", "~ mined"),
    ("count ~ mined + (1 | site) + (1 | site:sample)", "truncated_poisson", "~ mined")])
def test_several_factor_gradient_against_central_differences(formula, family, zi):
    # away from the optimum (every parameter moved), crossed and nested factors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer(formula, mlglm.datasets.load_salamanders(), family=family,
                          ziformula=zi)
    obj = res.model.objective(1)
    # crossed: the blocked factorisation; nested: the tree elimination
    assert isinstance(obj, AuxiliaryNested if "site:sample" in formula else
                      AuxiliaryMultiLaplace)
    x = np.asarray(res.outcome.x) + 0.05 * np.sin(np.arange(res.outcome.x.size) + 1.0)
    obj.u, obj._last, obj._pred = None, None, None
    g = obj.value_and_gradient(x)[1]
    np.testing.assert_allclose(g, _central_gradient(obj, x), rtol=1e-6, atol=1e-6)


def test_pickle_round_trip(fits):
    res, _ = fits["sal_zinb2"]
    d = mlglm.datasets.load_salamanders()
    back = pickle.loads(pickle.dumps(res))
    assert back.llf == res.llf
    np.testing.assert_array_equal(back.zi_params, res.zi_params)
    # new rows' zero part coded again from ziformula after unpickling
    np.testing.assert_allclose(back.predict(d.iloc[:7], which="zero_prob", conditional=True),
                               res.predict(d.iloc[:7], which="zero_prob", conditional=True),
                               rtol=1e-12)


def _constrained_max(obj, x_hat, i, value):
    """max of the objective over x with x[i] = value: BFGS over the other coordinates
    (scipy, from the fit), independent of the profiler."""
    free = np.arange(x_hat.size) != i

    def f(z):
        x = x_hat.copy()
        x[free], x[i] = z, value
        obj.u, obj._last = None, None
        v, g = obj.value_and_gradient(x)
        return -v, -g[free]
    r = optimize.minimize(f, x_hat[free], jac=True, method="BFGS", options={"gtol": 1e-7})
    return -r.fun


def test_profile_intervals_of_the_zero_part_and_theta():
    # ZINB2 with a constant zero part: the profile limits of zi_Intercept (upper) and of
    # log theta satisfy 2 (llf - max l | coordinate fixed) = 1.96^2 by an independent
    # constrained maximisation; zi_Intercept's lower limit is -inf (pi -> 0 is the NB
    # model, within the interval: the likelihood-ratio statistic stays below 3.84)
    d = mlglm.datasets.load_salamanders()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("count ~ mined + (1 | site)", d, family="negative_binomial",
                          ziformula="~ 1")
        prof = res.intervals(method="profile")
    assert list(prof.index) == ["Intercept", "mined[T.no]", "sd(Intercept)", "zi_Intercept",
                                "theta"]
    assert prof.loc["zi_Intercept", "lower"] == -np.inf
    obj = res.model.objective(1)
    x_hat = np.asarray(res.outcome.x)
    i_zi, i_t = x_hat.size - 2, x_hat.size - 1
    z2 = 1.959963984540054 ** 2
    up = prof.loc["zi_Intercept", "upper"]
    assert 2 * (res.llf - _constrained_max(obj, x_hat, i_zi, up)) == pytest.approx(z2, abs=2e-3)
    for side in ("lower", "upper"):
        t = np.log(prof.loc["theta", side])
        assert 2 * (res.llf - _constrained_max(obj, x_hat, i_t, t)) == \
            pytest.approx(z2, abs=2e-3)
    # the params-layout view
    ci = res.conf_int(method="profile")
    assert ci.loc["zi_Intercept", 1] == pytest.approx(up)


def test_salamanders_zinb2_optimum_is_local_and_the_profile_says_so(fits):
    # glmmTMB's ZINB2 estimates (and this fit, from the default start) are a local maximum:
    # along zi_mined -> -inf (no structural zeros at unmined sites) and zi_sppDF -> -inf
    # the log-likelihood rises to -814.758 (a fit started from the profile point found,
    # observed). The profile finds a higher point and refuses to report intervals around
    # the lower one.
    res, _ = fits["sal_zinb2"]
    with pytest.raises(ProfileError, match="higher log-likelihood than the fit"):
        res.intervals(method="profile", which=["zi_mined[T.no]"])
