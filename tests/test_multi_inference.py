"""Intervals for fits with several grouping factors: the natural-parameter layout,
Wald and profile intervals, ``conf_int(method=...)``.

References:
* profile_multi.json is written by tests/reference/profile_multi.R
  (``Rscript profile_multi.R profile_multi.json sim_multi_slopes.csv``: lme4 1.1-31
  ``confint(fit, method = "profile", oldNames = FALSE)``; its REML fits are profiled
  on the ML likelihood -- lme4's ``devfun2`` calls ``refitML`` -- so those cases are
  compared with ``criterion="ml"``). sim_multi_slopes.csv is the simulated crossed
  design that script writes (the model in its header).
* independent checks in this file: a dense multivariate-normal REML likelihood
  maximised by scipy with the profiled SD held at its limit; a refit through the
  public API with a fixed effect moved into the offset; a scipy maximisation of the
  Laplace objective in theta with one theta held fixed; a constrained (SLSQP)
  maximisation with a correlation held at its limit. Each says which.
"""
from __future__ import annotations

import warnings

import re

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import mlglm
from conftest import HERE, _load_json
from mlglm.core.spec.covpattern import CovBlock, CovPattern, diagonal, tied, unstructured
from mlglm.core.engines.lmm.blocked import multi_gaussian_loglik, multi_lmm_stats
from mlglm.core.spec.errors import ModeFailure
from mlglm.core.spec.natural import natural_to_Lambda
from mlglm.core.spec.natural_layout import NaturalLayout

Z95 = stats.norm.ppf(0.975)
#: profile limits vs lme4 (absolute, relative to max(1, |limit|)): lme4 interpolates its
#: profile with splines (error ~1e-4); we find the root to ~1e-7
PROFILE_VS_LME4_RTOL = 2e-3
#: an independent refit at a profile limit: 2 (l_hat - l) = z^2 to this accuracy
PROFILE_LLF_ATOL = 2e-4


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


@pytest.fixture(scope="module")
def pr():
    return _load_json("profile_multi.json")


@pytest.fixture(scope="module")
def pastes():
    return _quiet(mlglm.lmer, "strength ~ 1 + (1 | batch/cask)", mlglm.datasets.load_pastes())


@pytest.fixture(scope="module")
def sim():
    d = pd.read_csv(HERE / "reference" / "sim_multi_slopes.csv")
    return _quiet(mlglm.lmer, "y ~ x + z + (1 + x + z | g) + (1 | h)", d, reml=False)


@pytest.fixture(scope="module")
def sim_profile(sim):
    return sim.intervals(method="profile")


@pytest.fixture(scope="module")
def grouse():
    return _quiet(mlglm.glmer, "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + "
                  "(1 | LOCATION)", mlglm.datasets.load_grouseticks(), family="poisson")


# -------------------------------------------------------------------------- layout
PATTERNS = [unstructured(3), diagonal(2), tied(3),
            CovPattern((CovBlock("unstructured", 2), CovBlock("tied", 2),
                        CovBlock("unstructured", 1), CovBlock("unstructured", 3)))]


def _random_Sigma(pattern, rng):
    """A random Sigma of the pattern, its Cholesky diagonal >= 0.3 (partial correlations
    well inside +-0.9999, where the working coordinates clip)."""
    theta = rng.normal(size=pattern.n_theta)
    d = pattern.theta_on_diagonal
    theta[d] = 0.3 + np.abs(theta[d])
    L = pattern.Lambda(theta)
    return L @ L.T


def test_layout_round_trips_every_pattern():
    rng = np.random.default_rng(1)
    layout = NaturalLayout(PATTERNS)
    for _ in range(20):
        Sig = [_random_Sigma(p, rng) for p in PATTERNS]
        theta = np.concatenate([p.theta_from_Sigma(S) for p, S in zip(PATTERNS, Sig)])
        w = layout.to_working(Sig)
        assert np.allclose(layout.theta(w), theta, atol=1e-10)
        nat = layout.natural(Sig)
        for S, S2 in zip(Sig, layout.Sigmas_from_natural(nat)):
            assert np.allclose(S, S2, atol=1e-12)
    kinds = [e.kind for e in layout.entries]
    # sds: 3 + 2 + 1 (tied) + (2 + 1 + 1 + 3); cors: 3 + 0 + 0 + (1 + 3)
    assert kinds.count("sd") == 13 and kinds.count("cor") == 7 and layout.dim == 20


