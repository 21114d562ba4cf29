"""statsmodels' conventions on a MixedGLM (issue 10): same name, same behaviour.

conf_int in statsmodels' shape (the table with SDs and correlations is ``intervals``);
family strings in ``from_formula``; statsmodels' fit keywords accepted or refused with
the reason; ``fit(nagq=5)`` is AGHQ; unused categorical levels dropped with a note;
``remove_data()`` then ``conf_int()``; a scalar ``n_trials``; residuals and ``df_model``
as statsmodels' GLM defines them; the label of a two-level categorical response
(item 4) and mlglm's own message for a response with three levels.

Every comparison is with statsmodels computing the same quantity (its conf_int rule,
its families' deviance residuals), with another route through mlglm to the same
model, or with a formula written out here.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import mlglm
from mlglm import MixedGLMInputError
from test_results_api import FAMILIES, FIT_KW, build_model, make_data

Z95 = stats.norm.ppf(0.975)


@pytest.fixture(scope="module")
def df():
    return make_data()


@pytest.fixture(scope="module")
def fits(df):
    return {fam: build_model(df, fam).fit(**FIT_KW.get(fam, {})) for fam in FAMILIES}


# ------------------------------------------------------------------------- conf_int
@pytest.mark.parametrize("family", FAMILIES)
def test_conf_int_has_statsmodels_shape(fits, family):
    res = fits[family]
    ci = res.conf_int()
    assert isinstance(ci, pd.DataFrame) and list(ci.columns) == [0, 1]
    assert list(ci.index) == list(res.params.index)
    assert all(pd.api.types.is_float_dtype(t) for t in ci.dtypes)
    # statsmodels' rule: params -/+ z bse, row by row
    np.testing.assert_allclose(ci[0], res.params - Z95 * res.bse, rtol=1e-12)
    np.testing.assert_allclose(ci[1], res.params + Z95 * res.bse, rtol=1e-12)
    odds = np.exp(res.conf_int())                   # odds ratios on a logit fit
    np.testing.assert_allclose(odds.loc["x1"], np.exp(ci.loc["x1"]), rtol=1e-14)
    assert isinstance(res.conf_int(alpha=0.1)[0], pd.Series)
    assert (res.conf_int(alpha=0.1)[1] <= ci[1]).iloc[:res.k_fe].all()


def test_conf_int_profile_and_bootstrap_in_statsmodels_shape(reference_fit):
    """Other methods keep the shape: fixed effects as in ``intervals``; a variance's
    limits are its SD's squared (the map is monotone); bootstrap limits are
    percentiles of each params entry over the replicates."""
    res = reference_fit("contra_rs")
    rich = res.intervals(method="profile")
    ci = res.conf_int(method="profile")
    assert list(ci.index) == list(res.params.index) and list(ci.columns) == [0, 1]
    fe = list(res.model.exog_names)
    np.testing.assert_allclose(ci.loc[fe].to_numpy(), rich.loc[fe, ["lower", "upper"]],
                               rtol=1e-12)
    np.testing.assert_allclose(ci.loc["district Var"],
                               rich.loc["sd(Intercept)", ["lower", "upper"]].astype(float) ** 2,
                               rtol=1e-12)
    np.testing.assert_allclose(ci.loc["urban[T.Y] Var"],
                               rich.loc["sd(urban[T.Y])", ["lower", "upper"]].astype(float) ** 2,
                               rtol=1e-12)
    assert ci.loc["district x urban[T.Y] Cov"].isna().all()
    boot = res.bootstrap(6, seed=3, progress=False)
    cb = res.conf_int(method="bootstrap", boot=boot, alpha=0.2)
    reps = boot.replicate_params()
    sd = boot.replicates
    np.testing.assert_allclose(cb.loc["district Var"],
                               (sd["sd(Intercept)"] ** 2).quantile([0.1, 0.9]), rtol=1e-12)
    cov = sd["cor(Intercept, urban[T.Y])"] * sd["sd(Intercept)"] * sd["sd(urban[T.Y])"]
    np.testing.assert_allclose(cb.loc["district x urban[T.Y] Cov"], cov.quantile([0.1, 0.9]),
                               rtol=1e-12)
    np.testing.assert_allclose(cb.loc["age"], reps["age"].quantile([0.1, 0.9]), rtol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_remove_data_then_conf_int(df, family):
    res = build_model(df, family).fit(**FIT_KW.get(family, {}))
    before = res.conf_int()
    res.remove_data()
    back = pickle.loads(pickle.dumps(res))
    for r in (res, back):
        pd.testing.assert_frame_equal(r.conf_int(), before)
        assert "Log-likelihood" in str(r.summary())
        r.t_test("x1 = 0")


# ---------------------------------------------------------------- model and fit()
def test_from_formula_takes_family_strings(df, fits):
    m = mlglm.MixedGLM.from_formula("y ~ x1 + x2 + c", df, groups="g", re_formula="~x1",
                                    family="binomial")
    assert isinstance(m.family, sm.families.Binomial)
    np.testing.assert_allclose(m.fit().params, fits["binomial-logit"].params, atol=1e-12)
    m = mlglm.BinomialMixedGLM.from_formula("y ~ x1 + x2 + c", df, groups="g",
                                            re_formula="~x1", family="binomial(link='probit')")
    assert m.link_name == "probit"
    m = mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", df, groups="g",
                                           re_formula="~x1", exposure="expo", family="poisson")
    np.testing.assert_allclose(m.fit().params, fits["poisson"].params, atol=1e-12)
    with pytest.raises(MixedGLMInputError, match="did you mean 'binomial'"):
        mlglm.MixedGLM.from_formula("y ~ x1", df, groups="g", family="binomal")


def test_fit_nagq_without_method_is_aghq(df, fits):
    res = build_model(df, "binomial-probit").fit(nagq=5)
    assert res.method == "aghq" and res.nagq == 5
    np.testing.assert_allclose(res.params, fits["binomial-probit"].params, atol=1e-12)
    assert build_model(df, "binomial-logit").fit(nagq=1).method == "laplace"
    with pytest.raises(MixedGLMInputError, match="exactly"):
        build_model(df, "gaussian").fit(nagq=5)


def test_statsmodels_fit_keywords(df, fits, capsys):
    model = build_model(df, "binomial-logit")
    res = model.fit(disp=True, full_output=True, do_cg=True, niter_sa=0, cov_type="nonrobust",
                    use_t=False)
    assert "converged" in capsys.readouterr().out
    np.testing.assert_allclose(res.params, fits["binomial-logit"].params, atol=1e-12)
    assert model.fit(disp=False) is not None and capsys.readouterr().out == ""
    for kw, reason in ((dict(free=np.ones(8)), "profile"), (dict(fe_pen=1.0), "penalised"),
                       (dict(gtol=1e-8), "convergence"), (dict(callback=print), "calls nothing"),
                       (dict(cov_type="HC0"), "nonrobust"), (dict(use_t=True), "z statistics"),
                       (dict(method="bfgs"), "optimiser"), (dict(niter_sa=5), "annealing")):
        with pytest.raises(TypeError, match=reason):
            model.fit(**kw)
    with pytest.raises(TypeError, match="did you mean 'maxiter'"):
        model.fit(max_iter=50)
    with pytest.raises(TypeError, match="did you mean 'start_params'"):
        model.fit(start_param=np.asarray(fits["binomial-logit"].params))


def test_unused_categorical_levels_are_dropped_with_a_note(df):
    """Filtering a DataFrame keeps a categorical's categories; the unused one would be
    an all-zero design column. It is dropped as statsmodels' GLM and lme4 do: the fit
    equals the fit of the data with the category removed, and the summary says so."""
    sub = df[df["c"] != "c"]
    assert "c" in sub["c"].cat.categories
    m = mlglm.MixedGLM.from_formula("y ~ x1 + c", sub, groups="g", family="binomial")
    assert m.dropped_levels == {"c": ["c"]}
    res = m.fit()
    ref = mlglm.MixedGLM.from_formula("y ~ x1 + c", sub.assign(c=sub["c"].astype(str)),
                                      groups="g", family="binomial").fit()
    np.testing.assert_allclose(res.params, ref.params, atol=1e-12)
    text = str(res.summary())
    assert "Unused levels dropped" in text and "c: c" in text
    assert "Unused levels" not in str(ref.summary())


def test_scalar_n_trials(df):
    """Two trials per row given as a scalar equal the same given per row and the
    two-column (successes, failures) response."""
    rng = np.random.default_rng(8)
    b = rng.normal(scale=0.8, size=df["g"].nunique())[df["g"].str[1:].astype(int)]
    d = df.assign(s2=rng.binomial(2, 1 / (1 + np.exp(0.3 - 0.5 * df["x1"] - b))))
    d = d.assign(p2=d["s2"] / 2, f2=2 - d["s2"])
    kw = dict(groups="g", family="binomial")
    a = mlglm.MixedGLM.from_formula("p2 ~ x1", d, n_trials=2, **kw).fit()
    b = mlglm.MixedGLM.from_formula("p2 ~ x1", d, n_trials=np.full(len(d), 2), **kw).fit()
    c = mlglm.MixedGLM.from_formula("s2 + f2 ~ x1", d, **kw).fit()
    assert np.all(a.model.n_trials == 2)
    np.testing.assert_allclose(a.params, b.params, atol=1e-12)
    np.testing.assert_allclose(a.params, c.params, atol=1e-10)
    arr = mlglm.MixedGLM(d["p2"].to_numpy(), np.column_stack([np.ones(len(d)), d["x1"]]),
                         d["g"].to_numpy(), family=sm.families.Binomial(), n_trials=2)
    assert np.all(arr.n_trials == 2)


# ------------------------------------------------------------ residuals, df_model
@pytest.mark.parametrize("family", FAMILIES)
def test_residuals_as_statsmodels_glm_defines_them(fits, family):
    """At our fitted (conditional) means, statsmodels' own family functions give the
    deviance residuals: GLM's resid_deviance = family.resid_dev(y/m, mu, var_weights=m).
    statsmodels computes with mu/(1-mu) fudged by 1e-20 and 1 - mu where we use
    xlogy on counts: the two agree to ~1e-9 relative where mu is near 1 (cloglog)."""
    res = fits[family]
    m = res.model
    y, n = np.asarray(m.endog, float), np.asarray(m.n_trials, float)
    mu = np.asarray(res.fittedvalues, float)
    np.testing.assert_allclose(res.resid_response, y / n - mu, rtol=1e-12)
    fam = type(m.family)()
    want = fam.resid_dev(y / n, mu, var_weights=n)
    np.testing.assert_allclose(res.resid_deviance, want, rtol=1e-7, atol=1e-9)
    if family != "gaussian":
        pearson = (y / n - mu) / np.sqrt(fam.variance(mu) / n)
        np.testing.assert_allclose(res.resid_pearson, pearson, rtol=1e-7)
    for name in ("resid_response", "resid_pearson", "resid_deviance"):
        s = getattr(res, name)
        assert isinstance(s, pd.Series) and len(s) == res.nobs, name
    k = res.k_fe + 3 + (family == "gaussian")          # p + vech(2 x 2) (+ sigma^2)
    assert res.df_model == k - 1                        # statsmodels: without the intercept
    assert res.df_model + res.model.k_constant == res.df_modelwc


# ------------------------------------------------------------- categorical responses
def test_two_level_categorical_response_names_the_level_modelled(contraception):
    """``use ~ ...`` models P(use = "Y") (the second level, as R does): the label says
    use[Y], and the estimates equal those of the 0/1 response y = (use == "Y")."""
    res = mlglm.MixedGLM.from_formula("use ~ age + urban", contraception, groups="district",
                                      family="binomial").fit()
    assert res.model.endog_names == "use[Y]"
    text = str(res.summary())
    assert "use[Y]" in text and "use[N]" not in text
    ref = mlglm.MixedGLM.from_formula("y ~ age + urban", contraception, groups="district",
                                      family="binomial").fit()
    np.testing.assert_allclose(res.params, ref.params, atol=1e-12)
    g = mlglm.glmer("use ~ age + urban + (1 | district)", contraception)
    assert g.model.endog_names == "use[Y]"


def test_binomial_response_with_three_levels_gets_mlglms_message(contraception):
    d = contraception.assign(livch3=contraception["livch"].astype(str).replace("3+", "2"))
    with pytest.raises(MixedGLMInputError, match="'livch3' has 3 levels.*binomial model needs two"):
        mlglm.glmer("livch3 ~ age + (1 | district)", d)
    with pytest.raises(MixedGLMInputError, match="not numeric"):
        mlglm.MixedGLM.from_formula("use ~ age", contraception, groups="district",
                                    family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mlglm.glmer("use ~ age + (1 | district)", contraception).converged
