"""Bootstrap, simulation and marginal (population-averaged) means for fits with several
grouping factors.

Checks against independent computations, each named where it is used: a refit through
the public formula API on a replicate's response; the moments of the simulated response
implied by the fitted variance components (Monte Carlo, tolerance from its standard
error); closed forms (log link: E exp(eta + r) = exp(eta + v/2)); brute-force 2-D
integration with scipy for a logit model with two crossed factors.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import mlglm
from mlglm.inference.bootstrap import natural_estimates
from tolerances import REFIT_LLF_ATOL, REFIT_PARAM_ATOL


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


@pytest.fixture(scope="module")
def pastes_data():
    return mlglm.datasets.load_pastes()


@pytest.fixture(scope="module")
def pastes(pastes_data):
    return _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", pastes_data)


@pytest.fixture(scope="module")
def grouse():
    return _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + "
                  "(1 | LOCATION)", mlglm.datasets.load_grouseticks(), family="poisson")


@pytest.fixture(scope="module")
def verbagg():
    return _quiet(mlglm.glmer, "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                  mlglm.datasets.load_verbagg(), family="binomial")


@pytest.fixture(scope="module")
def boot_pastes(pastes):
    return _quiet(pastes.bootstrap, 6, seed=5, progress=False)


@pytest.fixture(scope="module")
def boot_grouse(grouse):
    return _quiet(grouse.bootstrap, 3, seed=7, progress=False)


# ----------------------------------------------------------------------- bootstrap
def test_bootstrap_reproducible_for_any_n_jobs(pastes, boot_pastes, grouse, boot_grouse):
    again = _quiet(pastes.bootstrap, 6, seed=5, progress=False, n_jobs=2)
    assert np.array_equal(again.replicates.to_numpy(), boot_pastes.replicates.to_numpy())
    assert list(boot_pastes.replicates.columns) == ["Intercept", "sd(Intercept | batch)",
                                                    "sd(Intercept | batch:cask)", "sigma"]
    g2 = _quiet(grouse.bootstrap, 3, seed=7, progress=False, n_jobs=2)
    assert np.array_equal(g2.replicates.to_numpy(), boot_grouse.replicates.to_numpy())
    other = _quiet(pastes.bootstrap, 6, seed=6, progress=False)
    assert not np.allclose(other.replicates.to_numpy(), boot_pastes.replicates.to_numpy())


def test_gaussian_replicate_equals_a_refit_of_its_response(pastes, pastes_data, boot_pastes):
    """Replicate r is a results object equal to lmer on the replicate's response."""
    for r in range(2):
        rep = boot_pastes.replicate(r)
        d = pastes_data.assign(strength=boot_pastes.response(r))
        direct = _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", d)
        assert rep.llf == pytest.approx(direct.llf, abs=REFIT_LLF_ATOL)
        assert np.allclose(rep.params, direct.params, atol=REFIT_PARAM_ATOL)
        for f in ("batch", "batch:cask"):
            assert np.allclose(rep.random_effects[f], direct.random_effects[f], atol=1e-4)
        assert boot_pastes.replicates.iloc[r].to_numpy() == pytest.approx(
            natural_estimates(direct).to_numpy(), abs=1e-4)


def test_glmm_replicate_equals_a_refit_of_its_response(grouse, boot_grouse):
    d = mlglm.datasets.load_grouseticks().assign(TICKS=boot_grouse.response(0))
    direct = _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + "
                    "(1 | LOCATION)", d, family="poisson")
    rep = boot_grouse.replicate(0)
    assert rep.llf == pytest.approx(direct.llf, abs=REFIT_LLF_ATOL)
    assert np.allclose(rep.params, direct.params, atol=1e-4)
    assert np.allclose(rep.bse, direct.bse, rtol=1e-3)