def test_one_block_layout_is_the_one_factor_map():
    """One term with one unstructured block: w -> Lambda is mlglm.core.spec.natural's map."""
    rng = np.random.default_rng(2)
    layout = NaturalLayout([unstructured(3)])
    for _ in range(10):
        w = rng.normal(size=6)
        assert np.allclose(layout.Lambdas(w)[0], natural_to_Lambda(w[:3], w[3:], 3), atol=0)


def test_permuted_layout_makes_a_later_correlation_a_coordinate():
    rng = np.random.default_rng(3)
    pat = CovPattern((CovBlock("unstructured", 1), CovBlock("unstructured", 3)))
    layout = NaturalLayout([diagonal(1), pat])
    S = [np.array([[2.0]]), _random_Sigma(pat, rng)]
    cors = [j for j, e in enumerate(layout.entries) if e.kind == "cor"]
    assert layout.index_of(cors[0]) == cors[0]          # the block's first correlation
    for j in cors[1:]:
        assert layout.index_of(j) is None
        perm, idx = layout.permuted_for(j)
        w = perm.to_working(S)
        k, l = layout.entries[j].effects
        assert np.tanh(w[idx]) == pytest.approx(S[1][k, l] / np.sqrt(S[1][k, k] * S[1][l, l]))
        for a, b in zip(perm.Lambdas(w), S):        # same Sigma, pattern-shaped factor
            assert np.allclose(a @ a.T, b, atol=1e-12) and np.allclose(a, np.tril(a))
        # the untriangular factor (Gaussian profiles): the same Sigma without refactorising
        for a, b in zip(perm.Lambdas(w, triangular=False), S):
            assert np.allclose(a @ a.T, b, atol=1e-12)


# -------------------------------------------------------------------------- labels
def test_labels_name_the_factor(pastes, sim):
    assert list(pastes.intervals().index) == ["Intercept", "sd(Intercept | batch)",
                                              "sd(Intercept | batch:cask)", "sigma"]
    assert list(sim.intervals().index[3:]) == [
        "sd(Intercept | g)", "sd(x | g)", "sd(z | g)", "cor(Intercept, x | g)",
        "cor(Intercept, z | g)", "cor(x, z | g)", "sd(Intercept | h)", "sigma"]


def test_one_factor_labels_unchanged(hsb):
    r = _quiet(mlglm.lmer, "mAch ~ cses + (1 + cses | school)", hsb)
    assert list(r.intervals().index) == ["Intercept", "cses", "sd(Intercept)", "sd(cses)",
                                         "cor(Intercept, cses)", "sigma"]


def test_tied_block_has_one_sd():
    d = mlglm.datasets.load_pastes().assign(v1=lambda f: np.cos(np.arange(len(f))),
                                            v2=lambda f: np.sin(np.arange(len(f))))
    m = mlglm.MixedGLM.from_formula("strength ~ 1", d, groups="batch", re_formula="1",
                                    vc_formula={"w": "0 + v1 + v2"})
    r = _quiet(m.fit)
    ci = r.intervals()
    # one term (the vc block is within groups): one-factor labels, sd(x) without "| batch"
    assert list(ci.index) == ["Intercept", "sd(Intercept)", "sd(w)", "sigma"]
    S = np.asarray(r.cov_re)           # one term: statsmodels' q x q shape
    assert ci.loc["sd(w)", "estimate"] == pytest.approx(np.sqrt(S[1, 1]))


# ------------------------------------------------------------------ profile vs lme4
def _lme4_name(name, factor_map):
    """Our row label for an lme4 confint row name (oldNames = FALSE)."""
    if name == "sigma" or not name.startswith(("sd_", "cor_")):
        return name.replace("(Intercept)", "Intercept")
    kind, rest = name.split("_", 1)
    eff, fac = rest.rsplit("|", 1)
    fac = factor_map.get(fac, fac)
    eff = eff.replace("(Intercept)", "Intercept")
    if kind == "sd":
        return f"sd({eff} | {fac})"
    a, b = eff.split(".")
    return f"cor({b}, {a} | {fac})"


