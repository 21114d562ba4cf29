"""Bundled data sets (shapes, level orders, R-compatible coding) and simulate_glmm."""
from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import patsy
import pytest
import statsmodels.api as sm

from mlglm.datasets import (SimulatedGLMM, describe, list_datasets, load, load_cbpp,
                            load_contraception, load_grouseticks, load_hsb, simulate_glmm)
from mlglm.design.formula import parse_lme4

# name, loader, grouping column, rows, groups.
# Rows and groups: mlmRev::Hsb82 has 7185 pupils in 160 schools; mlmRev::Contraception
# 1934 women in 60 districts; lme4::cbpp 56 herd-periods in 15 herds; lme4::grouseticks
# 403 chicks in 118 broods (the R help pages of those data sets).
SHAPES = [
    ("hsb", load_hsb, "school", 7185, 160),
    ("contraception", load_contraception, "district", 1934, 60),
    ("cbpp", load_cbpp, "herd", 56, 15),
    ("grouseticks", load_grouseticks, "BROOD", 403, 118),
]

# Categorical columns and their levels, reference (R's first level) first, as set by
# /work/shared/reference/references.R `prep` and references_lmm.R.
LEVELS = [
    (load_hsb, "sector", ["Public", "Catholic"]),
    (load_hsb, "minrty", ["No", "Yes"]),
    (load_hsb, "sx", ["Female", "Male"]),
    (load_contraception, "livch", ["0", "1", "2", "3+"]),
    (load_contraception, "urban", ["N", "Y"]),
    (load_contraception, "use", ["N", "Y"]),
    (load_cbpp, "period", ["1", "2", "3", "4"]),
    (load_grouseticks, "YEAR", ["95", "96", "97"]),
]

# Treatment-coded columns patsy builds; they line up with lme4's coefficient names
# in /work/shared/reference/glmm_open.json and lmm_hsb.json (urbanY, livch1, ...).
PATSY_COLUMNS = [
    (load_contraception, "age + I(age**2) + urban + livch",
     ["Intercept", "urban[T.Y]", "livch[T.1]", "livch[T.2]", "livch[T.3+]", "age", "I(age ** 2)"]),
    (load_cbpp, "period", ["Intercept", "period[T.2]", "period[T.3]", "period[T.4]"]),
    (load_grouseticks, "YEAR + cHEIGHT", ["Intercept", "YEAR[T.96]", "YEAR[T.97]", "cHEIGHT"]),
    (load_hsb, "sector * cses", ["Intercept", "sector[T.Catholic]", "cses", "sector[T.Catholic]:cses"]),
]


@pytest.mark.parametrize("name, loader, groups, rows, n_groups", SHAPES)
def test_shapes_and_groups(name, loader, groups, rows, n_groups):
    df = loader()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == rows
    assert df[groups].nunique() == n_groups
    assert all(isinstance(v, str) for v in df[groups])
    assert not df.isna().any().any()
    pd.testing.assert_frame_equal(load(name), df)


@pytest.mark.parametrize("loader, column, levels", LEVELS)
def test_level_order(loader, column, levels):
    col = loader()[column]
    assert isinstance(col.dtype, pd.CategoricalDtype)
    assert list(col.cat.categories) == levels
    assert not col.isna().any()


@pytest.mark.parametrize("loader, rhs, names", PATSY_COLUMNS)
def test_treatment_coding_matches_r_reference_levels(loader, rhs, names):
    assert patsy.dmatrix(rhs, loader()).design_info.column_names == names


def test_contraception_response():
    df = load_contraception()
    assert df["y"].dtype == np.int64
    np.testing.assert_array_equal(df["y"], (df["use"] == "Y").astype(int))
    # summary(mlmRev::Contraception): use N 1175, Y 759
    assert df["y"].sum() == 759


