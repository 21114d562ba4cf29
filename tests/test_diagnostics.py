"""check_quadrature, fit warnings and the rank check."""
import warnings

import numpy as np
import pytest

import mlglm
from mlglm.datasets import load_cbpp, simulate_glmm


def test_check_quadrature_on_cbpp_reports_aghq_values():
    # cbpp (lme4::cbpp) random intercept: Laplace vs AGHQ 5 / 11.
    res = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", load_cbpp())
    chk = res.check_quadrature()
    assert list(chk.table.index) == [1, 5, 11]
    agq = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", load_cbpp(),
                      nagq=11)
    assert chk.table.loc[11, "llf refit"] == pytest.approx(agq.llf, abs=1e-6)
    assert chk.table.loc[11, "llf at estimates"] == pytest.approx(
        res.model.loglike(np.asarray(res.params), method="aghq", nagq=11), abs=1e-9)
    assert chk.adequate  # estimates move by ~0.003 SE
    assert "adequate" in repr(chk)


def test_check_quadrature_flags_binary_small_groups():
    # Binary data, 3 rows per group, large variance: Laplace is known to be biased here.
    sim = simulate_glmm("binomial", n_groups=150, group_size=3, fe_params=[0.5, 1.0],
                        cov_re=4.0, seed=11)
    res = mlglm.glmer(sim.formula, sim.data)
    chk = res.check_quadrature(nagq=[11])
    assert not chk.adequate
    assert "nagq=11" in chk.advice


def test_rank_deficient_design_is_refused_with_the_column_named():
    sim = simulate_glmm("binomial", n_groups=20, group_size=10, fe_params=[0.0, 1.0],
                        cov_re=0.5, seed=3)
    df = sim.data.assign(x1_twice=2 * sim.data["x1"])
    with pytest.raises(mlglm.MixedGLMInputError, match="x1_twice"):
        mlglm.glmer("y ~ x1 + x1_twice + (1 | g)", df)


def test_singular_fit_warns_and_converged_fit_is_silent():
    sim = simulate_glmm("binomial", n_groups=40, group_size=20, fe_params=[0.0, 1.0],
                        cov_re=0.8, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = mlglm.glmer("y ~ x1 + (1 | g)", sim.data)
    assert res.converged
    noise = np.random.default_rng(6).normal(size=len(sim.data))
    df = sim.data.assign(noise=noise)
    with pytest.warns(mlglm.SingularFitWarning, match="noise"):
        res = mlglm.glmer("y ~ x1 + (1 + noise | g)", df)
    assert res.singular[1]


def test_separation_is_detected_warned_and_shown_in_summary():
    sim = simulate_glmm("binomial", n_groups=30, group_size=20, fe_params=[0.0, 1.0],
                        cov_re=0.5, seed=2)
    df = sim.data.assign(y=(sim.data["x1"] > 0).astype(int))   # x1 separates y completely
    with pytest.warns(mlglm.SeparationWarning, match="x1"):
        res = mlglm.glmer("y ~ x1 + (1 | g)", df)
    assert "x1" in res.separation
    assert "Possible separation" in str(res.summary())


def test_random_effect_without_fixed_effect_is_warned():
    sim = simulate_glmm("binomial", n_groups=30, group_size=20, fe_params=[0.0, 1.0],
                        cov_re=0.5, seed=2)
    with pytest.warns(mlglm.DataWarning, match="x1"):
        mlglm.glmer("y ~ 1 + (1 + x1 | g)", sim.data)


def test_singular_warning_names_the_direction_that_collapsed():
    """Issue 10: the warning said "the SD of x is estimated at 0" while the table showed
    an SD of 0.5. Here the true random intercept and slope are exactly collinear
    (b1 = -0.5 b0); the fit (seed 0) has the slope's SD near 0.5 and correlation -1:
    the warning and the summary must say that, not that an SD is 0."""
    import pandas as pd
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(30), 20)
    x = rng.normal(size=g.size)
    b0 = rng.normal(size=30)
    y = 1 + x + b0[g] - 0.5 * b0[g] * x + rng.normal(size=g.size)
    with pytest.warns(mlglm.SingularFitWarning) as rec:
        res = mlglm.lmer("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    sd = np.sqrt(np.diag(np.asarray(res.cov_re)))
    assert sd[1] > 0.3                                       # clearly not 0
    msg = str(rec[0].message)
    assert "x is perfectly correlated with Intercept (correlation -1.00" in msg
    assert f"SD {sd[1]:.3g}" in msg and "SD of x is" not in msg
    text = str(res.summary())
    assert "perfectly correlated" in text and "at boundary (0)" not in text
    # a random effect with no variance at all (simulated with cov_re = 0; seed 1 gives
    # an estimate at the boundary) is still called an SD of 0
    sim = simulate_glmm("binomial", n_groups=40, group_size=20, fe_params=[0.0, 1.0],
                        cov_re=0.0, seed=1)
    with pytest.warns(mlglm.SingularFitWarning, match="SD of Intercept is .*essentially 0"):
        res = mlglm.glmer("y ~ x1 + (1 | g)", sim.data)
    assert np.sqrt(np.asarray(res.cov_re)[0, 0]) < 1e-3
