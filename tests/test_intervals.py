"""Confidence intervals: Wald (transformed scales), profile likelihood, bootstrap;
marginal coefficients; ICC intervals; the natural-parameter map and the unprofiled
Gaussian likelihood they are built on.

References: profile_ci.json is written by tests/reference/profile_ci.R
(``Rscript profile_ci.R DATADIR profile_ci.json``: lme4 1.1-31
``confint(glmer(..., nAGQ = 1), method = "profile", oldNames = FALSE)`` and the
same for ``lmer(..., REML = FALSE)``); the issue asks for agreement to 0.01.
Other checks are against independent computations in this file (a refit with the
parameter moved into the offset; a dense multivariate-normal likelihood; a
one-dimensional profile by scipy) -- each says which.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import optimize, stats

import mlglm
from mlglm.core.engines.lmm.blockdiag import lmm_stats
from mlglm.core.engines.lmm.loglik import gaussian_loglik, gaussian_loglik_grad
from mlglm.core.spec.natural_layout import NaturalLayout
from mlglm.inference.profile import LikelihoodProblem, natural_layout
from mlglm.core.spec.natural import (Lambda_to_natural, corr_chol_to_cpc, cpc_to_corr_chol,
                                natural_to_Lambda)
from conftest import _load_json

Z95 = stats.norm.ppf(0.975)
#: profile limits vs lme4's confint(method = "profile") (absolute; the issue's bar)
PROFILE_VS_LME4_ATOL = 0.01
#: a profile limit is where 2 (l_hat - l_profile) = z^2: checked by an independent
#: refit to this accuracy in the log-likelihood (the root is found to ~1e-7 in c)
PROFILE_LLF_ATOL = 2e-4


# ------------------------------------------------------------------ building blocks
def test_cpc_map_round_trip_and_validity():
    rng = np.random.default_rng(0)
    for q in (2, 3, 4):
        for _ in range(20):
            z = rng.uniform(-0.99, 0.99, q * (q - 1) // 2)
            L = cpc_to_corr_chol(z, q)
            R = L @ L.T
            assert np.allclose(np.diag(R), 1.0)
            assert np.linalg.eigvalsh(R).min() > 0
            assert np.isclose(R[1, 0], z[0])                 # first CPC is rho_10
            assert np.allclose(corr_chol_to_cpc(L), z)
            log_s = rng.normal(size=q)
            Lam = natural_to_Lambda(log_s, np.arctanh(z), q)
            s, z2 = Lambda_to_natural(Lam)
            assert np.allclose(np.log(s), log_s) and np.allclose(z2, z)
            Sigma = Lam @ Lam.T
            assert np.allclose(np.sqrt(np.diag(Sigma)), np.exp(log_s))


def _dense_gaussian_loglik(y, X, Z, codes, beta, Sigma, sigma2, reml):
    """Naive oracle: multivariate normal per group, V_j = Z_j Sigma Z_j' + sigma2 I."""
    ll, XVX, XVy = 0.0, 0.0, 0.0
    for g in np.unique(codes):
        i = codes == g
        V = Z[i] @ Sigma @ Z[i].T + sigma2 * np.eye(i.sum())
        Vi = np.linalg.inv(V)
        XVX = XVX + X[i].T @ Vi @ X[i]
        XVy = XVy + X[i].T @ Vi @ y[i]
    if reml:
        beta = np.linalg.solve(XVX, XVy)
    for g in np.unique(codes):
        i = codes == g
        V = Z[i] @ Sigma @ Z[i].T + sigma2 * np.eye(i.sum())
        ll += stats.multivariate_normal(X[i] @ beta, V).logpdf(y[i])
    if reml:
        ll += 0.5 * X.shape[1] * np.log(2 * np.pi) - 0.5 * np.linalg.slogdet(XVX)[1]
    return ll


