"""A fit started anywhere reaches the optimum of the default start, or says it did not
(issue 25, item 1).

The log-likelihood is even in every column of Lambda, so its gradient in a diagonal
theta is exactly 0 where that column is 0: a gradient method started with a variance of
0 never moved, and the fit reported converged=True there (binomial llf -126.66 against
-118.38 at the MLE, Poisson -2015.6 against -344.6 in the issue). The oracle here is the
default-start fit of the same model (itself checked against lme4/glmmTMB in
test_references.py and test_families.py): the same log-likelihood to REFIT_LLF_ATOL and
the same estimates to REFIT_PARAM_ATOL, from variances of 0 and of 10^4, by Laplace and
AGHQ, with random slopes, nested and crossed factors and an estimated dispersion. A
variance truly at 0 stays there. The Gaussian LMM ignores ``start_params``; its own
optimiser is checked from theta = 0, negative and tiny starts. Profiles of a fit left
on the boundary refuse instead of returning intervals that exclude the estimate.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import mlglm
from mlglm import MixedGLMInputError
from mlglm.core.fit import optimize
from tolerances import REFIT_LLF_ATOL, REFIT_PARAM_ATOL

D = mlglm.datasets

CASES = {
    # name: (formula, loader, family, nagq)
    "contraception_slope": ("y ~ age + I(age**2) + urban + livch + (1 + urban | district)",
                            D.load_contraception, "binomial", 1),
    "contraception_slope_aghq": ("y ~ age + urban + (1 + urban | district)",
                                 D.load_contraception, "binomial", 5),
    "cbpp": ("incidence + I(size - incidence) ~ period + (1 | herd)", D.load_cbpp,
             "binomial", 1),
    "cbpp_aghq": ("incidence + I(size - incidence) ~ period + (1 | herd)", D.load_cbpp,
                  "binomial", 9),
    "grouseticks": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", D.load_grouseticks, "poisson", 1),
    "grouseticks_nested_aghq": ("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)",
                                D.load_grouseticks, "poisson", 5),
    "grouseticks_crossed": ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)",
                            D.load_grouseticks, "poisson", 1),
    "epil_nb2": ("y ~ lbase * trt + lage + V4 + (1 | subject)", D.load_epil,
                 "negative_binomial", 1),
}
_FITS = {}


def _fit(name, start_params=None):
    formula, load, family, nagq = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if start_params is None:
            if name not in _FITS:
                _FITS[name] = mlglm.glmer(formula, load(), family=family, nagq=nagq)
            return _FITS[name]
        base = _fit(name)
        return base.model.fit(start_params=start_params, nagq=nagq if nagq > 1 else None)


def _start(res, variance):
    """The default fit's estimates with every variance set to ``variance`` and every
    covariance to 0 (the dispersion kept)."""
    names = list(res.model.data.param_names)
    sp = np.asarray(res.params, dtype=float).copy()
    for i, n in enumerate(names[res.k_fe:], start=res.k_fe):
        if n.endswith("Var"):
            sp[i] = variance
        elif n.endswith("Cov"):
            sp[i] = 0.0
    return sp


def _same_optimum(res, ref):
    assert res.converged
    assert res.llf == pytest.approx(ref.llf, abs=REFIT_LLF_ATOL)
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params),
                               atol=REFIT_PARAM_ATOL)


@pytest.mark.parametrize("name", list(CASES))
def test_start_with_variances_zero_reaches_the_optimum(name):
    ref = _fit(name)
    res = _fit(name, _start(ref, 0.0))
    _same_optimum(res, ref)
    assert any("boundary: log L rises off 0" in s for s in res.optim.stages)


@pytest.mark.parametrize("name", ["cbpp", "grouseticks", "contraception_slope",
                                  "grouseticks_nested_aghq", "epil_nb2"])
def test_start_with_huge_variances_reaches_the_optimum(name):
    ref = _fit(name)
    _same_optimum(_fit(name, _start(ref, 1e4)), ref)


def test_negative_start_variance_is_refused():
    ref = _fit("cbpp")
    with pytest.raises(MixedGLMInputError, match="variance of Intercept is -1"):
        _fit("cbpp", _start(ref, -1.0))
    sp = _start(_fit("contraception_slope"), 1.0)
    sp[-2] = 2.0               # Cov(Intercept, urban) = 2 with both variances 1
    with pytest.raises(MixedGLMInputError, match="correlation is beyond"):
        _fit("contraception_slope", sp)


def test_a_variance_truly_at_zero_stays_there_and_converges():
    """An intercept SD whose MLE is 0 (y independent of the groups): the probe off the
    boundary finds no gain, the fit converges there, singular."""
    rng = np.random.default_rng(3)
    n, G = 400, 20
    frame = pd.DataFrame({"y": rng.binomial(1, 0.4, size=n), "x": rng.normal(size=n),
                          "g": np.repeat(np.arange(G), n // G)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("y ~ x + (1 | g)", frame, family="binomial")
        res0 = res.model.fit(start_params=_start(res, 0.0))
    for r in (res, res0):
        assert r.converged and r.is_singular()
        assert any("does not rise off it" in s for s in r.optim.stages)
    assert res0.llf == pytest.approx(res.llf, abs=REFIT_LLF_ATOL)


@pytest.mark.parametrize("formula, load", [
    ("mAch ~ cses + (1 + cses | school)", D.load_hsb),
    ("Reaction ~ Days + (Days | Subject)", D.load_sleepstudy),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", D.load_penicillin),
    ("strength ~ 1 + (1 | batch/cask)", D.load_pastes)])
def test_lmm_optimiser_leaves_zero_and_negative_starts(formula, load):
    """The LMM ignores start_params; its own optimiser from theta = 0 (a stationary point:
    moved to START_OFF_BOUNDARY), negative diagonals (the sign of a column is free) and a
    tiny start reaches the default fit's (RE)ML criterion."""
    ref = mlglm.lmer(formula, load())
    on = ref.model.re_terms.theta_on_diagonal()
    for theta0 in (np.zeros(on.size), np.where(on, -2.0, 0.0), np.where(on, 1e-9, 0.0)):
        fit = ref.model.problem.fit_lmm(reml=True, theta0=theta0)
        assert fit.converged
        assert fit.llf == pytest.approx(ref.llf, abs=REFIT_LLF_ATOL)


@pytest.mark.parametrize("name, row", [("cbpp", "sd(Intercept)"),
                                       ("grouseticks_crossed", "sd(Intercept | BROOD)")])
def test_profile_refuses_a_fit_left_on_the_boundary(monkeypatch, name, row):
    """A fit left at variance 0 where the maximum is inside (the optimiser's boundary
    check switched off, as before the fix) is not at the maximum: profiling it finds a
    higher log-likelihood and refuses, as lme4 does ("profiling detected new, lower
    deviance"), instead of intervals that exclude the estimate. One term and several
    (one profile code for both)."""
    monkeypatch.setattr(optimize, "_leave_boundary", lambda obj, res, *a, **k: (res, False),
                        raising=False)
    ref = _fit(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stuck = ref.model.fit(start_params=_start(ref, 0.0))
    assert stuck.llf < ref.llf - 1.0
    # mlglm.inference.profile.ProfileError, a RuntimeError
    with pytest.raises(RuntimeError, match="profiling found a higher log-likelihood"):
        stuck.intervals(method="profile", which=[row])
