"""Tests of mlglm.core.engines.lmm.blockdiag: the exact one-factor Gaussian LMM by profiled (RE)ML.

Reference numbers are lme4's ``lmer`` fits of the HSB data, four formulas x
REML/ML, in tests/reference/lmm_hsb.json (made by
tests/reference/references_lmm.R; the same file as
/work/shared/reference/lmm_hsb.json).  Each test names the JSON key it reads
("<formula>_<reml|ml>") and the R quantity behind the field:

    fixef -> fixef(m), se -> sqrt(diag(vcov(m))), cov_re -> VarCorr(m)$school,
    sigma2 -> sigma(m)^2, loglik -> logLik(m), reml_criterion -> REMLcrit(m),
    deviance_ml -> deviance(m, REML = FALSE), aic -> AIC(m).

Independent checks use the naive dense oracle in tests/oracle.py (per-group
V_j = Z_j Sigma Z_j' + sigma2 I) and dense per-group formulas written out here.
Data: mlglm/datasets/hsb.csv (identical to /work/shared/data/hsb.csv).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize

from mlglm.core.engines.lmm import blockdiag as lmm
from mlglm.core.spec.covariance import n_theta, theta_from_Sigma, theta_lower_bounds
from mlglm.core.spec.covpattern import unstructured
from mlglm.core.spec.record import CoreFit
from mlglm.core.engines.lmm.blockdiag import (LMMStats, lmm_evaluate, lmm_fit, lmm_stats,
                            profiled_deviance, profiled_deviance_grad)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

# ---------------------------------------------------------------------------
# Named tolerances (relative unless said otherwise)
# ---------------------------------------------------------------------------
TOL_AT_REFERENCE = 1e-8   # our criterion at lme4's own estimates vs lme4's value (seen ~2e-15)
TOL_IDENTITY = 1e-10      # two exact routes to one number (dense oracle, reparametrisations)
TOL_CRITERION = 1e-6      # fitted llf / REMLcrit / deviance_ml / AIC vs lmer (seen < 2e-11)
TOL_BETA = 1e-5           # fitted fixed effects vs lmer, norm-wise (seen 1.6e-6)
TOL_VARCOMP = 1e-4        # fitted cov_re (norm-wise) and sigma2 vs lmer (seen 7.2e-5, 2.0e-6)
TOL_SE = 1e-4             # fitted fixed-effect SEs vs lmer, elementwise (seen 4.8e-5)
TOL_FD = 1e-6             # exact gradient vs central differences
TOL_INVARIANCE = 1e-8     # refits of the same data in another row order / labelling
TIME_LIMIT = 0.1          # seconds per HSB random-slope fit (lmer: 0.13-0.18 s)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "mlglm" / "datasets"
REF = HERE / "reference"

MODELS = ["null_reml", "null_ml", "meanses_reml", "meanses_ml",
          "slope_reml", "slope_ml", "full_reml", "full_ml"]


# ---------------------------------------------------------------------------
# Data and reference fits
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hsb():
    """The HSB columns, with school as integer codes in order of first appearance."""
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(DATA / "hsb.csv")
    codes, _ = pd.factorize(df["school"])
    return {"y": df["mAch"].to_numpy(float), "cses": df["cses"].to_numpy(float),
            "meanses": df["meanses"].to_numpy(float),
            # sector treatment-coded with reference "Public" (references_lmm.R sets the levels)
            "catholic": (df["sector"] == "Catholic").to_numpy(float),
            "group": codes.astype(np.intp)}


def design(hsb, name):
    """X and Z of the formulas in references_lmm.R, columns in lme4's order.

    null:    mAch ~ 1 + (1 | school)
    meanses: mAch ~ meanses + (1 | school)
    slope:   mAch ~ cses + (1 + cses | school)
    full:    mAch ~ meanses * cses + sector * cses + (1 + cses | school), X columns
             (Intercept), meanses, cses, sectorCatholic, meanses:cses, cses:sectorCatholic
    """
    one, cses, ms, cath = np.ones_like(hsb["y"]), hsb["cses"], hsb["meanses"], hsb["catholic"]
    if name == "null":
        return one[:, None], one[:, None]
    if name == "meanses":
        return np.column_stack([one, ms]), one[:, None]
    Z = np.column_stack([one, cses])
    if name == "slope":
        return Z, Z
    return np.column_stack([one, ms, cses, cath, ms * cses, cses * cath]), Z


@pytest.fixture(scope="module")
def lmer():
    with open(REF / "lmm_hsb.json") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def fits(hsb):
    """Our fits of the eight models, done once: key -> (LMMStats, LMMFit)."""
    out = {}
    for key in MODELS:
        name, method = key.split("_")
        X, Z = design(hsb, name)
        stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
        out[key] = stats, lmm_fit(None, None, None, None, reml=method == "reml", stats=stats)
    return out


def lmer_theta(r):
    """theta of an lmer fit: Lambda = chol(VarCorr / sigma^2), column-major lower triangle."""
    return theta_from_Sigma(np.array(r["cov_re"], dtype=float) / r["sigma2"])


def _aic(fit):
    """lme4's AIC: -2 logLik + 2 df, df = fixed effects + theta + sigma."""
    return -2.0 * fit.llf + 2.0 * fit.n_params


