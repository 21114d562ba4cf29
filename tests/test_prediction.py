"""Predictions: statsmodels' conventions, group matching on new data, standard errors.

Issue 10, item 3: ``predict(new_data)`` silently dropped the random effects when the
group column's dtype differed from the fit's (int vs str labels), silently gave new
groups a zero random effect, and swallowed unknown keywords. Now labels are matched by
value, unseen levels are an error naming them unless ``allow_new_levels=True`` (lme4's
``allow.new.levels``), unknown keywords raise. The default is the population level, as
statsmodels' ``MixedLMResults.predict``; DataFrame input gives a Series with its index.

References: lme4api.json (tests/reference/lme4api.R: lme4 1.1-31 ``predict`` with
``allow.new.levels = TRUE`` and with ``re.form = NA``); statsmodels' MixedLM; for the
standard errors of ``get_prediction``, Henderson's mixed-model equations solved densely
(Gaussian) and central differences of the conditional modes (GLMMs), in this file.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import special, stats

import mlglm
from conftest import _load_json
from test_results_api import build_model, make_data
from tolerances import FE_ATOL, LMM_FE_RTOL

Z95 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def df():
    return make_data()


@pytest.fixture(scope="module")
def lme4api():
    return _load_json("lme4api.json")


def _lmer(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlglm.lmer(formula, data)


# ----------------------------------------------------------- statsmodels' conventions
def test_default_is_population_level_as_statsmodels_mixedlm(df):
    """Gaussian: our default predict equals statsmodels' MixedLMResults.predict (the
    fixed part only) on the same model; the fits agree to ~1e-6, statsmodels'
    optimiser tolerance."""
    res = build_model(df, "gaussian").fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smr = smf.mixedlm("score ~ x1 + x2 + c", df, groups="g", re_formula="~x1").fit(reml=True)
    new = df.iloc[[3, 50, 100]]
    np.testing.assert_allclose(res.predict(new), smr.predict(new), atol=1e-5)
    np.testing.assert_allclose(res.predict(new), res.predict(new, conditional=False))
    assert not np.allclose(res.predict(new), res.predict(new, conditional=True))


@pytest.mark.parametrize("family", ["binomial-logit", "poisson", "gaussian"])
def test_series_with_the_data_index(df, family):
    res = build_model(df, family).fit()
    new = df.iloc[[5, 1, 9]].set_axis(["a", "b", "c"])
    kw = {"exposure": new["expo"].to_numpy()} if family == "poisson" else {}
    for conditional in (False, True):
        out = res.predict(new, conditional=conditional, **kw)
        assert isinstance(out, pd.Series) and list(out.index) == ["a", "b", "c"]
    frame = res.get_prediction(new, conditional=True, **kw).summary_frame()
    assert list(frame.index) == ["a", "b", "c"]
    assert list(frame.columns) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper"]
    assert isinstance(res.predict(), np.ndarray)          # in-sample, as statsmodels


def test_unknown_keywords_raise(df):
    res = build_model(df, "binomial-logit").fit()
    with pytest.raises(TypeError, match="linear"):
        res.predict(df.head(), linear=True)
    with pytest.raises(TypeError, match="allow_new_level"):
        res.predict(df.head(), conditional=True, allow_new_level=True)


# ------------------------------------------------------------------ group matching
def test_group_labels_match_by_value_across_dtypes(df):
    """A fit with integer group labels predicts new data whose group column holds the
    same labels as strings (a CSV read as text), and the other way round."""
    codes = df["g"].str[1:].astype(int)                    # "g07" -> 7
    as_int = df.assign(g=codes)
    as_str = df.assign(g=codes.astype(str))                # "7"
    new = df.iloc[[0, 40, 80]]
    for fit_data, new_g in ((as_int, new["g"].str[1:].astype(int).astype(str)),
                            (as_str, new["g"].str[1:].astype(int))):
        res = _lmer("score ~ x1 + (1 + x1 | g)", fit_data)
        want = res.fittedvalues[[0, 40, 80]]              # in-sample conditional means
        got = res.predict(new.assign(g=new_g.to_numpy()), conditional=True)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        assert not np.allclose(got, res.predict(new))     # the random effects are in


def test_unseen_levels_are_named_unless_allowed(df):
    res = build_model(df, "binomial-logit").fit()
    new = df.iloc[[0, 1, 2]].copy()
    new["g"] = [df["g"].iloc[0], "never-seen", "also-new"]
    with pytest.raises(ValueError, match="never-seen.*also-new.*allow_new_levels"):
        res.predict(new, conditional=True)
    with pytest.raises(ValueError, match="never-seen"):
        res.get_prediction(new, conditional=True)
    got = res.predict(new, conditional=True, allow_new_levels=True)
    pop = res.predict(new)
    assert got.iloc[1] == pop.iloc[1] and got.iloc[2] == pop.iloc[2]
    assert got.iloc[0] == pytest.approx(res.fittedvalues[0], rel=1e-12)
    se = res.get_prediction(new, conditional=True, allow_new_levels=True).se_mean
    se_pop = res.get_prediction(new).se_mean
    assert se[1] == pytest.approx(se_pop[1], rel=1e-12) and se[0] != se_pop[0]


def test_predictions_equal_lme4s(lme4api, cbpp, hsb):
    """lme4's predict(newdata, allow.new.levels = TRUE) (conditional, a new group at the
    population level) and predict(re.form = NA). cbpp: Laplace fits agree with lme4 to
    FE_ATOL on the logit scale, so probabilities to about FE_ATOL / 2; HSB (REML) to
    the lmer tolerance."""
    ref = lme4api["cbpp"]
    res = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    new = pd.DataFrame({"herd": ref["new_herd"],
                        "period": pd.Categorical(ref["new_period"],
                                                 categories=cbpp["period"].cat.categories)})
    np.testing.assert_allclose(res.predict(new, conditional=True, allow_new_levels=True),
                               ref["predict_conditional"], atol=FE_ATOL)
    np.testing.assert_allclose(res.predict(new), ref["predict_population"], atol=FE_ATOL)
    ref = lme4api["hsb"]
    res = _lmer("mAch ~ cses + (1 + cses | school)", hsb)
    new = pd.DataFrame({"school": ref["new_school"], "cses": ref["new_cses"]})
    np.testing.assert_allclose(res.predict(new, conditional=True, allow_new_levels=True),
                               ref["predict_conditional"], rtol=10 * LMM_FE_RTOL)
    np.testing.assert_allclose(res.predict(new), ref["predict_population"],
                               rtol=LMM_FE_RTOL)


# ------------------------------------------------------------------ standard errors
def test_gaussian_conditional_se_is_hendersons_prediction_error_variance():
    """For a linear mixed model the prediction error variance of x'b + z'b_j is
    sigma^2 [x; z_j]' C^{-1} [x; z_j] with C the mixed-model equations' matrix
    [[X'X, X'Z], [Z'X, Z'Z + sigma^2 (I (x) Sigma)^{-1}]] (Henderson 1975), built and
    inverted densely here at the fit's Sigma and sigma^2."""
    d = make_data(seed=4, n_groups=12, sizes=(6, 15))
    res = _lmer("score ~ x1 + x2 + (1 + x1 | g)", d)
    m = res.model
    X, Zq, codes = np.asarray(m.exog), np.asarray(m.exog_re), m.group_codes
    G, q = m.n_groups, Zq.shape[1]
    Z = np.zeros((len(codes), G * q))
    for k in range(q):
        Z[np.arange(len(codes)), codes * q + k] = Zq[:, k]
    s2 = res.scale
    Ginv = np.kron(np.eye(G), np.linalg.inv(np.asarray(res.cov_re)))
    C = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + s2 * Ginv]])
    Cinv = s2 * np.linalg.inv(C)
    p = X.shape[1]
    np.testing.assert_allclose(Cinv[:p, :p], np.asarray(res.cov_params())[:p, :p], rtol=1e-8)
    new = d.iloc[[0, 17, 60]]
    pr = res.get_prediction(new, conditional=True, which="linear")
    Xn = np.column_stack([np.ones(3), new["x1"], new["x2"]])
    for i, g in enumerate(new["g"]):
        j = list(m.group_labels).index(g)
        L = np.zeros(p + G * q)
        L[:p] = Xn[i]
        L[p + j * q:p + (j + 1) * q] = Xn[i, :2]        # z = (1, x1)
        assert pr.se_mean[i] == pytest.approx(np.sqrt(L @ Cinv @ L), rel=1e-8)
    pop = res.get_prediction(new, which="linear")
    V = np.asarray(res.cov_params())[:p, :p]
    np.testing.assert_allclose(pop.se_mean, np.sqrt(np.einsum("np,pr,nr->n", Xn, V, Xn)),
                               rtol=1e-12)


