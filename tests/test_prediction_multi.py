"""Standard errors of conditional predictions with several grouping factors.

Oracles, written plainly with dense matrices (nothing from mlglm.results.prediction):

* linear mixed models: Henderson's prediction error variance [x; zeta]' C [x; zeta],
  C the inverse of the mixed-model equations [[X'X, X'Z], [Z'X, Z'Z + sigma^2 G^{-1}]]
  times sigma^2 (Henderson 1975, Biometrics 31:423-447), at the fitted sigma^2 and G;
* GLMMs: the same formula as one factor has (mlglm.results.prediction's module notes) with the
  dense P = (Z'WZ + G^{-1})^{-1}, D = -P Z'WX and V the fixed-effects block of
  cov_params(), W the working weights at the conditional modes.

With one grouping factor the sparse path must reproduce the one-factor code exactly.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.linalg import block_diag

import mlglm
from mlglm.results.prediction import working_weights
from mlglm.results.prediction import conditional_error_terms

RTOL = 1e-8     # dense inverse vs sparse solves, both in double precision


def dense_design(model):
    """(Z (n x n_b) over every term's levels, G = Var(b) block diagonal)."""
    blocks, Gs = [], []
    for t, S in zip(model.re_terms, model._fitted_Sigmas):
        Zk = np.zeros((t.codes.size, t.n_levels * t.q))
        for i, c in enumerate(t.codes):
            Zk[i, c * t.q:(c + 1) * t.q] = t.Z[i]
        blocks.append(Zk)
        Gs.append(np.kron(np.eye(t.n_levels), S))
    return np.hstack(blocks), block_diag(*Gs)


def se_linear(res, exog=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = res.get_prediction(exog, which="linear", conditional=True, **kw)
    return np.asarray(pr.se_mean)


def attach(res):
    res.model._fitted_Sigmas = res.outcome.Sigmas
    return res


def test_lmm_crossed_equals_henderson():
    """Penicillin, (1 | plate) + (1 | sample), REML: every row's prediction error
    variance from the dense inverse of the mixed-model equations."""
    df = mlglm.datasets.load_penicillin()
    res = attach(mlglm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", df))
    X = np.asarray(res.model.exog, float)
    Z, G = dense_design(res.model)
    s2 = res.scale
    M = np.block([[X.T @ X, X.T @ Z], [Z.T @ X, Z.T @ Z + s2 * np.linalg.inv(G)]])
    C = s2 * np.linalg.inv(M)
    XZ = np.hstack([X, Z])
    pev = np.einsum("ij,jk,ik->i", XZ, C, XZ)
    np.testing.assert_allclose(se_linear(res) ** 2, pev, rtol=RTOL)
    # crossed levels raise the variance above either factor's own conditional variance
    assert np.all(pev > 0)


def _glmm_oracle(res, X_new=None, Z_new=None):
    model = res.model
    X = np.asarray(model.exog, float)
    Z, G = dense_design(model)
    w = working_weights(res)
    P = np.linalg.inv(Z.T @ (Z * w[:, None]) + np.linalg.inv(G))
    D = -P @ Z.T @ (X * w[:, None])
    p = model.k_fe
    V = np.asarray(res.cov_params(), float)[:p, :p]
    Xn = X if X_new is None else X_new
    Zn = Z if Z_new is None else Z_new
    g = Xn + Zn @ D
    return np.einsum("ij,jk,ik->i", g, V, g) + np.einsum("ij,jk,ik->i", Zn, P, Zn)


def test_glmm_crossed_binomial_equals_the_dense_formula():
    rng = np.random.default_rng(21)
    a, b = rng.integers(0, 30, 900), rng.integers(0, 12, 900)
    x = rng.normal(size=900)
    eta = -0.3 + 0.6 * x + rng.normal(0, 0.9, 30)[a] + rng.normal(0, 0.6, 12)[b]
    df = pd.DataFrame({"y": rng.random(900) < 1 / (1 + np.exp(-eta)), "x": x, "a": a, "b": b})
    res = attach(mlglm.glmer("y ~ x + (1 | a) + (1 | b)", df.assign(y=df.y.astype(int))))
    np.testing.assert_allclose(se_linear(res) ** 2, _glmm_oracle(res), rtol=RTOL)


def test_nested_poisson_three_factors_and_new_levels():
    """grouseticks, (1 | BROOD) + (1 | INDEX) + (1 | LOCATION); new data with a level of
    LOCATION the fit never saw (allow_new_levels): that factor's part drops out of both
    the prediction and its variance."""
    df = mlglm.datasets.load_grouseticks()
    f = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
    res = attach(mlglm.glmer(f, df, family="poisson"))
    np.testing.assert_allclose(se_linear(res) ** 2, _glmm_oracle(res), rtol=RTOL)
    new = df.iloc[:5].copy()
    new["LOCATION"] = new["LOCATION"].astype(str)
    new.loc[new.index[:2], "LOCATION"] = "nowhere"
    se = se_linear(res, new, allow_new_levels=True)
    Z, _ = dense_design(res.model)
    Zn = Z[:5].copy()
    loc = [t.name for t in res.model.re_terms].index("LOCATION")
    start = sum(t.n_levels * t.q for t in res.model.re_terms[:loc])
    width = res.model.re_terms[loc].n_levels
    Zn[:2, start:start + width] = 0.0
    oracle = _glmm_oracle(res, np.asarray(res.model.exog, float)[:5], Zn)
    np.testing.assert_allclose(se ** 2, oracle, rtol=RTOL)


def test_one_factor_sparse_path_equals_the_one_factor_code():
    """Contraception random slope: the joint sparse formula with one term is the
    one-factor code's block formula."""
    df = mlglm.datasets.load_contraception()
    res = mlglm.glmer("y ~ age + urban + (1 + urban | district)", df, nagq=1)
    model = res.model
    X = np.asarray(model.exog, float)
    grad, var_re = conditional_error_terms(res, X, [t.Z for t in model.re_terms],
                                           [t.codes for t in model.re_terms])
    p = model.k_fe
    V = np.asarray(res.cov_params(), float)[:p, :p]
    np.testing.assert_allclose(np.einsum("ij,jk,ik->i", grad, V, grad) + var_re,
                               se_linear(res) ** 2, rtol=RTOL)


def test_prediction_frame_has_intervals():
    df = mlglm.datasets.load_penicillin()
    res = mlglm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
    frame = res.get_prediction(df.iloc[:3], conditional=True).summary_frame()
    assert list(frame.columns[:4]) == ["mean", "mean_se", "mean_ci_lower", "mean_ci_upper"]
    assert np.all(frame["mean_ci_lower"] < frame["mean"]) and np.all(frame["mean_se"] > 0)