def rel_err(got, want):
    return np.max(np.abs(np.asarray(got) - np.asarray(want)) / np.abs(want))


def normwise_rel_err(got, want):
    got, want = np.asarray(got, float), np.asarray(want, float)
    return np.max(np.abs(got - want)) / np.max(np.abs(want))


def test_reference_file_is_the_shared_one():
    """tests/reference/lmm_hsb.json is the output of references_lmm.R (spot values)."""
    shared = Path("/work/shared/reference/lmm_hsb.json")
    with open(REF / "lmm_hsb.json") as fh:
        ref = json.load(fh)
    assert sorted(ref) == sorted(MODELS)
    assert ref["null_reml"]["reml_criterion"] == 47116.7934835494  # REMLcrit(null REML fit)
    if shared.exists():
        with open(shared) as fh:
            assert json.load(fh) == ref


# ---------------------------------------------------------------------------
# The criterion and everything derived from it at lme4's own estimates
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", MODELS)
def test_criterion_at_lmer_estimates(hsb, lmer, key):
    """profiled_deviance at lmer's theta = lmer's -2 logLik (REMLcrit for REML fits),
    and the ML deviance there = deviance(m, REML = FALSE); JSON key ``key``."""
    r = lmer[key]
    name, method = key.split("_")
    X, Z = design(hsb, name)
    stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
    theta = lmer_theta(r)
    reml = method == "reml"
    crit = profiled_deviance(theta, stats, reml=reml)
    assert crit == pytest.approx(-2.0 * r["loglik"], rel=TOL_AT_REFERENCE)
    if reml:
        assert crit == pytest.approx(r["reml_criterion"], rel=TOL_AT_REFERENCE)
    assert profiled_deviance(theta, stats, reml=False) == pytest.approx(r["deviance_ml"],
                                                                         rel=TOL_AT_REFERENCE)


@pytest.mark.parametrize("key", MODELS)
def test_estimates_at_lmer_theta(hsb, lmer, key):
    """At lmer's theta, beta, vcov, sigma2, VarCorr, AIC are lmer's (JSON key ``key``):
    the formulas are lme4's to rounding (seen <= 4e-13), whatever the optimiser does."""
    r = lmer[key]
    name, method = key.split("_")
    X, Z = design(hsb, name)
    fit = lmm_evaluate(lmer_theta(r), lmm_stats(hsb["y"], X, Z, hsb["group"]),
                       reml=method == "reml")
    assert rel_err(fit.beta, list(r["fixef"].values())) < TOL_AT_REFERENCE
    assert rel_err(np.sqrt(np.diag(fit.cov_beta)), list(r["se"].values())) < TOL_AT_REFERENCE
    assert rel_err(fit.dispersion, r["sigma2"]) < TOL_AT_REFERENCE
    assert rel_err(fit.Sigmas[0], r["cov_re"]) < TOL_AT_REFERENCE
    assert rel_err(_aic(fit), r["aic"]) < TOL_AT_REFERENCE