def test_apply_gives_every_statistic_of_the_refits(boot_pastes, boot_grouse):
    llf = boot_pastes.apply(lambda r: r.llf)
    assert llf.nunique() == boot_pastes.n
    assert np.allclose(llf, boot_pastes.llf)
    cov = boot_grouse.apply(lambda r: r.cov_re["INDEX"].iloc[0, 0])
    assert np.allclose(np.sqrt(cov), boot_grouse.replicates["sd(Intercept | INDEX)"])
    params = boot_grouse.apply(lambda r: r.params)
    assert list(params.columns) == list(boot_grouse.results.model.data.param_names)
    assert np.allclose(params, boot_grouse.replicate_params(), rtol=1e-10)
    re = boot_grouse.apply(lambda r: r.random_effects["LOCATION"].iloc[0, 0])
    assert re.nunique() == boot_grouse.n


def test_replicate_params_and_bootstrap_conf_int(boot_pastes, pastes):
    reps = boot_pastes.replicate_params()
    assert list(reps.columns) == list(pastes.params.index)
    assert np.allclose(reps["batch:cask Var"], boot_pastes.replicates["sd(Intercept | batch:cask)"]
                       ** 2)
    ci = pastes.conf_int(method="bootstrap", boot=boot_pastes)
    assert np.allclose(ci[0], reps.quantile(0.025))
    rich = pastes.intervals(method="bootstrap", boot=boot_pastes)
    assert (rich["interval"] == "bootstrap percentile").all()
    assert rich.loc["sigma", "lower"] == pytest.approx(
        boot_pastes.replicates["sigma"].quantile(0.025))


# ---------------------------------------------------------------------- simulation
def test_simulate_draws_every_factor(pastes):
    """New random effects for both factors: over many draws, Var(y_i) = tau_b + tau_c +
    sigma^2, Cov(y_i, y_j) = tau_b + tau_c for rows in one cask and tau_b for rows of one
    batch in different casks, and 0 across batches (Monte Carlo, 4 standard errors)."""
    n = 4000
    y = pastes.simulate(n, seed=3, conditional=False)
    tb = float(pastes.cov_re["batch"].iloc[0, 0])
    tc = float(pastes.cov_re["batch:cask"].iloc[0, 0])
    s2 = pastes.scale
    C = np.cov(y[:, [0, 1, 2, 6]], rowvar=False)     # rows 0, 1: cask A:a; 2: A:b; 6: B:a
    total = tb + tc + s2
    se = np.sqrt(2.0 / n) * total                    # sd of a sample covariance, roughly
    assert C[0, 0] == pytest.approx(total, abs=4 * se)
    assert C[0, 1] == pytest.approx(tb + tc, abs=4 * se)
    assert C[0, 2] == pytest.approx(tb, abs=4 * se)
    assert C[0, 3] == pytest.approx(0.0, abs=4 * se)
    assert np.array_equal(y[:3], pastes.simulate(3, seed=3, conditional=False))


def test_simulate_conditional_keeps_the_modes(grouse):
    """conditional=True: E[y] = exp(eta) with eta = X beta + sum_k Z_k b_k (the modes)."""
    n = 3000
    y = grouse.simulate(n, seed=1, conditional=True)
    mu = grouse.predict(conditional=True)
    z = (y.mean(axis=0) - mu) / np.sqrt(mu / n)
    assert np.abs(z).max() < 5


# ------------------------------------------------------------------- marginal means
def test_marginal_means_poisson_closed_form(grouse):
    """log link: E exp(eta0 + r) = exp(eta0 + v/2), v = sum of the three variances."""
    v = sum(float(grouse.cov_re[f].iloc[0, 0]) for f in ("BROOD", "INDEX", "LOCATION"))
    eta0 = grouse.predict(which="linear")
    got = grouse.predict(marginal=True)
    assert np.allclose(got, np.exp(eta0 + v / 2), rtol=1e-9)
    mp = grouse.marginal_params()
    assert mp.loc["Intercept", "coef"] == pytest.approx(grouse.fe_params["Intercept"] + v / 2,
                                                        rel=1e-8)
    assert np.allclose(mp["coef"].iloc[1:], grouse.fe_params.iloc[1:], atol=1e-8)
    assert (mp["se"] > 0).all()


