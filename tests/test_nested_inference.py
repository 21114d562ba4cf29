"""Inference on fits by adaptive quadrature through nested factors (issue #12: every
existing guarantee carries over to nested AGHQ).

Independent checks, each naming its oracle:
* a profile limit of a fixed effect is checked by refitting through the public API with
  that coefficient moved into the offset (the deviance rises by chi2_1(0.95));
* a profile limit of an SD by maximising the same AGHQ objective with scipy's
  L-BFGS-B, that theta held at the limit;
* the LR test against ``scipy.stats.chi2`` on the two fits' log-likelihoods;
* a marginal prediction against a direct Gauss-Hermite integral of the conditional
  mean over the sum of the two normal random effects.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import optimize, stats

import mlglm
from mlglm.core.spec.errors import ModeFailure

Z95 = stats.norm.ppf(0.975)
PROFILE_LLF_ATOL = 2e-4           # root finding to ~1e-7 in the parameter
NESTED = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD)"
NAGQ = 5


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


@pytest.fixture(scope="module")
def grouse():
    return mlglm.datasets.load_grouseticks()


@pytest.fixture(scope="module")
def fit(grouse):
    return _quiet(mlglm.glmer, NESTED, grouse, family="poisson", nagq=NAGQ)


def test_fit_is_aghq_through_both_levels(fit):
    assert fit.method == "aghq" and fit.nagq == NAGQ
    lap = _quiet(mlglm.glmer, NESTED, mlglm.datasets.load_grouseticks(), family="poisson")
    assert fit.llf != pytest.approx(lap.llf, abs=1e-3)      # a different approximation
    assert "nAGQ=5" in str(fit.summary())


def test_profile_limit_of_a_fixed_effect_by_offset_refit(fit, grouse):
    ci = fit.intervals(method="profile", which=["cHEIGHT"])
    assert ci.loc["cHEIGHT", "lower"] < fit.fe_params["cHEIGHT"] < ci.loc["cHEIGHT", "upper"]
    for lim in ci.loc["cHEIGHT", ["lower", "upper"]]:
        r = _quiet(mlglm.glmer, "TICKS ~ YEAR + (1 | LOCATION/BROOD)", grouse,
                   family="poisson", nagq=NAGQ, offset=lim * grouse["cHEIGHT"].to_numpy())
        assert 2 * (fit.llf - r.llf) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)


def test_profile_limit_of_an_sd_by_scipy(fit):
    name = "sd(Intercept | LOCATION:BROOD)"
    lim = fit.intervals(method="profile", which=[name]).loc[name, "upper"]
    obj = fit.model.objective(NAGQ)
    names = [t.name for t in fit.model.re_terms]
    k = fit.k_fe + names.index("LOCATION:BROOD")
    x_hat = np.concatenate([fit.fe_params, fit.outcome.theta])
    free = np.ones(x_hat.size, bool)
    free[k] = False

    def f(v):
        x = x_hat.copy()
        x[free] = v
        x[k] = lim
        try:
            val, g = obj.value_and_gradient(x)
        except (np.linalg.LinAlgError, ModeFailure):     # a trial step too far
            return 1e10, np.zeros_like(v)
        return -val, -g[free]
    bounds = [(None, None)] * fit.k_fe + [(1e-6, None)]
    r = optimize.minimize(f, x_hat[free], jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
    assert 2 * (fit.llf + r.fun) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)


def test_lr_test_and_bootstrap(fit, grouse):
    small = _quiet(mlglm.glmer, "TICKS ~ YEAR + (1 | LOCATION/BROOD)", grouse,
                   family="poisson", nagq=NAGQ)
    tab = mlglm.anova(small, fit)
    chisq = 2 * (fit.llf - small.llf)
    assert tab["Chisq"].iloc[1] == pytest.approx(chisq, rel=1e-10)
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(stats.chi2.sf(chisq, 1), rel=1e-8)
    boot = _quiet(fit.bootstrap, n=8, seed=3)
    ci = boot.conf_int()
    assert np.all(np.isfinite(ci[["lower", "upper"]].to_numpy()))
    assert boot.replicates.shape[0] == 8 and boot.n_failed == 0
    # each replicate is a refit by AGHQ on its own simulated response
    assert np.unique(boot.llf).size == 8


def test_simulate_and_new_levels(fit, grouse):
    ysim = fit.simulate(seed=1)
    assert ysim.shape[-1] == len(grouse) and np.all(ysim >= 0)
    assert np.all(ysim == np.round(ysim))
    new = grouse.head(2).copy()
    new["BROOD"] = ["never-seen", new["BROOD"].iloc[1]]
    p = fit.predict(new, conditional=True, allow_new_levels=True)
    # a new brood in a known location: only the location's effect
    beta = fit.fe_params
    X = fit.model.exog[:2]
    b_loc = fit.random_effects["LOCATION"].loc[new["LOCATION"].iloc[0]].iloc[0]
    assert p.iloc[0] == pytest.approx(np.exp(X[0] @ beta + b_loc), rel=1e-10)


def test_marginal_prediction_by_gauss_hermite(fit, grouse):
    """E[y] = E exp(x'beta + b_L + b_B) over b_L + b_B ~ N(0, s_L^2 + s_B^2)."""
    row = grouse.head(1)
    got = float(np.asarray(fit.predict_marginal(row)["mean"])[0])
    v = sum(float(np.asarray(S)[0, 0]) for S in fit.cov_re.values())
    t, w = np.polynomial.hermite_e.hermegauss(60)
    eta = float(fit.model.exog[0] @ fit.fe_params)
    want = float(np.sum(w * np.exp(eta + np.sqrt(v) * t)) / np.sqrt(2 * np.pi))
    assert got == pytest.approx(want, rel=1e-6)