# ---------------------------------------------------------------------------
# The fits
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("key", MODELS)
def test_fit_reproduces_lmer(fits, lmer, key):
    """Our fit vs lmer's (JSON key ``key``): logLik, REMLcrit, deviance(m, REML=FALSE),
    AIC to 1e-6; sigma2 and SEs to 1e-4; fixef to 1e-5 and VarCorr to 1e-4 norm-wise.

    Fixef and VarCorr are compared norm-wise (max |difference| / max |value|)
    because lmer's own optimum is not that precise elementwise in flat
    directions: for full_reml its slope variance 0.101044 differs from the
    optimum by 1.7e-3 relative (ours 0.101216) and meanses:cses by 1.8e-5, but
    its REMLcrit is 8.6e-7 *above* ours (test_fit_is_at_least_as_good_as_lmer)
    and its gradient norm is 3e-2 against our 1e-13.
    """
    r = lmer[key]
    _, fit = fits[key]
    assert fit.llf == pytest.approx(r["loglik"], rel=TOL_CRITERION)
    if (fit.method == "reml"):
        assert fit.reml_criterion == pytest.approx(r["reml_criterion"], rel=TOL_CRITERION)
        assert fit.llf == -fit.reml_criterion / 2
    else:
        assert fit.reml_criterion is None
        assert fit.deviance_ml == pytest.approx(-2.0 * fit.llf, rel=1e-15)
    assert fit.deviance_ml == pytest.approx(r["deviance_ml"], rel=TOL_CRITERION)
    assert _aic(fit) == pytest.approx(r["aic"], rel=TOL_CRITERION)
    assert rel_err(fit.dispersion, r["sigma2"]) < TOL_VARCOMP
    assert rel_err(np.sqrt(np.diag(fit.cov_beta)), list(r["se"].values())) < TOL_SE
    assert normwise_rel_err(fit.beta, list(r["fixef"].values())) < TOL_BETA
    assert normwise_rel_err(fit.Sigmas[0], r["cov_re"]) < TOL_VARCOMP
    assert fit.converged and not fit.singular.any()
    assert fit.record.grad_norm < 1e-8


@pytest.mark.parametrize("key", MODELS)
def test_fit_is_at_least_as_good_as_lmer(fits, lmer, key):
    """Our criterion at our theta <= our criterion at lmer's theta (= lmer's REMLcrit or
    -2 logLik, JSON key ``key``), up to rounding; lmer's point is not stationary."""
    stats, fit = fits[key]
    at_lmer = profiled_deviance(lmer_theta(lmer[key]), stats, reml=(fit.method == "reml"))
    assert -2.0 * fit.llf <= at_lmer + 1e-12 * abs(at_lmer)


def test_fit_fields_are_consistent(fits, hsb):
    """Shapes, symmetry, read-only arrays, and the identities among the fields."""
    stats, fit = fits["full_reml"]
    G = int(hsb["group"].max()) + 1
    assert isinstance(fit, CoreFit) and isinstance(stats, LMMStats)
    assert fit.theta.shape == (3,) and fit.Lambdas[0].shape == (2, 2)
    assert fit.b[0].shape == (G, 2) and fit.b_cov[0].shape == (G, 2, 2)
    np.testing.assert_allclose(fit.Sigmas[0], fit.dispersion * fit.Lambdas[0] @ fit.Lambdas[0].T,
                               rtol=1e-14)
    # symmetric to rounding (a BLAS kernel may round the two triangles of L L' differently:
    # no bit-for-bit symmetry between two computations)
    np.testing.assert_allclose(fit.b_cov[0], np.swapaxes(fit.b_cov[0], 1, 2), rtol=0,
                               atol=1e-14 * np.abs(fit.b_cov[0]).max())
    assert np.all(np.linalg.eigvalsh(fit.b_cov[0]) > 0)
    assert fit.n_params == 6 + 3 + 1
    assert fit.n_params == fit.beta.size + fit.theta.size + 1
    assert 0 < fit.record.n_evals < 100
    for a in (fit.theta, fit.beta, fit.cov_beta, fit.b[0], stats.ZtZ):
        with pytest.raises(ValueError):
            a[(0,) * a.ndim] = 1.0
    with pytest.raises(AttributeError):
        fit.dispersion = 1.0


