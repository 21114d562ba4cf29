"""Issue 13: the fit-time quadrature check, nagq="auto" and the second AGHQ start.

* Every AGHQ fit evaluates the log-likelihood with nagq + 2 points at its estimates and
  predicts (one Newton step with its observed information) how far a refit would move
  them (mlglm.core.fit.adequacy); an inadequate fit (the estimates would move, or the
  log-likelihood at them shifts by LLF_WARN or more) warns with advice, an adequate one
  does not, and the reference fits (tests/reference/glmm_open.json cases) must not warn.
  One factor, nested factors, and the negative binomial and Gamma families alike.
* nagq="auto" raises nagq until consecutive fits agree (llf to AUTO_LLF_TOL, every
  parameter to AUTO_SE_FRACTION SE) and reports where it settled.
* On hard data the optimiser also starts AGHQ from halved SDs and keeps the better
  optimum (mlglm.core.fit.optimize._second_start); res.optim says which start won.

Hard data here: Bernoulli rows, 7 per group, random intercept SD 8 and a random slope
with SD 1 (issue 13's regime), drawn by mlglm.datasets.simulate_glmm with fixed seeds.
"""
from __future__ import annotations

import types
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm import QuadratureWarning
from mlglm.core.fit.adequacy import (AUTO_LLF_TOL, AUTO_SE_FRACTION, LLF_WARN, SD_RELATIVE,
                                 SE_FRACTION, auto_schedule, check_points)
from mlglm.core.fit.optimize import _second_start
from mlglm.datasets import simulate_glmm

#: issue 13's hard regime: intercept SD 8, slope SD 1, correlation -0.25
HARD_COV = [[64.0, -2.0], [-2.0, 1.0]]


def hard_data(seed, n_groups=150):
    return simulate_glmm("binomial", n_groups=n_groups, group_size=7, fe_params=[-2.0, 0.5],
                         cov_re=HARD_COV, seed=seed)