def test_column_types():
    cbpp = load_cbpp()
    assert cbpp["incidence"].dtype == np.int64 and cbpp["size"].dtype == np.int64
    assert (cbpp["incidence"] <= cbpp["size"]).all()
    ticks = load_grouseticks()
    assert ticks["TICKS"].dtype == np.int64 and ticks["cHEIGHT"].dtype == np.float64
    for col in ("INDEX", "BROOD", "LOCATION"):
        assert all(isinstance(v, str) for v in ticks[col])
    hsb = load_hsb()
    # Hsb82 documents cses = ses - meanses, meanses constant within a school
    np.testing.assert_allclose(hsb["cses"], hsb["ses"] - hsb["meanses"], atol=1e-9)
    assert (hsb.groupby("school")["meanses"].nunique() == 1).all()


def test_loaders_return_fresh_frames():
    a = load_cbpp()
    a.loc[0, "incidence"] = -1
    assert load_cbpp().loc[0, "incidence"] != -1


def test_hsb_works_as_mixedlm_groups_and_matches_lmer():
    # statsmodels' MixedLM on the lecture's full model, REML; lme4 numbers from
    # references_lmm.R (lmm_hsb.json, "full_reml"). Checks the sector reference level.
    res = sm.MixedLM.from_formula("mAch ~ meanses * cses + sector * cses", load_hsb(),
                                  groups="school", re_formula="~cses").fit(reml=True)
    assert res.fe_params["sector[T.Catholic]"] == pytest.approx(1.22657972179375, abs=1e-3)
    assert res.fe_params["sector[T.Catholic]:cses"] == pytest.approx(-1.64268203386062, abs=1e-3)
    assert res.llf == pytest.approx(-23251.8314344955, abs=1e-3)


def test_csvs_are_package_resources():
    files = resources.files("mlglm.datasets")
    for name in ("hsb", "contraception", "cbpp", "grouseticks"):
        assert files.joinpath(f"{name}.csv").is_file()


def test_list_and_describe():
    table = list_datasets()
    assert list(table.index) == ["hsb", "contraception", "cbpp", "grouseticks", "verbagg",
                                 "penicillin", "pastes", "sleepstudy", "chem97", "insteval",
                                 "epil", "salamanders"]
    assert {"description", "groups", "rows", "n_groups"} <= set(table.columns)
    for name, loader, groups, rows, n_groups in SHAPES:
        assert table.loc[name, "groups"] == groups
        assert table.loc[name, "rows"] == rows
        assert table.loc[name, "n_groups"] == n_groups
        text = describe(name)
        for column in loader().columns:
            assert column in text
    for name in ["verbagg", "penicillin", "pastes", "sleepstudy", "chem97", "insteval",
                 "epil", "salamanders"]:
        d = load(name)
        assert len(d) == table.loc[name, "rows"]
        text = describe(name)
        assert all(str(c) in text for c in d.columns)
    with pytest.raises(ValueError, match="unknown data set"):
        describe("contra")
    with pytest.raises(ValueError, match="available"):
        load("nope")


# --- simulate_glmm -------------------------------------------------------------------

COV2 = [[0.5, 0.1], [0.1, 0.2]]


def test_simulation_is_reproducible():
    a = simulate_glmm("binomial", 30, 8, [-0.5, 1.0, 0.2], COV2, seed=42)
    b = simulate_glmm("binomial", 30, 8, [-0.5, 1.0, 0.2], COV2, seed=42)
    c = simulate_glmm("binomial", 30, 8, [-0.5, 1.0, 0.2], COV2, seed=43)
    pd.testing.assert_frame_equal(a.data, b.data)
    np.testing.assert_array_equal(a.b, b.b)
    assert not np.array_equal(a.b, c.b)
    g = simulate_glmm("binomial", 30, 8, [-0.5, 1.0, 0.2], COV2,
                      seed=np.random.default_rng(42))
    pd.testing.assert_frame_equal(a.data, g.data)