CASES = {
    # id: (formula, data loader, fit keywords, profile keywords, lme4 factor names)
    "pastes_nested": ("strength ~ 1 + (1 | batch/cask)", "pastes", {}, {"criterion": "ml"},
                      {"cask:batch": "batch:cask"}),
    "penicillin_crossed": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin", {},
                           {"criterion": "ml"}, {}),
    "sleepstudy_uncorrelated": ("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
                                "sleepstudy", {"reml": False}, {}, {}),
    "chem97_nested": ("score ~ gcsecnt + (1 | school) + (1 | lea)", "chem97", {"reml": False},
                      {}, {}),
}


def _compare(got, ref):
    for name, lo, hi in zip(ref["names"], ref["lower"], ref["upper"]):
        for want, have in ((lo, got.loc[name, "lower"]), (hi, got.loc[name, "upper"])):
            assert have == pytest.approx(want, abs=PROFILE_VS_LME4_RTOL * max(1.0, abs(want))), \
                (name, want, have)


@pytest.mark.parametrize("case", list(CASES))
def test_gaussian_profile_matches_lme4(case, pr):
    formula, data, fit_kw, prof_kw, fmap = CASES[case]
    res = _quiet(mlglm.lmer, formula, mlglm.datasets.load(data), **fit_kw)
    ref = dict(pr[case])
    ref["names"] = [_lme4_name(n, fmap) for n in ref["names"]]
    if len(res.model.re_terms) == 1:        # one term: statsmodels' names, sd(x), cor(a, b)
        ref["names"] = [re.sub(r" \| [^)]*\)", ")", n) for n in ref["names"]]
    which = ref["names"] if case == "chem97_nested" else None
    _compare(res.intervals(method="profile", which=which, **prof_kw), ref)


#: rows where lme4's profile is wrong (its spline through a non-monotone correlation
#: profile; R warns 50+ times): an independent constrained fit (below) shows the deviance
#: at lme4's cor(x, z | g) upper limit 0.8367 is 11.6 above z^2, and below z^2 all the way
#: to cor(Intercept, x | g) = 0.999 (so the upper limit is 1, not lme4's 0.927)
LME4_WRONG = {("cor(Intercept, x | g)", "upper"), ("cor(x, z | g)", "upper")}


def test_profile_correlations_match_lme4(sim_profile, pr):
    """Three correlations in one block (two profiled in permuted layouts), crossed with
    a second factor; every limit but the two in LME4_WRONG against lme4."""
    ref = dict(pr["sim_slopes_crossed"])
    ref["names"] = [_lme4_name(n, {}) for n in ref["names"]]
    got = sim_profile
    for name, lo, hi in zip(ref["names"], ref["lower"], ref["upper"]):
        for side, want in (("lower", lo), ("upper", hi)):
            if (name, side) not in LME4_WRONG:
                assert got.loc[name, side] == pytest.approx(
                    want, abs=PROFILE_VS_LME4_RTOL * max(1.0, abs(want))), (name, side)
    assert got.loc["cor(Intercept, x | g)", "upper"] == 1.0
    assert got.attrs["n_fits"] > 0


def test_glmm_profile_matches_lme4(grouse, pr):
    """Every row: three SDs (LOCATION's lower limit 0) and the fixed effects."""
    ref = dict(pr["grouse_nested"])
    year = {"YEAR96": "YEAR[T.96]", "YEAR97": "YEAR[T.97]"}
    ref["names"] = [year.get(n, _lme4_name(n, {})) for n in ref["names"]]
    got = grouse.intervals(method="profile")
    _compare(got, ref)
    assert got.loc["sd(Intercept | LOCATION)", "lower"] == 0.0


def test_verbagg_profile_sds_match_lme4(pr):
    """lme4 needed 472 s for these two limits; its limits are off by up to 0.024 in the
    deviance (checked by a scipy profile in theta when this test was written), ours by
    < 3e-5, well inside PROFILE_VS_LME4_RTOL."""
    res = _quiet(mlglm.glmer, "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
                 mlglm.datasets.load_verbagg(), family="binomial")
    ref = dict(pr["verbagg_crossed"])
    ref["names"] = [_lme4_name(n, {}) for n in ref["names"]]
    _compare(res.intervals(method="profile", which=ref["names"]), ref)


