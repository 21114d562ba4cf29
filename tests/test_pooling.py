"""Complete / no / partial pooling (mlglm/results/pooling.py, mlglm/api/pooling.py).

Checked against direct computations (statsmodels OLS/GLM per group, fixed effects plus
conditional modes), on the bundled HSB (160 schools), Contraception (60 districts) and
grouseticks (118 broods) data. No external reference numbers are used.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

import mlglm
from mlglm.results.pooling import PoolingComparison, compare_pooling_from_results
from mlglm.api.pooling import compare_pooling


@pytest.fixture(scope="module")
def hsb():
    return mlglm.datasets.load_hsb()


@pytest.fixture(scope="module")
def contraception():
    return mlglm.datasets.load_contraception()


@pytest.fixture(scope="module")
def pc_hsb(hsb):
    return compare_pooling("mAch ~ cses", hsb, groups="school", re_formula="~cses")


@pytest.fixture(scope="module")
def pc_con(contraception):
    return compare_pooling("y ~ urban", contraception, groups="district", family="binomial",
                           re_formula="~urban")


# ---------------------------------------------------------------------- HSB
def test_hsb_no_failures_and_table_layout(pc_hsb):
    assert isinstance(pc_hsb, PoolingComparison)
    assert pc_hsb.failed.empty
    assert list(pc_hsb.failed.columns) == ["group", "n", "reason"]
    t = pc_hsb.table
    assert list(t.columns) == ["group", "n", "term", "complete_pooling", "no_pooling",
                               "partial_pooling", "shrinkage"]
    assert t["group"].nunique() == 160 and len(t) == 320
    assert t[["complete_pooling", "no_pooling", "partial_pooling"]].notna().all().all()
    assert t.drop_duplicates("group")["n"].sum() == 7185
    w = pc_hsb.wide()
    assert w.shape == (160, 7) and w.columns[0] == ("n", "")


def test_hsb_estimates_by_hand(pc_hsb, hsb):
    t = pc_hsb.table.set_index(["group", "term"])
    # complete pooling = OLS on all rows
    ols = smf.ols("mAch ~ cses", hsb).fit()
    assert t.loc[("1224", "cses"), "complete_pooling"] == pytest.approx(ols.params["cses"])
    # no pooling = OLS in one school
    d = hsb[hsb["school"] == "1224"]
    own = np.polyfit(d["cses"], d["mAch"], 1)
    assert t.loc[("1224", "cses"), "no_pooling"] == pytest.approx(own[0], rel=1e-10)
    assert t.loc[("1224", "Intercept"), "no_pooling"] == pytest.approx(own[1], rel=1e-10)
    # partial pooling = fixed effect + conditional mode
    res = pc_hsb.mixed
    b = res.random_effects["1224"]
    assert t.loc[("1224", "Intercept"), "partial_pooling"] == pytest.approx(
        res.fe_params["Intercept"] + b["school"])
    assert t.loc[("1224", "cses"), "partial_pooling"] == pytest.approx(
        res.fe_params["cses"] + b["cses"])
    # shrinkage factor s_j = 1 - (partial - gamma) / (no - gamma)
    g = res.fe_params["cses"]
    s = 1 - (t.loc[("1224", "cses"), "partial_pooling"] - g) / (own[0] - g)
    assert t.loc[("1224", "cses"), "shrinkage"] == pytest.approx(s)


def test_hsb_shrinkage(pc_hsb):
    sh = pc_hsb.shrinkage
    assert list(sh.index) == ["Intercept", "cses"]
    # partial pooling is less spread out than no pooling
    assert (sh["sd_partial_pooling"] < sh["sd_no_pooling"]).all()
    assert ((sh["mean_shrinkage"] > 0) & (sh["mean_shrinkage"] < 1)).all()
    # slopes are estimated less precisely per school than intercepts: shrunk more
    assert sh.loc["cses", "mean_shrinkage"] > sh.loc["Intercept", "mean_shrinkage"]
    # larger schools are shrunk less
    assert (sh["corr_shrinkage_n"] < 0).all()
    assert sh["random"].all() and (sh["n_groups"] == 160).all()
    # mean_shrinkage = 1 - sum(dp dn) / sum(dn^2)
    t = pc_hsb.table[pc_hsb.table["term"] == "cses"]
    g = sh.loc["cses", "fixed_effect"]
    dn, dp = t["no_pooling"] - g, t["partial_pooling"] - g
    assert sh.loc["cses", "mean_shrinkage"] == pytest.approx(1 - (dn * dp).sum() / (dn ** 2).sum())


def test_random_intercept_only_pools_the_slope(hsb):
    pc = compare_pooling("mAch ~ cses", hsb, groups="school")  # re_formula=None
    sh = pc.shrinkage
    assert not sh.loc["cses", "random"] and sh.loc["Intercept", "random"]
    assert sh.loc["cses", "sd_partial_pooling"] == pytest.approx(0.0, abs=1e-12)
    part = pc.table.loc[pc.table["term"] == "cses", "partial_pooling"]
    assert np.allclose(part, pc.mixed.fe_params["cses"])


def test_summary_and_repr(pc_hsb):
    s = pc_hsb.summary()
    assert "mAch ~ cses" in s and "all 160 groups succeeded" in s
    assert "mAch ~ cses + (1 + cses | school)" in s
    assert "160 groups, 0 failed" in repr(pc_hsb)


def test_from_results_equals_direct(pc_hsb):
    again = compare_pooling_from_results(pc_hsb.mixed)
    pd.testing.assert_frame_equal(again.table, pc_hsb.table)


def test_from_statsmodels_mixedlm(hsb):
    res = smf.mixedlm("mAch ~ cses", hsb, groups="school").fit()
    pc = compare_pooling_from_results(res)
    assert pc.failed.empty and pc.table["group"].nunique() == 160
    t = pc.table.set_index(["group", "term"])
    assert t.loc[("1224", "Intercept"), "partial_pooling"] == pytest.approx(
        res.fe_params["Intercept"] + res.random_effects["1224"].iloc[0])


# ------------------------------------------------------------- Contraception
def test_contraception_failures_listed_with_reason(pc_con, contraception):
    failed = pc_con.failed
    assert 0 < len(failed) < 60
    assert pc_con.table["group"].nunique() == 60  # nobody dropped
    # districts with one urban level cannot estimate the urban effect: singular design
    one_level = {g for g, d in contraception.groupby("district", observed=True)
                 if d["urban"].nunique() == 1}
    reasons = dict(zip(failed["group"], failed["reason"]))
    assert one_level <= set(reasons)
    assert all(reasons[g].startswith("singular design") for g in one_level)
    # others separate (all-0/all-1 outcomes in one urban level): named as separation
    sep = [g for g, r in reasons.items() if r.startswith("separation")]
    assert sep
    for g in sep:
        d = contraception[contraception["district"] == g]
        assert (d.groupby("urban", observed=True)["y"].agg(lambda v: v.nunique()) == 1).any()
    # failed groups: NaN no-pooling, but a partial-pooling estimate
    t = pc_con.table
    bad = t[t["group"].isin(reasons)]
    assert bad["no_pooling"].isna().all() and bad["partial_pooling"].notna().all()
    good = t[~t["group"].isin(reasons)]
    assert good["no_pooling"].notna().all()
    assert "No-pooling fits that failed" in pc_con.summary()


def test_contraception_shrinkage(pc_con):
    sh = pc_con.shrinkage
    assert (sh["sd_partial_pooling"] < sh["sd_no_pooling"]).all()
    assert (sh["n_groups"] == 60 - len(pc_con.failed)).all()


def test_family_object_and_complete_glm(contraception):
    pc = compare_pooling("y ~ urban", contraception, groups="district",
                         family=sm.families.Binomial())
    glm = sm.GLM.from_formula("y ~ urban", contraception, family=sm.families.Binomial()).fit()
    assert pc.shrinkage.loc["urban[T.Y]", "complete_pooling"] == pytest.approx(
        glm.params["urban[T.Y]"])
    assert pc.family_name == "binomial"


def test_too_few_rows_reported():
    rng = np.random.default_rng(20240611)
    n = np.r_[np.full(8, 30), 2]
    g = np.repeat(np.arange(len(n)), n).astype(str)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    y = 1 + x1 - x2 + rng.normal(size=g.size) + rng.normal(size=len(n))[g.astype(int)]
    d = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})
    pc = compare_pooling("y ~ x1 + x2", d, groups="g")
    assert list(pc.failed["group"]) == ["8"]
    assert pc.failed["reason"].iloc[0].startswith("too few rows: 2 for 3")


# ------------------------------------------------------------------- Poisson
def test_poisson_zero_broods_fail():
    d = mlglm.datasets.load_grouseticks()
    pc = compare_pooling("TICKS ~ 1", d, groups="BROOD", family="poisson")
    zero = {b for b, v in d.groupby("BROOD")["TICKS"] if v.sum() == 0}
    assert zero and set(pc.failed["group"]) == zero
    assert all(r.startswith("all counts are zero") for r in pc.failed["reason"])
    assert pc.shrinkage.loc["Intercept", "sd_partial_pooling"] < \
        pc.shrinkage.loc["Intercept", "sd_no_pooling"]


def test_level2_covariate_warns():
    d = mlglm.datasets.load_grouseticks()
    with pytest.warns(UserWarning, match="cHEIGHT is constant within groups"):
        pc = compare_pooling("TICKS ~ cHEIGHT", d, groups="BROOD", family="poisson")
    assert len(pc.failed) == d["BROOD"].nunique()


def test_bad_kind(pc_hsb):
    with pytest.raises(ValueError, match="kind"):
        pc_hsb.plot(kind="bars")


def test_no_stray_warnings(hsb):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compare_pooling("mAch ~ cses", hsb, groups="school", re_formula="~cses")


def test_notebook_shows_the_tables(pc_hsb, pc_con):
    """In a notebook the comparison renders as its tables (issue 10), not the one-line
    repr: the shrinkage table per term and the per-group estimates, as HTML tables
    whose numbers are those of .shrinkage and .wide()."""
    html = pc_hsb._repr_html_()
    assert html.count("<table") == 2
    sh = pc_hsb.shrinkage
    for term in ("Intercept", "cses"):
        assert f"{sh.loc[term, 'sd_no_pooling']:.4g}" in html
        assert f"{sh.loc[term, 'mean_shrinkage']:.4g}" in html
    first = pc_hsb.wide().iloc[0]
    assert f"{first[('cses', 'partial_pooling')]:.4g}" in html
    assert "all 160 groups succeeded" in html
    # failures are listed with their reasons
    html = pc_con._repr_html_()
    assert html.count("<table") == 3 and pc_con.failed["reason"].iloc[0][:20] in html
