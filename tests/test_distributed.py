"""Sharded fits on a distributed.LocalCluster (2 worker processes) equal in-memory fits.

The oracle throughout is mlglm's own in-memory fit of the same formula on the
same pandas data (``df``); the Dask DataFrame is ``dd.from_pandas(df, ...)``.
Tolerances are issue #15's: log-likelihood to 1e-8 relative, estimates to
1e-6. Standard errors come from forward differences of the exact gradient
(truncation error about 1e-5 relative, ``mlglm.core.fit.optimize.numerical_hessian``),
so they are compared to 1e-5 relative.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm import MixedGLMInputError

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

LLF_RTOL = 1e-8          # issue #15
EST_TOL = 1e-6           # issue #15, absolute on params of order 1
BSE_RTOL = 1e-5          # forward-difference Hessian (see the module docstring)

CONTRA = "y ~ age + urban + livch + (1 + urban | district)"
GROUSE_NESTED = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
GROUSE_ONE = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)"
HSB = "mAch ~ cses + (1 + cses | school)"


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _same(r0, r1, bse=True):
    assert abs(r1.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), rtol=0,
                               atol=EST_TOL)
    if bse:
        np.testing.assert_allclose(np.asarray(r1.bse), np.asarray(r0.bse), rtol=BSE_RTOL)
    assert r1.nobs == r0.nobs


# ---------------------------------------------------------------- packaging
def test_import_mlglm_does_not_import_dask():
    code = ("import sys, mlglm; "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- equality
@pytest.mark.parametrize("nagq", [1, 7])
def test_binomial_random_slope_equals_in_memory(client, contraception, nagq):
    r0 = mlglm.glmer(CONTRA, contraception, nagq=nagq)
    r1 = mlglm.glmer(CONTRA, dd.from_pandas(contraception, npartitions=3), nagq=nagq)
    _same(r0, r1)
    assert r1.method == r0.method and r1.nagq == r0.nagq
    b0 = pd.DataFrame(r0.random_effects).T
    b1 = pd.DataFrame(r1.random_effects).T
    np.testing.assert_allclose(b1.loc[b0.index].to_numpy(), b0.to_numpy(), atol=EST_TOL)


@pytest.mark.parametrize("nagq", [1, 9])
def test_poisson_equals_in_memory(client, grouseticks, nagq):
    r0 = mlglm.glmer(GROUSE_ONE, grouseticks, family="poisson", nagq=nagq)
    r1 = mlglm.glmer(GROUSE_ONE, dd.from_pandas(grouseticks, npartitions=4), family="poisson",
                     nagq=nagq)
    _same(r0, r1)


@pytest.mark.parametrize("formula,nagq", [(GROUSE_ONE, 1), (GROUSE_ONE, 9),
                                           (GROUSE_NESTED, 1)])
def test_negative_binomial_equals_in_memory(client, grouseticks, formula, nagq):
    """theta estimated jointly: the shards add their rows' moments for its start and
    carry t = log theta in x, as in memory (oracle: the in-memory fit)."""
    r0 = mlglm.glmer(formula, grouseticks, family="negative_binomial", nagq=nagq)
    r1 = mlglm.glmer(formula, dd.from_pandas(grouseticks, npartitions=3),
                     family="negative_binomial", nagq=nagq)
    _same(r0, r1)
    assert r1.dispersion == pytest.approx(r0.dispersion, rel=1e-6)
    assert r1.bse_dispersion == pytest.approx(r0.bse_dispersion, rel=BSE_RTOL)


def test_gamma_random_slope_equals_in_memory(client):
    ss = mlglm.datasets.load_sleepstudy().assign(R100=lambda d: d["Reaction"] / 100)
    f = "R100 ~ Days + (1 + Days | Subject)"
    r0 = mlglm.glmer(f, ss, family="gamma")
    r1 = mlglm.glmer(f, dd.from_pandas(ss, npartitions=3), family="gamma")
    _same(r0, r1)
    assert r1.dispersion == pytest.approx(r0.dispersion, rel=1e-6)
    assert "Dispersion (scale)" in r1.summary().as_text()


@pytest.mark.parametrize("key", ["freq_weights", "var_weights"])
def test_prior_weights_by_column_equal_in_memory(client, contraception, key):
    """Prior weights named as a column travel with the rows to the shards; frequency
    weights also count in nobs (their sum, as sm.GLM counts them)."""
    rng = np.random.default_rng(3)
    n = len(contraception)
    df = contraception.assign(w=rng.integers(1, 4, n).astype(float)
                              if key == "freq_weights" else rng.uniform(0.5, 2, n))
    r0 = mlglm.glmer(CONTRA, df, nagq=5, **{key: "w"})
    r1 = mlglm.glmer(CONTRA, dd.from_pandas(df, npartitions=3), nagq=5, **{key: "w"})
    _same(r0, r1)
    assert r1.df_resid == r0.df_resid
    if key == "freq_weights":
        assert r1.nobs == df.w.sum() and "frequency-weighted; 1934 rows" in r1.summary().as_text()


def test_negative_binomial_with_frequency_weights_equals_in_memory(client, grouseticks):
    df = grouseticks.assign(f=1.0 + (np.arange(len(grouseticks)) % 3))
    r0 = mlglm.glmer(GROUSE_ONE, df, family="negative_binomial", freq_weights="f")
    r1 = mlglm.glmer(GROUSE_ONE, dd.from_pandas(df, npartitions=3), family="negative_binomial",
                     freq_weights="f")
    _same(r0, r1)
    assert r1.dispersion == pytest.approx(r0.dispersion, rel=1e-6)


def test_nested_factors_equal_in_memory(client, grouseticks):
    """Three nested factors: each shard runs the several-factor Laplace engine."""
    r0 = mlglm.glmer(GROUSE_NESTED, grouseticks, family="poisson")
    r1 = mlglm.glmer(GROUSE_NESTED, dd.from_pandas(grouseticks, npartitions=3),
                     family="poisson")
    _same(r0, r1)
    for name in ("BROOD", "INDEX", "LOCATION"):
        e0, e1 = r0.random_effects[name], r1.random_effects[name]
        np.testing.assert_allclose(e1.loc[e0.index].to_numpy(), e0.to_numpy(), atol=EST_TOL)


def test_nested_aghq_equals_in_memory(client):
    """Nested AGHQ (3 points at each of BROOD and LOCATION): each shard runs the nested
    quadrature engine (core.nested) on its top-level groups."""
    f = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)"
    df = mlglm.datasets.load_grouseticks()
    r0 = mlglm.glmer(f, df, family="poisson", nagq=3)
    r1 = mlglm.glmer(f, dd.from_pandas(df, npartitions=3), family="poisson", nagq=3)
    _same(r0, r1)
    assert r1.nagq == 3


def test_interaction_factor_levels_equal_in_memory(client):
    """(1 | school/class) with class labels reused across schools: the inner factor
    school:class has (school, class) pairs as levels, nested in school (while class
    alone would be crossed with it)."""
    rng = np.random.default_rng(15)
    school = np.repeat(np.arange(40), 30)
    klass = np.tile(np.repeat(np.arange(3), 10), 40)
    b = rng.normal(0, 0.7, 40)[school] + rng.normal(0, 0.5, 120)[school * 3 + klass]
    x = rng.standard_normal(school.size)
    y = (rng.random(school.size) < 1 / (1 + np.exp(-(0.3 + 0.8 * x + b)))).astype(int)
    df = pd.DataFrame({"y": y, "x": x, "school": school, "class": klass})
    f = "y ~ x + (1 | school/class)"
    r0 = mlglm.glmer(f, df)
    r1 = mlglm.glmer(f, dd.from_pandas(df, npartitions=3))
    _same(r0, r1)
    e0, e1 = r0.random_effects["school:class"], r1.random_effects["school:class"]
    assert len(e1) == 120
    np.testing.assert_allclose(e1.loc[e0.index].to_numpy(), e0.to_numpy(), atol=EST_TOL)
    with pytest.raises(MixedGLMInputError, match="crossed"):
        mlglm.glmer("y ~ x + (1 | school) + (1 | class)", dd.from_pandas(df, npartitions=3))


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_equals_in_memory(client, hsb, reml):
    r0 = mlglm.lmer(HSB, hsb, reml=reml)
    r1 = mlglm.lmer(HSB, dd.from_pandas(hsb, npartitions=4), reml=reml)
    assert abs(r1.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), atol=EST_TOL)
    np.testing.assert_allclose(r1.bse_fe, r0.bse_fe, rtol=1e-8)
    assert r1.scale == pytest.approx(r0.scale, rel=1e-8)


@pytest.mark.parametrize("formula", ["mAch ~ cses + (1 + cses || school)",
                                     "mAch ~ cses + (1 | school) + (0 + cses | school)",
                                     "mAch ~ cses + (1 | school)"])
def test_gaussian_one_term_spellings_equal_in_memory(client, hsb, formula):
    """One term however spelled (independent effects, two bars on one factor, a random
    intercept): the shards' sums (core.lmm_sums, one term) and the in-memory one-factor
    fit (core.lmm.lmm_fit) reach the same optimum; oracle: the in-memory fit, tolerances
    of test_gaussian_equals_in_memory."""
    r0 = mlglm.lmer(formula, hsb)
    r1 = mlglm.lmer(formula, dd.from_pandas(hsb, npartitions=3))
    assert abs(r1.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), atol=EST_TOL)
    np.testing.assert_allclose(r1.bse_fe, r0.bse_fe, rtol=1e-8)
    assert list(r1.params.index) == list(r0.params.index)
    e0, e1 = pd.DataFrame(r0.random_effects).T, pd.DataFrame(r1.random_effects).T
    np.testing.assert_allclose(e1.loc[e0.index].to_numpy(), e0.to_numpy(), atol=EST_TOL)


@pytest.mark.parametrize("reml", [True, False])
def test_gaussian_nested_equals_in_memory(client, reml):
    """Schools nested in LEAs (Chem97), a random slope at the top level: each shard
    returns the per-block sums of the profiled criterion (core.lmm_sums)."""
    df = mlglm.datasets.load_chem97()
    f = "score ~ gcsecnt + (1 + gcsecnt | lea) + (1 | school)"
    r0 = mlglm.lmer(f, df, reml=reml)
    r1 = mlglm.lmer(f, dd.from_pandas(df, npartitions=3), reml=reml)
    assert abs(r1.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), atol=EST_TOL)
    np.testing.assert_allclose(r1.bse_fe, r0.bse_fe, rtol=1e-6)
    assert r1.scale == pytest.approx(r0.scale, rel=1e-6)
    for name in ("lea", "school"):
        e0, e1 = r0.random_effects[name], r1.random_effects[name]
        assert len(e1) == len(e0)
        np.testing.assert_allclose(e1.loc[e0.index].to_numpy(), e0.to_numpy(), atol=1e-5)
    assert "school" in str(r1.summary())


def test_gaussian_nested_pastes_equals_in_memory(client):
    """(1 | batch/cask): the inner factor's levels are (batch, cask) pairs."""
    df = mlglm.datasets.load_pastes()
    r0 = mlglm.lmer("strength ~ 1 + (1 | batch/cask)", df)
    r1 = mlglm.lmer("strength ~ 1 + (1 | batch/cask)", dd.from_pandas(df, npartitions=2))
    assert abs(r1.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), atol=EST_TOL)


