"""lme4 and statsmodels idioms that broke or misled (issue 21, items 4, 5, 7, 10 and the
friction list).

lme4 numbers are from tests/reference/lme4_idioms.R (lme4 1.1-31, R 4.2.2), written to
lme4_idioms.json beside it: sleepstudy as bundled in mlglm/datasets,
fm0 <- lmer(Reaction ~ Days + (1 | Subject)), fm1 <- lmer(Reaction ~ Days + (Days | Subject))
(REML, lmer's default).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy.special import expit
from statsmodels.regression.mixed_linear_model import MixedLM

import mlglm
from conftest import _load_json
from mlglm.design.data_checks import MixedGLMInputError
from test_intervals import PROFILE_VS_LME4_ATOL
from tolerances import LMM_FE_RTOL, LMM_LLF_RTOL, SAME_NUMBER_RTOL

#: lme4's anova chi-square vs ours: both are differences of ML log-likelihoods of fits
#: converged to ~1e-6 relative (LMM_LLF_RTOL on llf ~ 900 -> ~1e-3 absolute on 2 dllf)
CHISQ_ATOL = 2e-3


@pytest.fixture(scope="module")
def ref():
    return _load_json("lme4_idioms.json")


@pytest.fixture(scope="module")
def sleep():
    return mlglm.datasets.load_sleepstudy()


@pytest.fixture(scope="module")
def fm0(sleep):
    return mlglm.lmer("Reaction ~ Days + (1 | Subject)", sleep)


@pytest.fixture(scope="module")
def fm1(sleep):
    return mlglm.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def new(ref):
    return pd.DataFrame({"Subject": ref["new_subject"], "Days": ref["new_days"]})


# ----------------------------------------------------- item 4: allow_new_levels
def test_allow_new_levels_means_conditional_predictions(fm1, new, ref):
    """predict(new, allow_new_levels=True) returned population-level values for every
    row, Subject 308 included; it now implies conditional=True, as lme4's
    allow.new.levels goes with its conditional default (the REML estimates agree with
    lmer's to LMM_FE_RTOL, and so do the predictions)."""
    lme4 = np.asarray(ref["predict_conditional"])       # 253.6637, 351.9950, 303.7415
    got = fm1.predict(new, allow_new_levels=True)
    np.testing.assert_allclose(got, lme4, rtol=LMM_FE_RTOL)
    np.testing.assert_allclose(fm1.predict(new, conditional=True, allow_new_levels=True), got,
                               rtol=SAME_NUMBER_RTOL)
    pred = fm1.get_prediction(new, allow_new_levels=True)
    np.testing.assert_allclose(pred.predicted_mean, lme4, rtol=LMM_FE_RTOL)
    # the new subject gets the population level, lme4's re.form = NA value
    assert got.iloc[2] == pytest.approx(ref["predict_population"][2], rel=LMM_FE_RTOL)
    np.testing.assert_allclose(fm1.predict(new), ref["predict_population"], rtol=LMM_FE_RTOL)


def test_allow_new_levels_with_conditional_false_is_refused(fm1, new):
    for call in (fm1.predict, fm1.get_prediction):
        with pytest.raises(ValueError, match="allow_new_levels=True is for conditional"):
            call(new, conditional=False, allow_new_levels=True)
    with pytest.raises(ValueError, match="allow_new_levels is for conditional"):
        fm1.predict(new, marginal=True, allow_new_levels=True)


def test_allow_new_levels_several_factors():
    """The several-factor path: Pastes (1 | batch/cask), a known cask and a new one."""
    d = mlglm.datasets.load_pastes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mlglm.lmer("strength ~ 1 + (1 | batch/cask)", d)
    rows = pd.DataFrame({"batch": ["A", "A"], "cask": ["a", "zz"]})
    got = r.predict(rows, allow_new_levels=True)
    np.testing.assert_allclose(got, r.predict(rows, conditional=True, allow_new_levels=True),
                               rtol=SAME_NUMBER_RTOL)
    assert got.iloc[0] != pytest.approx(r.fe_params.iloc[0], rel=1e-3)      # conditional
    np.testing.assert_allclose(r.get_prediction(rows, allow_new_levels=True).predicted_mean,
                               got, rtol=SAME_NUMBER_RTOL)


# ------------------------------------------------------------ item 5: anova of lmer fits
def test_anova_of_reml_fits_refits_by_ml_as_lme4(fm0, fm1, ref):
    """anova(m0, m1) of two lmer (REML) fits refused with a false reason ("fixed-effect
    structures"); lme4 refits both by ML, says so and prints Chisq 42.139 on 2 df."""
    a = ref["anova_refit"]
    with pytest.warns(UserWarning, match=r"refitting model\(s\) with ML \(instead of REML\)"):
        tab = mlglm.anova(fm0, fm1)
    assert list(tab["npar"]) == a["npar"]
    np.testing.assert_allclose(tab["logLik"], a["logLik"], rtol=LMM_LLF_RTOL)
    np.testing.assert_allclose(tab["AIC"], a["AIC"], rtol=LMM_LLF_RTOL)
    np.testing.assert_allclose(tab["BIC"], a["BIC"], rtol=LMM_LLF_RTOL)
    assert tab["Chisq"].iloc[1] == pytest.approx(a["Chisq"], abs=CHISQ_ATOL)
    assert tab["Df"].iloc[1] == a["Df"]
    assert len(tab.attrs["refitted"]) == 2 and "refitted with ML" in repr(tab)
    assert fm0.method == fm1.method == "reml"            # the user's fits are untouched


def test_anova_refit_false_compares_reml_fits_with_the_same_fixed_effects(fm0, fm1, ref, sleep):
    a = ref["anova_reml"]                     # lme4: anova(fm0, fm1, refit = FALSE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # no refit, nothing to say
        tab = mlglm.anova(fm0, fm1, refit=False)
    np.testing.assert_allclose(tab["logLik"], a["logLik"], rtol=LMM_LLF_RTOL)
    assert tab["Chisq"].iloc[1] == pytest.approx(a["Chisq"], abs=CHISQ_ATOL)
    assert not tab.attrs["refitted"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # Days has no fixed effect: intended here
        other = mlglm.lmer("Reaction ~ 1 + (Days | Subject)", sleep)
    with pytest.raises(ValueError, match="same fixed effects"):
        mlglm.anova(other, fm1, refit=False)
    with pytest.raises(ValueError, match="same fixed effects"):
        mlglm.compare_lr_test(other, fm1)
    # REML fits of the same fixed effects: a valid LR test of the random effects
    t = mlglm.compare_lr_test(fm1, fm0, boundary=False)
    assert t.statistic == pytest.approx(a["Chisq"], abs=CHISQ_ATOL)


def test_anova_mixing_reml_and_ml_without_refit_is_refused(fm0, sleep):
    ml = mlglm.lmer("Reaction ~ Days + (Days | Subject)", sleep, REML=False)
    with pytest.raises(ValueError, match="one fit is REML and the other ML"):
        mlglm.anova(fm0, ml, refit=False)
    with pytest.warns(UserWarning, match="refitting"):
        tab = mlglm.anova(fm0, ml)
    assert tab.attrs["refitted"] == [tab.index[0]]


# -------------------------------------------------------------- item 7: the array API
def test_array_api_predicts_the_fixed_effects_part():
    """BinomialMixedGLM(endog, exog, groups=...).fit().predict(X_new) raised
    NotImplementedError naming "Group Var"; statsmodels' MixedLM returns X_new @ beta."""
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(20), 20)
    X = sm.add_constant(rng.normal(size=g.size))
    eta = -0.3 + 0.8 * X[:, 1] + 0.7 * rng.normal(size=20)[g]
    y = rng.binomial(1, expit(eta))
    res = mlglm.BinomialMixedGLM(y, X, groups=g).fit()
    X_new = np.array([[1.0, -1.0], [1.0, 0.5]])
    mu = expit(X_new @ np.asarray(res.fe_params))
    np.testing.assert_allclose(res.predict(X_new), mu, rtol=SAME_NUMBER_RTOL)
    np.testing.assert_allclose(res.get_prediction(X_new).predicted_mean, mu,
                               rtol=SAME_NUMBER_RTOL)
    assert np.all(res.predict_marginal(X_new)["mean"] > 0)       # a random intercept: Z = 1
    with pytest.raises(ValueError, match="DataFrame"):
        res.predict(X_new, conditional=True)
    # the Gaussian model against statsmodels' MixedLM on the same arrays
    yg = eta + rng.normal(size=g.size)
    ours = mlglm.MixedGLM(yg, X, groups=g).fit()
    theirs = MixedLM(yg, X, groups=g).fit()
    np.testing.assert_allclose(ours.predict(X_new), X_new @ np.asarray(ours.fe_params),
                               rtol=SAME_NUMBER_RTOL)
    # statsmodels' estimates agree with ours to its optimiser's tolerance (~1e-7 here)
    np.testing.assert_allclose(ours.predict(X_new), theirs.predict(X_new), atol=1e-6)


# ------------------------------------------------------------ item 10: vcomp
def test_vcomp_holds_the_variance_components_as_statsmodels():
    """vc_formula fits left vcomp empty. Pastes, strength ~ 1, groups=batch, vc cask
    (statsmodels' test_lme.py::test_pastes_vcomp): vcomp, k_vc and the parameter names
    as statsmodels' MixedLM; statsmodels stops a little short of the REML optimum
    (its llf is below ours), so its vcomp agrees to 1e-3 relative."""
    d = mlglm.datasets.load_pastes()
    vcf = {"cask": "0 + C(cask)"}
    ours = mlglm.MixedGLM.from_formula("strength ~ 1", d, groups="batch", re_formula="1",
                                       vc_formula=vcf).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = MixedLM.from_formula("strength ~ 1", d, groups="batch", re_formula="1",
                                      vc_formula=vcf).fit()
    assert ours.llf >= theirs.llf - 1e-9 * abs(theirs.llf)
    assert ours.k_vc == theirs.k_vc == 1
    np.testing.assert_allclose(ours.vcomp, theirs.vcomp, rtol=1e-3)
    assert ours.vcomp[0] == ours.cov_re["cask"].iloc[0, 0] == ours.params["cask Var"]
    assert list(ours.params.index) == list(theirs.params.index)
    # statsmodels' params hold variances divided by the residual variance; ours do not
    assert ours.params["cask Var"] == pytest.approx(theirs.params["cask Var"] * theirs.scale,
                                                    rel=1e-3)


def test_vcomp_order_and_tied_entries_as_statsmodels():
    """Two vc entries, one of indicators (a nested factor) and one a random slope
    within groups (merged into groups' factor as a tied block): vcomp in sorted key
    order with statsmodels' values (the fits agree to 1e-8 in llf here)."""
    rng = np.random.default_rng(5)
    G, m = 40, 12
    g = np.repeat(np.arange(G), m)
    x, z = rng.normal(size=G * m), rng.normal(size=G * m)
    c = np.tile(np.repeat([0, 1, 2], 4), G)
    y = (1 + 0.5 * x + rng.normal(size=G)[g] + 0.8 * rng.normal(size=G)[g] * z
         + 0.7 * rng.normal(size=(G, 3))[g, c] + rng.normal(size=G * m))
    df = pd.DataFrame(dict(y=y, x=x, z=z, g=g, c=c))
    vcf = {"slope": "0 + z", "cls": "0 + C(c)"}
    ours = mlglm.MixedGLM.from_formula("y ~ x", df, groups="g", re_formula="1",
                                       vc_formula=vcf).fit()
    theirs = MixedLM.from_formula("y ~ x", df, groups="g", re_formula="1",
                                  vc_formula=vcf).fit()
    assert ours.llf == pytest.approx(theirs.llf, rel=1e-8)
    np.testing.assert_allclose(ours.vcomp, theirs.vcomp, rtol=1e-4)
    assert ours.vcomp[0] == ours.cov_re["cls"].iloc[0, 0]
    assert ours.vcomp[1] == ours.cov_re["g"].loc["slope", "slope"]


# ----------------------------------------------------------- friction: lme4 spellings
@pytest.fixture(scope="module")
def cbpp():
    return mlglm.datasets.load_cbpp()


CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def test_method_names_in_any_case(cbpp):
    m = mlglm.glmer(CBPP, cbpp).model
    assert m.fit(method="Laplace").llf == m.fit(method="laplace").llf
    assert m.fit(method="AGHQ", nagq=5).llf == m.fit(method="aghq", nagq=5).llf
    assert m.fit(method="AGHQ", nagq=5).method == "aghq"
    d = mlglm.datasets.load_sleepstudy()
    lm = mlglm.MixedGLM.from_formula("Reaction ~ Days", d, groups="Subject")
    assert lm.fit(method="ML").method == "ml" and lm.fit(method="REML").method == "reml"


def test_isSingular_is_lme4s_name(fm1):
    assert mlglm.isSingular(fm1) is False and fm1.is_singular() is False
    rng = np.random.default_rng(1)         # no group effect: the SD is estimated at 0
    d = pd.DataFrame({"y": rng.normal(size=50), "g": np.repeat(np.arange(10), 5)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mlglm.lmer("y ~ 1 + (1 | g)", d)
    assert mlglm.isSingular(r) is True and r.is_singular() is True
    assert mlglm.isSingular(r, tol=0.0) is False


def test_control_maps_iteration_limits_and_refuses_the_rest(cbpp, sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        capped = mlglm.glmer(CBPP, cbpp, control={"optCtrl": {"maxfun": 2}})
        direct = mlglm.glmer(CBPP, cbpp, maxiter=2)
    assert capped.llf == direct.llf
    with pytest.raises(MixedGLMInputError, match="optimizer.*no counterpart"):
        mlglm.glmer(CBPP, cbpp, control={"optimizer": "bobyqa"})
    with pytest.raises(MixedGLMInputError, match="warnings.filterwarnings"):
        mlglm.glmer(CBPP, cbpp, control={"check.conv.singular": "ignore"})
    with pytest.raises(MixedGLMInputError, match="optCtrl 'xtol_abs'"):
        mlglm.glmer(CBPP, cbpp, control={"optCtrl": {"xtol_abs": 1e-8}})
    with pytest.raises(MixedGLMInputError, match="lmer honours none"):
        mlglm.lmer("Reaction ~ Days + (1 | Subject)", sleep,
                   control={"optimizer": "Nelder_Mead"})
    with pytest.raises(MixedGLMInputError, match="as a dict"):
        mlglm.glmer(CBPP, cbpp, control="bobyqa")


# ------------------------------------------------ friction: statsmodels conveniences
def test_predict_takes_a_dict_of_columns(fm1):
    frame = pd.DataFrame({"Days": [0.0, 4.5]})
    np.testing.assert_allclose(fm1.predict({"Days": [0.0, 4.5]}), fm1.predict(frame),
                               rtol=SAME_NUMBER_RTOL)
    assert fm1.predict({"Days": 4.5}).iloc[0] == pytest.approx(fm1.predict(frame).iloc[1],
                                                               rel=SAME_NUMBER_RTOL)
    rows = {"Days": [1.0], "Subject": ["308"]}
    assert fm1.get_prediction(rows, conditional=True).predicted_mean[0] == pytest.approx(
        fm1.predict(pd.DataFrame(rows), conditional=True).iloc[0], rel=SAME_NUMBER_RTOL)


def test_conf_int_cols(fm1):
    full = fm1.conf_int()
    np.testing.assert_array_equal(fm1.conf_int(cols=[1]), full.iloc[[1]])
    sub = fm1.conf_int(cols=["Days", "Intercept"])
    assert list(sub.index) == ["Days", "Intercept"]
    np.testing.assert_array_equal(sub, full.loc[["Days", "Intercept"]])
    np.testing.assert_array_equal(fm1.conf_int(0.1, [0]), fm1.conf_int(alpha=0.1).iloc[[0]])
    np.testing.assert_array_equal(fm1._results.conf_int(cols=[1]), np.asarray(full)[[1]])
    with pytest.raises(KeyError, match="not a params label"):
        fm1.conf_int(cols=["days"])


# ----------------------------------------------------- friction: REML profile intervals
def test_profile_of_a_reml_fit_says_which_likelihood_and_offers_lme4s(fm1, ref):
    """lme4's confint(fm1, method = "profile") of the REML fit profiles the ML deviance
    (its limits equal those of refitML(fm1), lme4_idioms.json); criterion="ml" gives
    lme4's numbers; the default profiles the variance parameters on REML; each row says
    which likelihood it was profiled on."""
    ml = fm1.intervals(method="profile", criterion="ml")
    assert ml.attrs["criterion"] == "ml" and (ml["interval"] == "profile (ML)").all()
    names = {"sd_(Intercept)|Subject": "sd(Intercept)", "sd_Days|Subject": "sd(Days)",
             "cor_Days.(Intercept)|Subject": "cor(Intercept, Days)", "sigma": "sigma",
             "(Intercept)": "Intercept", "Days": "Days"}
    lo, hi = ref["profile_reml_fit"]["lower"], ref["profile_reml_fit"]["upper"]
    for name, a, b in zip(ref["profile_names"], lo, hi):
        assert ml.loc[names[name], "lower"] == pytest.approx(a, abs=PROFILE_VS_LME4_ATOL), name
        assert ml.loc[names[name], "upper"] == pytest.approx(b, abs=PROFILE_VS_LME4_ATOL), name
    reml = fm1.intervals(method="profile", which=["sd(Intercept)", "Days"])
    assert reml.attrs["criterion"] == "reml"
    assert reml.loc["sd(Intercept)", "interval"] == "profile (REML)"
    assert reml.loc["Days", "interval"] == "profile (ML)"        # fixed effects: always ML
    # the REML interval is not lme4's: it is wider for sd(Intercept) (REML SD is larger)
    assert reml.loc["sd(Intercept)", "upper"] > ml.loc["sd(Intercept)", "upper"] + 0.5


# --------------------------------------------------------------------- stale words
def test_docstrings_do_not_say_one_grouping_factor():
    for doc in (mlglm.__doc__, mlglm.MixedGLM.__doc__):
        assert "one grouping factor," not in doc
        assert "several" in doc and "nested" in doc and "crossed" in doc