def fit_quietly(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ the check
def test_hard_data_with_too_few_points_warns_with_advice():
    sim = hard_data(seed=1)
    with pytest.warns(QuadratureWarning, match="nagq='auto'"):
        res = mlglm.glmer(sim.formula, sim.data, nagq=5)
    chk = res.optim.quadrature_check
    assert chk.nagq == 5 and chk.nagq_check == check_points(5) == 7
    assert not chk.adequate
    assert chk.fe_shift_se >= SE_FRACTION or chk.sd_shift_rel >= SD_RELATIVE
    text = res.summary().as_text()
    assert "NOT adequate" in text and "nagq='auto'" in text
    # where the quadrature struggles: subjects whose responses are all 0 or all 1
    ysum = sim.data.groupby(res.model.group_name)["y"].agg(["sum", "size"])
    n_boundary = int(((ysum["sum"] == 0) | (ysum["sum"] == ysum["size"])).sum())
    assert n_boundary > 75
    assert f"{n_boundary} of 150 groups have responses all 0 or all 1" in text


def test_boundary_groups_counts_all_0_all_1_and_all_zero_counts():
    """The diagnostic named in the warning, against hand counts: binomial with trials
    (groups a: 0 of 5 and 0 of 3; b: 2 of 2 and 4 of 4; c: mixed) and Poisson (a zero)."""
    from mlglm.design.fit_checks import boundary_groups
    df = pd.DataFrame({"g": list("aabbccdd"), "y": [0, 0, 2, 4, 1, 0, 3, 3],
                       "m": [5, 3, 2, 4, 2, 2, 3, 5], "x": np.arange(8.0)})
    df["f"] = df.y / df.m
    model = mlglm.MixedGLM.from_formula("f ~ 1", df, groups="g", n_trials="m",
                                        family=sm.families.Binomial())
    assert boundary_groups(model).startswith("2 of 4 groups have responses all 0 or all 1")
    pois = mlglm.MixedGLM.from_formula("y ~ 1", df, groups="g",
                                       family=sm.families.Poisson())
    assert boundary_groups(pois).startswith("1 of 4 groups have responses all zero")
    gauss = mlglm.MixedGLM.from_formula("x ~ 1", df, groups="g")
    assert boundary_groups(gauss) == ""


def test_an_unstable_loglikelihood_warns_even_when_two_points_barely_move_the_estimates():
    """benchmarks/quadrature_vs_glmm.py's data set 0 (300 subjects x 7 visits, intercept SD
    8): at nagq 11 two more points move the estimates little (measured: 0.035 SE, 0.6% in an
    SD) but the log-likelihood at the estimates by +0.68, and nagq = 101 moves the intercept
    SD from 7.8 to 8.6. The check says NOT adequate because of the shift (LLF_WARN)."""
    from bench_scripts import load
    df, formula, _, _ = load("quadrature_vs_glmm").dataset(seed=0, groups=300)
    with pytest.warns(QuadratureWarning, match="log-likelihood is not stable"):
        res = mlglm.glmer(formula, df, family="binomial", nagq=11)
    chk = res.optim.quadrature_check
    assert chk.estimates_stable and not chk.llf_stable and not chk.adequate
    assert abs(chk.llf_shift) > 5 * LLF_WARN


REFERENCE_FITS = [("contra_ri", 7), ("contra_ri", 25), ("contra_rs", 5), ("contra_rs", 11),
                  ("cbpp_ri", 7), ("cbpp_ri", 25), ("grouse_ri", 7), ("grouse_ri", 25)]


@pytest.mark.parametrize("case, nagq", REFERENCE_FITS)
def test_reference_fits_pass_the_check_without_any_warning(reference_model, case, nagq):
    """The AGHQ fits of tests/test_references.py, with every warning an error."""
    model = reference_model(case)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(method="aghq", nagq=nagq)
    chk = res.optim.quadrature_check
    assert chk.adequate and chk.nagq_check == nagq + 2
    assert "Quadrature check:" in res.summary().as_text()


def _check_and_refit(sd0, nagq, seed):
    """Binary data, 150 groups of 7 rows, intercept SD sd0, slope SD 1 (correlation
    -0.25): the fit at nagq with its check, and the refit with nagq + 2 points."""
    sim = simulate_glmm("binomial", n_groups=150, group_size=7, fe_params=[-1.0, 0.5],
                        cov_re=[[sd0 ** 2, -0.25 * sd0], [-0.25 * sd0, 1.0]], seed=seed)
    res = fit_quietly(mlglm.glmer, sim.formula, sim.data, nagq=nagq)
    refit = fit_quietly(res.model.fit, method="aghq", nagq=nagq + 2,
                        start_params=np.asarray(res.params))
    fe_move = np.max(np.abs(np.asarray(refit.fe_params) - np.asarray(res.fe_params))
                     / np.asarray(res.bse_fe))
    sd0_, sd1_ = (np.sqrt(np.diag(np.asarray(r.cov_re))) for r in (res, refit))
    return res, res.optim.quadrature_check, fe_move, np.max(np.abs(sd1_ / sd0_ - 1))


@pytest.mark.parametrize("sd0, nagq, seed", [(2, 3, 1), (3, 3, 1), (3, 5, 1), (3, 5, 2),
                                             (4, 5, 1)])
def test_check_verdict_agrees_with_the_refit(sd0, nagq, seed):
    """The check's verdict (one evaluation, one Newton step) is the one check_quadrature's
    refit criterion gives with nagq + 2 points: fixed effects < SE_FRACTION SE and SDs
    < SD_RELATIVE. (Measured: intercept SD 3 at nagq 3 is inadequate, the SDs move by
    6.2%, predicted 5.8%; the other four are adequate.)"""
    res, chk, fe_move, sd_move = _check_and_refit(sd0, nagq, seed)
    assert chk.estimates_stable == (fe_move < SE_FRACTION and sd_move < SD_RELATIVE)
    assert chk.adequate == (chk.estimates_stable and abs(chk.llf_shift) < LLF_WARN)
    assert chk.llf_check == pytest.approx(
        res.model.loglike(np.asarray(res.params), method="aghq", nagq=nagq + 2), abs=1e-8)


@pytest.mark.parametrize("sd0, nagq, seed", [(2, 3, 1), (3, 5, 2)])
def test_predicted_move_matches_the_refit(sd0, nagq, seed):
    """Where the surfaces are close to quadratic over the move, the one Newton step
    predicts the refit's moves to 10% (measured: 0.0891 vs 0.0894 SE and 2.52% vs 2.54%
    for intercept SD 2, nagq 3; 0.0269 vs 0.0264 SE for SD 3, nagq 5). With an
    intercept SD of 8 it is a first-order indication only (1.6 vs 0.34 SE at nagq 7)."""
    res, chk, fe_move, sd_move = _check_and_refit(sd0, nagq, seed)
    assert chk.fe_shift_se == pytest.approx(fe_move, rel=0.1)
    assert chk.sd_shift_rel == pytest.approx(sd_move, rel=0.1)


# ------------------------------------------------------------------ nagq="auto"
def test_auto_settles_on_easy_data_and_reports_its_nagq(reference_model):
    model = reference_model("contra_rs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = model.fit(method="aghq", nagq="auto")
    auto = res.optim.auto
    assert auto.settled and res.nagq == auto.nagq == auto.path[-1][0]
    ks = [r[0] for r in auto.path]
    assert ks == auto_schedule(2, 10 ** 9)[:len(ks)]
    _, _, d_llf, d_x = auto.path[-1]
    assert d_llf < AUTO_LLF_TOL and d_x < AUTO_SE_FRACTION
    # the same answer as a plain fit with the nagq it settled on
    plain = model.fit(method="aghq", nagq=res.nagq)
    assert res.llf == pytest.approx(plain.llf, abs=1e-6)
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(plain.params), atol=1e-4)
    assert f"nAGQ={res.nagq} (auto)" in res.summary().as_text()


def test_glmer_accepts_auto():
    df = mlglm.datasets.load_cbpp()
    res = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", df,
                      nagq="auto")
    assert res.method == "aghq" and res.optim.auto.settled and res.nagq > 1