@pytest.mark.parametrize("reml", [False, True])
def test_gaussian_loglik_matches_dense_oracle(reml):
    rng = np.random.default_rng(3)
    G, nj = 12, 7
    codes = np.repeat(np.arange(G), nj)
    x = rng.normal(size=codes.size)
    X = np.column_stack([np.ones_like(x), x])
    Z = X.copy()
    b = rng.normal(size=(G, 2)) * [1.0, 0.4]
    y = X @ [1.0, 0.5] + b[codes, 0] + b[codes, 1] * x + rng.normal(size=codes.size)
    Sigma = np.array([[0.8, -0.2], [-0.2, 0.3]])
    beta = np.array([0.9, 0.4])
    st = lmm_stats(y, X, Z, codes)
    got = gaussian_loglik(beta, np.linalg.cholesky(Sigma), 1.3, st, reml=reml)
    want = _dense_gaussian_loglik(y, X, Z, codes, beta, Sigma, 1.3, reml)
    assert got == pytest.approx(want, rel=1e-12)
    # any factor of Sigma gives the same likelihood: the Cholesky factor of the permuted
    # Sigma with its rows put back (what a profile of a later correlation evaluates)
    Lp = np.linalg.cholesky(Sigma[np.ix_([1, 0], [1, 0])])
    assert gaussian_loglik(beta, Lp[[1, 0]], 1.3, st, reml=reml) == pytest.approx(got, rel=1e-12)


def _central(f, x, h=1e-5):
    """Central differences of a scalar function of an array (any shape)."""
    x = np.asarray(x, dtype=float)
    g = np.empty(x.shape)
    for i in np.ndindex(x.shape):
        e = np.zeros(x.shape)
        e[i] = h * max(1.0, abs(x[i]))
        g[i] = (f(x + e) - f(x - e)) / (2 * e[i])
    return g


@pytest.mark.parametrize("reml", [False, True])
def test_gaussian_loglik_gradient_matches_central_differences(reml):
    # simulated two-effect LMM with prior weights; Lambda deliberately not triangular
    # (a profile of a later correlation evaluates such a factor)
    rng = np.random.default_rng(11)
    G, nj = 15, 6
    codes = np.repeat(np.arange(G), nj)
    x = rng.normal(size=codes.size)
    X = np.column_stack([np.ones_like(x), x, rng.normal(size=codes.size)])
    Z = X[:, :2].copy()
    b = rng.normal(size=(G, 2)) * [1.0, 0.4]
    y = X @ [1.0, 0.5, 0.2] + b[codes, 0] + b[codes, 1] * x + rng.normal(size=codes.size)
    st = lmm_stats(y, X, Z, codes, var=rng.uniform(0.5, 2.0, codes.size))
    beta, L, s2 = np.array([0.9, 0.4, 0.1]), np.array([[0.8, 0.3], [-0.2, 0.5]]), 1.3
    ll, dbeta, dL, ds2 = gaussian_loglik_grad(beta, L, s2, st, reml=reml)
    assert ll == pytest.approx(gaussian_loglik(beta, L, s2, st, reml=reml), rel=1e-13)
    assert dL == pytest.approx(_central(lambda v: gaussian_loglik(beta, v, s2, st, reml), L),
                               rel=1e-6, abs=1e-7)
    assert ds2 == pytest.approx(_central(lambda v: gaussian_loglik(beta, L, v[0], st, reml),
                                         [s2])[0], rel=1e-6)
    want_beta = (np.zeros(3) if reml else
                 _central(lambda v: gaussian_loglik(v, L, s2, st, reml), beta))
    assert dbeta == pytest.approx(want_beta, rel=1e-6, abs=1e-7)
    assert np.abs(dL).min() > 1e-2 and np.abs(ds2) > 1e-2     # the check has teeth
    assert gaussian_loglik_grad(beta, L, -1.0, st, reml=reml)[0] == -np.inf


@pytest.mark.parametrize("reml", [False, True])
def test_gaussian_profile_problem_gradient_matches_central_differences(reml):
    # the gradient a Gaussian one-term profile searches with, in working coordinates
    # (log sd, z = atanh of the CPC, log sigma), also in a layout with the block's
    # effects permuted (its factor of Sigma is then not triangular, as in a profile of a
    # later correlation); away from the fit, where it is not zero
    r = mlglm.lmer("Reaction ~ Days + (Days | Subject)", mlglm.datasets.load_sleepstudy(),
                   reml=reml)
    crit = "reml" if reml else "ml"
    ident = natural_layout(r.model)
    for layout in (ident, NaturalLayout(ident.patterns, {(0, 0): (1, 0)})):
        prob = LikelihoodProblem(r, layout, crit)
        w = prob.start(r) + np.linspace(-0.3, 0.3, prob.dim)
        f, g = prob.value_and_gradient(w)
        assert f == pytest.approx(prob.value(w), rel=1e-12)
        assert g == pytest.approx(_central(prob.value, w), rel=1e-5, abs=1e-5)
        assert np.abs(g).max() > 1.0