def test_statsmodels_spelling_and_missing_rows(client, contraception):
    df = contraception.copy()
    df.loc[df.index[::97], "age"] = np.nan
    kw = dict(groups="district", re_formula="~urban", family=sm.families.Binomial(),
              missing="drop")
    r0 = mlglm.MixedGLM.from_formula("y ~ age + urban", df, **kw).fit()
    r1 = mlglm.MixedGLM.from_formula("y ~ age + urban", dd.from_pandas(df, npartitions=2),
                                     **kw).fit()
    _same(r0, r1)
    assert r1.model.n_dropped == r0.model.n_dropped > 0


# ---------------------------------------------------------------- quadrature (issue 13)
def test_sharded_aghq_fit_checks_itself_as_in_memory(client, contraception):
    """Every AGHQ fit checks itself at the optimum with nagq + 2 points: on the shards
    too, with the same numbers (oracle: the in-memory fit's check)."""
    r0 = mlglm.glmer(CONTRA, contraception, nagq=7)
    r1 = mlglm.glmer(CONTRA, dd.from_pandas(contraception, npartitions=3), nagq=7)
    c0, c1 = r0.optim.quadrature_check, r1.optim.quadrature_check
    assert c1 is not None and (c1.nagq, c1.nagq_check) == (c0.nagq, c0.nagq_check) == (7, 9)
    assert abs(c1.llf_check - c0.llf_check) <= LLF_RTOL * abs(c0.llf_check)
    assert c1.adequate and c0.adequate
    assert "Quadrature check:" in r1.summary().as_text()