def test_random_slope_fits_are_fast(hsb, lmer):
    """Wall time of the HSB random-slope fits, data to LMMFit (best of 5 runs).

    lmer took 0.130-0.181 s (JSON ``seconds``); statsmodels MixedLM 5-30 s.
    Run with ``-s`` to see the times."""
    lines = []
    for key in ("slope_reml", "slope_ml", "full_reml", "full_ml"):
        name, method = key.split("_")
        X, Z = design(hsb, name)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            fit = lmm_fit(hsb["y"], X, Z, hsb["group"], reml=method == "reml")
            times.append(time.perf_counter() - t0)
        assert fit.converged
        lines.append(f"{key:10s} best {min(times) * 1e3:6.1f} ms  median "
                     f"{np.median(times) * 1e3:6.1f} ms  ({fit.record.n_evals} evaluations; "
                     f"lmer {lmer[key]['seconds']:.3f} s)")
        assert min(times) < TIME_LIMIT
    print("\nlmm_fit wall times on HSB (n = 7185, 160 schools):\n" + "\n".join(lines))


# ---------------------------------------------------------------------------
# The exact gradient
# ---------------------------------------------------------------------------

def central_differences(f, x, h=1e-5):
    g = np.empty_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("diagonal", [False, True])
@pytest.mark.parametrize("theta", [[0.3, 0.05, 0.1], [1.0, -0.4, 0.7], [0.2, 0.3, 0.0]])
def test_gradient_matches_central_differences_hsb(hsb, reml, diagonal, theta):
    """profiled_deviance_grad vs central differences, HSB full model, including a
    boundary point theta_22 = 0 (where the derivative in theta_22 is exactly 0)."""
    X, Z = design(hsb, "full")
    stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
    theta = np.array(theta)[[0, 2]] if diagonal else np.array(theta)
    f, g = profiled_deviance_grad(theta, stats, reml=reml, diagonal=diagonal)
    assert f == profiled_deviance(theta, stats, reml=reml, diagonal=diagonal)
    fd = central_differences(lambda t: profiled_deviance(t, stats, reml, diagonal), theta)
    np.testing.assert_allclose(g, fd, rtol=TOL_FD, atol=TOL_FD * np.max(np.abs(fd)))


def simulate(rng, G=30, q=3, p=3, sizes=(1, 12), Sigma=None):
    """Unbalanced, unsorted simulated data: returns y, X, Z, group (codes 0..G-1)."""
    n_j = rng.integers(sizes[0], sizes[1] + 1, size=G)
    group = rng.permutation(np.repeat(np.arange(G), n_j))
    n = group.size
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    Z = np.column_stack([np.ones(n), rng.normal(size=(n, q - 1))])
    if Sigma is None:
        A = np.tril(rng.normal(size=(q, q)))
        Sigma = A @ A.T
    b = rng.multivariate_normal(np.zeros(q), Sigma, size=G)
    y = X @ rng.normal(size=p) + np.sum(Z * b[group], axis=1) + rng.normal(size=n)
    return y, X, Z, group


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_matches_central_differences_simulated(reml):
    """q = 3 (six theta), unbalanced groups including singletons."""
    rng = np.random.default_rng(20261125)
    y, X, Z, group = simulate(rng)
    stats = lmm_stats(y, X, Z, group)
    for _ in range(3):
        theta = rng.normal(size=6)
        _, g = profiled_deviance_grad(theta, stats, reml=reml)
        fd = central_differences(lambda t: profiled_deviance(t, stats, reml), theta)
        np.testing.assert_allclose(g, fd, rtol=TOL_FD, atol=TOL_FD * np.max(np.abs(fd)))