# ------------------------------------------------------- profile vs independent refits
def _dense_reml(y, X, terms, Sigmas, sigma2):
    """Naive REML log-likelihood: V = sum_k Z_k (I (x) Sigma_k) Z_k' + sigma2 I, dense."""
    n, p = X.shape
    V = sigma2 * np.eye(n)
    for t, S in zip(terms, Sigmas):
        Zf = np.zeros((n, t.n_levels * t.q))
        for c in range(t.q):
            Zf[np.arange(n), t.codes * t.q + c] = t.Z[:, c]
        V += Zf @ np.kron(np.eye(t.n_levels), S) @ Zf.T
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    beta = np.linalg.solve(XVX, X.T @ Vi @ y)
    r = y - X @ beta
    return -0.5 * ((n - p) * np.log(2 * np.pi) + np.linalg.slogdet(V)[1]
                   + np.linalg.slogdet(XVX)[1] + r @ Vi @ r)


def test_gaussian_sd_limits_by_dense_oracle_profile(pastes):
    """REML profile of sd(batch:cask): at each limit, maximise the dense REML likelihood
    over the other SD and sigma (Nelder-Mead on logs) and check 2 (l_hat - l) = z^2."""
    m = pastes.model
    y, X, terms = m.endog, np.asarray(m.exog, float), m.re_terms
    ci = pastes.intervals(method="profile", which=["sd(Intercept | batch:cask)"])
    ll_hat = pastes.llf
    assert _dense_reml(y, X, terms, [np.asarray(S) for S in pastes.outcome.Sigmas],
                       pastes.scale) == pytest.approx(ll_hat, rel=1e-10)
    for lim in ci.loc["sd(Intercept | batch:cask)", ["lower", "upper"]]:
        def neg(v):
            return -_dense_reml(y, X, terms, [np.array([[np.exp(2 * v[0])]]),
                                              np.array([[lim ** 2]])], np.exp(2 * v[1]))
        best = min((optimize.minimize(neg, [s, np.log(pastes.scale) / 2], method="Nelder-Mead",
                                      options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 4000})
                    for s in (-3.0, 0.0, 1.0)), key=lambda r: r.fun)
        assert 2 * (ll_hat + best.fun) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)


def test_glmm_fixed_effect_limit_by_offset_refit(grouse):
    """The profile limit of cHEIGHT: refit through glmer with cHEIGHT * limit in the offset."""
    d = mlglm.datasets.load_grouseticks()
    ci = grouse.intervals(method="profile", which=["cHEIGHT"])
    for lim in ci.loc["cHEIGHT", ["lower", "upper"]]:
        r = _quiet(mlglm.glmer, "TICKS ~ YEAR + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", d,
                   family="poisson", offset=lim * d["cHEIGHT"].to_numpy())
        assert 2 * (grouse.llf - r.llf) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)


def test_glmm_sd_limit_by_scipy_profile_in_theta(grouse):
    """The upper limit of sd(BROOD): hold theta_BROOD at the limit and maximise the
    Laplace objective over beta and the other thetas with scipy's L-BFGS-B."""
    ci = grouse.intervals(method="profile", which=["sd(Intercept | BROOD)"])
    lim = ci.loc["sd(Intercept | BROOD)", "upper"]
    obj = grouse.model.objective(1)
    x_hat = np.concatenate([grouse.fe_params, grouse.outcome.theta])
    free = np.ones(x_hat.size, bool)
    free[grouse.k_fe] = False                # theta of BROOD (the first term) is its SD

    def f(v):
        x = x_hat.copy()
        x[free] = v
        x[grouse.k_fe] = lim
        try:
            val, g = obj.value_and_gradient(x)
        except (np.linalg.LinAlgError, ModeFailure):   # a trial step too far (L-BFGS-B's
            return 1e10, np.zeros_like(v)               # first step puts eta near 100)
        return -val, -g[free]
    bounds = [(None, None)] * grouse.k_fe + [(1e-6, None)] * 2     # INDEX, LOCATION SDs
    r = optimize.minimize(f, x_hat[free], jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 500})
    assert 2 * (grouse.llf + r.fun) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)