def test_sharded_auto_follows_the_in_memory_ladder(client, contraception):
    r0 = mlglm.glmer(CONTRA, contraception, nagq="auto")
    r1 = mlglm.glmer(CONTRA, dd.from_pandas(contraception, npartitions=3), nagq="auto")
    _same(r0, r1)
    assert r1.nagq == r0.nagq and r1.optim.auto.settled
    assert [k for k, *_ in r1.optim.auto.path] == [k for k, *_ in r0.optim.auto.path]
    assert "(auto)" in r1.summary().as_text()


def test_sharded_fit_on_hard_data_warns(client):
    """Issue 13's hard regime (intercept SD 8, 7 rows per subject) at nagq = 5: the
    sharded fit warns as the in-memory one does (tests/test_quadrature_adequacy.py)."""
    sim = mlglm.datasets.simulate_glmm("binomial", n_groups=150, group_size=7,
                                       fe_params=[-2.0, 0.5], cov_re=[[64.0, -2.0], [-2.0, 1.0]],
                                       seed=1)
    with pytest.warns(mlglm.QuadratureWarning, match="nagq='auto'"):
        r1 = mlglm.glmer(sim.formula, dd.from_pandas(sim.data, npartitions=2), nagq=5)
    assert not r1.optim.quadrature_check.adequate


def test_shards_keep_a_bounded_number_of_objectives():
    """nagq='auto' asks each shard for a dozen objectives in turn; it keeps three, the
    Laplace one last, and rebuilds an evicted one from those it has."""
    from mlglm.distributed import shard as S

    class Fake:
        def __init__(self, nagq):
            self.nagq = nagq

        def laplace(self):
            return Fake(1)

        def with_nagq(self, nagq):
            return Fake(nagq)

    sh = S.Shard.__new__(S.Shard)
    sh._objectives = S.OrderedDict({1: Fake(1)})
    sh._model = None
    for K in (5, 7, 11, 15):
        assert sh.objective(K).nagq == K
    assert list(sh._objectives) == [1, 11, 15] and S.MAX_OBJECTIVES == 3
    assert sh.objective(5).nagq == 5 and list(sh._objectives) == [1, 15, 5]
    sh.keep_objectives((1, 5))          # what a fit leaves: Laplace and its nagq
    assert list(sh._objectives) == [1, 5]


# ---------------------------------------------------------------- results
def test_results_summary_intervals_and_predictions(client, contraception):
    ddf = dd.from_pandas(contraception, npartitions=3)
    r0 = mlglm.glmer(CONTRA, contraception)
    r1 = mlglm.glmer(CONTRA, ddf)
    text = r1.summary().as_text()
    assert "No. observations:          1934" in text and "60 (district)" in text
    pd.testing.assert_frame_equal(r1.conf_int(), r0.conf_int(), atol=1e-5)
    # the stand-in rows reproduce the moments: residual df as in memory
    assert r1.df_resid == r0.df_resid
    new = contraception.iloc[::50]
    np.testing.assert_allclose(r1.predict(new), r0.predict(new), atol=1e-8)
    np.testing.assert_allclose(r1.predict(new, conditional=True),
                               r0.predict(new, conditional=True), atol=1e-8)
    lazy = r1.predict(ddf)
    assert isinstance(lazy, dd.Series)
    got = lazy.compute()
    pd.testing.assert_index_equal(got.index, contraception.index)
    np.testing.assert_allclose(got.to_numpy(), r0.predict(contraception), atol=1e-8)
    cond = r1.predict(ddf, conditional=True).compute()
    np.testing.assert_allclose(cond.to_numpy(), r0.predict(contraception, conditional=True),
                               atol=1e-8)
    np.testing.assert_allclose(r1.fittedvalues.compute().to_numpy(), r0.fittedvalues,
                               atol=1e-8)
    with pytest.raises(NotImplementedError, match="Dask cluster"):
        r1.conf_int(method="profile")
    with pytest.raises(NotImplementedError, match="Dask cluster"):
        r1.resid


