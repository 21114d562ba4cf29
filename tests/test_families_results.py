"""Every result feature for the negative binomial and Gamma fits.

Checked by hand or by an independent route, no hard-coded reference numbers:
summary (the dispersion row), ICC on the log scale (Nakagawa et al. 2017's formulas,
as the R package ``insight`` computes them), the LR test against the Poisson (a
boundary), Wald and profile intervals including the dispersion (a profile limit checked
by a refit with theta held at it), the parametric bootstrap, simulate, marginal means
(exact for the log link), check_quadrature, residuals (statsmodels' family functions).
"""
from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import special, stats

import mlglm


@pytest.fixture(scope="module")
def ticks():
    return mlglm.datasets.load_grouseticks()


@pytest.fixture(scope="module")
def nb(ticks):
    return mlglm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", ticks, family="negative_binomial")


@pytest.fixture(scope="module")
def nb_crossed(ticks):
    return mlglm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", ticks,
                       family="negative_binomial")


@pytest.fixture(scope="module")
def gamma():
    return mlglm.glmer("Reaction ~ Days + (1 | Subject)", mlglm.datasets.load_sleepstudy(),
                       family="gamma(link=log)")


def test_summary_has_the_dispersion_row(nb, gamma, nb_crossed):
    for res, name in ((nb, "theta"), (gamma, "scale"), (nb_crossed, "theta")):
        text = str(res.summary())
        row = next(line for line in text.splitlines() if line.startswith(f"Dispersion ({name})"))
        assert f"{res.dispersion:.4f}" in row and f"SE {res.bse_dispersion:.4f}" in row
        assert "ML" in row
    assert res.params.index[-1] == "theta" and res.params.iloc[-1] == res.dispersion


def test_icc_negative_binomial_and_gamma_by_hand(nb, gamma, nb_crossed):
    """Log scale (Nakagawa et al. 2017; insight::get_variance_distribution):
    NB: ln(1 + 1/lambda + 1/theta), delta 1/lambda + 1/theta, trigamma psi_1 of its
    inverse; Gamma: ln(1 + phi), phi, psi_1(1/phi); lambda = exp(beta0 + tau/2) with
    beta0 the mean of X beta (mlglm's Poisson convention)."""
    tau = float(np.asarray(nb.cov_re)[0, 0])
    lam = np.exp(np.mean(nb.model.exog @ nb.fe_params) + tau / 2)
    c = 1 / lam + 1 / nb.dispersion
    for method, within in (("lognormal", np.log1p(c)), ("delta", c),
                           ("trigamma", special.polygamma(1, 1 / c))):
        out = mlglm.icc(nb, method=method)
        assert out.value == pytest.approx(tau / (tau + within), rel=1e-12)
        assert "1/lambda + 1/theta" in out.method and out.components["theta"] == nb.dispersion
    tau_g = float(np.asarray(gamma.cov_re)[0, 0])
    phi = gamma.dispersion
    for method, within in (("lognormal", np.log1p(phi)), ("delta", phi),
                           ("trigamma", special.polygamma(1, 1 / phi))):
        assert mlglm.icc(gamma, method=method).value == pytest.approx(
            tau_g / (tau_g + within), rel=1e-12)
    inverse = mlglm.glmer("Reaction ~ Days + (1 | Subject)", mlglm.datasets.load_sleepstudy()
                          .assign(Reaction=lambda d: d["Reaction"] / 100), family="gamma")
    with pytest.raises(NotImplementedError, match="log link"):
        mlglm.icc(inverse)
    # several factors: the within variance uses lambda = exp(beta0 + sum tau / 2)
    multi = mlglm.icc(nb_crossed)
    taus = [float(np.asarray(S)[0, 0]) for S in nb_crossed.outcome.Sigmas]
    lam = np.exp(np.mean(nb_crossed.model.exog @ nb_crossed.fe_params) + sum(taus) / 2)
    within = np.log1p(1 / lam + 1 / nb_crossed.dispersion)
    assert multi.components["within"] == pytest.approx(within, rel=1e-12)


def test_lr_test_against_poisson_is_a_boundary_test(nb, ticks):
    """The Poisson is the NB's boundary 1/theta = 0: a 50:50 mixture of chi2(0) and
    chi2(1) (Self and Liang 1987)."""
    pois = mlglm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", ticks, family="poisson")
    lr = mlglm.compare_lr_test(nb, pois)
    assert lr.df == 1 and lr.statistic == pytest.approx(2 * (nb.llf - pois.llf), rel=1e-12)
    assert lr.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr.statistic, 1), rel=1e-12)
    assert "1/theta = 0" in lr.reference
    assert nb.aic == pytest.approx(-2 * nb.llf + 2 * (4 + 1 + 1), rel=1e-12)


def test_wald_interval_of_the_dispersion_on_the_log_scale(nb, gamma):
    z = stats.norm.ppf(0.975)
    for res, name in ((nb, "theta"), (gamma, "scale")):
        row = res.intervals().loc[name]
        se_log = res.bse_dispersion / res.dispersion
        assert row["lower"] == pytest.approx(res.dispersion * np.exp(-z * se_log), rel=1e-12)
        assert row["upper"] == pytest.approx(res.dispersion * np.exp(z * se_log), rel=1e-12)
        assert row["interval"] == "Wald, log scale"


