"""The public results API of DESIGN.md section 2, on every family.

Binomial logit (Bernoulli, Laplace), binomial probit (Bernoulli, AGHQ nagq 5), binomial
cloglog (two-column successes + failures), Poisson with exposure and Gaussian (REML):
every promised attribute exists, carries pandas labels and is consistent with the
others (aic/bic/deviance from llf, tvalues = params / bse, conf_int from bse, ...);
prediction, summary text and HTML, pickling, ``remove_data``, string hypotheses in
``t_test`` / ``wald_test``; the lme4-style and array front doors; ``n_trials``,
``subset`` and ``missing="drop"``.

No reference numbers from other engines here (those are in test_references.py).
"""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import special, stats

import mlglm
from mlglm import DataWarning, MixedGLMInputError


N_GROUPS = 40
RE_FACTOR = ((0.9, 0.0), (0.2, 0.6))      # lower Cholesky factor of the true cov_re


def make_data(seed=2, n_groups=N_GROUPS, sizes=(10, 40), factor=RE_FACTOR):
    """One data frame for every family: covariates x1 (normal), x2 (normal), c (three
    levels), group g (string labels); responses y (0/1), s/f and prop/n (binomial
    counts), count + expo (Poisson rates), score (Gaussian). Random intercept and
    slope on x1 with covariance factor @ factor'."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), rng.integers(sizes[0], sizes[1], size=n_groups))
    n = g.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["a", "b", "c"], size=n)
    b = rng.normal(size=(n_groups, 2)) @ np.array(factor).T
    eta = -0.2 + 0.6 * x1 - 0.3 * x2 + 0.4 * (c == "b") + b[g, 0] + b[g, 1] * x1
    trials = rng.integers(1, 8, size=n)
    s = rng.binomial(trials, special.expit(eta))
    expo = rng.uniform(0.5, 3.0, size=n)
    return pd.DataFrame({
        "y": rng.binomial(1, special.expit(eta)), "s": s, "f": trials - s, "n": trials,
        "prop": s / trials, "count": rng.poisson(expo * np.exp(eta)), "expo": expo,
        "score": 10 + 2 * eta + rng.normal(scale=1.5, size=n),
        "x1": x1, "x2": x2, "c": pd.Categorical(c), "g": [f"g{k:02d}" for k in g]})


@pytest.fixture(scope="module")
def df():
    return make_data()


FAMILIES = ["binomial-logit", "binomial-probit", "binomial-cloglog", "poisson", "gaussian"]


def build_model(df, family):
    common = dict(groups="g", re_formula="~x1")
    if family == "binomial-logit":
        return mlglm.MixedGLM.from_formula("y ~ x1 + x2 + c", df, family=sm.families.Binomial(),
                                           **common)
    if family == "binomial-probit":
        return mlglm.BinomialMixedGLM.from_formula(
            "y ~ x1 + x2 + c", df, family=sm.families.Binomial(sm.families.links.Probit()),
            **common)
    if family == "binomial-cloglog":
        return mlglm.MixedGLM.from_formula(
            "s + f ~ x1 + x2 + c", df, family=sm.families.Binomial(sm.families.links.CLogLog()),
            **common)
    if family == "poisson":
        return mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", df, exposure="expo",
                                                  **common)
    return mlglm.MixedGLM.from_formula("score ~ x1 + x2 + c", df, family=sm.families.Gaussian(),
                                       **common)


FIT_KW = {"binomial-probit": dict(method="aghq", nagq=5)}


@pytest.fixture(scope="module")
def fits(df):
    out = {}
    for fam in FAMILIES:
        model = build_model(df, fam)
        out[fam] = model.fit(**FIT_KW.get(fam, {}))
    return out


FE_NAMES = ["Intercept", "c[T.b]", "c[T.c]", "x1", "x2"]
RE_NAMES = ["g", "x1"]
VC_NAMES = ["g Var", "g x x1 Cov", "x1 Var"]


# ------------------------------------------------------------------ the attributes
@pytest.mark.parametrize("family", FAMILIES)
def test_labels_and_shapes(fits, family):
    res = fits[family]
    p, q = len(FE_NAMES), len(RE_NAMES)
    assert list(res.model.exog_names) == FE_NAMES
    assert list(res.model.data.exog_re_names) == RE_NAMES
    for name in ("params", "bse", "tvalues", "pvalues"):
        s = getattr(res, name)
        assert isinstance(s, pd.Series), name
        assert list(s.index) == FE_NAMES + VC_NAMES, name
    for name in ("fe_params", "bse_fe"):
        s = getattr(res, name)
        assert isinstance(s, pd.Series) and list(s.index) == FE_NAMES, name
    assert isinstance(res.bse_re, pd.Series) and list(res.bse_re.index) == VC_NAMES
    assert isinstance(res.cov_re, pd.DataFrame)
    assert list(res.cov_re.index) == list(res.cov_re.columns) == RE_NAMES
    cp = res.cov_params()
    assert isinstance(cp, pd.DataFrame) and cp.shape == (p + 3, p + 3)
    assert list(cp.index) == list(cp.columns) == FE_NAMES + VC_NAMES
    ci = res.conf_int()     # statsmodels' shape: one row per params entry, columns 0 and 1
    assert isinstance(ci, pd.DataFrame) and ci.shape == (p + 3, 2)
    assert list(ci.index) == FE_NAMES + VC_NAMES and list(ci.columns) == [0, 1]
    ci = res.intervals()    # natural parameters: fixed effects, 2 SDs, 1 correlation (+ sigma)
    assert isinstance(ci, pd.DataFrame) and ci.shape == (p + 3 + (res.model.family_name == "gaussian"), 4)
    assert list(ci.index[:p]) == FE_NAMES
    assert [n[:3] for n in ci.index[p:p + 3]] == ["sd(", "sd(", "cor"]
    assert res.nobs == len(res.model.endog) and res.n_groups == N_GROUPS
    assert isinstance(res.random_effects, dict) and len(res.random_effects) == N_GROUPS
    assert isinstance(res.random_effects_cov, dict) and len(res.random_effects_cov) == N_GROUPS
    assert q == res.model.q


@pytest.mark.parametrize("family", FAMILIES)
def test_values_are_consistent(fits, family):
    res = fits[family]
    p, k_vc = len(FE_NAMES), 3
    gaussian = family == "gaussian"
    assert res.converged
    assert np.isfinite(res.llf) and res.llf < 0
    k = p + k_vc + (1 if gaussian else 0)           # p + q(q+1)/2 (+ residual variance)
    assert res.aic == pytest.approx(-2 * res.llf + 2 * k, rel=1e-12)
    assert res.bic == pytest.approx(-2 * res.llf + np.log(res.nobs) * k, rel=1e-12)
    assert res.deviance == pytest.approx(-2 * res.llf, rel=1e-14)
    # params = (fe_params, vech(cov_re)) and cov_re is a covariance matrix
    S = np.asarray(res.cov_re)
    np.testing.assert_allclose(S, S.T)
    assert np.linalg.eigvalsh(S).min() > 0
    np.testing.assert_allclose(np.asarray(res.params)[:p], np.asarray(res.fe_params))
    np.testing.assert_allclose(np.asarray(res.params)[p:], S[np.tril_indices(2)])
    # standard errors, z statistics, p-values and intervals hang together
    cp = np.asarray(res.cov_params())
    np.testing.assert_allclose(cp[:p, :p], cp[:p, :p].T, rtol=1e-10, atol=1e-14)
    assert np.linalg.eigvalsh(cp[:p, :p]).min() > 0
    bse = np.asarray(res.bse)
    np.testing.assert_allclose(bse[:p], np.sqrt(np.diag(cp)[:p]), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.bse_fe), bse[:p], rtol=1e-12)
    assert np.all(np.isfinite(res.bse_fe)) and np.all(res.bse_fe > 0)
    z = np.asarray(res.tvalues)[:p]
    np.testing.assert_allclose(z, np.asarray(res.fe_params) / bse[:p], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(res.pvalues)[:p], 2 * stats.norm.sf(np.abs(z)),
                               rtol=1e-10)
    ci = np.asarray(res.intervals()[["lower", "upper"]])[:p]
    np.testing.assert_allclose(np.asarray(res.conf_int())[:p], ci, rtol=1e-12)
    crit = stats.norm.ppf(0.975)
    np.testing.assert_allclose(ci[:, 0], np.asarray(res.fe_params) - crit * bse[:p], rtol=1e-10)
    np.testing.assert_allclose(ci[:, 1], np.asarray(res.fe_params) + crit * bse[:p], rtol=1e-10)
    if gaussian:
        assert res.method == "reml" and res.nagq is None and res.scale > 0
    else:
        assert np.all(np.isfinite(res.bse_re)) and np.all(res.bse_re > 0)
        assert res.scale == 1.0
        assert res.method == ("aghq" if family == "binomial-probit" else "laplace")
        assert res.nagq == (5 if family == "binomial-probit" else 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_optimisation_record(fits, family):
    rec = fits[family].optim
    assert isinstance(rec.n_evals, (int, np.integer)) and rec.n_evals > 0
    assert np.isfinite(rec.grad_norm) and 0 <= rec.grad_norm < 1e-2
    assert isinstance(rec.message, str) and rec.message
    assert rec.converged is True or rec.converged == np.True_


@pytest.mark.parametrize("family", FAMILIES)
def test_random_effects(fits, family):
    res = fits[family]
    labels = sorted(res.model.group_labels)
    assert sorted(res.random_effects) == labels
    for g in labels[:5]:
        b = res.random_effects[g]
        assert isinstance(b, pd.Series) and list(b.index) == RE_NAMES
        V = res.random_effects_cov[g]
        assert isinstance(V, pd.DataFrame) and list(V.index) == list(V.columns) == RE_NAMES
        V = np.asarray(V)
        np.testing.assert_allclose(V, V.T, atol=1e-14)
        assert np.linalg.eigvalsh(V).min() > 0
        # the conditional variance is below the marginal one
        assert np.all(np.diag(V) < np.diag(np.asarray(res.cov_re)))
    B = np.array([res.random_effects[g] for g in labels])
    assert np.all(np.abs(B.mean(axis=0)) < 3 * np.sqrt(np.diag(np.asarray(res.cov_re)) / len(B)) + 0.1)


# -------------------------------------------------------------------- prediction
@pytest.mark.parametrize("family", FAMILIES)
def test_predict(df, fits, family):
    res = fits[family]
    model = res.model
    # in-sample: mean = inverse link(linear); conditional uses the group modes; the
    # default is the population level, as statsmodels' MixedLMResults.predict
    np.testing.assert_allclose(np.asarray(res.predict(which="linear")),
                               np.asarray(res.predict(which="linear", conditional=False)))
    lin_c = np.asarray(res.predict(which="linear", conditional=True))
    lin_m = np.asarray(res.predict(which="linear", conditional=False))
    assert lin_c.shape == lin_m.shape == (res.nobs,)
    X, Z = model.exog, model.exog_re
    codes = [sorted(model.group_labels).index(g) for g in df["g"]]
    B = np.array([res.random_effects[g] for g in sorted(model.group_labels)])
    off = np.log(df["expo"].to_numpy()) if family == "poisson" else 0.0
    np.testing.assert_allclose(lin_m, X @ np.asarray(res.fe_params) + off, rtol=1e-12)
    np.testing.assert_allclose(lin_c, lin_m + np.einsum("nq,nq->n", Z, B[codes]), rtol=1e-10,
                               atol=1e-12)
    mean_c = np.asarray(res.predict(which="mean", conditional=True))
    if family == "gaussian":
        np.testing.assert_allclose(mean_c, lin_c)
    else:
        link = model.family.link
        np.testing.assert_allclose(mean_c, link.inverse(lin_c), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.fittedvalues), mean_c, rtol=1e-12)
    # new data frame with a seen and an unseen group
    new = df.iloc[[0, 1, 2]].copy()
    new["g"] = [df["g"].iloc[0], "never-seen", df["g"].iloc[2]]
    kw = {"exposure": new["expo"].to_numpy()} if family == "poisson" else {}
    lc = np.asarray(res.predict(new, which="linear", conditional=True, allow_new_levels=True,
                                **kw))
    lm = np.asarray(res.predict(new, which="linear", conditional=False, **kw))
    np.testing.assert_allclose(lm, lin_m[:3], rtol=1e-12)
    assert lc[1] == pytest.approx(lm[1], rel=1e-14)          # unseen group: b = 0
    np.testing.assert_allclose(lc[[0, 2]], lin_c[[0, 2]], rtol=1e-12)
    mm = np.asarray(res.predict(new, which="mean", conditional=False, **kw))
    if family != "gaussian":
        np.testing.assert_allclose(mm, model.family.link.inverse(lm), rtol=1e-12)
    with pytest.raises(ValueError):
        res.predict(new, which="variance")


# ------------------------------------------------------------------------- summary
def _group_sizes(res):
    return np.bincount(res.model.group_codes)


@pytest.mark.parametrize("family", FAMILIES)
def test_summary_text_and_html(fits, family):
    res = fits[family]
    text = str(res.summary())
    fam, link = {"binomial-logit": ("Binomial", "logit"), "binomial-probit": ("Binomial", "probit"),
                 "binomial-cloglog": ("Binomial", "cloglog"), "poisson": ("Poisson", "log"),
                 "gaussian": ("Gaussian", "identity")}[family]
    assert fam in text and link in text
    sizes = _group_sizes(res)
    assert f"{sizes.min()} / {sizes.mean():.1f} / {sizes.max()}" in text
    assert "Converged" in text and "Singular" in text
    assert str(res.nobs) in text and str(N_GROUPS) in text
    assert f"{res.llf:.4f}" in text
    for name in FE_NAMES:
        assert name in text
    if family == "binomial-probit":
        assert "AGHQ" in text and "nAGQ=5" in text
    elif family == "gaussian":
        assert "REML" in text and "Residual" in text
    else:
        assert "Laplace" in text
    html = res._repr_html_()
    assert isinstance(html, str) and "<table" in html and fam in html
    assert res.summary().as_html() == html or "<table" in res.summary().as_html()


# ---------------------------------------------------------- pickling, remove_data
@pytest.mark.parametrize("family", FAMILIES)
def test_pickle_round_trip(df, family):
    res = build_model(df, family).fit(**FIT_KW.get(family, {}))
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_series_equal(back.params, res.params)
    pd.testing.assert_series_equal(back.bse, res.bse)
    assert back.llf == res.llf and back.aic == res.aic
    np.testing.assert_allclose(np.asarray(back.predict()), np.asarray(res.predict()))
    assert str(back.summary()) == str(res.summary())
    res.remove_data()
    back = pickle.loads(pickle.dumps(res))
    pd.testing.assert_series_equal(back.params, res.params)
    assert back.llf == res.llf
    pd.testing.assert_series_equal(back.bse_fe, res.bse_fe)


def test_unpickling_at_the_top_level_of_a_script(tmp_path):
    """statsmodels re-parses the formula on loading and looked for frames above the top
    of the stack (AttributeError: 'NoneType' object has no attribute 'f_locals' for any
    formula when pickle.load runs at the top level of a script or python -c)."""
    import subprocess
    import sys
    path = tmp_path / "res.pkl"
    fit = ("import pickle, numpy as np, mlglm\n"
           "df = mlglm.datasets.load_contraception()\n"
           "r = mlglm.glmer('y ~ np.log(age + 40) + urban + (1 + urban | district)', df)\n"
           f"pickle.dump(r, open({str(path)!r}, 'wb'))\n"
           "print(repr(float(r.llf)))\n")
    load = (f"import pickle; r = pickle.load(open({str(path)!r}, 'rb')); "
            "import mlglm; df = mlglm.datasets.load_contraception(); "
            "print(repr(float(r.llf))); print(repr(float(r.predict(df.head(1)).iloc[0])))")
    script = tmp_path / "fit.py"
    script.write_text(fit)
    out1 = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert out1.returncode == 0, out1.stderr
    out2 = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert out2.returncode == 0, out2.stderr
    llf, pred = out2.stdout.split()
    assert llf == out1.stdout.strip() and 0 < float(pred) < 1


# ------------------------------------------------------- string hypotheses (Wald)
def test_t_test_and_wald_test_strings(reference_fit):
    """On the contraception random-slope fit: t_test("urban[T.Y] = 0") is the z statistic
    params / bse; wald_test with string hypotheses is the chi-square of R b."""
    res = reference_fit("contra_rs", 1)
    tt = res.t_test("urban[T.Y] = 0")
    z = res.fe_params["urban[T.Y]"] / res.bse_fe["urban[T.Y]"]
    assert float(np.squeeze(tt.tvalue)) == pytest.approx(z, rel=1e-10)
    assert float(np.squeeze(tt.pvalue)) == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-8)
    assert float(np.squeeze(tt.effect)) == pytest.approx(res.fe_params["urban[T.Y]"], rel=1e-12)
    # two hypotheses at once, one a contrast
    wt = res.wald_test("urban[T.Y] = 0, livch[T.1] = livch[T.2]", scalar=True)
    names = list(res.params.index)
    R = np.zeros((2, len(names)))
    R[0, names.index("urban[T.Y]")] = 1
    R[1, names.index("livch[T.1]")], R[1, names.index("livch[T.2]")] = 1, -1
    b = np.asarray(res.params)
    V = np.asarray(res.cov_params())
    chi2 = float(R @ b @ np.linalg.solve(R @ V @ R.T, R @ b))
    assert float(wt.statistic) == pytest.approx(chi2, rel=1e-8)
    assert float(wt.pvalue) == pytest.approx(stats.chi2.sf(chi2, 2), rel=1e-6)
    # a contrast as a t_test, and a list of strings
    tt2 = res.t_test("livch[T.1] - livch[T.2] = 0")
    se = np.sqrt(R[1] @ V @ R[1])
    assert float(np.squeeze(tt2.tvalue)) == pytest.approx(R[1] @ b / se, rel=1e-10)
    tt3 = res.t_test(["urban[T.Y] = 0", "age = 0"])
    assert np.asarray(tt3.tvalue).size == 2


# ----------------------------------------------------------------- front doors
def test_glmer_cbind_equals_two_column_formula(cbpp, reference_fit):
    res = mlglm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                      family="binomial")
    ref = reference_fit("cbpp_ri", 1)
    assert list(res.params.index) == list(ref.params.index)
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), atol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    assert np.all(res.model.n_trials == cbpp["size"].to_numpy())
    # the same through n_trials= with proportions
    prop = cbpp.assign(p=cbpp["incidence"] / cbpp["size"])
    res_p = mlglm.MixedGLM.from_formula("p ~ period", prop, groups="herd", n_trials="size",
                                        family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(np.asarray(res_p.params), np.asarray(ref.params), atol=1e-10)
    assert res_p.llf == pytest.approx(ref.llf, rel=1e-12)


def test_n_trials_proportions_equal_two_column_response(df, fits):
    res2 = fits["binomial-cloglog"]
    res_p = mlglm.MixedGLM.from_formula(
        "prop ~ x1 + x2 + c", df, groups="g", re_formula="~x1", n_trials="n",
        family=sm.families.Binomial(sm.families.links.CLogLog())).fit()
    np.testing.assert_allclose(np.asarray(res_p.params), np.asarray(res2.params), atol=1e-10)
    assert res_p.llf == pytest.approx(res2.llf, rel=1e-12)
    np.testing.assert_allclose(np.asarray(res_p.bse), np.asarray(res2.bse), rtol=1e-8)


def test_glmer_uncorrelated_random_effects(df):
    res = mlglm.glmer("y ~ x1 + x2 + c + (1 + x1 || g)", df, family="binomial")
    assert res.model.cov_struct == "diagonal"
    S = np.asarray(res.cov_re)
    assert S[0, 1] == 0.0 and S[1, 0] == 0.0 and np.all(np.diag(S) > 0)
    k = len(FE_NAMES) + 2                                 # p + q for uncorrelated effects
    assert res.aic == pytest.approx(-2 * res.llf + 2 * k, rel=1e-12)
    # the same model through the statsmodels door
    res2 = mlglm.MixedGLM.from_formula("y ~ x1 + x2 + c", df, groups="g", re_formula="~x1",
                                       cov_struct="diagonal",
                                       family=sm.families.Binomial()).fit()
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(res2.params), atol=1e-10)


def test_glmer_probit_by_name(df, fits):
    res = mlglm.glmer("y ~ x1 + x2 + c + (1 + x1 | g)", df, family="binomial", link="probit",
                      nagq=5)
    assert res.model.link_name == "probit"
    assert isinstance(res.model.family.link, sm.families.links.Probit)
    ref = fits["binomial-probit"]
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), atol=1e-10)
    assert res.method == "aghq" and res.nagq == 5


def test_lmer(df, fits):
    res = mlglm.lmer("score ~ x1 + x2 + c + (1 + x1 | g)", df)
    ref = fits["gaussian"]
    assert res.method == "reml"
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), rtol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    ml = mlglm.lmer("score ~ x1 + x2 + c + (1 + x1 | g)", df, reml=False)
    assert ml.method == "ml" and ml.llf > res.llf
    with pytest.raises(MixedGLMInputError):
        mlglm.glmer("score ~ x1 + (1 | g)", df, family="gaussian")


def test_family_subclasses(df, fits):
    res = mlglm.BinomialMixedGLM.from_formula("y ~ x1 + x2 + c", df, groups="g",
                                              re_formula="~x1").fit()
    ref = fits["binomial-logit"]
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), atol=1e-10)
    assert isinstance(res.model, mlglm.BinomialMixedGLM)
    with pytest.raises(MixedGLMInputError):
        mlglm.BinomialMixedGLM.from_formula("y ~ x1", df, groups="g",
                                            family=sm.families.Poisson())
    with pytest.raises(MixedGLMInputError):
        mlglm.PoissonMixedGLM.from_formula("count ~ x1", df, groups="g",
                                           family=sm.families.Binomial())
    assert isinstance(fits["poisson"].model, mlglm.PoissonMixedGLM)
    assert fits["poisson"].model.family_name == "poisson"


@pytest.mark.parametrize("family", ["binomial-logit", "poisson", "gaussian"])
def test_array_api_equals_formula(df, fits, family):
    ref = fits[family]
    m = ref.model
    fam = {"binomial-logit": sm.families.Binomial(), "poisson": sm.families.Poisson(),
           "gaussian": sm.families.Gaussian()}[family]
    kw = {"exposure": df["expo"].to_numpy()} if family == "poisson" else {}
    model = mlglm.MixedGLM(np.asarray(m.endog), np.asarray(m.exog), df["g"].to_numpy(),
                           exog_re=np.asarray(m.exog_re), family=fam, **kw)
    res = model.fit()
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), atol=1e-8)
    assert res.llf == pytest.approx(ref.llf, rel=1e-10)
    np.testing.assert_allclose(np.asarray(res.bse_fe), np.asarray(ref.bse_fe), rtol=1e-6)
    assert len(res.params) == len(ref.params)


# --------------------------------------------------------- subset=, missing="drop"
def test_subset(df):
    keep = (df["x2"] > -1.0).to_numpy()
    m_sub = mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", df, groups="g",
                                               re_formula="~x1", exposure="expo", subset=keep)
    m_ref = mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", df[keep], groups="g",
                                               re_formula="~x1", exposure="expo")
    assert m_sub.nobs == keep.sum()
    np.testing.assert_allclose(m_sub.offset, np.log(df["expo"].to_numpy()[keep]))
    r_sub, r_ref = m_sub.fit(), m_ref.fit()
    np.testing.assert_allclose(np.asarray(r_sub.params), np.asarray(r_ref.params), atol=1e-10)
    assert r_sub.llf == pytest.approx(r_ref.llf, rel=1e-12)


def test_missing_drop(df):
    """NaN in the response, a covariate and the exposure: the rows go (the same rows from
    every array, the offset included), a DataWarning gives the count, the summary shows
    it; with missing="none" (default) a clear error."""
    bad = df.copy()
    bad["x2"] = bad["x2"].astype(float)
    bad.loc[[3, 10], "x2"] = np.nan
    bad["count"] = bad["count"].astype(float)
    bad.loc[[20], "count"] = np.nan
    bad.loc[[31, 3], "expo"] = np.nan
    dropped = bad[["x2", "count", "expo"]].isna().any(axis=1)
    assert dropped.sum() == 4
    with pytest.raises(MixedGLMInputError, match="NaN"):
        mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", bad, groups="g",
                                           re_formula="~x1", exposure="expo")
    with pytest.warns(DataWarning, match="4 rows"):
        m = mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", bad, groups="g",
                                               re_formula="~x1", exposure="expo",
                                               missing="drop")
    clean = df[~dropped.to_numpy()]
    m_ref = mlglm.PoissonMixedGLM.from_formula("count ~ x1 + x2 + c", clean, groups="g",
                                               re_formula="~x1", exposure="expo")
    assert m.nobs == len(clean)
    np.testing.assert_allclose(m.offset, np.log(clean["expo"].to_numpy()))
    np.testing.assert_allclose(m.endog, m_ref.endog)
    res, ref = m.fit(), m_ref.fit()
    np.testing.assert_allclose(np.asarray(res.params), np.asarray(ref.params), atol=1e-10)
    assert res.llf == pytest.approx(ref.llf, rel=1e-12)
    text = str(res.summary())
    line = next(ln for ln in text.splitlines() if "Rows dropped (missing):" in ln)
    assert line.split("Rows dropped (missing):")[1].split()[0] == "4"


def test_missing_drop_array_api(df):
    endog = df["y"].to_numpy(float).copy()
    endog[[0, 5]] = np.nan
    X = np.column_stack([np.ones(len(df)), df["x1"]])
    offset = np.zeros(len(df))
    offset[7] = np.nan
    with pytest.warns(DataWarning, match="3 rows"):
        m = mlglm.MixedGLM(endog, X, df["g"].to_numpy(), family=sm.families.Binomial(),
                           offset=offset, missing="drop")
    assert m.nobs == len(df) - 3 and m.n_dropped == 3
    assert np.all(np.isfinite(m.offset)) and m.offset.shape == (len(df) - 3,)


# ------------------------------------------- robustness of the fit (regression test)
@pytest.mark.parametrize("seed", [7, 2024])
def test_poisson_random_slope_fit_does_not_abort(seed):
    """Regression test for a bug this suite found (fixed in commit 8d04143, "Modes: keep
    the warm start only where it beats u = 0"): on these ordinary simulated data sets
    (make_data(7), make_data(2024): 40 groups of 10-40 rows, Poisson counts with
    exposure, correlated random intercept and slope) ``fit()`` raised
    mlglm.core.engines.blockdiag.modes.ModeFailure ("conditional modes did not converge in 100 Newton
    steps") instead of returning a fit. The BFGS line search visited a point where a
    diagonal element of Lambda had flipped sign and grown (Lambda_11: -0.14 -> -3.69);
    the inner Newton iteration, warm-started from the modes of the previous point, began
    where exp(eta) overshot by ~e^50 and needed 104 steps (11 from u = 0). About 2 in 12
    seeds of make_data failed. See also
    test_invariances.py::test_objective_value_does_not_depend_on_warm_start."""
    df = make_data(seed)
    model = build_model(df, "poisson")
    res = model.fit()
    assert res.converged