@pytest.mark.parametrize("case", ["binomial", "negative_binomial", "gaussian"])
def test_conditional_prediction_standard_errors_equal_in_memory(client, contraception,
                                                                 grouseticks, hsb, case):
    """The modes' sensitivity to beta needs per-group sums over the rows (Z_j'W_j X_j):
    summed on the shards (it was computed from the driver's stand-in rows, silently wrong:
    0.0685 against 0.0620 on the first Contraception row). Oracle: the in-memory fit;
    SEs to BSE_RTOL (they rest on the forward-difference observed information)."""
    if case == "binomial":
        f, df, fit = CONTRA, contraception, mlglm.glmer
        kw = {}
    elif case == "negative_binomial":
        f, df, fit = GROUSE_ONE, grouseticks, mlglm.glmer
        kw = {"family": "negative_binomial"}
    else:
        f, df, fit, kw = HSB, hsb, mlglm.lmer, {}
    r0 = fit(f, df, **kw)
    r1 = fit(f, dd.from_pandas(df, npartitions=3), **kw)
    new = df.iloc[::97]
    for which in ("linear", "mean"):
        p0 = r0.get_prediction(new, conditional=True, which=which)
        p1 = r1.get_prediction(new, conditional=True, which=which)
        np.testing.assert_allclose(np.asarray(p1.predicted_mean), np.asarray(p0.predicted_mean),
                                   rtol=1e-6)
        np.testing.assert_allclose(np.asarray(p1.se_mean), np.asarray(p0.se_mean),
                                   rtol=BSE_RTOL)


def test_conditional_standard_errors_with_several_factors_are_refused_when_sharded(client,
                                                                                   grouseticks):
    r1 = mlglm.glmer(GROUSE_NESTED, dd.from_pandas(grouseticks, npartitions=3),
                     family="poisson")
    with pytest.raises(NotImplementedError, match="Dask cluster"):
        r1.get_prediction(grouseticks.iloc[:3], conditional=True)
    assert np.all(np.isfinite(r1.predict(grouseticks.iloc[:3], conditional=True)))


def test_predictions_on_the_data_of_the_fit_never_come_from_the_stand_in(client,
                                                                           contraception):
    """The driver's arrays are a stand-in with the data's moments (a few rows):
    get_prediction() and model.predict(params) on the data of the fit returned their
    values for those rows (9 of them); refused with the way to get the real ones."""
    ddf = dd.from_pandas(contraception, npartitions=3)
    r1 = mlglm.glmer(CONTRA, ddf)
    for call in (lambda: r1.get_prediction(), lambda: r1.get_prediction(ddf),
                 lambda: r1.get_prediction(conditional=True),
                 lambda: r1.model.predict(r1.params)):
        with pytest.raises(NotImplementedError, match="Dask cluster"):
            call()
    r0 = mlglm.glmer(CONTRA, contraception)
    new = contraception.iloc[:5]
    X_new = np.asarray(r0.model.exog)[:5]
    np.testing.assert_allclose(r1.model.predict(r1.params, X_new),
                               r0.model.predict(r0.params, X_new), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(r1.get_prediction(new).predicted_mean),
                               np.asarray(r0.get_prediction(new).predicted_mean), rtol=1e-6)


def test_gaussian_prior_weights_are_refused(client, hsb):
    """The Gaussian shards' sums are unweighted, so weights would be ignored: refused."""
    df = hsb.assign(w=1.0 + (np.arange(len(hsb)) % 3))
    for key in ("freq_weights", "var_weights"):
        with pytest.raises(NotImplementedError, match="Gaussian"):
            mlglm.lmer("mAch ~ cses + (1 | school)", dd.from_pandas(df, npartitions=2),
                       **{key: "w"})


def test_gaussian_intervals_and_icc(client, hsb):
    r0 = mlglm.lmer("mAch ~ cses + (1 | school)", hsb)
    r1 = mlglm.lmer("mAch ~ cses + (1 | school)", dd.from_pandas(hsb, npartitions=2))
    ci0, ci1 = r0.intervals(), r1.intervals()
    np.testing.assert_allclose(ci1.loc[["Intercept", "cses"], ["lower", "upper"]],
                               ci0.loc[["Intercept", "cses"], ["lower", "upper"]], atol=1e-8)
    assert ci1.loc["sigma", "interval"] == "not available (sharded fit)"
    pd.testing.assert_frame_equal(r1.conf_int(), r0.conf_int(), atol=1e-8)
    assert float(mlglm.icc(r1)) == pytest.approx(float(mlglm.icc(r0)), rel=1e-8)