def _constrained_deviance(res, fun, value, starts=3):
    """2 (l_hat - max{l : fun = value}) for an ML fit with several factors: SLSQP on the
    ML likelihood in (beta, theta absolute, log sigma) with fun(Sigma of the first term)
    = value as an equality constraint (best of a few starts)."""
    m = res.model
    st = multi_lmm_stats(m.endog, np.asarray(m.exog, float), m.re_terms)
    p = res.k_fe
    x0 = np.concatenate([res.fe_params, res.outcome.theta * np.sqrt(res.scale),
                         [0.5 * np.log(res.scale)]])

    def negll(v):
        return -multi_gaussian_loglik(v[:p], m.re_terms.Lambdas(v[p:-1]), np.exp(2 * v[-1]),
                                      st, reml=False)

    def g(v):
        L = m.re_terms.Lambdas(v[p:-1])[0]
        return fun(L @ L.T) - value
    assert -negll(x0) == pytest.approx(res.llf, rel=1e-10)
    best = np.inf
    for k in range(starts):
        xs = x0 + (0.0 if k == 0 else np.random.default_rng(k).normal(scale=0.3, size=x0.size))
        r = optimize.minimize(negll, xs, method="SLSQP", constraints=[{"type": "eq", "fun": g}],
                              options={"ftol": 1e-13, "maxiter": 2000})
        if abs(g(r.x)) < 1e-7:
            best = min(best, r.fun)
    return 2 * (res.llf + best)


def _cor(k, l):
    return lambda S: S[k, l] / np.sqrt(S[k, k] * S[l, l])


def test_non_first_correlation_limit_by_constrained_fit(sim, sim_profile):
    """cor(x, z | g) is profiled in a permuted layout; its limits by a constrained fit
    (no permutation, no partial correlations): the deviance there is z^2. Also the two
    limits where lme4 disagrees (LME4_WRONG)."""
    for lim in sim_profile.loc["cor(x, z | g)", ["lower", "upper"]]:
        assert _constrained_deviance(sim, _cor(2, 1), lim) == pytest.approx(
            Z95 ** 2, abs=PROFILE_LLF_ATOL)
    assert _constrained_deviance(sim, _cor(2, 1), 0.836670267703491) > Z95 ** 2 + 10
    assert _constrained_deviance(sim, _cor(1, 0), 0.999) < Z95 ** 2 - 1


def test_sd_at_zero_gets_lower_limit_zero(pastes):
    ci = pastes.intervals(method="profile", which=["sd(Intercept | batch)"])
    assert ci.loc["sd(Intercept | batch)", "lower"] == 0.0


# ------------------------------------------------------------------------ Wald
def test_wald_glmm_delta_method_by_hand(grouse):
    ci = grouse.intervals()
    cov = np.asarray(grouse.cov_params())
    names = list(grouse.model.data.param_names)
    for f in ("BROOD", "INDEX", "LOCATION"):
        j = names.index(f"{f} Var")
        var = float(grouse.cov_re[f].iloc[0, 0])
        se_log = np.sqrt(cov[j, j]) / (2 * var)
        row = ci.loc[f"sd(Intercept | {f})"]
        assert row["lower"] == pytest.approx(np.sqrt(var) * np.exp(-Z95 * se_log), rel=1e-12)
        assert row["upper"] == pytest.approx(np.sqrt(var) * np.exp(Z95 * se_log), rel=1e-12)
        assert row["interval"] == "Wald, log scale"
    fe = ci.iloc[:grouse.k_fe]
    assert np.allclose(fe["upper"], grouse.fe_params + Z95 * grouse.bse_fe)


def test_wald_correlations_and_gaussian_information(sim, sim_profile):
    """Gaussian Wald SEs from the observed ML information in working coordinates: on 480
    rows the log-likelihood is near quadratic in log sigma and log sd(Intercept | g), so
    their Wald limits are close to the profile limits."""
    wald = sim.intervals()
    prof = sim_profile
    for name in ("sigma", "sd(Intercept | g)"):
        assert wald.loc[name, ["lower", "upper"]].to_numpy(float) == pytest.approx(
            prof.loc[name, ["lower", "upper"]].to_numpy(float), rel=0.03)
    cors = wald.loc[[n for n in wald.index if n.startswith("cor(")]]
    assert (cors["interval"] == "Wald, atanh scale").all()
    assert ((cors["lower"] < cors["estimate"]) & (cors["estimate"] < cors["upper"])).all()


