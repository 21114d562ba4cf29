"""Linear mixed models with several grouping factors: the fast criterion against a dense
oracle, exact gradients, invariances, the statsmodels spelling (vc_formula) and
statsmodels' MixedLM on its own variance-component test data."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats as sps

import mlglm
from mlglm.core.engines.crossed.blocked import BlockedStructure
from mlglm.core.spec.covpattern import CovBlock, CovPattern, diagonal, unstructured
from mlglm.core.engines.crossed.crossprod import CrossPlan
from mlglm.core.engines.lmm.blocked import (multi_gaussian_loglik, multi_lmm_evaluate, multi_lmm_stats)
from mlglm.core.spec.terms import ReTerm, ReTerms
from tolerances import GRAD_ATOL, GRAD_RTOL, INVARIANCE_LLF_RTOL, REFIT_PARAM_ATOL

ORACLE_TOL = 1e-10     # issue 11: dense oracle vs the fast criterion, relative


def _design(seed=0, n=160):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 16, n)                  # crossed with b
    b = rng.integers(0, 7, n)
    c = a // 4                                  # a nested in c
    x, z = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = (1 + x + rng.normal(size=16)[a] + 0.7 * rng.normal(size=7)[b]
         + 0.5 * rng.normal(size=4)[c] + rng.normal(size=n))
    one = np.ones((n, 1))
    structures = {
        "crossed": [ReTerm("a", a, 16, one, unstructured(1)), ReTerm("b", b, 7, one, unstructured(1))],
        "nested": [ReTerm("a", a, 16, one, unstructured(1)),
                   ReTerm("c", c, 4, np.column_stack([one[:, 0], z]), unstructured(2))],
        "mixed": [ReTerm("a", a, 16, np.column_stack([one[:, 0], z]), diagonal(2)),
                  ReTerm("b", b, 7, np.column_stack([one[:, 0], x]), unstructured(2)),
                  ReTerm("c", c, 4, np.column_stack([one[:, 0], z, x]),
                         CovPattern((CovBlock("unstructured", 1), CovBlock("tied", 2))))],
    }
    return y, X, structures, rng


def _dense_V(terms, Lambdas, sigma2):
    n = terms.n
    cols = []
    for t, L in zip(terms, Lambdas):
        Zf = np.zeros((n, t.n_levels * t.q))
        for r in range(t.q):
            Zf[np.arange(n), t.codes * t.q + r] = t.Z[:, r]
        cols.append(Zf @ np.kron(np.eye(t.n_levels), L))
    ZL = np.hstack(cols)
    return ZL @ ZL.T + sigma2 * np.eye(n)


@pytest.mark.parametrize("structure", ["crossed", "nested", "mixed"])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
@pytest.mark.parametrize("reml", [False, True])
def test_loglik_equals_dense_multivariate_normal(structure, mode, reml):
    y, X, structures, rng = _design()
    terms = ReTerms(structures[structure])
    stats = multi_lmm_stats(y, X, terms, plan=CrossPlan(terms, BlockedStructure(terms, mode=mode)))
    for _ in range(3):
        theta = rng.uniform(0.2, 1.5, terms.n_theta)
        sigma2 = rng.uniform(0.5, 2.0)
        Lams = [L * np.sqrt(sigma2) for L in terms.Lambdas(theta)]
        V = _dense_V(terms, Lams, sigma2)
        if reml:      # l_REML = l_ML at the GLS beta - log|X'V^-1 X| / 2 + p log(2 pi) / 2
            Vi = np.linalg.inv(V)
            XVX = X.T @ Vi @ X
            beta = np.linalg.solve(XVX, X.T @ Vi @ y)
            oracle = (sps.multivariate_normal(X @ beta, V).logpdf(y)
                      - 0.5 * np.linalg.slogdet(XVX)[1] + 0.5 * X.shape[1] * np.log(2 * np.pi))
        else:
            beta = rng.normal(size=X.shape[1])
            oracle = sps.multivariate_normal(X @ beta, V).logpdf(y)
        fast = multi_gaussian_loglik(beta, Lams, sigma2, stats, reml=reml)
        assert fast == pytest.approx(oracle, rel=ORACLE_TOL)
        # the profiled criterion is -2 l at the profiled beta and sigma^2
        ev = multi_lmm_evaluate(theta, stats, reml=reml)
        n, p = X.shape
        s2 = ev.r2 / (n - p if reml else n)
        Lp = [L * np.sqrt(s2) for L in terms.Lambdas(theta)]
        prof = multi_gaussian_loglik(ev.beta, Lp, s2, stats, reml=reml)
        assert -2 * prof == pytest.approx(ev.criterion, rel=ORACLE_TOL)


@pytest.mark.parametrize("structure", ["crossed", "nested", "mixed"])
@pytest.mark.parametrize("reml", [False, True])
def test_criterion_gradient_matches_central_differences(structure, reml):
    y, X, structures, rng = _design(1)
    terms = ReTerms(structures[structure])
    stats = multi_lmm_stats(y, X, terms)
    theta = rng.uniform(0.3, 1.2, terms.n_theta)
    g = multi_lmm_evaluate(theta, stats, reml).gradient
    h = 1e-5
    fd = np.array([(multi_lmm_evaluate(theta + h * e, stats, reml, False).criterion
                    - multi_lmm_evaluate(theta - h * e, stats, reml, False).criterion) / (2 * h)
                   for e in np.eye(theta.size)])
    assert np.all(np.abs(g - fd) <= GRAD_ATOL * 100 + GRAD_RTOL * 100 * np.abs(fd))


# ------------------------------------------------------------------ model-level invariances
def _three_level(seed=3):
    rng = np.random.default_rng(seed)
    school = np.repeat(np.arange(12), 24)
    klass = np.repeat(np.arange(48), 6)                 # 4 classes per school
    x = rng.normal(size=school.size)
    y = (2 + 0.5 * x + rng.normal(scale=1.0, size=12)[school]
         + rng.normal(scale=0.7, size=48)[klass] + rng.normal(size=school.size))
    return pd.DataFrame({"y": y, "x": x, "school": [f"s{s}" for s in school],
                         "class": [f"c{k % 4}" for k in klass]})


def _key(res):
    return res.llf, np.asarray(res.fe_params), {k: v.to_numpy() for k, v in res.cov_re.items()}


def test_nested_shorthand_equals_explicit_interaction():
    d = _three_level()
    a = mlglm.lmer("y ~ x + (1 | school/class)", d)
    b = mlglm.lmer("y ~ x + (1 | school) + (1 | school:class)", d)
    assert a.llf == pytest.approx(b.llf, rel=INVARIANCE_LLF_RTOL)
    assert np.allclose(a.fe_params, b.fe_params, atol=REFIT_PARAM_ATOL)
    assert set(a.cov_re) == {"school", "school:class"}


def test_row_order_labels_and_term_order_change_nothing():
    d = _three_level()
    base = mlglm.lmer("y ~ x + (1 | school/class)", d)
    perm = d.sample(frac=1.0, random_state=1)
    relabel = d.assign(school=d["school"].map(lambda s: "Z" + s[::-1]))
    other = mlglm.lmer("y ~ x + (1 | school:class) + (1 | school)", d)
    for res in (mlglm.lmer("y ~ x + (1 | school/class)", perm),
                mlglm.lmer("y ~ x + (1 | school/class)", relabel), other):
        assert res.llf == pytest.approx(base.llf, rel=INVARIANCE_LLF_RTOL)
        assert np.allclose(res.fe_params, base.fe_params, atol=REFIT_PARAM_ATOL)
        for k, v in base.cov_re.items():
            assert np.allclose(res.cov_re[k], v, atol=REFIT_PARAM_ATOL)


def test_vc_formula_model_equals_lme4_formula_model():
    d = _three_level()
    lme4 = mlglm.lmer("y ~ x + (1 | school/class)", d)
    sm_style = mlglm.MixedGLM.from_formula("y ~ x", d, groups="school", re_formula="1",
                                           vc_formula={"class": "0 + C(class)"},
                                           family=sm.families.Gaussian()).fit()
    assert sm_style.llf == pytest.approx(lme4.llf, rel=INVARIANCE_LLF_RTOL)
    assert np.allclose(sm_style.fe_params, lme4.fe_params, atol=REFIT_PARAM_ATOL)
    assert sm_style.cov_re["class"].iloc[0, 0] == pytest.approx(
        lme4.cov_re["school:class"].iloc[0, 0], abs=REFIT_PARAM_ATOL)
    # crossed, statsmodels' documented spelling: one constant group, a vc entry per factor
    p = mlglm.datasets.load_penicillin()
    a = mlglm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", p)
    b = mlglm.MixedGLM.from_formula("diameter ~ 1", p, groups=np.ones(len(p)),
                                    vc_formula={"plate": "0 + C(plate)",
                                                "sample": "0 + C(sample)"},
                                    family=sm.families.Gaussian()).fit()
    assert b.llf == pytest.approx(a.llf, rel=INVARIANCE_LLF_RTOL)
    assert b.cov_re["sample"].iloc[0, 0] == pytest.approx(a.cov_re["sample"].iloc[0, 0],
                                                          abs=REFIT_PARAM_ATOL)


# ------------------------------------------------------- statsmodels MixedLM's own test data
def _vcomp_2_data():
    """statsmodels/regression/tests/test_lme.py::TestMixedLM::test_vcomp_2, verbatim data."""
    rs = np.random.RandomState(6241)
    n = 1600
    exog = rs.normal(size=(n, 2))
    groups = np.kron(np.arange(n / 16), np.ones(16))
    errors = 0
    exog_re = rs.normal(size=(n, 2))
    slopes = rs.normal(size=(n // 16, 2))
    slopes = np.kron(slopes, np.ones((16, 1))) * exog_re
    errors += slopes.sum(1)
    subgroups1 = np.kron(np.arange(n / 4), np.ones(4))
    errors += np.kron(2 * rs.normal(size=n // 4), np.ones(4))
    subgroups2 = np.kron(np.arange(n / 2), np.ones(2))
    errors += np.kron(2 * rs.normal(size=n // 2), np.ones(2))
    errors += rs.normal(size=n)
    endog = exog.sum(1) + errors
    df = pd.DataFrame(index=range(n))
    df["y"], df["groups"] = endog, groups
    df["x1"], df["x2"] = exog[:, 0], exog[:, 1]
    df["z1"], df["z2"] = exog_re[:, 0], exog_re[:, 1]
    df["v1"], df["v2"] = subgroups1, subgroups2
    return df


def test_statsmodels_vcomp_case_equals_mixedlm_and_r():
    df = _vcomp_2_data()
    vcf = {"a": "0 + C(v1)", "b": "0 + C(v2)"}
    ours = mlglm.MixedGLM.from_formula("y ~ x1 + x2", df, groups="groups", re_formula="0+z1+z2",
                                       vc_formula=vcf, family=sm.families.Gaussian()).fit()
    from statsmodels.regression.mixed_linear_model import MixedLM
    theirs = MixedLM.from_formula("y ~ x1 + x2", groups="groups", re_formula="0+z1+z2",
                                  vc_formula=vcf, data=df).fit()
    assert theirs.converged
    assert ours.llf >= theirs.llf - 1e-6 * abs(theirs.llf)
    assert ours.llf == pytest.approx(theirs.llf, rel=1e-6)
    assert np.allclose(ours.fe_params, theirs.fe_params, rtol=1e-4)
    assert np.allclose(ours.cov_re["groups"], theirs.cov_re, rtol=1e-3)
    assert [ours.cov_re["a"].iloc[0, 0], ours.cov_re["b"].iloc[0, 0]] == pytest.approx(
        list(theirs.vcomp), rel=1e-3)
    # statsmodels' test compares with R: lmer(y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1)
    # + (1 | v2)): fixef 0.16527, 0.99911, 0.96217; VarCorr 1.244, 0.146, 1.371; 4.024, 3.997
    assert np.allclose(ours.fe_params, [0.16527, 0.99911, 0.96217], rtol=1e-4)
    assert np.allclose(ours.cov_re["groups"], [[1.244, 0.146], [0.146, 1.371]], rtol=1e-3)
    lme4 = mlglm.lmer("y ~ x1 + x2 + (0 + z1 + z2 | groups) + (1 | v1) + (1 | v2)", df)
    assert lme4.llf == pytest.approx(ours.llf, rel=INVARIANCE_LLF_RTOL)


def test_statsmodels_pastes_vcomp_case():
    """test_lme.py::test_pastes_vcomp: strength ~ 1, groups=batch, vc cask (R's numbers there)."""
    d = mlglm.datasets.load_pastes()
    ml = mlglm.MixedGLM.from_formula("strength ~ 1", d, groups="batch", re_formula="1",
                                     vc_formula={"cask": "0 + cask"},
                                     family=sm.families.Gaussian())
    reml = ml.fit()
    assert reml.fe_params.iloc[0] == pytest.approx(60.0533, rel=1e-3)
    assert reml.bse.iloc[0] == pytest.approx(0.6769, rel=1e-3)
    assert reml.cov_re["batch"].iloc[0, 0] == pytest.approx(1.657, rel=1e-3)
    assert reml.scale == pytest.approx(0.678, rel=1e-3)
    assert np.asarray(reml.fittedvalues)[:5] == pytest.approx([62.62866, 62.62866, 61.18663, 61.18663,
                                                   62.82094], rel=1e-4)
    fit_ml = ml.fit(reml=False)
    assert fit_ml.bse.iloc[0] == pytest.approx(0.642, rel=1e-3)
    assert fit_ml.cov_re["batch"].iloc[0, 0] == pytest.approx(1.199, rel=1e-3)
    assert fit_ml.aic == pytest.approx(255.9944, rel=1e-3)
    assert fit_ml.bic == pytest.approx(264.3718, rel=1e-3)


def test_singular_multi_fit_is_described_per_factor():
    """Chem97 with a correlated slope per LEA reaches the boundary: lmer (lme4 1.1-31)
    gives corr -1.000 for lea and logLik -70811.7081832, stopping just inside it with a
    convergence warning (max|grad| 0.0054); mlglm lands on it. The singular-fit
    warning and summary() name the factor."""
    df = mlglm.datasets.load_chem97()
    with pytest.warns(mlglm.SingularFitWarning, match="lea: gcsecnt is perfectly correlated"):
        r = mlglm.lmer("score ~ gcsecnt + (1 + gcsecnt | lea) + (1 | school)", df)
    text = str(r.summary())
    assert "Singular fit: lea: gcsecnt is perfectly correlated with Intercept" in text
    assert "lea:" in r.singular_description()


@pytest.mark.parametrize("reml", [True, False])
def test_block_sums_equal_the_whole_data_criterion(reml):
    """core.lmm_sums: the criterion, gradient and beta from blocks of whole top-level
    groups equal multi_lmm_evaluate on all rows at a fixed theta (exact algebra, so to
    rounding), for a random slope on the top factor and an intercept on the nested one."""
    from mlglm.core.engines.lmm.sums import block_effects, block_sums, combine
    from mlglm.core.spec.terms import ReTerm, ReTerms
    rng = np.random.default_rng(11)
    d = np.repeat(np.arange(12), 40)
    s = d * 4 + rng.integers(0, 4, d.size)
    x = rng.standard_normal(d.size)
    y = 1 + 0.5 * x + rng.normal(0, 0.6, 12)[d] + rng.normal(0, 0.4, 48)[s] + rng.normal(size=d.size)
    df = pd.DataFrame({"y": y, "x": x, "d": d, "s": s})
    prob = mlglm.lmer("y ~ x + (1 + x | d) + (1 | s)", df).model.problem
    yy, X, terms = prob.y - prob.offset, prob.X, prob.terms
    stats = multi_lmm_stats(yy, X, terms)
    theta = np.array([0.6, 0.1, 0.3, 0.4])
    ev = multi_lmm_evaluate(theta, stats, reml)
    top = terms[[t.name for t in terms].index("d")].codes
    parts, EE, blocks = [], 0.0, []
    for blk in np.array_split(np.arange(12), 3):
        rows = np.isin(top, blk)
        sub = []
        for t in terms:
            levels, codes = np.unique(t.codes[rows], return_inverse=True)
            sub.append(ReTerm(t.name, codes, len(levels), t.Z[rows], t.pattern, t.column_names))
        st = multi_lmm_stats(yy[rows], X[rows], ReTerms(tuple(sub)), beta_ols=stats.beta_ols)
        parts.append(block_sums(theta, st))
        EE = EE + st.EE
        blocks.append((st, [np.unique(t.codes[rows]) for t in terms]))
    c = combine(parts, EE, terms, yy.size, reml)
    assert c.criterion == pytest.approx(ev.criterion, rel=1e-12)
    np.testing.assert_allclose(c.gradient, ev.gradient, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.beta_ols + c.beta_e, ev.beta, rtol=1e-10)
    Lams = terms.Lambdas(theta)
    for st, levels in blocks:       # u of each block's levels = the whole data's
        b, _ = block_effects(theta, st, c.beta_e, 1.0)
        for k, L in enumerate(Lams):
            np.testing.assert_allclose(b[k], (ev.u[k] @ L.T)[levels[k]], atol=1e-10)