# ---------------------------------------------------------------------------
# Against the dense oracle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reml", [True, False])
def test_criterion_and_estimates_match_dense_oracle(reml):
    """At arbitrary theta (one with a zero column), our criterion, beta, cov_beta, b and
    b_cov equal the dense per-group formulas with V_j = Z_j Sigma Z_j' + sigma2 I:
    oracle.reml_criterion_gaussian / marginal_loglik_gaussian, beta = (X'V^-1 X)^-1 X'V^-1 y,
    cov_beta = (X'V^-1 X)^-1, b_j = Sigma Z_j'V_j^-1 (y_j - X_j beta),
    b_cov_j = Sigma - Sigma Z_j'V_j^-1 Z_j Sigma."""
    rng = np.random.default_rng(7)
    y, X, Z, group = simulate(rng, G=25)
    stats = lmm_stats(y, X, Z, group)
    for theta in (np.array([0.8, -0.3, 0.5, 0.6, 0.2, 0.4]),
                  np.array([1.2, 0.4, -0.7, 0.0, 0.0, 0.3])):
        fit = lmm_evaluate(theta, stats, reml=reml)
        Sigma, s2 = fit.Sigmas[0], fit.dispersion
        if reml:
            crit, beta = oracle.reml_criterion_gaussian(y, X, Z, group, Sigma, s2, return_beta=True)
            assert fit.reml_criterion == pytest.approx(crit, rel=TOL_IDENTITY)
            np.testing.assert_allclose(fit.beta, beta, rtol=TOL_IDENTITY)
        else:
            ll = oracle.marginal_loglik_gaussian(y, X, Z, group, fit.beta, Sigma, s2)
            assert fit.llf == pytest.approx(ll, rel=TOL_IDENTITY)
        XtVX = np.zeros((X.shape[1],) * 2)
        XtVy = np.zeros(X.shape[1])
        for j in range(stats.n_groups):
            r = group == j
            V = Z[r] @ Sigma @ Z[r].T + s2 * np.eye(r.sum())
            XtVX += X[r].T @ np.linalg.solve(V, X[r])
            XtVy += X[r].T @ np.linalg.solve(V, y[r])
        beta = np.linalg.solve(XtVX, XtVy)
        np.testing.assert_allclose(fit.beta, beta, rtol=TOL_IDENTITY)
        np.testing.assert_allclose(fit.cov_beta, np.linalg.inv(XtVX), rtol=1e-9)
        for j in range(stats.n_groups):
            r = group == j
            V = Z[r] @ Sigma @ Z[r].T + s2 * np.eye(r.sum())
            SZV = Sigma @ Z[r].T @ np.linalg.inv(V)
            np.testing.assert_allclose(fit.b[0][j], SZV @ (y[r] - X[r] @ beta),
                                       rtol=1e-9, atol=1e-12 * np.abs(fit.b[0]).max())
            np.testing.assert_allclose(fit.b_cov[0][j], Sigma - SZV @ Z[r] @ Sigma,
                                       rtol=1e-9, atol=1e-12 * np.abs(Sigma).max())


def test_ml_criterion_is_profiled_maximum_of_dense_loglik():
    """-deviance/2 is the maximum over (beta, sigma2) at fixed theta: perturbing beta or
    sigma2 (Sigma = sigma2 Lambda Lambda' moving with it) lowers the oracle's log-lik."""
    rng = np.random.default_rng(11)
    y, X, Z, group = simulate(rng, G=20, q=2, p=2)
    stats = lmm_stats(y, X, Z, group)
    fit = lmm_evaluate(np.array([0.7, 0.2, 0.4]), stats, reml=False)
    LL = fit.Lambdas[0] @ fit.Lambdas[0].T

    def ll(beta, s2):
        return oracle.marginal_loglik_gaussian(y, X, Z, group, beta, s2 * LL, s2)

    best = ll(fit.beta, fit.dispersion)
    assert best == pytest.approx(fit.llf, rel=TOL_IDENTITY)
    for d in (1e-3, -1e-3):
        assert ll(fit.beta + d, fit.dispersion) < best
        assert ll(fit.beta, fit.dispersion * (1 + d)) < best


