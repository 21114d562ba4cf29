"""The lme4-style front door, glmer() and lmer() (issue 10).

Item 5: ``cbind(s, n - s)`` was rewritten to ``s + I(n - s)`` and failed when the data
had a column named ``I``; the failures are now computed from the data without any
name lookup a column could shadow. Also: ``offset(...)`` terms in the formula, lme4's
``nAGQ=`` and ``REML=``, and a did-you-mean for misspelt keywords.

Every fit is compared with the same model written the statsmodels way
(MixedGLM.from_formula with ``offset=``/``exposure=``/two-column responses).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm import MixedGLMInputError
from test_results_api import build_model, make_data

CBIND = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def df():
    return make_data()


def test_cbind_does_not_depend_on_column_names(cbpp, reference_fit):
    ref = reference_fit("cbpp_ri")
    for extra in ({"I": 1.0}, {"log": "x", "cbind_failures": 0, "np": 2}):
        res = mlglm.glmer(CBIND, cbpp.assign(**extra))
        np.testing.assert_allclose(res.params, ref.params, atol=1e-10)
        assert res.llf == pytest.approx(ref.llf, rel=1e-12)
        assert np.all(res.model.n_trials == cbpp["size"].to_numpy())
    # an expression for the successes too
    res = mlglm.glmer("cbind(size - (size - incidence), size - incidence) ~ period + (1 | herd)",
                      cbpp.assign(I=1.0))
    np.testing.assert_allclose(res.params, ref.params, atol=1e-10)


def test_offset_in_the_formula(df):
    """offset(log(expo)) in a glmer formula is exposure=expo; predictions on new data
    evaluate it there."""
    res = mlglm.glmer("count ~ x1 + x2 + c + offset(log(expo)) + (1 + x1 | g)", df,
                      family="poisson")
    ref = build_model(df, "poisson").fit()                # exposure="expo"
    np.testing.assert_allclose(res.params, ref.params, atol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    new = df.iloc[[4, 8, 15]]
    np.testing.assert_allclose(res.predict(new, conditional=True),
                               ref.predict(new, conditional=True, exposure=new["expo"]),
                               rtol=1e-10)
    # with offset= as well: the two add up
    two = mlglm.glmer("count ~ x1 + x2 + c + offset(0.5 * log(expo)) + (1 + x1 | g)", df,
                      family="poisson", offset=0.5 * np.log(df["expo"].to_numpy()))
    np.testing.assert_allclose(two.params, ref.params, atol=1e-8)
    # update() keeps the formula's offset, with the fit's data or new data
    want = mlglm.glmer("count ~ x1 + c + offset(log(expo)) + (1 + x1 | g)", df, family="poisson")
    for got in (res.update("~ . - x2"), mlglm.update(res, "~ . - x2", data=df)):
        np.testing.assert_allclose(got.params, want.params, atol=1e-10)
    np.testing.assert_allclose(two.update("~ . - x2").params, want.params, atol=1e-8)
    lm = mlglm.lmer("score ~ x1 + offset(2 * x2) + (1 | g)", df)
    direct = mlglm.MixedGLM.from_formula("score ~ x1", df, groups="g", offset=2 * df["x2"],
                                         family=sm.families.Gaussian()).fit()
    np.testing.assert_allclose(lm.params, direct.params, rtol=1e-10)


def test_nagq_and_reml_spelled_as_lme4(df):
    a = mlglm.glmer("y ~ x1 + (1 | g)", df, nAGQ=9)
    b = mlglm.glmer("y ~ x1 + (1 | g)", df, nagq=9)
    assert a.method == "aghq" and a.nagq == 9
    np.testing.assert_allclose(a.params, b.params, atol=1e-12)
    with pytest.raises(MixedGLMInputError, match="disagree"):
        mlglm.glmer("y ~ x1 + (1 | g)", df, nagq=3, nAGQ=9)
    with pytest.raises(MixedGLMInputError, match="REML is for linear mixed models"):
        mlglm.glmer("y ~ x1 + (1 | g)", df, REML=True)
    ml = mlglm.lmer("score ~ x1 + (1 | g)", df, REML=False)
    assert ml.method == "ml"
    assert ml.llf == pytest.approx(mlglm.lmer("score ~ x1 + (1 | g)", df, reml=False).llf,
                                   rel=1e-14)


@pytest.mark.parametrize("call,kw,suggestion", [
    (mlglm.glmer, {"famly": "poisson"}, "family"),
    (mlglm.glmer, {"nacq": 3}, "nagq"),
    (mlglm.glmer, {"ofset": 0.0}, "offset"),
    (mlglm.lmer, {"rmel": False}, "reml"),
    (mlglm.lmer, {"max_iter": 5}, "maxiter"),
])
def test_misspelt_keywords_get_a_did_you_mean(df, call, kw, suggestion):
    formula = "y ~ x1 + (1 | g)" if call is mlglm.glmer else "score ~ x1 + (1 | g)"
    with pytest.raises(TypeError, match=f"did you mean '{suggestion}'"):
        call(formula, df, **kw)


def test_statsmodels_keywords_pass_through_glmer(df, capsys):
    mlglm.glmer("y ~ x1 + (1 | g)", df, disp=True)
    assert "converged" in capsys.readouterr().out
    with pytest.raises(TypeError, match="penalised"):
        mlglm.glmer("y ~ x1 + (1 | g)", df, fe_pen=1.0)


def test_cbind_and_offset_with_subset_and_missing(cbpp):
    """The computed failures and the offset follow subset= and missing="drop" like every
    other array (rows of herd 1 dropped either way)."""
    keep = (cbpp["herd"] != "1").to_numpy()
    bad = cbpp.assign(size=cbpp["size"].astype(float))
    bad.loc[~keep, "size"] = np.nan
    a = mlglm.glmer(CBIND, cbpp, subset=keep)
    with pytest.warns(mlglm.DataWarning, match="4 rows"):
        b = mlglm.glmer(CBIND, bad, missing="drop")
    c = mlglm.glmer(CBIND, cbpp[keep])
    for r in (a, b):
        np.testing.assert_allclose(r.params, c.params, atol=1e-10)
    assert pd.Series(a.model.group_labels).isin(["1"]).sum() == 0


def test_r_function_spellings_in_the_fixed_part(df):
    """Issue 21 item 8: log(x), exp(x), sqrt(x), factor(x) failed with NameError in lmer /
    glmer strings while offset(log(n)) and I(x^2) were translated. R's spellings give
    the fits of np.log(x), np.exp(x), np.sqrt(x), C(x) (as.factor(x) too; scale(x) with
    R's n - 1 SD, kept for new data); a function of the user's own named log wins."""
    d = df.assign(pos=df["expo"] + 1.0)
    r = mlglm.lmer("score ~ log(pos) + exp(x1) + sqrt(pos) + factor(c) + abs(x2) + (1 | g)",
                   d)
    p = mlglm.lmer("score ~ np.log(pos) + np.exp(x1) + np.sqrt(pos) + C(c) + np.abs(x2) "
                   "+ (1 | g)", d)
    np.testing.assert_allclose(r.params.to_numpy(), p.params.to_numpy(), rtol=1e-10)
    assert r.llf == pytest.approx(p.llf, rel=1e-12)
    assert "factor(c)[T.b]" in r.params.index
    a = mlglm.glmer("y ~ as.factor(c) + scale(x1) + (1 | g)", d)
    z = (d["x1"] - d["x1"].mean()) / d["x1"].std(ddof=1)       # R's scale(): n - 1
    b = mlglm.glmer("y ~ C(c) + z + (1 | g)", d.assign(z=z))
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-8)
    new = d.iloc[[1, 5, 40]]
    np.testing.assert_allclose(a.predict(new), b.predict(new.assign(z=z.iloc[[1, 5, 40]])),
                               rtol=1e-8)
    import pickle          # a loaded fit re-parses its formula: R's names are found there too
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_allclose(back.predict(new), a.predict(new), rtol=1e-12)
    back = pickle.loads(pickle.dumps(r))
    np.testing.assert_allclose(back.predict(new), r.predict(new), rtol=1e-12)

    def log(v):                     # the user's own log: theirs, not R's
        return np.log(v) * 2.0
    mine = mlglm.lmer("score ~ log(pos) + (1 | g)", d)
    want = mlglm.lmer("score ~ lp + (1 | g)", d.assign(lp=2.0 * np.log(d["pos"])))
    np.testing.assert_allclose(mine.params.to_numpy(), want.params.to_numpy(), rtol=1e-10)
    # statsmodels' spelling is statsmodels': patsy has no log(), the error says what to do
    with pytest.raises(MixedGLMInputError, match="NameError.*exp"):
        mlglm.MixedGLM.from_formula("score ~ exp(x1)", d, groups="g")