@pytest.mark.parametrize("reml", [False, True])
def test_gaussian_loglik_equals_lmer_llf_at_the_fit(hsb, reml):
    # the fit's llf is lme4's logLik (tests/test_references.py checks it against lmer)
    r = mlglm.lmer("mAch ~ meanses + cses + (1 + cses | school)", hsb, reml=reml)
    m = r.model
    st = lmm_stats(m.endog, m.exog, m.exog_re, m.group_codes)
    got = gaussian_loglik(np.asarray(r.fe_params), np.linalg.cholesky(r.cov_re), r.scale, st,
                          reml=reml)
    assert got == pytest.approx(r.llf, rel=1e-11)


# --------------------------------------------------------------------------- Wald
def test_wald_intervals_transformed_scales(reference_fit):
    r = reference_fit("contra_rs")
    ci = r.intervals()
    assert list(ci.columns) == ["estimate", "lower", "upper", "interval"]
    p = r.k_fe
    fe = ci.iloc[:p]
    assert np.allclose(fe["lower"], r.fe_params - Z95 * r.bse_fe)
    assert (fe["interval"] == "Wald").all()
    sd = ci.loc["sd(Intercept)"]
    # delta method by hand: se(log s) = se(Var) / (2 Var)
    var, se_var = np.asarray(r.cov_re)[0, 0], np.sqrt(np.asarray(r.cov_params())[p, p])
    assert sd["lower"] == pytest.approx(np.sqrt(var) * np.exp(-Z95 * se_var / (2 * var)))
    assert sd["interval"] == "Wald, log scale"
    cor = ci.loc["cor(Intercept, urban[T.Y])"]
    assert -1 < cor["lower"] < cor["estimate"] < cor["upper"] < 1
    assert cor["interval"] == "Wald, atanh scale"
    assert r.intervals(level=0.9).loc["age", "upper"] < ci.loc["age", "upper"]
    assert list(r.intervals(which=["age"]).index) == ["age"]


def test_wald_gaussian_variance_components_from_the_reml_information(hsb):
    """Gaussian fits: Wald limits for SDs and sigma on the log scale from the observed
    information of the REML criterion. With 7185 rows and 160 schools the log-likelihood
    is close to quadratic in (log s, log sigma), so they must be close to the profile
    limits (computed by root finding, not from a Hessian)."""
    r = mlglm.lmer("mAch ~ cses + (1 | school)", hsb)
    wald = r.intervals()
    prof = r.intervals(method="profile")
    for name, rtol in (("sigma", 1e-3), ("sd(Intercept)", 1e-2)):
        assert wald.loc[name, "interval"] == "Wald, log scale"
        np.testing.assert_allclose(wald.loc[name, ["lower", "upper"]].astype(float),
                                   prof.loc[name, ["lower", "upper"]].astype(float), rtol=rtol)


def test_conf_int_rejects_unknown_method_and_names(reference_fit):
    r = reference_fit("cbpp_ri")
    with pytest.raises(ValueError, match="wald"):
        r.intervals(method="exact")
    with pytest.raises(ValueError, match="unknown parameter"):
        r.intervals(method="profile", which=["nope"])


# ------------------------------------------------------------------------ profile
@pytest.fixture(scope="module")
def profile_ref():
    return _load_json("profile_ci.json")


