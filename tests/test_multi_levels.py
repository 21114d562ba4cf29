"""Level-wise summaries for fits with several grouping factors: LR tests between
random-effects structures, ICCs and variance explained per level, the random-effects
table with a factor column, and the pooling comparison at the lowest level.

Every number is checked against a computation by hand from the fits' own ``llf``,
``cov_re``, ``scale``, ``fe_params`` and random effects (the fits themselves are
checked against lme4 in tests/test_multi_references.py), or against an ordinary
statsmodels GLM/OLS for the no-pooling fits.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

import mlglm


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


@pytest.fixture(scope="module")
def pastes_ml():
    d = mlglm.datasets.load_pastes()
    return (_quiet(mlglm.lmer, "strength ~ 1 + (1 | batch)", d, reml=False),
            _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", d, reml=False))


@pytest.fixture(scope="module")
def chem():
    d = mlglm.datasets.load_chem97()
    return (_quiet(mlglm.lmer, "score ~ 1 + (1 | lea) + (1 | school)", d),
            _quiet(mlglm.lmer, "score ~ gcsecnt + (1 | lea) + (1 | school)", d))


@pytest.fixture(scope="module")
def verbagg():
    d = mlglm.datasets.load_verbagg()
    f = "r2 ~ Anger + Gender + btype + situ"
    return (_quiet(mlglm.glmer, f + " + (1 | id)", d, family="binomial"),
            _quiet(mlglm.glmer, f + " + (1 | id) + (1 | item)", d, family="binomial"))


def _tau(res, factor):
    return float(np.asarray(res.cov_re[factor])[0, 0])


# ---------------------------------------------------------------------- LR tests
def test_nested_factor_added_uses_the_boundary_mixture(pastes_ml):
    small, big = pastes_ml
    t = mlglm.compare_lr_test(big, small)
    lr = 2 * (big.llf - small.llf)
    assert t.statistic == pytest.approx(lr, rel=1e-12) and t.df == 1
    assert t.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr, 1), rel=1e-12)
    assert "mixture" in t.reference
    plain = mlglm.compare_lr_test(small, big, boundary=False)
    assert plain.pvalue == pytest.approx(stats.chi2.sf(lr, 1), rel=1e-12)


def test_crossed_factor_added_to_one(verbagg):
    small, big = verbagg
    t = small.compare_lr_test(big)
    lr = 2 * (big.llf - small.llf)
    assert t.statistic == pytest.approx(lr) and t.df == 1
    assert t.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr, 1), rel=1e-12)


def test_random_slope_on_one_of_several_terms():
    """(1 | Subject) against (1 | Subject) + (0 + Days | Subject): one variance added,
    df 1 (no correlation), the mixture of chi2(0) and chi2(1)."""
    d = mlglm.datasets.load_sleepstudy()
    a = _quiet(mlglm.lmer, "Reaction ~ Days + (1 | Subject)", d, reml=False)
    b = _quiet(mlglm.lmer, "Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d,
               reml=False)
    t = mlglm.compare_lr_test(b, a)
    lr = 2 * (b.llf - a.llf)
    assert t.df == 1 and t.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr, 1), rel=1e-12)


def test_anova_labels_every_factor(pastes_ml):
    tab = mlglm.anova(*pastes_ml)
    assert list(tab.index) == ["strength ~ 1 + (1 | batch)",
                               "strength ~ 1 + (1 | batch) + (1 | batch:cask)"]
    assert tab["npar"].tolist() == [3, 4]
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(
        stats.chi2.sf(tab["Chisq"].iloc[1], 1), rel=1e-12)       # lme4's plain chi2


def test_reml_multi_fits_compare_only_with_the_same_fixed_effects():
    """REML fits are compared only when their fixed effects are the same (a test of the
    random effects, as lme4's anova(refit = FALSE)); otherwise refused (issue 21: the
    refusal used to cover every REML pair, with a false reason for these)."""
    d = mlglm.datasets.load_pastes()
    a = _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch)", d)
    b = _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", d)
    t = mlglm.compare_lr_test(a, b)
    assert t.statistic == pytest.approx(2 * (b.llf - a.llf), rel=1e-12) and t.df == 1
    c = _quiet(mlglm.lmer, "strength ~ 1 + sample + (1 | batch)", d.assign(
        sample=np.arange(len(d)) % 2))
    with pytest.raises(ValueError, match="REML"):
        mlglm.compare_lr_test(c, b)


# --------------------------------------------------------------------------- ICCs
def test_three_level_iccs_by_hand(chem):
    """Pupils in schools in LEAs (Chem97): same school (tau_lea + tau_school) / total, same
    LEA tau_lea / total, total = tau_lea + tau_school + sigma^2 (Snijders & Bosker ch. 4)."""
    r = chem[0]
    tl, ts, s2 = _tau(r, "lea"), _tau(r, "school"), r.scale
    total = tl + ts + s2
    got = mlglm.icc(r)
    assert got["school"] == pytest.approx((tl + ts) / total, rel=1e-12)
    assert got["lea"] == pytest.approx(tl / total, rel=1e-12)
    assert got.table.loc["school", "shared"] == "school + lea"
    assert got.components == {"lea": pytest.approx(tl), "school": pytest.approx(ts),
                              "within": pytest.approx(s2)}
    assert r.icc()["school"] == got["school"]


def test_crossed_binomial_iccs_by_hand(verbagg):
    r = verbagg[1]
    ti, tt = _tau(r, "id"), _tau(r, "item")
    total = ti + tt + math.pi ** 2 / 3
    got = mlglm.icc(r)
    assert got["id"] == pytest.approx(ti / total, rel=1e-12)
    assert got["item"] == pytest.approx(tt / total, rel=1e-12)


def test_poisson_iccs_by_hand():
    r = _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
               mlglm.datasets.load_grouseticks(), family="poisson")
    tb, tl = _tau(r, "BROOD"), _tau(r, "LOCATION")
    lam = np.exp(np.mean(np.asarray(r.model.exog) @ np.asarray(r.fe_params)) + (tb + tl) / 2)
    total = tb + tl + np.log1p(1 / lam)
    got = mlglm.icc(r)
    assert got["BROOD"] == pytest.approx((tb + tl) / total, rel=1e-10)   # broods in locations
    assert got["LOCATION"] == pytest.approx(tl / total, rel=1e-10)


def test_icc_bootstrap_interval(verbagg):
    r = verbagg[1]
    got = mlglm.icc(r, ci=True, n_boot=4, seed=2, progress=False)
    boot = _quiet(r.bootstrap, 4, seed=2, progress=False)
    ids = boot.apply(lambda x: mlglm.icc(x)["id"])
    assert got.ci["id"] == pytest.approx((ids.quantile(0.025), ids.quantile(0.975)), rel=1e-10)
    assert "bootstrap percentile" in got.ci_method and got.level == 0.95
    with pytest.raises(ValueError, match="bootstrap"):
        mlglm.icc(r, ci=True, ci_method="profile")


def test_variance_explained_per_level_by_hand(chem):
    null, full = chem
    ve = mlglm.variance_explained(null, full)
    for f in ("lea", "school"):
        assert ve[f] == pytest.approx((_tau(null, f) - _tau(full, f)) / _tau(null, f), rel=1e-12)
    assert ve["within"] == pytest.approx((null.scale - full.scale) / null.scale, rel=1e-12)
    assert ve.icc_full["school"] == mlglm.icc(full)["school"]


# -------------------------------------------------------------------------- tables
def test_random_effects_frame_has_a_factor_column(chem):
    r = chem[1]
    f = mlglm.random_effects_frame(r, level=0.9)
    assert list(f.columns) == ["factor", "group", "term", "estimate", "se", "lower", "upper"]
    assert f["factor"].tolist() == ["lea"] * r.n_groups["lea"] + ["school"] * r.n_groups["school"]
    lea = f[f["factor"] == "lea"]
    assert np.allclose(lea["estimate"], r.random_effects["lea"]["Intercept"])
    se = [np.sqrt(c.iloc[0, 0]) for c in r.random_effects_cov["lea"].values()]
    assert np.allclose(lea["se"], se)
    assert np.allclose(lea["upper"] - lea["estimate"], 1.6448536269514722 * lea["se"])


def test_pooling_at_the_innermost_nested_level():
    """(1 | batch/cask): groups are the casks; partial pooling = gamma + b_batch + b_cask,
    no pooling = the cask's own mean (OLS on an intercept)."""
    d = mlglm.datasets.load_pastes()
    r = _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", d)
    pc = r.compare_pooling()
    assert pc.group_name == "batch:cask" and len(pc.table) == 30
    row = pc.table.iloc[4]                                   # cask B:b
    assert row["group"] == "B:b"
    bb = r.random_effects["batch"].loc["B", "Intercept"]
    bc = r.random_effects["batch:cask"].loc["B:b", "Intercept"]
    assert row["partial_pooling"] == pytest.approx(r.fe_params["Intercept"] + bb + bc)
    own = d[(d["batch"] == "B") & (d["cask"] == "b")]["strength"].mean()
    assert row["no_pooling"] == pytest.approx(own)
    assert "(1 | batch) + (1 | batch:cask)" in pc.summary()