@pytest.mark.parametrize("family", ["binomial-logit", "poisson"])
def test_glmm_conditional_se_by_differences_of_the_modes(df, family):
    """se^2 = (x + D_j'z)' V (x + D_j'z) + z' P_j z with D_j = d b_j / d beta computed
    here by central differences of the conditional modes (theta fixed; the modes are
    converged to 1e-10, so h = 1e-4 gives D to ~1e-6) and P_j = random_effects_cov."""
    res = build_model(df, family).fit()
    m = res.model
    obj = m.objective(1)
    beta = np.asarray(res.fe_params)
    theta = np.asarray(res.outcome.theta)
    Lam = np.linalg.cholesky(np.asarray(res.cov_re))

    def modes(b):
        return obj.modes(np.concatenate([b, theta])).u @ Lam.T

    modes(beta)
    h = 1e-4
    D = np.stack([(modes(beta + h * e) - modes(beta - h * e)) / (2 * h)
                  for e in np.eye(len(beta))], axis=2)            # (G, q, p)
    new = df.iloc[[2, 33, 70]]
    kw = {"exposure": new["expo"].to_numpy()} if family == "poisson" else {}
    pr = res.get_prediction(new, conditional=True, which="linear", **kw)
    V = np.asarray(res.cov_params())[:len(beta), :len(beta)]
    X = np.asarray(res.model.exog)[[2, 33, 70]]
    for i, g in enumerate(new["g"]):
        j = list(m.group_labels).index(g)
        z = X[i, [0, list(m.exog_names).index("x1")]]
        gvec = X[i] + D[j].T @ z
        P = np.asarray(res.random_effects_cov[g])
        want = np.sqrt(gvec @ V @ gvec + z @ P @ z)
        assert pr.se_mean[i] == pytest.approx(want, rel=1e-5)
    # the mean: delta method for the SE, the linear interval mapped for the limits
    mean = res.get_prediction(new, conditional=True, **kw).summary_frame()
    eta = pr.predicted_mean
    if family == "binomial-logit":
        mu, dmu, inv = special.expit(eta), special.expit(eta) * (1 - special.expit(eta)), \
            special.expit
    else:
        mu, dmu, inv = np.exp(eta), np.exp(eta), np.exp
    np.testing.assert_allclose(mean["mean"], mu, rtol=1e-12)
    np.testing.assert_allclose(mean["mean_se"], dmu * pr.se_mean, rtol=1e-12)
    np.testing.assert_allclose(mean["mean_ci_lower"], inv(eta - Z95 * pr.se_mean), rtol=1e-10)
    np.testing.assert_allclose(mean["mean_ci_upper"], inv(eta + Z95 * pr.se_mean), rtol=1e-10)