def test_auto_goes_beyond_the_default_on_hard_data():
    sim = hard_data(seed=3, n_groups=100)
    res = fit_quietly(mlglm.glmer, sim.formula, sim.data, nagq="auto")
    path = res.optim.auto.path
    assert res.nagq > 11 and [r[0] for r in path] == auto_schedule(2, 10 ** 9)[:len(path)]
    # the parameters move less and less between consecutive fits (measured: 0.69 SE from
    # nagq 5 to 7, 0.03 SE from 35 to 41)
    assert path[-1][3] < path[1][3] / 5


def test_auto_schedule_respects_the_grid_limit():
    assert auto_schedule(1, 10 ** 9)[-1] == 201
    assert auto_schedule(2, 10 ** 9) == [5, 7, 11, 15, 21, 27, 35, 41, 51, 61, 81, 101]
    assert auto_schedule(2, 2000)[-1] == 41
    assert all(k ** 3 <= 1000 for k in auto_schedule(3, 1000))
    assert all(k ** 5 <= 20_000 for k in auto_schedule(5, 10 ** 9))


def test_auto_needs_method_aghq():
    df = mlglm.datasets.load_cbpp()
    model = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", df).model
    with pytest.raises(mlglm.MixedGLMInputError, match="auto"):
        model.fit(method="laplace", nagq="auto")
    with pytest.raises(mlglm.MixedGLMInputError, match="auto"):
        model.fit(method="aghq", nagq="more")


# ------------------------------------------------------------------ second start
def test_second_start_runs_on_hard_data_only(reference_model):
    easy = reference_model("contra_rs").fit(method="aghq", nagq=5)
    assert easy.optim.starts_tried == () and easy.optim.start_won == ""
    sim = hard_data(seed=4)
    hard = fit_quietly(mlglm.glmer, sim.formula, sim.data, nagq=7)
    names = [s[0] for s in hard.optim.starts_tried]
    assert names == ["Laplace optimum", "SDs halved"]
    assert hard.optim.start_won in names
    best = max(s[1] for s in hard.optim.starts_tried)
    assert hard.llf >= best - 1e-8


class _DoubleWell:
    """A stand-in objective with two optima in theta (p = 1, q = 1):
    log L = -(beta - 1)^2 - (theta^2 - 1)^2 (theta^2 - 4)^2 / 10 + a(theta), where
    a = 0.5 exp(-(theta - 1)^2) lifts the optimum near theta = 1 above the one near 2."""

    p, n_theta, nagq, diagonal = 1, 1, 3, False
    data = types.SimpleNamespace(q=1)
    theta_rc = (np.array([0]), np.array([0]))
    u = None
    n_evals = 0

    def value_and_gradient(self, x):
        b, t = x
        w = (t * t - 1) ** 2 * (t * t - 4) ** 2 / 10
        dw = (2 * (t * t - 1) * 2 * t * (t * t - 4) ** 2 + (t * t - 1) ** 2 * 2 * (t * t - 4)
              * 2 * t) / 10
        a = 0.5 * np.exp(-(t - 1) ** 2)
        da = -2 * (t - 1) * a
        return -(b - 1) ** 2 - w + a, np.array([-2 * (b - 1), -dw + da])

    def canonical(self, x):
        return np.asarray(x, dtype=float)


