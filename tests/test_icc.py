"""ICC and variance explained (mlglm/results/icc.py).

Reference numbers:
- tests/reference/lmm_hsb.json, written by tests/reference/references_lmm.R (lme4::lmer,
  REML, on the bundled HSB data): tau00 and sigma^2 of the null, meanses and slope models.
- The lecture (Barron, "Multilevel Models", Trinity Term 2018; /work/shared/seed/
  000_d738aed55a65211f.txt): ICC 8.61/(8.61 + 39.15) = .18, (8.61 - 2.64)/8.61 = .69,
  remaining ICC 2.64/(2.64 + 39.16) = .06.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import statsmodels.formula.api as smf
from scipy import special

import mlglm
from mlglm.results.icc import ICCResult, VarianceExplained, icc, variance_explained

REF_PATH = Path(__file__).resolve().parent / "reference" / "lmm_hsb.json"
REF = json.loads(REF_PATH.read_text()) if REF_PATH.exists() else None
needs_ref = pytest.mark.skipif(REF is None, reason="lmm_hsb.json (references_lmm.R) not found")

# lme4 REML variance components for HSB (lmm_hsb.json, "null_reml" and "meanses_reml"),
# repeated here so the lecture checks below run without the JSON too.
TAU00_NULL, SIGMA2_NULL = 8.61402483714869, 39.1483218909986
TAU00_MEANSES, SIGMA2_MEANSES = 2.63887823833871, 39.1570772190281
# Agreement with lme4 REML variance components: both optimise the same profiled criterion.
TOL_VARCOMP_REL = 1e-4


@pytest.fixture(scope="module")
def hsb():
    return mlglm.datasets.load_hsb()


@pytest.fixture(scope="module")
def hsb_fits(hsb):
    return {
        "null": mlglm.lmer("mAch ~ 1 + (1 | school)", hsb),
        "meanses": mlglm.lmer("mAch ~ meanses + (1 | school)", hsb),
        "slope": mlglm.lmer("mAch ~ cses + (1 + cses | school)", hsb),
    }


@pytest.fixture(scope="module")
def contraception():
    return mlglm.datasets.load_contraception()


@pytest.fixture(scope="module")
def ticks_fit():
    d = mlglm.datasets.load_grouseticks()
    return mlglm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", d, family="poisson")


# ------------------------------------------------------------------ Gaussian
def test_gaussian_by_hand(hsb_fits):
    r = hsb_fits["null"]
    tau, s2 = float(np.asarray(r.cov_re)[0, 0]), float(r.scale)
    out = icc(r)
    assert out.value == pytest.approx(tau / (tau + s2), rel=1e-12)
    assert dict(out.components) == {"tau00": tau, "sigma2": s2}
    assert out.between == tau and out.within == s2
    assert "tau00 / (tau00 + sigma^2)" in out.method
    assert float(out) == out.value


def test_hsb_null_icc_matches_lme4_and_lecture(hsb_fits):
    # lme4 (lmm_hsb.json null_reml): 8.61402483714869 / (8.61402483714869 + 39.1483218909986)
    expected = TAU00_NULL / (TAU00_NULL + SIGMA2_NULL)
    assert expected == pytest.approx(0.18035, abs=5e-5)
    out = icc(hsb_fits["null"])
    assert out.components["tau00"] == pytest.approx(TAU00_NULL, rel=TOL_VARCOMP_REL)
    assert out.components["sigma2"] == pytest.approx(SIGMA2_NULL, rel=TOL_VARCOMP_REL)
    assert out.value == pytest.approx(expected, abs=1e-4)
    assert round(out.value, 2) == 0.18  # lecture: rho = 8.61 / (8.61 + 39.15) = .18


@needs_ref
def test_reference_file_agrees_with_constants():
    assert REF["null_reml"]["cov_re"][0][0] == TAU00_NULL
    assert REF["null_reml"]["sigma2"] == SIGMA2_NULL
    assert REF["meanses_reml"]["cov_re"][0][0] == TAU00_MEANSES
    assert REF["meanses_reml"]["sigma2"] == SIGMA2_MEANSES


def test_results_method(hsb_fits):
    assert hsb_fits["null"].icc().value == icc(hsb_fits["null"]).value


def test_variance_explained_lecture(hsb_fits):
    ve = variance_explained(hsb_fits["null"], hsb_fits["meanses"])
    assert isinstance(ve, VarianceExplained)
    # lme4 components (lmm_hsb.json): (8.614 - 2.639) / 8.614
    assert ve.prop_between == pytest.approx((TAU00_NULL - TAU00_MEANSES) / TAU00_NULL, abs=1e-4)
    assert round(ve.prop_between, 2) == 0.69  # lecture: (8.61 - 2.64) / 8.61 = .69
    assert round(ve.icc_full.value, 2) == 0.06  # lecture: 2.64 / (2.64 + 39.16) = .06
    assert ve.icc_full.value == pytest.approx(
        TAU00_MEANSES / (TAU00_MEANSES + SIGMA2_MEANSES), abs=1e-4)
    assert ve.prop_within == pytest.approx((SIGMA2_NULL - SIGMA2_MEANSES) / SIGMA2_NULL,
                                           abs=1e-5)
    assert ve.reduced_model == "mAch ~ 1 + (1 | school)"
    assert ve.full_model == "mAch ~ meanses + (1 | school)"
    text = str(ve)
    assert "mAch ~ meanses + (1 | school)" in text and "0.69" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        ve.prop_between = 0.0


def test_works_on_statsmodels_mixedlm(hsb):
    res = smf.mixedlm("mAch ~ 1", hsb, groups="school").fit(reml=True)
    tau, s2 = float(np.asarray(res.cov_re)[0, 0]), float(res.scale)
    out = icc(res)
    assert out.value == pytest.approx(tau / (tau + s2), rel=1e-12)
    # statsmodels' REML optimum is close to lme4's (lmm_hsb.json null_reml)
    assert out.value == pytest.approx(TAU00_NULL / (TAU00_NULL + SIGMA2_NULL), abs=1e-3)


def test_variance_explained_on_statsmodels(hsb):
    r0 = smf.mixedlm("mAch ~ 1", hsb, groups="school").fit(reml=True)
    r1 = smf.mixedlm("mAch ~ meanses", hsb, groups="school").fit(reml=True)
    ve = variance_explained(r0, r1)
    assert round(ve.prop_between, 2) == 0.69
    assert ve.full_model == "mAch ~ meanses + (1 | school)"


# -------------------------------------------------------------- random slopes
def test_random_slope_default_is_tau00(hsb_fits):
    r = hsb_fits["slope"]
    S = np.asarray(r.cov_re, dtype=float)
    out = icc(r)
    assert out.components["tau00"] == pytest.approx(S[0, 0])
    assert out.value == pytest.approx(S[0, 0] / (S[0, 0] + r.scale))
    assert "cses = 0" in out.note


def test_random_slope_at(hsb_fits):
    r = hsb_fits["slope"]
    S = np.asarray(r.cov_re, dtype=float)
    out = icc(r, at={"cses": 1.5})
    between = S[0, 0] + 2 * 1.5 * S[0, 1] + 1.5 ** 2 * S[1, 1]  # z' Sigma z, z = (1, 1.5)
    assert out.components["between_variance"] == pytest.approx(between, rel=1e-12)
    assert out.value == pytest.approx(between / (between + r.scale), rel=1e-12)
    assert "cses=1.5" in out.note


def test_random_slope_adjusted(hsb_fits, hsb):
    r = hsb_fits["slope"]
    S = np.asarray(r.cov_re, dtype=float)
    x = hsb["cses"].to_numpy()  # the rows the model was fitted to (no missing values)
    between = np.mean(S[0, 0] + 2 * x * S[0, 1] + x ** 2 * S[1, 1])
    out = icc(r, adjusted=True)
    assert out.components["between_variance"] == pytest.approx(between, rel=1e-10)
    assert out.value == pytest.approx(between / (between + r.scale), rel=1e-10)
    assert "Johnson 2014" in out.note
    # random intercept only: adjusted == plain
    assert icc(hsb_fits["null"], adjusted=True).value == pytest.approx(
        icc(hsb_fits["null"]).value)


def test_random_slope_bad_arguments(hsb_fits):
    r = hsb_fits["slope"]
    with pytest.raises(ValueError, match="not random-effect columns"):
        icc(r, at={"ses": 1.0})
    with pytest.raises(ValueError, match="not both"):
        icc(r, at={"cses": 1.0}, adjusted=True)


def test_no_random_intercept_needs_at(hsb):
    r = mlglm.lmer("mAch ~ cses + (0 + cses | school)", hsb)
    with pytest.raises(ValueError, match="no random intercept"):
        icc(r)
    s = float(np.asarray(r.cov_re)[0, 0])
    assert icc(r, at={"cses": 2.0}).value == pytest.approx(4 * s / (4 * s + r.scale))


# ------------------------------------------------------------------ binomial
@pytest.mark.parametrize("link, within", [("logit", math.pi ** 2 / 3), ("probit", 1.0),
                                          ("cloglog", math.pi ** 2 / 6)])
def test_binomial_latent_by_hand(contraception, link, within):
    r = mlglm.glmer("y ~ urban + (1 | district)", contraception, family="binomial", link=link)
    tau = float(np.asarray(r.cov_re)[0, 0])
    out = icc(r)
    assert out.value == pytest.approx(tau / (tau + within), rel=1e-12)
    assert out.components["latent_variance"] == pytest.approx(within, rel=1e-15)
    assert f"({link})" in out.method
    with pytest.raises(ValueError):
        icc(r, method="delta")


# ------------------------------------------------------------------- Poisson
def _lambda(res, beta0):
    beta = np.asarray(res.fe_params)
    b0 = beta[0] if beta0 == "intercept" else np.mean(res.model.exog @ beta)
    tau = float(np.asarray(res.cov_re)[0, 0])
    return b0, np.exp(b0 + tau / 2), tau


@pytest.mark.parametrize("method", ["lognormal", "delta", "trigamma"])
@pytest.mark.parametrize("beta0", ["mean", "intercept"])
def test_poisson_by_hand(ticks_fit, method, beta0):
    # Nakagawa, Johnson & Schielzeth (2017), J. R. Soc. Interface 14: 20170213, Table 2:
    # lognormal ln(1 + 1/lambda), delta 1/lambda, trigamma psi'(lambda),
    # lambda = exp(beta0 + sigma_b^2 / 2)
    b0, lam, tau = _lambda(ticks_fit, beta0)
    within = {"lognormal": np.log(1 + 1 / lam), "delta": 1 / lam,
              "trigamma": special.polygamma(1, lam)}[method]
    out = icc(ticks_fit, method=method, beta0=beta0)
    assert out.components["lambda"] == pytest.approx(lam, rel=1e-12)
    assert out.components["beta0"] == pytest.approx(b0, rel=1e-12)
    assert out.components["distribution_variance"] == pytest.approx(within, rel=1e-12)
    assert out.value == pytest.approx(tau / (tau + within), rel=1e-12)
    assert method in out.method and "lambda = exp(beta0" in out.method
    assert ("intercept" if beta0 == "intercept" else "mean of the fixed linear predictor") \
        in out.note


def test_poisson_default_and_ordering(ticks_fit):
    assert icc(ticks_fit).method == icc(ticks_fit, method="lognormal").method
    # psi'(l) > 1/l > ln(1 + 1/l) for l > 0, so the ICCs are ordered the other way
    v = {m: icc(ticks_fit, method=m).value for m in ("lognormal", "delta", "trigamma")}
    assert v["lognormal"] > v["delta"] > v["trigamma"]
    with pytest.raises(ValueError):
        icc(ticks_fit, method="latent")


# -------------------------------------------------------------- the object
def test_iccresult_is_frozen_and_readable(hsb_fits):
    out = icc(hsb_fits["null"])
    assert isinstance(out, ICCResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.value = 0.5
    with pytest.raises(TypeError):
        out.components["tau00"] = 0.0
    assert "ICC = 0.1804" in str(out) and "tau00" in str(out)
    assert repr(out).startswith("ICCResult(value=0.1804")


def test_iccresult_pickles(hsb_fits):
    import pickle
    out = icc(hsb_fits["null"])
    back = pickle.loads(pickle.dumps(out))
    assert back == out and dict(back.components) == dict(out.components)
    ve = variance_explained(hsb_fits["null"], hsb_fits["meanses"])
    assert pickle.loads(pickle.dumps(ve)) == ve
    assert hash(out) == hash(back)


def test_one_factor_with_several_blocks_is_reported_as_one_factor(hsb):
    """(1 + cses | school) + (0 + meanses | school) is one grouping factor (two blocks of
    its covariance): its ICC is tau00 / (tau00 + sigma^2) in the one-factor form (it was
    reported as a table of factors) and the summary's random-effects table is MixedLM's."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mlglm.lmer("mAch ~ cses + meanses + (1 + cses | school) + (0 + meanses | school)",
                       hsb)
    S = np.asarray(r.cov_re, dtype=float)
    out = icc(r)
    assert dict(out.components) == {"tau00": S[0, 0], "sigma2": r.scale}
    assert out.value == pytest.approx(S[0, 0] / (S[0, 0] + r.scale), rel=1e-12)
    assert repr(out).startswith("ICCResult(value=")
    table = r.summary().tables[2]
    assert list(table.index) == ["school", "cses", "meanses", "Residual"]