def test_sharded_fit_is_the_in_memory_fit_with_its_engine_on_the_cluster(client, hsb, capsys):
    """ShardedMixedGLM.fit is MixedGLM.fit with the engine step on the shards: the same
    method checks and statsmodels keywords. nagq= on a Gaussian model was ignored, a
    start_params that a Gaussian fit does not use passed silently, disp= was refused
    as an unexpected keyword; now as in memory."""
    ddf = dd.from_pandas(hsb, npartitions=2)
    m = mlglm.lmer("mAch ~ cses + (1 | school)", ddf).model
    with pytest.raises(MixedGLMInputError, match="nagq= is for"):
        m.fit(nagq=3)
    with pytest.raises(MixedGLMInputError, match="'reml' or 'ml'"):
        m.fit(method="laplace")
    with pytest.warns(UserWarning, match="start_params is not used"):
        m.fit(start_params=[12.0, 2.0, 8.0])
    res = m.fit(method="ML", disp=True)
    assert "mlglm ml fit converged" in capsys.readouterr().out
    r0 = mlglm.lmer("mAch ~ cses + (1 | school)", hsb, reml=False)
    assert abs(res.llf - r0.llf) <= LLF_RTOL * abs(r0.llf)


# ---------------------------------------------------------------- refusals
def test_crossed_factors_are_refused_before_the_shuffle(client):
    rng = np.random.default_rng(15)
    n = 400
    df = pd.DataFrame({"s": rng.integers(0, 20, n), "i": rng.integers(0, 15, n),
                       "y": rng.integers(0, 2, n)})
    with pytest.raises(MixedGLMInputError, match="crossed"):
        mlglm.glmer("y ~ 1 + (1 | s) + (1 | i)", dd.from_pandas(df, npartitions=2))


def test_row_arrays_and_stateful_transforms_are_refused(client, contraception):
    ddf = dd.from_pandas(contraception, npartitions=2)
    with pytest.raises(MixedGLMInputError, match="name a column"):
        mlglm.MixedGLM.from_formula("y ~ age", ddf, groups="district",
                                    offset=np.zeros(len(contraception)), family="binomial")
    with pytest.raises(MixedGLMInputError, match="stateful"):
        mlglm.glmer("y ~ center(age) + (1 | district)", ddf)


# ---------------------------------------------------------------- faults
def test_shards_rebuilt_mid_fit_give_the_same_answer(client, contraception):
    """The retry path: every shard rebuilt from the source (cold modes) mid-fit."""
    model = mlglm.MixedGLM.from_formula("y ~ age + urban", dd.from_pandas(contraception, 3),
                                        groups="district", re_formula="~urban",
                                        family="binomial")

    def rebuild_once(rec):
        if rec["evaluation"] == 6 and rec["rebuilds"] == 0:
            model._cluster_state["shards"].rebuild()
    r1 = model.fit(progress=rebuild_once)
    r0 = mlglm.MixedGLM.from_formula("y ~ age + urban", contraception, groups="district",
                                     re_formula="~urban", family="binomial").fit()
    assert model._cluster_state["shards"].rebuilds == 1
    _same(r0, r1)


def test_worker_killed_mid_fit_the_fit_completes(client, contraception):
    """A worker process is SIGKILLed during the fit: its shards are recomputed from the
    source on the surviving (or restarted) worker and the evaluations go on."""
    ddf = dd.from_pandas(contraception, npartitions=4)
    r0 = mlglm.glmer(CONTRA, contraception, nagq=5)
    killed = []

    def kill_one(rec):
        if rec["evaluation"] == 10 and not killed:
            pids = client.run(os.getpid)
            victim = sorted(pids)[0]
            killed.append(victim)
            os.kill(pids[victim], signal.SIGKILL)
    r1 = mlglm.glmer(CONTRA, ddf, nagq=5, progress=kill_one)
    assert killed
    _same(r0, r1)
    client.wait_for_workers(2, timeout=60)


def test_standin_rows_have_the_data_moments():
    """mlglm.distributed.standin: d + 1 rows with the data's mean and covariance exactly
    (the oracle is numpy's mean/cov of the data rows), constant columns exactly constant."""
    from mlglm.distributed.standin import standin_rows
    rng = np.random.default_rng(15)
    V = np.column_stack([np.ones(500), rng.standard_normal((500, 3)) @ rng.standard_normal((3, 3)),
                         np.zeros(500)])
    W = standin_rows(V.sum(axis=0), V.T @ V, V.shape[0])
    assert W.shape == (V.shape[1] + 1, V.shape[1])
    np.testing.assert_allclose(W.mean(axis=0), V.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(np.cov(W.T, bias=True), np.cov(V.T, bias=True), atol=1e-12)
    assert np.all(W[:, 0] == 1.0) and np.all(W[:, -1] == 0.0)
    assert np.linalg.matrix_rank(W[:, :4]) == np.linalg.matrix_rank(V[:, :4])


def test_released_shards_are_freed_on_the_workers(client, contraception):
    """Shards live outside Dask's store; the worker plugin frees them with their futures."""
    import time

    from mlglm.distributed import shard

    model = mlglm.MixedGLM.from_formula("y ~ age", dd.from_pandas(contraception, 3),
                                        groups="district", family="binomial")
    model.fit()
    ids = [h.id for h in client.gather(model._cluster_state["shards"].futures)]

    def held():
        return sum(client.run(lambda: sum(i in shard._REGISTRY for i in ids)).values())
    assert held() == 3
    model.release()
    deadline = time.time() + 30
    while held() and time.time() < deadline:
        time.sleep(0.2)
    assert held() == 0


def test_exposure_column_is_used_by_predictions_of_a_sharded_fit(client):
    """Issue 25, item 6, on a cluster: an exposure= column was ignored by predictions on
    rows (fitted values of the data of the fit computed on the partitions were rates,
    0.725 where the in-memory fit has 2.019); the partitions' own column is used."""
    rng = np.random.default_rng(0)
    g = np.repeat([f"g{j:02d}" for j in range(15)], 10)
    x, t = rng.normal(size=g.size), rng.uniform(0.5, 4.0, g.size)
    eta = np.log(t) + 0.2 + 0.5 * x + 0.6 * rng.normal(size=15).repeat(10)
    df = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g, "t": t})
    r0 = mlglm.glmer("y ~ x + (1 | g)", df, family="poisson", exposure="t")
    r1 = mlglm.glmer("y ~ x + (1 | g)", dd.from_pandas(df, npartitions=2), family="poisson",
                     exposure="t")
    _same(r0, r1)
    fitted = r1.fittedvalues.compute().loc[df.index]
    np.testing.assert_allclose(fitted, np.asarray(r0.fittedvalues), rtol=1e-6)
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["g00", "new"], "t": [1.0, 3.0]})
    for kw in ({}, {"allow_new_levels": True}):
        np.testing.assert_allclose(r1.predict(dd.from_pandas(new, npartitions=1),
                                              **kw).compute(),
                                   r0.predict(new, **kw), rtol=1e-6)