def test_simulation_layout_and_formulas():
    sim = simulate_glmm("binomial", 12, 5, [-0.5, 1.0, 0.2], COV2, seed=1)
    assert isinstance(sim, SimulatedGLMM)
    assert list(sim.data.columns) == ["y", "x1", "x2", "g"]
    assert len(sim.data) == 60 and sim.data["g"].nunique() == 12
    assert sim.data["g"].iloc[0] == "g0001" and sim.data["g"].iloc[-1] == "g0012"
    assert set(sim.data["y"]) <= {0, 1}
    assert sim.b.shape == (12, 2)
    assert sim.formula == "y ~ x1 + x2 + (1 + x1 | g)"
    assert sim.fixed == "y ~ x1 + x2"
    assert (sim.groups, sim.re_formula) == ("g", "~x1")
    parsed = parse_lme4(sim.formula)
    assert (parsed.fixed, parsed.groups, parsed.re_formula) == (sim.fixed, "g", "~x1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        sim.formula = "y ~ 1"
    with pytest.raises(ValueError):
        sim.b[0, 0] = 1.0

    one = simulate_glmm("poisson", 3, 4, [0.1], 0.3, seed=1)
    assert (one.formula, one.re_formula) == ("y ~ 1 + (1 | g)", "1")
    assert one.cov_re.shape == (1, 1) and list(one.data.columns) == ["y", "g"]


def test_group_sizes_per_group():
    sizes = [1, 4, 2, 7]
    sim = simulate_glmm("gaussian", 4, sizes, [0.0, 1.0], 1.0, seed=3)
    assert sim.data.groupby("g").size().tolist() == sizes


def test_binomial_trials_column_and_formula():
    sim = simulate_glmm("binomial", 10, 6, [0.0, 0.5], 0.4, seed=5, n_trials=7)
    assert list(sim.data.columns) == ["y", "x1", "g", "n"]
    assert (sim.data["n"] == 7).all() and sim.data["y"].between(0, 7).all()
    assert sim.formula == "cbind(y, n - y) ~ x1 + (1 | g)"
    assert parse_lme4(sim.formula).response_terms == ("y", "n - y")


def test_family_objects_are_accepted():
    a = simulate_glmm("binomial", 20, 5, [0.3, -0.4], 0.5, seed=9)
    b = simulate_glmm(sm.families.Binomial(), 20, 5, [0.3, -0.4], 0.5, seed=9)
    pd.testing.assert_frame_equal(a.data, b.data)
    p = simulate_glmm(sm.families.Poisson(), 20, 5, [0.3], 0.5, seed=9)
    assert p.family == "poisson"


# Moment checks from large simulations. Tolerances are about 5 standard errors of
# the statistic (computed in each comment), so a correct simulator fails < 1e-5 of runs.

def test_gaussian_variance_of_group_means():
    # Group mean = beta0 + b_j + mean of 50 N(0, scale^2) errors:
    # variance 0.5 + 1/50 = 0.52; SE of a sample variance over 4000 groups
    # is 0.52 * sqrt(2 / 3999) = 0.012, of the grand mean sqrt(0.52 / 4000) = 0.011.
    sim = simulate_glmm("gaussian", 4000, 50, [2.0], 0.5, seed=11, scale=1.0)
    means = sim.data.groupby("g")["y"].mean()
    assert means.var() == pytest.approx(0.52, abs=0.06)
    assert means.mean() == pytest.approx(2.0, abs=0.06)


def test_random_effects_covariance():
    # Sample covariance of 20000 draws: SE of each entry <= sqrt(2) * 0.5 / sqrt(20000) = 0.005.
    sim = simulate_glmm("gaussian", 20000, 1, [0.0, 0.0], COV2, seed=12)
    np.testing.assert_allclose(np.cov(sim.b, rowvar=False), COV2, atol=0.025)


def test_gaussian_slope_variance():
    # Within group j, y = b0_j + (1 + b1_j) x1 + e; OLS slope per group over 200 rows has
    # variance cov_re[1, 1] + 1/200 = 0.205; SE of the variance over 2000 groups ~ 0.0065.
    sim = simulate_glmm("gaussian", 2000, 200, [0.0, 1.0], COV2, seed=13, scale=1.0)
    slopes = sim.data.groupby("g")[["x1", "y"]].apply(
        lambda d: np.polyfit(d["x1"], d["y"], 1)[0])
    assert slopes.var() == pytest.approx(0.205, abs=0.035)
    assert slopes.mean() == pytest.approx(1.0, abs=0.05)


def test_poisson_marginal_mean():
    # E[y] = exp(beta0 + sigma^2 / 2) = exp(0.65) = 1.9155 (lognormal mean);
    # SE over 5000 groups of 20 rows ~ sqrt(1.38 / 5000) = 0.017.
    sim = simulate_glmm("poisson", 5000, 20, [0.5], 0.3, seed=14)
    assert sim.data["y"].mean() == pytest.approx(np.exp(0.65), abs=0.085)


def test_binomial_mean_with_trials_and_zero_variance():
    # cov_re = 0 is allowed (singular); then P(success) = expit(0.4) = 0.5987,
    # SE over 20000 rows x 10 trials = sqrt(0.24 / 200000) = 0.0011.
    sim = simulate_glmm("binomial", 2000, 10, [0.4], 0.0, seed=15, n_trials=10)
    assert np.all(sim.b == 0)
    share = sim.data["y"].sum() / sim.data["n"].sum()
    assert share == pytest.approx(1 / (1 + np.exp(-0.4)), abs=0.0055)


def test_probit_link_from_family_object():
    # Phi(0.4) = 0.6554; SE over 50000 Bernoulli rows = 0.0021.
    fam = sm.families.Binomial(link=sm.families.links.Probit())
    sim = simulate_glmm(fam, 5000, 10, [0.4], 0.0, seed=16)
    assert sim.data["y"].mean() == pytest.approx(0.6554, abs=0.011)


@pytest.mark.parametrize("kwargs, message", [
    (dict(family="tweedie"), "family must be one of"),
    (dict(family="gamma"), "dispersion="),
    (dict(family="negative_binomial", dispersion=-1.0), "dispersion must be positive"),
    (dict(cov_re=np.eye(3)), "only 1 covariates"),
    (dict(cov_re=[[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
    (dict(cov_re=[[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
    (dict(group_size=[3, 4]), "length n_groups"),
    (dict(group_size=0), "positive integers"),
    (dict(scale=0.0), "scale must be positive"),
])
def test_simulation_rejects_bad_input(kwargs, message):
    args = dict(family="gaussian", n_groups=3, group_size=4, fe_params=[0.0, 1.0],
                cov_re=COV2, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        simulate_glmm(**args)


def test_sources_lists_every_bundled_file():
    """Issue 21: SOURCES.md said "the four CSV files" next to eleven. Its table names
    every CSV in the package with its R object and the reference script that wrote it,
    and the count in its first sentence is the number of files."""
    folder = resources.files("mlglm.datasets")
    csvs = sorted(p.name for p in folder.iterdir() if p.name.endswith(".csv"))
    text = folder.joinpath("SOURCES.md").read_text()
    words = {4: "four", 11: "eleven", 12: "twelve", 13: "thirteen"}
    assert f"The {words.get(len(csvs), len(csvs))} CSV files" in text
    table = text.split("| file | R object | exported by | rows | grouping |")[1].split("\n\n")[0]
    listed = {line.split("|")[1].strip().strip("`") for line in table.splitlines()
              if line.startswith("| `")}
    assert listed == set(csvs)
    reference = Path(__file__).parent / "reference"
    for script in {line.split("|")[3].strip().strip("`") for line in table.splitlines()
                   if line.startswith("| `")}:
        assert (reference / script).exists(), script