def test_marginal_means_logit_vs_brute_force_2d_integration(verbagg):
    """Two crossed factors: E expit(eta0 + b_id + b_item) by the 2-D trapezoidal rule over
    the two independent normal effects (801 x 801 points on +-10 SD: exponentially
    convergent for this smooth, fast-decaying integrand), against the 1-D quadrature of
    r = b_id + b_item (60 points: converged; the default 15 is within 1e-6 at these
    variances, sd(r) = 1.43)."""
    d = mlglm.datasets.load_verbagg().iloc[[0, 500, 4000]]
    got = verbagg.predict_marginal(d, nagq=60)
    assert np.allclose(verbagg.predict_marginal(d)["mean"], got["mean"], atol=1e-6)
    eta0 = verbagg.predict(d, which="linear").to_numpy()
    s1 = np.sqrt(float(verbagg.cov_re["id"].iloc[0, 0]))
    s2 = np.sqrt(float(verbagg.cov_re["item"].iloc[0, 0]))
    a = np.linspace(-10 * s1, 10 * s1, 801)
    b = np.linspace(-10 * s2, 10 * s2, 801)
    dens = stats.norm.pdf(a, 0, s1)[:, None] * stats.norm.pdf(b, 0, s2)[None, :]
    for e, mu in zip(eta0, got["mean"]):
        f = special.expit(e + a[:, None] + b[None, :]) * dens
        val = integrate.trapezoid(integrate.trapezoid(f, b, axis=1), a)
        assert mu == pytest.approx(val, abs=1e-11)
    assert (got["se"] > 0).all() and (got["lower"] < got["mean"]).all()


def test_marginal_random_slopes_use_z_sigma_z():
    """A correlated slope on one factor plus a crossed intercept: v_i = z_i'Sigma_g z_i +
    tau_h; compared with brute-force 3-D integration over (b0, b1, c) by Gauss-Hermite
    product rules of 40 points (independent of mlglm's quadrature module)."""
    rng = np.random.default_rng(4)
    n, G, H = 600, 30, 8
    g, h = rng.integers(0, G, n), rng.integers(0, H, n)
    x = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], G)
    c = rng.normal(0, 0.6, H)
    y = rng.binomial(1, special.expit(-0.3 + 0.8 * x + b[g, 0] + b[g, 1] * x + c[h]))
    d = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    r = _quiet(mlglm.glmer, "y ~ x + (1 + x | g) + (1 | h)", d, family="binomial")
    new = pd.DataFrame({"x": [-1.5, 0.0, 2.0], "g": [0, 0, 0], "h": [0, 0, 0]})
    got = r.predict(new, marginal=True, nagq=60)
    S, th = r.cov_re["g"].to_numpy(), float(r.cov_re["h"].iloc[0, 0])
    t, w = np.polynomial.hermite_e.hermegauss(40)
    w = w / w.sum()
    L = np.linalg.cholesky(S)
    for xi, mu in zip(new["x"], got):
        eta0 = r.fe_params["Intercept"] + r.fe_params["x"] * xi
        u0, u1, u2 = np.meshgrid(t, t, t, indexing="ij")
        b0 = L[0, 0] * u0
        b1 = L[1, 0] * u0 + L[1, 1] * u1
        val = np.einsum("i,j,k,ijk->", w, w, w,
                        special.expit(eta0 + b0 + b1 * xi + np.sqrt(th) * u2))
        assert mu == pytest.approx(val, abs=1e-9)


def test_marginal_array_input_needs_intercept_only_terms(grouse, verbagg):
    X = np.asarray(grouse.model.exog)[:4]
    assert np.allclose(grouse.predict(X, marginal=True), grouse.predict(marginal=True)[:4])
    assert np.allclose(verbagg.predict_marginal(np.asarray(verbagg.model.exog)[:2])["mean"],
                       verbagg.predict(marginal=True)[:2])