def test_second_start_keeps_the_better_optimum():
    obj = _DoubleWell()
    first = types.SimpleNamespace(x=np.array([1.0, 2.0]), T=np.eye(2), nfev=5, nit=1)
    first.fun = -obj.value_and_gradient(first.x)[0]
    res, tried, won = _second_start(obj, first, 200, [])
    assert won == "SDs halved"                # from theta = 1 it finds the higher optimum
    assert res.x[1] == pytest.approx(1.0, abs=0.05)
    assert tried[1][1] > tried[0][1]


def test_second_start_keeps_the_first_when_it_is_better():
    obj = _DoubleWell()
    first = types.SimpleNamespace(x=np.array([1.0, 1.0]), T=np.eye(2), nfev=5, nit=1)
    first.fun = -obj.value_and_gradient(first.x)[0]
    res, tried, won = _second_start(obj, first, 200, [])
    assert won == "Laplace optimum"
    np.testing.assert_allclose(res.x, first.x)


# ------------------------------------------------------------------ nested factors
from test_nested_aghq import community_data as _community_data  # noqa: E402


NESTED = "y ~ x + (1 | community/family)"


def test_nested_aghq_fit_checks_itself():
    """The check goes through the objective interface (with_nagq), so a nested AGHQ fit
    (NestedObjective) makes it too: nagq + 2 points at every level."""
    d = _community_data()
    res = fit_quietly(mlglm.glmer, NESTED, d, family="binomial", nagq=3)
    chk = res.optim.quadrature_check
    assert chk is not None and chk.nagq == 3 and chk.nagq_check == 5
    assert chk.llf_check == pytest.approx(
        res.model.loglike(np.asarray(res.params), method="aghq", nagq=5), abs=1e-8)
    assert "Quadrature check:" in res.summary().as_text()


def test_nested_auto_settles_and_matches_a_plain_fit():
    d = _community_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mlglm.glmer(NESTED, d, family="binomial", nagq="auto")
    auto = res.optim.auto
    assert auto.settled and res.nagq == auto.nagq > 1
    assert [r[0] for r in auto.path] == auto_schedule(2, 10 ** 9)[:len(auto.path)]
    assert res.optim.quadrature_check.adequate
    plain = fit_quietly(res.model.fit, method="aghq", nagq=res.nagq)
    assert res.llf == pytest.approx(plain.llf, abs=1e-6)
    assert f"nAGQ={res.nagq} (auto) at each of 2 nested levels" in res.summary().as_text()


def test_auto_refuses_crossed_factors_with_the_reason():
    import pandas as pd
    rng = np.random.default_rng(15)
    d = pd.DataFrame({"y": rng.integers(0, 2, 200).astype(float), "x": rng.normal(size=200),
                      "a": rng.integers(0, 10, 200), "b": rng.integers(0, 8, 200)})
    with pytest.raises(mlglm.MixedGLMInputError, match="crossed"):
        mlglm.glmer("y ~ x + (1 | a) + (1 | b)", d, nagq="auto")


# ------------------------------------------------------------------ families with a dispersion
@pytest.mark.parametrize("family, disp", [("negative_binomial", 2.0), ("gamma", 0.5)])
def test_dispersion_families_check_themselves_and_take_auto(family, disp):
    """Negative binomial and Gamma AGHQ fits (dispersion estimated: one more slot in x)
    make the check too, and nagq="auto" keeps the dispersion parameter."""
    sim = simulate_glmm(family, n_groups=60, group_size=5, fe_params=[0.5, 0.3],
                        cov_re=[[0.5, 0.0], [0.0, 0.1]], seed=3, dispersion=disp)
    res = fit_quietly(mlglm.glmer, sim.formula, sim.data, family=family, nagq=5)
    chk = res.optim.quadrature_check
    assert chk is not None and chk.nagq_check == 7
    assert chk.llf_check == pytest.approx(
        res.model.loglike(np.asarray(res.params), method="aghq", nagq=7), abs=1e-8)
    auto = fit_quietly(mlglm.glmer, sim.formula, sim.data, family=family, nagq="auto")
    assert auto.optim.auto.settled and auto.nagq == auto.optim.auto.nagq
    plain = fit_quietly(res.model.fit, method="aghq", nagq=auto.nagq)
    assert auto.llf == pytest.approx(plain.llf, abs=1e-6)