# ---------------------------------------------------------------- coding and bad inputs
# (issue 21 item 2 and item 6, its Dask friction; issue 25 items 7, 8, 9 and 13)
def _schools(seed=21, n_groups=30, per_group=16):
    """A small binomial data set with the kinds of columns a Dask user brings: a pandas
    categorical whose categories are not in sorted order (['Public', 'Catholic'], as in
    issue 21), a string column, a numeric covariate; groups 0..G-1 in row order, so that
    dd.from_pandas puts the last groups in the last partition."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    sector = np.where(rng.random(n_groups) < 0.5, "Public", "Catholic")[g]
    region = rng.choice(["north", "south", "east"], g.size)
    x = rng.standard_normal(g.size)
    eta = (-0.2 + 0.6 * x + 0.5 * (sector == "Catholic") - 0.4 * (region == "east")
           + rng.normal(0, 0.8, n_groups)[g])
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": g, "region": region,
                         "sector": pd.Categorical(sector, categories=["Public", "Catholic"])})


SCHOOLS = "y ~ x + sector + region + (1 | g)"


def _same_coding(r0, r1):
    """Same coefficient names in the same order, same estimates (issue 21's done-when)."""
    assert list(r1.params.index) == list(r0.params.index)
    _same(r0, r1, bse=False)


@pytest.mark.parametrize("source", ["parquet", "from_pandas"])
def test_categorical_coding_equals_in_memory(client, tmp_path, source):
    """Issue 21 item 2: dd.read_parquet gives categoricals whose categories Dask does not
    know; the levels were learned with sorted order, so the sharded fit had
    sector[T.Public] where the in-memory fit has sector[T.Catholic] (the categories'
    order: Public is the reference), and predict(ddf) / predict(pandas rows) failed with
    patsy's "mismatching levels". Oracle: the in-memory fit of the same frame."""
    df = _schools()
    ddf = dd.from_pandas(df, npartitions=3)
    if source == "parquet":
        ddf.to_parquet(tmp_path / "schools")
        ddf = dd.read_parquet(tmp_path / "schools")
        assert not ddf.sector.cat.known
    r0 = mlglm.glmer(SCHOOLS, df)
    r1 = mlglm.glmer(SCHOOLS, ddf)
    assert "sector[T.Catholic]" in r0.params.index and "region[T.north]" in r0.params.index
    _same_coding(r0, r1)
    got = r1.predict(ddf).compute()
    np.testing.assert_allclose(got.to_numpy(), r0.predict(df.loc[got.index]), atol=1e-6)
    new = df.iloc[::7]
    np.testing.assert_allclose(r1.predict(new), r0.predict(new), atol=1e-6)
    np.testing.assert_allclose(r1.predict(new, conditional=True),
                               r0.predict(new, conditional=True), atol=1e-6)


def test_unused_level_is_dropped_as_in_memory(client):
    """Issue 21 item 6 (Dask half): a category no row uses (left by a filter) is dropped
    at fit time in memory; the sharded fit kept it and refused the model ("column all
    zero"). Now one behaviour: dropped (with a warning naming it), and predict works on
    the frame the model was fitted on, whose column still has the unused category."""
    base = _schools(seed=5)
    df = base.assign(sector=base.sector.cat.set_categories(["Public", "Catholic", "Other"]))
    ddf = dd.from_pandas(df, npartitions=3)
    r0 = mlglm.glmer(SCHOOLS, df)
    with pytest.warns(mlglm.DataWarning, match="unused categories dropped .*sector: Other"):
        r1 = mlglm.glmer(SCHOOLS, ddf)
    _same_coding(r0, r1)
    assert r1.model.dropped_levels == {"sector": ["Other"]}
    got = r1.predict(ddf).compute()
    np.testing.assert_allclose(got.to_numpy(), r0.predict(base.loc[got.index]), atol=1e-6)
    np.testing.assert_allclose(r1.predict(df.iloc[:9]), r0.predict(base.iloc[:9]), atol=1e-6)


def test_levels_the_frame_does_not_declare_are_learned_not_dropped(client):
    """Issue 25 item 7: a Dask frame whose declared categorical dtype lacks a level its
    partitions hold (a meta that disagrees with the data): every row with that level was
    cast to NaN and dropped as "NaN or inf" (here 1/3 of the rows, silently, with
    missing='drop'). Now the levels are learned from the data, as in memory, with a
    warning about the frame's dtype; no row is dropped."""
    df = _schools(seed=7)
    df["region"] = pd.Categorical(df.region, categories=["south", "north", "east"])
    declared = df.head(0).astype({"region": pd.CategoricalDtype(["south", "north"])})
    ddf = dd.from_pandas(df, npartitions=3).map_partitions(lambda p: p, meta=declared)
    assert ddf.region.cat.known and list(ddf.dtypes["region"].categories) == ["south", "north"]
    r0 = mlglm.glmer(SCHOOLS, df, missing="drop")
    with pytest.warns(mlglm.DataWarning, match="lack \\['east'\\]"):
        r1 = mlglm.glmer(SCHOOLS, ddf, missing="drop")
    assert r1.nobs == r0.nobs == len(df) and r1.model.n_dropped == 0
    _same_coding(r0, r1)
    assert "region[T.east]" in r1.params.index        # reference 'south', the categories' first


def test_pinning_never_turns_a_value_into_a_missing_one():
    """A value outside the learned levels is an error naming it (it was cast to NaN, with
    pandas' FutureWarning about Categoricals built from values outside their categories,
    issue 21's friction); the ordinary cases emit no warning at all."""
    import warnings

    from mlglm.distributed.spec import DesignSpec
    spec = DesignSpec("y ~ s", None, None, {}, "none", ["y", "s"], {"s": ["b", "a"]}, ("g",))
    part = pd.DataFrame({"y": [1, 0, 1], "s": ["a", "b", "a"]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pinned = spec.pin(part)
        cat = spec.pin(part.astype({"s": pd.CategoricalDtype(["a", "b", "z"])}))
    assert list(pinned.s.cat.categories) == ["b", "a"] and list(pinned.s) == ["a", "b", "a"]
    assert list(cat.s.cat.categories) == ["b", "a"] and list(cat.s) == ["a", "b", "a"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MixedGLMInputError, match="'c'"):
            spec.pin(pd.DataFrame({"y": [1, 0], "s": ["a", "c"]}))
        # ... unless missing="drop" drops its row anyway (its level was not learned)
        spec.missing = "drop"
        out = spec.pin(pd.DataFrame({"y": [1, np.nan], "s": ["a", "c"]}))
        assert out.s.isna().tolist() == [False, True]
        with pytest.raises(MixedGLMInputError, match="'c'"):
            spec.pin(pd.DataFrame({"y": [np.nan, 0], "s": ["a", "c"]}))


def test_missing_values_are_counted_on_the_whole_data_and_warned_once(client):
    """Issue 21 friction: the missing-value error counted the driver's template rows (a
    few) instead of the data's, and every shard repeated the "dropped rows" warning on its
    worker. Oracle: the in-memory fit's count."""
    import re
    import warnings

    from mlglm.distributed.shard import Shard
    df = _schools(seed=9)
    df.loc[df.index[3::11], "x"] = np.nan
    df.loc[df.index[3::33], "region"] = "west"      # only on rows that are dropped
    ddf = dd.from_pandas(df, npartitions=3)
    with pytest.raises(MixedGLMInputError) as e0:
        mlglm.glmer(SCHOOLS, df)
    with pytest.raises(MixedGLMInputError) as e1:
        mlglm.glmer(SCHOOLS, ddf)
    n0 = int(re.search(r"(\d+) rows contain NaN", str(e0.value)).group(1))
    assert n0 == df.x.isna().sum() > 40
    assert f"{n0} rows contain NaN or inf (in x)" in str(e1.value)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = mlglm.MixedGLM.from_formula("y ~ x + sector + region", ddf, groups="g",
                                            family="binomial", missing="drop")
    dropped = [str(w.message) for w in seen if "dropped" in str(w.message)]
    assert dropped == [f"dropped {n0} rows with NaN or inf (in x)"]
    m0 = mlglm.MixedGLM.from_formula("y ~ x + sector + region", df, groups="g",
                                     family="binomial", missing="drop")
    assert model.exog_names == m0.exog_names and "region[T.west]" not in m0.exog_names
    with warnings.catch_warnings(record=True) as seen:      # a shard says nothing
        warnings.simplefilter("always")
        shard = Shard(df.iloc[:160], model._spec)
    assert shard.info.n_dropped == df.x.iloc[:160].isna().sum() > 0
    assert not [w for w in seen if issubclass(w.category, mlglm.DataWarning)]


def test_progress_prints_one_line_per_evaluation(client, capsys):
    """Issue 21 friction: progress=True printed every round of the GLM start and of the
    beta information too (101 of ~128 lines before the first evaluation on a messy data
    set); now one line per evaluation of the log-likelihood, numbered 1, 2, ..."""
    import re
    df = _schools(seed=11)
    mlglm.glmer(SCHOOLS, dd.from_pandas(df, npartitions=2), progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mlglm:")]
    pattern = re.compile(r"mlglm: evaluation (\d+) \(value(\+gradient)?, nagq=1\) log L -\d")
    assert lines and all(pattern.match(ln) for ln in lines), lines[:3]
    assert [int(pattern.match(ln).group(1)) for ln in lines] == list(range(1, len(lines) + 1))


def test_errors_in_any_partition_reach_the_driver(client):
    """Issue 25 item 9: a bad value in any partition but the first (where the driver's
    template rows come from) surfaced as Dask's "Only use allow_other_workers= if using
    workers="; the real message was only in the worker's log. Now the driver raises the
    worker's error, its type and message as in memory, naming the shard and its groups.
    A missing group label is found by the whole-data check; group labels mixing int and
    str across partitions gave a bare TypeError and now fit as in memory."""
    import re

    import dask
    df = _schools(seed=13)
    last = df.index[-1]
    bad_y = df.copy()
    bad_y.loc[last, "y"] = 2
    with pytest.raises(MixedGLMInputError) as e0:
        mlglm.glmer(SCHOOLS, bad_y)
    with pytest.raises(MixedGLMInputError) as e1:
        mlglm.glmer(SCHOOLS, dd.from_pandas(bad_y, npartitions=3))
    assert str(e0.value) in str(e1.value)
    assert re.search(r"on shard \d of 3 \(the rows of \d+ groups of g: \d+, ", str(e1.value))

    bad_g = df.astype({"g": float})
    bad_g.loc[last, "g"] = np.nan
    with pytest.raises(MixedGLMInputError, match="1 rows contain NaN or inf"):
        mlglm.glmer(SCHOOLS, dd.from_pandas(bad_g, npartitions=3))

    mixed = df.astype({"g": object})
    mixed.loc[mixed.g >= 15, "g"] = "s" + mixed.g[mixed.g >= 15].astype(str)
    with dask.config.set({"dataframe.convert-string": False}):    # keep the ints ints
        ddf = dd.from_pandas(mixed, npartitions=3)
    r0 = mlglm.glmer(SCHOOLS, mixed)
    r1 = mlglm.glmer(SCHOOLS, ddf)
    _same_coding(r0, r1)
    assert r1.model.group_labels == r0.model.group_labels


def test_formula_names_from_the_calling_namespace(client):
    """Issue 25 items 2 and 13 (Dask): the workers evaluated formulas with numpy only, so
    a function or constant of the caller's failed there. Now the names a formula mentions
    are taken from the calling namespace (statsmodels' eval_env), pickled on the driver
    and shipped; a name that is missing or cannot be pickled fails on the driver, saying
    what a formula can use. Oracle: the in-memory fit written without the names."""
    df = _schools(seed=17)
    ddf = dd.from_pandas(df, npartitions=3)
    scale = 10.0        # noqa: F841 - named in the formula

    def sq(v):
        return v ** 2
    r0 = mlglm.glmer("y ~ I(x ** 2) + I(x * 10.0) + (1 | g)", df)
    r1 = mlglm.glmer("y ~ sq(x) + I(x * scale) + (1 | g)", ddf)
    np.testing.assert_allclose(np.asarray(r1.params), np.asarray(r0.params), atol=EST_TOL)
    got = r1.predict(ddf).compute()
    np.testing.assert_allclose(got.to_numpy(), r0.predict(df.loc[got.index]), atol=1e-6)
    m = mlglm.MixedGLM.from_formula("y ~ cube(x)", ddf, groups="g", family="binomial",
                                    eval_env={"cube": lambda v: v ** 3})
    assert m.exog_names == ["Intercept", "cube(x)"]

    with pytest.raises(MixedGLMInputError, match="(?s)nosuch.*calling namespace"):
        mlglm.glmer("y ~ nosuch(x) + (1 | g)", ddf)

    class Unpicklable:
        def __call__(self, v):
            return v

        def __reduce__(self):
            raise TypeError("not today")
    f = Unpicklable()
    assert f(1) == 1
    with pytest.raises(MixedGLMInputError, match="f cannot be sent to the workers.*not today"):
        mlglm.glmer("y ~ f(x) + (1 | g)", ddf)


def test_a_cluster_without_workers_times_out(contraception):
    """Issue 25 item 8: a cluster that lost all its workers made the fit wait forever.
    Now every wait gives up after worker_timeout seconds without any worker, saying what
    to do; the error carries the best point reached, from which a later fit resumes (and
    reaches the in-memory optimum). A cluster of its own (one in-process worker), so that
    the module's cluster keeps its workers."""
    import time

    from mlglm.distributed.cluster import ClusterTimeoutError
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=":0")
    c = distributed.Client(cluster, set_as_default=False)
    try:
        df = contraception
        f = "y ~ age + urban + (1 | district)"
        model = mlglm.MixedGLM.from_formula(f.split(" + (")[0], dd.from_pandas(df, 2),
                                            groups="district", family="binomial", client=c,
                                            worker_timeout=1.0)

        def lose_the_workers(rec):
            if rec["evaluation"] == 4:
                cluster.scale(0)
        t0 = time.monotonic()
        with pytest.raises(ClusterTimeoutError, match="no workers for 1 s") as err:
            model.fit(progress=lose_the_workers)
        assert time.monotonic() - t0 < 30
        assert "start_params=err.params" in str(err.value)
        params = err.value.params
        assert list(params.index) == list(model.data.param_names)
        cluster.scale(1)
        c.wait_for_workers(1, timeout=30)
        r1 = model.fit(start_params=params)
        _same(mlglm.glmer(f, df), r1, bse=False)

        cluster.scale(0)
        deadline = time.monotonic() + 30
        while c.nthreads() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(ClusterTimeoutError, match="reading the data"):
            mlglm.glmer(f, dd.from_pandas(df, 2), client=c, worker_timeout=0.5)
    finally:
        c.close()
        cluster.close()
