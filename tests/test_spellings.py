"""Every spelling of one random-effects structure reaches the same engine and the same fit.

lme4's ``(1 + x || g)``, its long form ``(1 | g) + (0 + x | g)``, statsmodels'
``groups="g", re_formula="~x", cov_struct="diagonal"`` and ``vc_formula`` within
``groups``, and a grouping factor crossed with a constant (``g:one``) are one model.
The core chooses the engine from the structure of the terms (``ReTerms.kind``), so
they are fitted by the same code: the log-likelihoods must agree to 1e-8 (and are
bit-identical where the same engine runs on the same arrays), for Laplace, AGHQ and
the exact LMM. Before the engine choice moved into the core, the long form with
nAGQ=9 returned the Laplace fit labelled AGHQ (llf -1250.0699 against the real AGHQ
-1249.8975 on these data), and ``(1 + x | g:one)`` failed in the LMM.
"""
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm.core.engines.blockdiag.objective import MarginalLoglik

SPELLING_LLF_TOL = 1e-8


@pytest.fixture(scope="module")
def contra():
    d = mlglm.datasets.load_contraception().copy()
    d["one"] = "a"
    return d


@pytest.fixture(scope="module")
def sleep():
    d = mlglm.datasets.load_sleepstudy().copy()
    d["one"] = 1
    return d


def _fit_all(fits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [f() for f in fits]


def _same(results, tol=SPELLING_LLF_TOL):
    llf = [r.llf for r in results]
    assert np.allclose(llf, llf[0], rtol=tol, atol=0), llf
    methods = {(r.method, r.nagq) for r in results}
    assert len(methods) == 1, methods
    for r in results[1:]:
        np.testing.assert_allclose(np.asarray(r.fe_params), np.asarray(results[0].fe_params),
                                   rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("nagq", [1, 7])
def test_uncorrelated_slope_spellings_glmm(contra, nagq):
    """(1 + age || district) = (1 | district) + (0 + age | district) = statsmodels'
    diagonal random slope = the slope as a variance component within district."""
    fam = "binomial"
    fits = _fit_all([
        lambda: mlglm.glmer("use ~ age + urban + (1 + age || district)", contra, family=fam,
                            nAGQ=nagq),
        lambda: mlglm.glmer("use ~ age + urban + (1 | district) + (0 + age | district)",
                            contra, family=fam, nAGQ=nagq),
        lambda: mlglm.MixedGLM.from_formula(
            "use ~ age + urban", contra, groups="district", re_formula="~age",
            cov_struct="diagonal", family=sm.families.Binomial()).fit(nagq=nagq),
        lambda: mlglm.MixedGLM.from_formula(
            "use ~ age + urban", contra, groups="district", re_formula="1",
            vc_formula={"age": "0 + age"}, family=sm.families.Binomial()).fit(nagq=nagq),
    ])
    _same(fits)
    assert fits[0].method == ("aghq" if nagq > 1 else "laplace")
    # the first three are the same arrays through the same engine: bit-identical
    assert fits[0].llf == fits[1].llf == fits[2].llf


@pytest.mark.parametrize("nagq", [1, 7])
def test_factor_crossed_with_a_constant_is_the_factor(contra, nagq):
    """(1 | district) = (1 | district:one) and (1 + urban | district:one), Laplace and AGHQ."""
    for re in ("1", "1 + urban"):
        fits = _fit_all([
            lambda: mlglm.glmer(f"use ~ age + urban + ({re} | district)", contra, nAGQ=nagq),
            lambda: mlglm.glmer(f"use ~ age + urban + ({re} | district:one)", contra,
                                nAGQ=nagq),
        ])
        _same(fits)


def test_aghq_long_form_is_not_a_silent_laplace(contra):
    """The long form with nAGQ=9 is the AGHQ fit, not the Laplace one (issue 21 item 3)."""
    fits = _fit_all([
        lambda: mlglm.glmer("use ~ age + urban + (1 | district) + (0 + age | district)",
                            contra, nAGQ=9),
        lambda: mlglm.glmer("use ~ age + urban + (1 | district) + (0 + age | district)",
                            contra, nAGQ=1),
    ])
    assert fits[0].method == "aghq" and fits[0].nagq == 9
    assert abs(fits[0].llf - fits[1].llf) > 0.01


@pytest.mark.parametrize("reml", [True, False])
def test_lmm_spellings(sleep, reml):
    """The exact LMM: the four spellings of an uncorrelated slope, and g:one with a
    correlated slope (which failed with LinAlgError in the blocked engine)."""
    fam = sm.families.Gaussian()
    fits = _fit_all([
        lambda: mlglm.lmer("Reaction ~ Days + (1 + Days || Subject)", sleep, REML=reml),
        lambda: mlglm.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep,
                           REML=reml),
        lambda: mlglm.MixedGLM.from_formula(
            "Reaction ~ Days", sleep, groups="Subject", re_formula="~Days",
            cov_struct="diagonal", family=fam).fit(reml=reml),
        lambda: mlglm.MixedGLM.from_formula(
            "Reaction ~ Days", sleep, groups="Subject", re_formula="1",
            vc_formula={"Days": "0 + Days"}, family=fam).fit(reml=reml),
    ])
    _same(fits)
    fits = _fit_all([
        lambda: mlglm.lmer("Reaction ~ Days + (1 + Days | Subject)", sleep, REML=reml),
        lambda: mlglm.lmer("Reaction ~ Days + (1 + Days | Subject:one)", sleep, REML=reml),
    ])
    _same(fits)


def test_lmm_g_one_on_a_large_random_slope_model():
    """40,000 rows in 5,000 groups: ``(1 + x1 | g:one)`` is the one-factor engine's fit
    (the blocked engine without lmm_fit's OLS centring raised LinAlgError here)."""
    rng = np.random.default_rng(3)
    n, G = 40_000, 5_000
    g = rng.integers(0, G, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    b = rng.normal(size=(G, 2)) * [1.0, 0.5]
    y = 1 + 0.5 * x1 - x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=n)
    d = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g, "one": 1})
    a = mlglm.lmer("y ~ x1 + x2 + (1 + x1 | g)", d)
    c = mlglm.lmer("y ~ x1 + x2 + (1 + x1 | g:one)", d)
    assert c.llf == pytest.approx(a.llf, rel=SPELLING_LLF_TOL, abs=0)


def test_single_term_objective_is_the_one_term_engine(contra):
    """However spelled, a model with one term is evaluated by the one-term engine."""
    for f in ("use ~ age + (1 + age || district)",
              "use ~ age + (1 | district) + (0 + age | district)",
              "use ~ age + (1 | district:one)"):
        model = _fit_all([lambda: mlglm.glmer(f, contra)])[0].model
        assert isinstance(model.objective(1), MarginalLoglik)
        assert isinstance(model.objective(5), MarginalLoglik)
