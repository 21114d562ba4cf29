"""Marginal (population-averaged) means against brute-force integration; simulate()."""
import numpy as np
import pytest
from scipy import integrate, special

import mlglm
from mlglm.datasets import load_contraception

FORMULA = "y ~ age + I(age^2) + urban + livch + (1 + urban | district)"


@pytest.fixture(scope="module")
def fit():
    return mlglm.glmer(FORMULA, load_contraception())


def test_marginal_mean_matches_brute_force_integration(fit):
    d = load_contraception().head(4)
    got = fit.predict(d, marginal=True)
    from mlglm.results.prediction import design
    X, (Z,), off, _ = design(fit, d)      # one random-effects design per term
    beta = np.asarray(fit.fe_params)
    S = np.asarray(fit.cov_re)
    Sinv, logdet = np.linalg.inv(S), np.linalg.slogdet(S)[1]
    for i in range(len(d)):
        def f(b1, b0):
            b = np.array([b0, b1])
            dens = np.exp(-0.5 * b @ Sinv @ b - 0.5 * logdet) / (2 * np.pi)
            return special.expit(off[i] + X[i] @ beta + Z[i] @ b) * dens
        val, err = integrate.dblquad(f, -8, 8, -8, 8, epsabs=1e-11, epsrel=1e-11)
        assert got.iloc[i] == pytest.approx(val, abs=1e-8)


def test_marginal_mean_is_attenuated_towards_half_and_has_ses(fit):
    d = load_contraception().head(50)
    pm = fit.predict_marginal(d)
    p0 = fit.predict(d, conditional=False)
    assert np.all(np.abs(pm["mean"] - 0.5) <= np.abs(p0 - 0.5) + 1e-12)
    assert np.all(pm["se"] > 0) and np.all(pm["lower"] < pm["mean"])


def test_simulate_is_reproducible_and_plausible(fit):
    a = fit.simulate(3, seed=1)
    b = fit.simulate(3, seed=1)
    assert a.shape == (3, int(fit.nobs)) and np.array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, 1.0}
    new = fit.simulate(200, seed=2, conditional=False)
    # the marginal mean over simulated data sets matches the quadrature mean
    assert new.mean() == pytest.approx(fit.predict(marginal=True).mean(), abs=0.01)