def test_conf_int_profile_rows_are_squared_sd_limits(pastes):
    ci = pastes.conf_int(method="profile")
    rich = pastes.intervals(method="profile")
    assert list(ci.index) == list(pastes.params.index)
    assert ci.loc["Intercept"].tolist() == pytest.approx(rich.loc["Intercept", ["lower", "upper"]]
                                                         .tolist())
    assert ci.loc["batch:cask Var"].tolist() == pytest.approx(
        (rich.loc["sd(Intercept | batch:cask)", ["lower", "upper"]] ** 2).tolist())
    wald = pastes.conf_int()
    assert np.isnan(wald.loc["batch Var"]).all()          # Gaussian: no Wald SE for variances


# ------------------------------------------- a GLMM with a correlated block, crossed
@pytest.fixture(scope="module")
def logit_slopes():
    """Binary data, a correlated random intercept and slope on g crossed with an
    intercept on h (simulated here)."""
    rng = np.random.default_rng(4)
    n, G, H = 600, 30, 8
    g, h = rng.integers(0, G, n), rng.integers(0, H, n)
    x = rng.normal(size=n)
    b = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.5]], G)
    c = rng.normal(0, 0.6, H)
    eta = -0.3 + 0.8 * x + b[g, 0] + b[g, 1] * x + c[h]
    y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    d = pd.DataFrame({"y": y, "x": x, "g": g, "h": h})
    return _quiet(mlglm.glmer, "y ~ x + (1 + x | g) + (1 | h)", d, family="binomial")


def test_glmm_wald_correlation_by_hand(logit_slopes):
    """atanh(rho) +- z se, se by the delta method from cov_params() on (Var, Cov, Var)."""
    r = logit_slopes
    ci = r.intervals()
    names = list(r.model.data.param_names)
    S = r.cov_re["g"].to_numpy()
    cov = np.asarray(r.cov_params())
    rho = S[1, 0] / np.sqrt(S[0, 0] * S[1, 1])
    idx = [names.index(n) for n in ("g Var", "g x x Intercept Cov", "g x Var")]
    grad = np.array([-rho / (2 * S[0, 0]), 1 / np.sqrt(S[0, 0] * S[1, 1]),
                     -rho / (2 * S[1, 1])]) / (1 - rho ** 2)
    se = np.sqrt(grad @ cov[np.ix_(idx, idx)] @ grad)
    row = ci.loc["cor(Intercept, x | g)"]
    assert row["estimate"] == pytest.approx(rho)
    assert row["lower"] == pytest.approx(np.tanh(np.arctanh(rho) - Z95 * se), rel=1e-10)
    assert row["upper"] == pytest.approx(np.tanh(np.arctanh(rho) + Z95 * se), rel=1e-10)


def test_glmm_correlation_profile_by_constrained_laplace_fit(logit_slopes):
    """Profile of cor(Intercept, x | g) through the Laplace objective's exact gradient
    chained through the working coordinates; each limit checked by SLSQP on the same
    objective in (beta, theta) with the correlation as an equality constraint."""
    r = logit_slopes
    name = "cor(Intercept, x | g)"
    ci = r.intervals(method="profile", which=[name])
    obj = r.model.objective(1)
    p = r.k_fe
    x_hat = np.concatenate([r.fe_params, r.outcome.theta])

    def f(x):
        try:
            v, g = obj.value_and_gradient(x)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(x)
        return -v, -g

    def cor(x):
        L = r.model.re_terms.Lambdas(x[p:])[0]
        S = L @ L.T
        return S[1, 0] / np.sqrt(S[0, 0] * S[1, 1])
    for lim in ci.loc[name, ["lower", "upper"]]:
        if abs(lim) == 1.0:
            continue
        res = optimize.minimize(f, x_hat, jac=True, method="SLSQP",
                                constraints=[{"type": "eq", "fun": lambda x: cor(x) - lim}],
                                options={"ftol": 1e-12, "maxiter": 500})
        assert abs(cor(res.x) - lim) < 1e-7
        assert 2 * (r.llf + res.fun) == pytest.approx(Z95 ** 2, abs=PROFILE_LLF_ATOL)