#: lme4 (oldNames = FALSE) row names -> ours
def _lme4_name(name):
    name = name.replace("|district", "").replace("|herd", "").replace("|BROOD", "")
    name = name.replace("|school", "")
    table = {"sd_(Intercept)": "sd(Intercept)", "sd_urbanY": "sd(urban[T.Y])",
             "cor_urbanY.(Intercept)": "cor(Intercept, urban[T.Y])", "sd_cses": "sd(cses)",
             "cor_cses.(Intercept)": "cor(Intercept, cses)", "(Intercept)": "Intercept",
             "urbanY": "urban[T.Y]", "livch1": "livch[T.1]", "livch2": "livch[T.2]",
             "livch3+": "livch[T.3+]", "I(age^2)": "I(age ** 2)", "period2": "period[T.2]",
             "period3": "period[T.3]", "period4": "period[T.4]", "YEAR96": "YEAR[T.96]",
             "YEAR97": "YEAR[T.97]"}
    return table.get(name, name)


@pytest.mark.parametrize("case", ["contra_ri", "contra_rs", "cbpp_ri", "grouse_ri"])
def test_profile_matches_lme4(case, reference_fit, profile_ref):
    ref = profile_ref[case]
    ci = reference_fit(case).intervals(method="profile")
    for name, lo, hi in zip(ref["names"], ref["lower"], ref["upper"]):
        ours = ci.loc[_lme4_name(name)]
        assert ours["lower"] == pytest.approx(lo, abs=PROFILE_VS_LME4_ATOL), name
        assert ours["upper"] == pytest.approx(hi, abs=PROFILE_VS_LME4_ATOL), name
    assert (ci["interval"] == "profile").all()


def test_profile_matches_lmer_ml(hsb, profile_ref):
    ref = profile_ref["hsb_rs_ml"]
    r = mlglm.lmer("mAch ~ meanses + cses + (1 + cses | school)", hsb, reml=False)
    ci = r.intervals(method="profile")
    for name, lo, hi in zip(ref["names"], ref["lower"], ref["upper"]):
        ours = ci.loc["sigma" if name == "sigma" else _lme4_name(name)]
        assert ours["lower"] == pytest.approx(lo, abs=PROFILE_VS_LME4_ATOL), name
        assert ours["upper"] == pytest.approx(hi, abs=PROFILE_VS_LME4_ATOL), name


def test_profile_reml_fit(hsb, profile_ref):
    """REML fit: by default the variance parameters are profiled on the REML criterion
    (checked: l_REML = l_hat - z^2/2 at the sigma limits, by a 1-D scipy profile);
    criterion='ml' reproduces lme4, whose confint() of a REML lmer fit equals that of
    the ML fit (hsb_rs_ml in profile_ci.json; lme4 1.1-31, checked by hand)."""
    r = mlglm.lmer("mAch ~ meanses + cses + (1 + cses | school)", hsb, reml=True)
    ml = r.intervals(method="profile", criterion="ml")
    ref = profile_ref["hsb_rs_ml"]
    for name, lo, hi in zip(ref["names"], ref["lower"], ref["upper"]):
        ours = ml.loc["sigma" if name == "sigma" else _lme4_name(name)]
        assert ours["lower"] == pytest.approx(lo, abs=PROFILE_VS_LME4_ATOL), name
        assert ours["upper"] == pytest.approx(hi, abs=PROFILE_VS_LME4_ATOL), name
    reml = r.intervals(method="profile", which=["sd(Intercept)", "sigma"])
    assert reml.loc["sd(Intercept)", "lower"] > ml.loc["sd(Intercept)", "lower"] + 0.005
    assert (reml["lower"] < reml["estimate"]).all() and (reml["estimate"] < reml["upper"]).all()
    with pytest.raises(ValueError, match="criterion"):
        r.intervals(method="profile", criterion="exact")
    m = r.model
    st = lmm_stats(m.endog, m.exog, m.exog_re, m.group_codes)
    L0 = np.linalg.cholesky(np.asarray(r.cov_re))

    def prof(sigma):      # max over Lambda (3 free entries) of l_REML at this sigma
        def nll(v):
            return -gaussian_loglik(None, np.array([[v[0], 0.0], [v[1], v[2]]]), sigma ** 2,
                                    st, reml=True)
        return -optimize.minimize(nll, L0[np.tril_indices(2)], method="Nelder-Mead",
                                  options={"xatol": 1e-9, "fatol": 1e-10,
                                           "maxiter": 4000}).fun
    for limit in reml.loc["sigma", ["lower", "upper"]]:
        assert prof(limit) == pytest.approx(r.llf - Z95 ** 2 / 2, abs=PROFILE_LLF_ATOL)