# ---------------------------------------------------------------------------
# Invariances and reparametrisations
# ---------------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), reml=st.booleans())
def test_invariant_to_row_order_and_group_labels(hsb, seed, reml):
    """Permuting the rows and relabelling the schools changes nothing but the order of b."""
    rng = np.random.default_rng(seed)
    X, Z = design(hsb, "full")
    y, g = hsb["y"], hsb["group"]
    G = int(g.max()) + 1
    rows, labels = rng.permutation(y.size), rng.permutation(G)
    ref = lmm_fit(y, X, Z, g, reml=reml)
    got = lmm_fit(y[rows], X[rows], Z[rows], labels[g[rows]], reml=reml)
    assert got.llf == pytest.approx(ref.llf, rel=1e-12)
    np.testing.assert_allclose(got.theta, ref.theta, rtol=TOL_INVARIANCE)
    np.testing.assert_allclose(got.beta, ref.beta, rtol=TOL_INVARIANCE)
    np.testing.assert_allclose(got.b[0][labels], ref.b[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got.b_cov[0][labels], ref.b_cov[0], rtol=1e-6)


def test_location_shift_of_y(hsb):
    """y + 1e6 + 1e4 cses: the same fit with the intercept and cses slope shifted.

    The statistics are taken of the OLS residual, so r2 = y'y - |c_u|^2 - |c_beta|^2
    does not cancel catastrophically (y'y would be ~1e16 against r2 ~ 3e5)."""
    X, Z = design(hsb, "slope")
    ref = lmm_fit(hsb["y"], X, Z, hsb["group"])
    got = lmm_fit(hsb["y"] + 1e6 + 1e4 * hsb["cses"], X, Z, hsb["group"])
    assert got.reml_criterion == pytest.approx(ref.reml_criterion, rel=1e-12)
    np.testing.assert_allclose(got.theta, ref.theta, rtol=1e-7)
    np.testing.assert_allclose(got.beta - [1e6, 1e4], ref.beta, rtol=1e-7)


def test_sign_of_lambda_columns_does_not_matter(hsb):
    """Flipping a column of Lambda leaves Lambda Lambda' and hence the criterion unchanged
    (what lets the optimiser run without bounds, CovPattern.canonical)."""
    X, Z = design(hsb, "full")
    stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
    theta = np.array([0.3, 0.05, 0.1])
    for flipped in ([-0.3, -0.05, 0.1], [0.3, 0.05, -0.1], [-0.3, -0.05, -0.1]):
        assert profiled_deviance(flipped, stats) == pytest.approx(profiled_deviance(theta, stats),
                                                                   rel=1e-13)
    np.testing.assert_array_equal(unstructured(2).canonical(np.array([-0.3, -0.05, -0.1])), theta)


# ---------------------------------------------------------------------------
# diagonal=True, boundaries, singular fits, robustness
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("reml", [True, False])
def test_diagonal(hsb, reml):
    """(1 + cses || school): the diagonal criterion is the full one with Lambda_21 = 0, its
    optimum is stationary in the diagonal only, and it is >= the unstructured optimum."""
    X, Z = design(hsb, "full")
    stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
    diag = lmm_fit(None, None, None, None, reml=reml, diagonal=True, stats=stats)
    full = lmm_fit(None, None, None, None, reml=reml, stats=stats)
    t1, t2 = diag.theta
    embedded = np.array([t1, 0.0, t2])
    assert profiled_deviance(diag.theta, stats, reml, diagonal=True) == pytest.approx(
        profiled_deviance(embedded, stats, reml), rel=TOL_IDENTITY)   # two code paths
    _, g = profiled_deviance_grad(embedded, stats, reml)
    assert abs(g[0]) < 1e-8 and abs(g[2]) < 1e-8 and abs(g[1]) > 1e-3
    assert diag.converged and diag.theta.shape == (2,)
    assert diag.Sigmas[0][0, 1] == 0.0
    assert -2 * diag.llf > -2 * full.llf
    # a bounded derivative-free search over the two diagonal elements finds nothing lower
    nm = scipy.optimize.minimize(lambda t: profiled_deviance(t, stats, reml, diagonal=True),
                                 [1.0, 1.0], method="Nelder-Mead", bounds=[(0, None)] * 2,
                                 options={"xatol": 1e-10, "fatol": 1e-10})
    assert -2 * diag.llf <= nm.fun + 1e-12 * nm.fun


def test_q1_diagonal_is_the_same_model(hsb):
    X, Z = design(hsb, "meanses")
    a = lmm_fit(hsb["y"], X, Z, hsb["group"])
    b = lmm_fit(hsb["y"], X, Z, hsb["group"], diagonal=True)
    assert a.reml_criterion == pytest.approx(b.reml_criterion, rel=1e-14)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-9)