@pytest.mark.parametrize("several", [False, True], ids=["one factor", "crossed"])
def test_profile_limit_of_theta_by_a_refit_with_theta_held(several, nb, nb_crossed, ticks):
    """At a profile limit theta_L the log-likelihood maximised with theta held at
    theta_L -- an independent fit: statsmodels' NegativeBinomial(alpha = 1/theta_L) --
    is chi2_1(0.95)/2 = 1.92 below the maximum."""
    res = nb_crossed if several else nb
    table = res.intervals(method="profile", which=["theta"])
    assert table.loc["theta", "interval"] == "profile"
    crit = stats.chi2.ppf(0.95, 1) / 2
    formula = ("TICKS ~ YEAR + cHEIGHT + (1 | BROOD)" + (" + (1 | LOCATION)" if several else ""))
    for side in ("lower", "upper"):
        theta_l = table.loc["theta", side]
        held = mlglm.glmer(formula, ticks, family=sm.families.NegativeBinomial(alpha=1 / theta_l))
        assert res.llf - held.llf == pytest.approx(crit, abs=2e-4)
    ci = np.asarray(res.conf_int(method="profile"))
    assert ci[-1] == pytest.approx(table.loc["theta", ["lower", "upper"]].to_numpy(), rel=1e-12)


def test_bootstrap_refits_estimate_the_dispersion(nb):
    boot = nb.bootstrap(n=4, seed=11)
    assert list(boot.replicates.columns)[-1] == "theta"
    assert boot.replicate_params().columns[-1] == "theta"
    r = boot.replicate(2)
    refit = mlglm.MixedGLM(boot.response(2), nb.model.exog, nb.model.group_codes,
                           family="negative_binomial").fit()
    assert r.llf == pytest.approx(refit.llf, rel=1e-9)
    # the replicate's model holds the replicate's response all the way to the core
    assert r.model.loglike(np.asarray(r.params)) == pytest.approx(r.llf, rel=1e-9)
    assert boot.replicates["theta"].iloc[2] == pytest.approx(refit.dispersion, rel=1e-6)


def test_simulate_draws_the_family_at_the_fitted_dispersion(nb, gamma):
    """Conditional draws: per row, mean mu and variance mu + mu^2/theta (NB) or phi mu^2
    (Gamma); the pooled standardised moments over 400 replicates are 0 and 1 within
    their Monte Carlo error."""
    for res in (nb, gamma):
        mu = np.asarray(res.fittedvalues)
        var = res.model.fam.variance(mu, res.dispersion)
        y = res.simulate(n=400, seed=5, conditional=True)
        zbar = ((y - mu) / np.sqrt(var)).mean()
        zvar = (((y - mu) ** 2) / var).mean()
        n = y.size
        assert abs(zbar) < 4 / np.sqrt(n)
        assert abs(zvar - 1) < 0.05


def test_marginal_means_are_exact_for_the_log_link(nb, gamma):
    """Random intercept, log link: E[exp(x'beta + b)] = exp(x'beta + tau/2) (lognormal),
    and the marginal intercept is beta0 + tau/2."""
    for res in (nb, gamma):
        tau = float(np.asarray(res.cov_re)[0, 0])
        eta = res.model.exog @ np.asarray(res.fe_params)
        out = res.predict_marginal()
        np.testing.assert_allclose(out["mean"], np.exp(eta + tau / 2), rtol=1e-10)
        assert np.all(out["se"] > 0)
        mp = res.marginal_params()
        assert mp["coef"].iloc[0] == pytest.approx(res.fe_params.iloc[0] + tau / 2, rel=1e-9)


def test_check_quadrature_covers_the_dispersion(nb):
    chk = nb.check_quadrature(nagq=[7])
    assert chk.adequate
    refit = nb.model.fit(method="aghq", nagq=7)
    d_sd = abs(np.sqrt(refit.cov_re.iloc[0, 0]) / np.sqrt(nb.cov_re.iloc[0, 0]) - 1)
    d_theta = abs(refit.dispersion / nb.dispersion - 1)
    assert chk.table.loc[7, "max rel d SD"] == pytest.approx(max(d_sd, d_theta), rel=1e-4)


def test_residuals_as_statsmodels_families_define_them(nb, gamma):
    """Deviance residuals: statsmodels' NegativeBinomial(alpha = 1/theta) and Gamma
    resid_dev at our conditional means; Pearson: (y - mu) / sqrt(Var(y | mu)) with the
    fitted dispersion (statsmodels' Gamma leaves the scale out of V: ours / sqrt(phi))."""
    for res, fam in ((nb, sm.families.NegativeBinomial(alpha=1 / nb.dispersion)),
                     (gamma, sm.families.Gamma(sm.families.links.Log()))):
        y = np.asarray(res.model.endog, float)
        mu = np.asarray(res.fittedvalues, float)
        np.testing.assert_allclose(res.resid_deviance, fam.resid_dev(y, mu), rtol=1e-9,
                                   atol=1e-10)
        pearson = (y - mu) / np.sqrt(fam.variance(mu))
        scale = res.dispersion if fam.__class__.__name__ == "Gamma" else 1.0
        np.testing.assert_allclose(res.resid_pearson, pearson / np.sqrt(scale), rtol=1e-12)


def test_conditional_predictions_have_standard_errors(nb):
    frame = nb.get_prediction(conditional=True).summary_frame()
    np.testing.assert_allclose(frame["mean"], nb.fittedvalues, rtol=1e-12)
    assert np.all(frame["mean_se"] > 0)
    assert np.all((frame["mean_ci_lower"] < frame["mean"]) & (frame["mean"] < frame["mean_ci_upper"]))