def test_pooling_crossed_uses_the_factor_with_most_levels():
    """Penicillin: plate (24 levels) crossed with sample (6): the groups are plates and a
    plate's partial-pooling intercept is gamma + b_plate (samples vary within a plate)."""
    d = mlglm.datasets.load_penicillin()
    r = _quiet(mlglm.lmer, "diameter ~ 1 + (1 | plate) + (1 | sample)", d)
    pc = r.compare_pooling()
    assert pc.group_name == "plate" and pc.table["group"].nunique() == 24
    b = r.random_effects["plate"]["Intercept"]
    want = r.fe_params["Intercept"] + b.to_numpy()
    assert np.allclose(pc.table.set_index("group").loc[list(b.index), "partial_pooling"], want)
    ols = sm.OLS(d["diameter"][d["plate"] == "a"].to_numpy(), np.ones(6)).fit()
    assert pc.table.set_index("group").loc["a", "no_pooling"] == pytest.approx(ols.params[0])


def test_caterpillar_has_a_panel_per_factor(chem):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = mlglm.caterpillar(chem[1])
    assert [a.get_title() for a in fig.axes] == ["Intercept | lea", "Intercept | school"]
    plt.close(fig)


def test_update_keeps_every_factor(verbagg):
    """update() rewrites the model in lme4's syntax with all its terms ("." carries every
    random-effects term; one can be removed by name); it used to keep the first only."""
    from mlglm.results.lme4api import lme4_formula
    big = verbagg[1]
    assert lme4_formula(big.model).endswith("+ (1 | id) + (1 | item)")
    u = _quiet(big.update, "~ . - Anger")
    direct = _quiet(mlglm.glmer, "r2 ~ Gender + btype + situ + (1 | id) + (1 | item)",
                    mlglm.datasets.load_verbagg(), family="binomial")
    assert u.llf == pytest.approx(direct.llf, abs=1e-6)
    assert set(u.n_groups) == {"id", "item"}
    d = mlglm.datasets.load_pastes()
    r = _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", d)
    one = _quiet(r.update, "~ . - (1 | batch)")    # written (1 | batch) + (1 | batch:cask)
    assert one.llf == pytest.approx(_quiet(mlglm.lmer, "strength ~ 1 + (1 | batch:cask)",
                                           d).llf, abs=1e-8)