def test_zero_is_a_stationary_point_and_is_escaped(hsb):
    """For q = 1 the criterion is even in theta, so d/dtheta = 0 exactly at theta = 0.

    A line search can land there (from theta = 1 a first step of length 1 does);
    the second-order check moves off it.  meanses_ml: lmer's theta 0.25735."""
    X, Z = design(hsb, "meanses")
    stats = lmm_stats(hsb["y"], X, Z, hsb["group"])
    f0, g0 = profiled_deviance_grad([0.0], stats, reml=False)
    assert g0[0] == 0.0

    def fg(t):
        return profiled_deviance_grad(t, stats, reml=False)

    theta, message = lmm._minimise(np.array([0.0]), fg, gtol=1e-8)
    assert "restart" in message
    assert abs(theta[0]) == pytest.approx(0.25735016, rel=1e-6)
    fit = lmm_fit(None, None, None, None, reml=False, theta0=[0.0], stats=stats)
    assert fit.theta[0] == pytest.approx(0.25735016, rel=1e-6) and fit.converged


def test_singular_fit():
    """No slope variance in the data-generating model: the fit ends on the boundary
    (Lambda_22 ~ 0), is flagged singular, converged, and beats a bounded Nelder-Mead."""
    rng = np.random.default_rng(3)
    y, X, Z, group = simulate(rng, G=40, q=2, p=2, sizes=(3, 10),
                              Sigma=np.array([[1.0, 0.0], [0.0, 0.0]]))
    stats = lmm_stats(y, X, Z, group)
    fit = lmm_fit(None, None, None, None, stats=stats)
    assert fit.singular.any() and fit.converged
    assert fit.theta[0] > 0.1 and 0 <= fit.theta[2] < lmm.SINGULAR_TOL
    nm = scipy.optimize.minimize(lambda t: profiled_deviance(t, stats), [1.0, 0.0, 1.0],
                                 method="Nelder-Mead", bounds=[(0, None), (None, None), (0, None)],
                                 options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 20000})
    assert fit.reml_criterion <= nm.fun + 1e-10 * abs(nm.fun)


def test_robust_on_random_problems():
    """24 random problems (q = 1..3, REML/ML, diagonal or not, some singular truths,
    y far from 0): every fit converges and is no worse than the best of two bounded
    Nelder-Mead searches.  (700 such problems were run while developing: all passed.)"""
    rng = np.random.default_rng(2026)
    for case in range(24):
        q, p, G = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(5, 50))
        A = np.tril(rng.normal(size=(q, q)) * rng.choice([0.0, 0.3, 1.0, 3.0], size=(q, q)))
        if case % 3 == 0:
            A[-1, -1] = 0.0
        y, X, Z, group = simulate(rng, G=G, q=q, p=p, sizes=(2, 14), Sigma=A @ A.T)
        y = y + 100 * rng.random()
        reml, diagonal = bool(case % 2), case % 5 == 0
        stats = lmm_stats(y, X, Z, group, n_groups=G)
        fit = lmm_fit(None, None, None, None, reml=reml, diagonal=diagonal, stats=stats)
        assert fit.converged, (case, fit.record.message, fit.record.grad_norm)
        lower = theta_lower_bounds(q, diagonal)
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        best = np.inf
        for start in (np.where(np.isfinite(lower), 1.0, 0.0),
                      np.abs(rng.normal(size=n_theta(q, diagonal)))):
            nm = scipy.optimize.minimize(
                lambda t: profiled_deviance(t, stats, reml, diagonal), start,
                method="Nelder-Mead", bounds=bounds,
                options={"xatol": 1e-10, "fatol": 1e-12, "maxfev": 20000})
            best = min(best, nm.fun)
        assert -2 * fit.llf <= best + 1e-9 * abs(best), case


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def test_stats_reuse_and_empty_groups(hsb):
    """A precomputed LMMStats gives the same fit; an extra empty group changes nothing."""
    X, Z = design(hsb, "slope")
    y, g = hsb["y"], hsb["group"]
    a = lmm_fit(y, X, Z, g)
    stats = lmm_stats(y, X, Z, g, n_groups=int(g.max()) + 2)
    b = lmm_fit(None, None, None, None, stats=stats)
    assert stats.ZtZ.shape == (161, 2, 2) and not stats.ZtZ[-1].any()
    assert b.reml_criterion == pytest.approx(a.reml_criterion, rel=1e-13)
    np.testing.assert_allclose(b.b[0][-1], 0.0)


