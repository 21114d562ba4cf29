"""Hostile and sloppy inputs, results side (issue 25, "Silently wrong", items 5 and 6):
comparisons of fits of different data, and predictions of rate models on new rows.

No reference numbers: each case is checked against the same quantity computed another
way (the offset(log(t)) spelling of an exposure, the rates times the exposures)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import mlglm
from tolerances import REFIT_PARAM_ATOL, SAME_NUMBER_RTOL


def _counts(seed=0, n_groups=15, size=10):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{j:02d}" for j in range(n_groups)], size)
    x = rng.normal(size=g.size)
    t = rng.uniform(0.5, 4.0, size=g.size)
    eta = np.log(t) + 0.2 + 0.5 * x + 0.6 * rng.normal(size=n_groups).repeat(size)
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g, "t": t,
                         "log_t": np.log(t)})


# --------------------------------------------- item 5: comparisons of different data
def test_anova_of_fits_of_different_responses_is_refused():
    """anova() of two models with different responses printed an LR test (Chisq 0,
    p = 1). They are fits of different data: refused, saying so."""
    d = mlglm.datasets.load_sleepstudy().assign(logR=lambda f: np.log(f["Reaction"]))
    a = mlglm.lmer("Reaction ~ Days + (1 | Subject)", d, REML=False)
    b = mlglm.lmer("logR ~ Days + (Days | Subject)", d, REML=False)
    for call in (lambda: mlglm.anova(a, b), lambda: mlglm.compare_lr_test(b, a)):
        with pytest.raises(ValueError, match="different responses.*180 of 180 rows differ"):
            call()


def test_anova_of_fits_of_different_rows_is_refused():
    """Same response column and the same number of rows, but other rows (a subset each):
    refused. The same rows in another order are the same data and compare."""
    d = _counts()
    first, second = d.iloc[:120], d.iloc[30:]
    a = mlglm.glmer("y ~ x + (1 | g)", first, family="poisson", exposure="t")
    b = mlglm.glmer("y ~ 1 + (1 | g)", second, family="poisson", exposure="t")
    with pytest.raises(ValueError, match="different responses"):
        mlglm.anova(a, b)
    shuffled = first.sample(frac=1.0, random_state=4)
    c = mlglm.glmer("y ~ 1 + (1 | g)", shuffled, family="poisson", exposure="t")
    tab = mlglm.anova(a, c)
    assert tab["Chisq"].iloc[1] == pytest.approx(2 * (a.llf - c.llf), rel=SAME_NUMBER_RTOL)


def test_glm_of_another_response_is_refused():
    d = mlglm.datasets.load_contraception()
    d = d.assign(y=(d["use"] == "Y").astype(int), urban01=(d["urban"] == "Y").astype(int))
    glmm = mlglm.glmer("y ~ age + (1 | district)", d)
    glm = smf.glm("urban01 ~ age", d, family=sm.families.Binomial()).fit()
    with pytest.raises(ValueError, match="different responses"):
        glmm.compare_lr_test(glm)
    same = smf.glm("y ~ age", d, family=sm.families.Binomial()).fit()
    assert glmm.compare_lr_test(same).df == 1


# ------------------------------------------- item 6: exposure and offset columns
@pytest.fixture(scope="module")
def rates():
    d = _counts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {
            "exposure column": mlglm.glmer("y ~ x + (1 | g)", d, family="poisson",
                                           exposure="t"),
            "offset(log(t))": mlglm.glmer("y ~ x + offset(log(t)) + (1 | g)", d,
                                          family="poisson"),
            "offset column": mlglm.glmer("y ~ x + (1 | g)", d, family="poisson",
                                         offset="log_t"),
            "from_formula exposure": mlglm.PoissonMixedGLM.from_formula(
                "y ~ x", d, groups="g", exposure="t").fit(),
        }
    new = pd.DataFrame({"x": [0.0, 0.5, -1.0], "g": ["g00", "g03", "new"],
                        "t": [1.0, 2.5, 10.0]})
    new["log_t"] = np.log(new["t"])
    return fits, new


@pytest.mark.parametrize("spelling", ["exposure column", "offset column",
                                      "from_formula exposure"])
def test_predict_on_new_rows_uses_their_exposure(rates, spelling):
    """exposure= given as a column was ignored by predict on new rows (rates instead of
    counts); the new rows' column is read, as the offset(log(t)) spelling does."""
    fits, new = rates
    res, ref = fits[spelling], fits["offset(log(t))"]
    np.testing.assert_allclose(res.fe_params, ref.fe_params, atol=REFIT_PARAM_ATOL)
    for kw in ({}, {"conditional": True, "allow_new_levels": True}):
        ours, theirs = res.predict(new, **kw), ref.predict(new, **kw)
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
        rate = res.predict(new.assign(t=1.0, log_t=0.0), **kw)
        np.testing.assert_allclose(ours, rate * new["t"], rtol=SAME_NUMBER_RTOL)
    se = res.get_prediction(new, conditional=True, allow_new_levels=True).summary_frame()
    np.testing.assert_allclose(se["mean"], ref.predict(new, allow_new_levels=True), rtol=1e-6)
    # an explicit exposure= / offset= still wins
    explicit = res.predict(new, exposure=np.ones(3)) if "exposure" in spelling else \
        res.predict(new, offset=np.zeros(3))
    np.testing.assert_allclose(explicit, res.predict(new.assign(t=1.0, log_t=0.0)),
                               rtol=SAME_NUMBER_RTOL)


def test_new_rows_without_the_exposure_column_are_refused(rates):
    fits, new = rates
    with pytest.raises(ValueError, match="exposure='t': the new rows need the column 't'"):
        fits["exposure column"].predict(new.drop(columns="t"))
    with pytest.raises(ValueError, match="offset='log_t'"):
        fits["offset column"].predict(new.drop(columns="log_t"))


def test_update_keeps_the_exposure_column(rates):
    fits, new = rates
    res = fits["exposure column"]
    smaller = res.update("~ . - x")
    assert smaller.model.exposure_column == "t"
    np.testing.assert_allclose(smaller.predict(new) / new["t"],
                               smaller.predict(new.assign(t=1.0)), rtol=SAME_NUMBER_RTOL)