def test_conditional_predictions_of_a_vc_slope_on_new_rows():
    """A one-term model spelled with vc_formula ({"d": "0 + Days"} within Subject, a random
    slope): conditional predictions and their SEs on new rows are those of the same
    rows in the fit (they used to ask for a column named after the vc key)."""
    import statsmodels.api as sm
    d = mlglm.datasets.load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.MixedGLM.from_formula("Reaction ~ Days", d, groups="Subject",
                                          vc_formula={"d": "0 + Days"},
                                          family=sm.families.Gaussian()).fit()
    rows = d.iloc[[3, 17, 55, 170]]
    inside = res.get_prediction(conditional=True)
    new = res.get_prediction(rows, conditional=True)
    np.testing.assert_allclose(new.predicted_mean, inside.predicted_mean[[3, 17, 55, 170]],
                               rtol=1e-12)
    np.testing.assert_allclose(new.se_mean, inside.se_mean[[3, 17, 55, 170]], rtol=1e-12)
    # the slope is Days times the subject's mode
    b = np.asarray(res.outcome.b[0])[:, 0]
    subj = pd.Index(res.model.re_terms[0].levels.get_level_values(0)).get_indexer(
        rows["Subject"])
    want = res.fe_params["Intercept"] + rows["Days"] * (res.fe_params["Days"] + b[subj])
    np.testing.assert_allclose(res.predict(rows, conditional=True), want, rtol=1e-12)


def test_unused_categorical_levels_dropped_with_a_warning_and_predict_on_the_fits_frame(df):
    """Issue 21 item 6: a category no row uses was dropped at fit time without a word,
    and predict() on the very frame the model was fitted on failed with patsy's
    "mismatching levels". Now a DataWarning names the level, the summary notes it, and
    the fit's frame, its rows, and new rows with the same categorical dtype predict as
    the same rows with plain labels do; a row with the dropped level is refused."""
    cats = ["a", "b", "c", "never"]
    frame = df.assign(c=pd.Categorical(df["c"].astype(str), categories=cats))
    with pytest.warns(mlglm.DataWarning, match="unused categories dropped .*c: never"):
        res = mlglm.glmer("y ~ x1 + c + (1 | g)", frame)
    want = mlglm.glmer("y ~ x1 + c + (1 | g)", df.assign(c=df["c"].astype(str)))
    np.testing.assert_allclose(res.params, want.params, rtol=1e-10)
    assert "Unused levels dropped" in str(res.summary())
    plain = df.assign(c=df["c"].astype(str))
    for conditional in (False, True):
        np.testing.assert_allclose(res.predict(frame, conditional=conditional),
                                   want.predict(plain, conditional=conditional), rtol=1e-10)
    new = frame.iloc[[3, 9, 27]]
    np.testing.assert_allclose(res.predict(new), want.predict(plain.iloc[[3, 9, 27]]),
                               rtol=1e-10)
    few = new.assign(c=pd.Categorical(["b", "b", "a"]))          # fewer categories
    np.testing.assert_allclose(res.predict(few), want.predict(plain.iloc[[3, 9, 27]].assign(
        c=["b", "b", "a"])), rtol=1e-10)
    assert res.get_prediction(frame.head(4)).summary_frame().shape[0] == 4
    bad = new.assign(c=pd.Categorical(["never", "a", "b"], categories=cats))
    with pytest.raises(ValueError, match="'never' that no row of the fit had"):
        res.predict(bad)