def test_one_icc_class_whatever_the_number_of_factors(chem):
    """icc() returns an ICCResult for one factor and for several; with several its value
    is the share of every factor's variance, (tau_lea + tau_school) / total, and one
    factor's result reads by the factor's name too."""
    r = chem[0]
    got = mlglm.icc(r)
    assert type(got) is mlglm.ICCResult
    tl, ts = _tau(r, "lea"), _tau(r, "school")
    assert got.value == pytest.approx((tl + ts) / (tl + ts + r.scale), rel=1e-12)
    assert got.between == pytest.approx(tl + ts, rel=1e-12) and got.within == r.scale
    assert repr(got) == f"ICCResult(lea={got['lea']:.4f}, school={got['school']:.4f})"
    one = mlglm.icc(_quiet(mlglm.lmer, "score ~ 1 + (1 | school)", mlglm.datasets.load_chem97()))
    assert type(one) is mlglm.ICCResult and one["school"] == one.value
    assert list(one.table.index) == ["school"] and repr(one).startswith("ICCResult(value=")


def test_boundary_groups_per_factor():
    """Poisson counts of (1 | BROOD) + (1 | LOCATION) (broods in locations): the levels
    whose counts are all zero, counted by hand for each factor (it used to say nothing
    with more than one factor)."""
    d = mlglm.datasets.load_grouseticks()
    r = _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", d,
               family="poisson")
    zero = {f: int((d.groupby(f, observed=True)["TICKS"].sum() == 0).sum())
            for f in ("BROOD", "LOCATION")}
    n = {f: d[f].nunique() for f in ("BROOD", "LOCATION")}
    text = mlglm.design.fit_checks.boundary_groups(r.model)
    assert text.startswith(f"{zero['BROOD']} of {n['BROOD']} levels of BROOD and "
                           f"{zero['LOCATION']} of {n['LOCATION']} levels of LOCATION have "
                           "responses all zero")
    one = _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", d, family="poisson")
    assert mlglm.design.fit_checks.boundary_groups(one.model).startswith(
        f"{zero['BROOD']} of {n['BROOD']} groups have responses all zero")