def test_profile_fixed_effect_limit_by_offset_refit(contraception, reference_fit):
    """Independent check: move urban[T.Y] into the offset at each profile limit and
    refit the rest with the ordinary fitter: llf = llf_hat - z^2/2."""
    r = reference_fit("contra_ri")
    ci = r.intervals(method="profile", which=["urban[T.Y]"])
    d = contraception.assign(urbanY=(contraception["urban"] == "Y").astype(float))
    for limit in (ci.loc["urban[T.Y]", "lower"], ci.loc["urban[T.Y]", "upper"]):
        m = mlglm.MixedGLM.from_formula("y ~ age + I(age**2) + livch", d, groups="district",
                                        family=sm.families.Binomial(),
                                        offset=limit * d["urbanY"].to_numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            llf = m.fit().llf
        assert llf == pytest.approx(r.llf - Z95 ** 2 / 2, abs=PROFILE_LLF_ATOL)


def test_profile_sd_lower_limit_zero_when_flat():
    """A random intercept with (almost) no between-group variance: the profile of
    its SD never reaches the critical value on the way down, so the limit is 0."""
    rng = np.random.default_rng(11)
    G, nj = 30, 8
    g = np.repeat(np.arange(G), nj)
    x = rng.normal(size=g.size)
    y = rng.binomial(1, 1 / (1 + np.exp(-(0.3 + 0.5 * x))))
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mlglm.glmer("y ~ x + (1 | g)", d)
    ci = r.intervals(method="profile")
    assert ci.loc["sd(Intercept)", "lower"] == 0.0
    assert ci.loc["sd(Intercept)", "upper"] > 0.1


def test_profile_gaussian_sigma_by_one_dimensional_oracle(hsb):
    """Random-intercept LMM (ML): profile of sigma computed here by brute force --
    for fixed sigma, maximise l_ML over (beta, s) with scipy -- must cross at our
    limits."""
    r = mlglm.lmer("mAch ~ cses + (1 | school)", hsb, reml=False)
    ci = r.intervals(method="profile", which=["sigma"])
    m = r.model
    st = lmm_stats(m.endog, m.exog, m.exog_re, m.group_codes)

    def prof(sigma):
        def nll(v):
            return -gaussian_loglik(v[:2], np.array([[np.exp(v[2])]]), sigma ** 2, st)
        v0 = np.concatenate([np.asarray(r.fe_params), [np.log(np.sqrt(np.asarray(r.cov_re)[0, 0]))]])
        return -optimize.minimize(nll, v0, method="Nelder-Mead",
                                  options={"xatol": 1e-9, "fatol": 1e-10,
                                           "maxiter": 4000}).fun
    for limit in ci.loc["sigma", ["lower", "upper"]]:
        assert prof(limit) == pytest.approx(r.llf - Z95 ** 2 / 2, abs=PROFILE_LLF_ATOL)


# ---------------------------------------------------------------------- bootstrap
def test_bootstrap_reproducible_for_a_seed_and_any_n_jobs(reference_fit):
    r = reference_fit("cbpp_ri")
    b1 = r.bootstrap(12, seed=42, progress=False)
    b2 = r.bootstrap(12, seed=42, progress=False)
    b3 = r.bootstrap(12, seed=42, progress=False, n_jobs=2)
    b4 = r.bootstrap(12, seed=43, progress=False)
    pd.testing.assert_frame_equal(b1.replicates, b2.replicates)
    pd.testing.assert_frame_equal(b1.replicates, b3.replicates)
    assert not np.allclose(b1.replicates, b4.replicates)
    assert b1.n == 12 and b1.n_failed == 0 and b1.converged.all()
    assert list(b1.replicates.columns) == list(r.intervals().index)
    ci = b1.conf_int()
    assert (ci["interval"] == "bootstrap percentile").all()
    assert (ci["lower"] <= ci["upper"]).all()
    s = b1.summary()
    assert np.allclose(s["bias"], s["mean"] - s["estimate"])


def test_bootstrap_replicates_are_refits_of_simulated_data(reference_fit, cbpp):
    """Replicate 0 rebuilt by hand: same draw (SeedSequence child 0), refit through the
    public formula API, same estimates."""
    from mlglm.inference.bootstrap import _draw, _spec
    r = reference_fit("cbpp_ri")
    b = r.bootstrap(1, seed=5, progress=False)
    spec = _spec(r)
    y = _draw(spec, np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0]))
    codes = r.model.group_codes
    d = pd.DataFrame({"inc": y, "size": spec["m"], "period": cbpp["period"].to_numpy(),
                      "herd": np.asarray(r.model.group_labels)[codes]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = mlglm.glmer("cbind(inc, size - inc) ~ period + (1 | herd)", d)
    assert np.allclose(b.replicates.iloc[0, :4], f.fe_params, atol=1e-4)
    assert b.replicates.iloc[0, 4] == pytest.approx(np.sqrt(np.asarray(f.cov_re)[0, 0]), abs=1e-4)


def test_bootstrap_progress_and_failures(reference_fit, capsys, monkeypatch):
    import mlglm.inference.bootstrap as mb
    r = reference_fit("cbpp_ri")
    real = mb._refit
    calls = {"n": 0}

    def flaky(spec, y):
        calls["n"] += 1
        if calls["n"] == 2:
            raise np.linalg.LinAlgError("boom")
        return real(spec, y)
    monkeypatch.setattr(mb, "_refit", flaky)
    with pytest.warns(RuntimeWarning, match="1 of 4 bootstrap refits failed"):
        b = r.bootstrap(4, seed=1, progress=True)
    assert b.n_failed == 1 and b.replicates.iloc[1].isna().all()
    assert "bootstrap 4/4" in capsys.readouterr().err
    assert np.isfinite(b.conf_int()["lower"]).all()


def test_bootstrap_conf_int_method(reference_fit):
    r = reference_fit("grouse_ri")
    ci = r.intervals(method="bootstrap", n_boot=10, seed=2, progress=False)
    assert ci.attrs["n"] == 10
    assert (ci["interval"] == "bootstrap percentile").all()
    b = r.bootstrap(10, seed=2, progress=False)
    pd.testing.assert_frame_equal(r.intervals(method="bootstrap", boot=b), ci)


def test_bootstrap_gaussian(hsb):
    r = mlglm.lmer("mAch ~ cses + (1 | school)", hsb)
    b = r.bootstrap(8, seed=0, progress=False)
    assert "sigma" in b.replicates.columns and b.n_failed == 0
    # sigma is well determined with 7185 rows: replicates within 5% of the estimate
    assert np.allclose(b.replicates["sigma"], np.sqrt(r.scale), rtol=0.05)


# --------------------------------------------------------------- marginal coefficients
def test_marginal_params_poisson_random_intercept_is_exact(reference_fit):
    """log link, random intercept: E[exp(eta + b)] = exp(eta + tau/2) exactly, so the
    marginal slopes equal the conditional ones and the intercept rises by tau/2."""
    r = reference_fit("grouse_ri")
    mp = r.marginal_params()
    tau = np.asarray(r.cov_re)[0, 0]
    assert mp.loc["Intercept", "coef"] == pytest.approx(r.fe_params["Intercept"] + tau / 2,
                                                         abs=1e-9)
    assert np.allclose(mp["coef"].iloc[1:], r.fe_params.iloc[1:], atol=1e-9)
    assert np.allclose(mp["se"].iloc[1:], r.bse_fe[1:], rtol=1e-4)
    assert np.allclose(mp["conditional"], r.fe_params)


def test_marginal_params_logit_attenuation(reference_fit):
    """logit, random intercept: slopes attenuated by ~1/sqrt(1 + 0.346 tau)
    (Zeger, Liang & Albert 1988), within 2%."""
    r = reference_fit("contra_ri")
    mp = r.marginal_params()
    factor = 1 / np.sqrt(1 + 0.346 * np.asarray(r.cov_re)[0, 0])
    ratio = mp.loc["urban[T.Y]", "coef"] / r.fe_params["urban[T.Y]"]
    assert ratio == pytest.approx(factor, rel=0.02)
    assert (mp["se"] > 0).all()


def test_marginal_params_gaussian_identity(hsb):
    r = mlglm.lmer("mAch ~ cses + (1 | school)", hsb)
    mp = r.marginal_params()
    assert np.allclose(mp["coef"], r.fe_params)
    assert np.allclose(mp["se"], r.bse_fe, rtol=1e-6)


# --------------------------------------------------------------------------- ICC
def test_icc_profile_binomial_is_the_sd_profile_mapped(reference_fit):
    r = reference_fit("contra_ri")
    out = mlglm.icc(r, ci=True)
    sd = r.intervals(method="profile", which=["sd(Intercept)"]).loc["sd(Intercept)"]
    c = np.pi ** 2 / 3
    assert out.ci_method == "profile"
    assert out.ci[0] == pytest.approx(sd["lower"] ** 2 / (sd["lower"] ** 2 + c), rel=1e-5)
    assert out.ci[1] == pytest.approx(sd["upper"] ** 2 / (sd["upper"] ** 2 + c), rel=1e-5)
    assert "95% CI" in str(out)


def test_icc_profile_gaussian_by_one_dimensional_oracle(hsb):
    """ICC = s^2/(s^2 + sigma^2): fix the ratio r = s/sigma, maximise the REML
    likelihood over sigma alone (scipy), and check l = l_hat - z^2/2 at our limits."""
    r = mlglm.lmer("mAch ~ 1 + (1 | school)", hsb)
    out = mlglm.icc(r, ci=True)
    m = r.model
    st = lmm_stats(m.endog, m.exog, m.exog_re, m.group_codes)

    def prof(icc_value):
        ratio = np.sqrt(icc_value / (1 - icc_value))

        def nll(log_sigma):
            s = np.exp(log_sigma)
            return -gaussian_loglik(None, np.array([[ratio * s]]), s ** 2, st, reml=True)
        return -optimize.minimize_scalar(nll, bracket=(1.0, 2.5), tol=1e-12).fun
    assert out.ci[0] < out.value < out.ci[1]
    for limit in out.ci:
        assert prof(limit) == pytest.approx(r.llf - Z95 ** 2 / 2, abs=PROFILE_LLF_ATOL)


def test_icc_bootstrap_reproducible_and_used_when_profile_does_not_apply(reference_fit):
    r = reference_fit("grouse_ri")          # Poisson: the ICC involves beta0 too
    a = mlglm.icc(r, ci=True, n_boot=10, seed=4, progress=False)
    b = mlglm.icc(r, ci=True, n_boot=10, seed=4, progress=False)
    assert a.ci == b.ci and a.ci_method.startswith("bootstrap percentile")
    assert a.ci[0] < a.ci[1]
    with pytest.raises(ValueError, match="bootstrap"):
        mlglm.icc(r, ci=True, ci_method="profile")


def test_icc_ci_needs_an_mlglm_fit(hsb):
    import statsmodels.formula.api as smf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = smf.mixedlm("mAch ~ 1", hsb, groups="school").fit()
    assert mlglm.icc(r).value > 0
    with pytest.raises(TypeError, match="mlglm"):
        mlglm.icc(r, ci=True)


def test_profile_q3_invariant_to_the_order_of_random_effect_terms():
    """Three correlated random effects: the correlation that is first in one order is
    profiled directly, the others through a permuted problem. Listing the terms in
    another order permutes which path each correlation takes; the intervals must not
    change (to the root-finding tolerance)."""
    rng = np.random.default_rng(5)
    G, nj = 60, 20
    g = np.repeat(np.arange(G), nj)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    S = np.array([[1.0, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 0.4]])
    b = rng.multivariate_normal(np.zeros(3), S, size=G)
    eta = 0.2 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2
    d = pd.DataFrame(dict(y=rng.poisson(np.exp(eta)), x1=x1, x2=x2, g=g))
    out = []
    for re_formula in ("~x1 + x2", "~x2 + x1"):
        m = mlglm.MixedGLM.from_formula("y ~ x1 + x2", d, groups="g", re_formula=re_formula,
                                        family=sm.families.Poisson())
        ci = m.fit().intervals(method="profile")
        ci.index = [n.replace("cor(x2, x1)", "cor(x1, x2)") for n in ci.index]
        out.append(ci.sort_index())
    assert list(out[0].index) == list(out[1].index)
    np.testing.assert_allclose(out[0][["lower", "upper"]], out[1][["lower", "upper"]],
                               atol=1e-4)
    assert (out[0]["lower"] < out[0]["estimate"]).all()
    assert (out[0]["estimate"] < out[0]["upper"]).all()



def _agree(fits, rows):
    """Same rows, labels and limits in ``intervals()`` (Wald, profile) and
    ``conf_int(method="profile")`` for fits of one model spelled differently."""
    tables = {m: [r.intervals(method=m) for r in fits] for m in ("wald", "profile")}
    limits = [np.asarray(r.conf_int(method="profile"), float) for r in fits]
    for method, tabs in tables.items():
        for t in tabs:
            assert list(t.index) == rows, method
            # the fits agree to the optimiser's tolerance (tests/test_spellings.py), the
            # limits to what that moves them
            np.testing.assert_allclose(t[["estimate", "lower", "upper"]].to_numpy(float),
                                       tabs[0][["estimate", "lower", "upper"]].to_numpy(float),
                                       rtol=1e-5)
            assert list(t["interval"]) == list(tabs[0]["interval"])
    for lim in limits[1:]:
        np.testing.assert_allclose(lim, limits[0], rtol=1e-5)


def test_intervals_of_every_spelling_of_one_term_agree():
    """One grouping factor, however it is spelled, has the one-factor rows (``sd(Days)``,
    not ``sd(Days | Subject)``) and the same Wald and profile limits and ``conf_int``
    rows: an uncorrelated random slope spelled four ways (lme4's ``||``, its long form,
    statsmodels' diagonal ``cov_struct``, the slope as a variance component within
    ``groups``), and a correlated slope with an independent second slope
    (``(1 + Days | Subject) + (0 + x | Subject)`` = ``re_formula="~Days"`` with ``x`` a
    variance component). The latter went to the several-factor code before the
    intervals were written over the terms, and its rows were ``sd(Intercept | Subject)``
    etc."""
    d = mlglm.datasets.load_sleepstudy().assign(x=lambda f: (f.Days - 4.5) ** 2 / 10)
    fam = sm.families.Gaussian()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uncorrelated = [
            mlglm.lmer("Reaction ~ Days + (1 + Days || Subject)", d),
            mlglm.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d),
            mlglm.MixedGLM.from_formula("Reaction ~ Days", d, groups="Subject",
                                        re_formula="~Days", cov_struct="diagonal",
                                        family=fam).fit(),
            mlglm.MixedGLM.from_formula("Reaction ~ Days", d, groups="Subject", re_formula="1",
                                        vc_formula={"Days": "0 + Days"}, family=fam).fit()]
        two_blocks = [
            mlglm.lmer("Reaction ~ Days + x + (1 + Days | Subject) + (0 + x | Subject)", d),
            mlglm.MixedGLM.from_formula("Reaction ~ Days + x", d, groups="Subject",
                                        re_formula="~Days", vc_formula={"x": "0 + x"},
                                        family=fam).fit()]
    _agree(uncorrelated, ["Intercept", "Days", "sd(Intercept)", "sd(Days)", "sigma"])
    _agree(two_blocks, ["Intercept", "Days", "x", "sd(Intercept)", "sd(Days)", "sd(x)",
                        "cor(Intercept, Days)", "sigma"])


def test_wald_gaussian_sd_at_zero_has_no_interval():
    """A Gaussian SD estimated at 0 has no log-scale Wald interval: NaN limits and the
    reason, as for GLMMs (it was reported as the zero-width interval [0, 0])."""
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.normal(size=200), "x": rng.normal(size=200),
                      "g": np.repeat(np.arange(20), 10)})       # no group effect
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mlglm.lmer("y ~ x + (1 | g)", d)
    assert np.asarray(r.cov_re)[0, 0] == 0.0
    ci = r.intervals()
    row = ci.loc["sd(Intercept)"]
    assert row["estimate"] == 0.0 and np.isnan(row["lower"]) and np.isnan(row["upper"])
    assert row["interval"].startswith("no Wald SE")
    assert np.isfinite(ci.loc["sigma", ["lower", "upper"]].to_numpy(float)).all()