def test_no_fixed_effects():
    """y ~ 0 + (1 | g) (p = 0): REML and ML coincide; the llf is the dense oracle's."""
    rng = np.random.default_rng(5)
    y, _, Z, group = simulate(rng, G=12, q=1, p=1)
    X = np.zeros((y.size, 0))
    reml = lmm_fit(y, X, Z, group)
    ml = lmm_fit(y, X, Z, group, reml=False)
    assert reml.llf == pytest.approx(ml.llf, rel=1e-13) and reml.beta.shape == (0,)
    ll = oracle.marginal_loglik_gaussian(y, X, Z, group, np.zeros(0), ml.Sigmas[0], ml.dispersion)
    assert ml.llf == pytest.approx(ll, rel=TOL_IDENTITY)


def test_bad_inputs(hsb):
    X, Z = design(hsb, "slope")
    y, g = hsb["y"], hsb["group"]
    stats = lmm_stats(y, X, Z, g)
    with pytest.raises(ValueError, match="theta must have 3"):
        profiled_deviance([1.0, 1.0], stats)
    with pytest.raises(ValueError, match="< n_groups"):
        lmm_stats(y, X, Z, g, n_groups=10)
    with pytest.raises(ValueError, match=">= 0"):
        lmm_stats(y, X, Z, g - 1)
    with pytest.raises(ValueError, match="integer"):
        lmm_stats(y, X, Z, g + 0.5)
    with pytest.raises(ValueError, match="rows"):
        lmm_stats(y, X[:-1], Z, g)
    with pytest.raises(ValueError, match="non-finite"):
        lmm_stats(np.where(np.arange(y.size) == 3, np.nan, y), X, Z, g)
    with pytest.raises(np.linalg.LinAlgError, match="rank deficient"):
        lmm_stats(y, np.column_stack([X, X[:, 1]]), Z, g)


def test_rank_deficiency_found_by_tolerance_not_by_a_failed_factorisation(hsb):
    """The core's rank check is a relative threshold on an orthogonal factorisation
    (lmm.rank_deficient_columns), so its outcome does not depend on the CPU: before, it
    relied on X'X's solve failing, which for a duplicated column succeeds or fails with
    the last bit of rounding (test_bad_inputs failed on an AMD EPYC). Exact linear
    combinations whose rounding lets a solve succeed are refused too, naming the column;
    collinear-but-full-rank designs are not."""
    X, Z = design(hsb, "slope")
    y, g = hsb["y"], hsb["group"]
    rng = np.random.default_rng(0)
    w = rng.normal(size=y.size)
    combos = {
        "duplicate": np.column_stack([X, X[:, 1]]),
        "multiple": np.column_stack([X, 3.0 * X[:, 1]]),
        "combination": np.column_stack([X, 0.1 * X[:, 0] + 3.0 * X[:, 1]]),
        "combination of later columns": np.column_stack([X, w, 0.7 * w - 0.3 * X[:, 1]]),
    }
    for name, Xb in combos.items():
        assert lmm.rank_deficient_columns(Xb).tolist() == [Xb.shape[1] - 1], name
        with pytest.raises(np.linalg.LinAlgError, match=f"column.s. {Xb.shape[1] - 1} are"):
            lmm_stats(y, Xb, Z, g)
    zero = np.column_stack([X, np.zeros(y.size)])
    assert lmm.rank_deficient_columns(zero).tolist() == [X.shape[1]]
    # full rank, however collinear: a calendar year and its square, uncentered
    year = 2000.0 + rng.integers(0, 21, size=y.size)
    near = np.column_stack([np.ones(y.size), year, year ** 2])
    assert lmm.rank_deficient_columns(near).size == 0
    assert lmm.rank_deficient_columns(X).size == 0
