"""LR tests and anova() tables against lme4 (Contraception, Laplace) and statsmodels GLM."""
import warnings

import numpy as np
import pytest
import statsmodels.formula.api as smf
import statsmodels.api as sm
from scipy import stats

import mlglm
from mlglm.datasets import load_contraception

FIXED = "y ~ age + I(age^2) + urban + livch"

# lme4 1.1-31 on this machine (R 4.2.2), script:
#   m1 <- glmer(y ~ age + I(age^2) + urban + livch + (1 | district), d, binomial)
#   m2 <- glmer(y ~ age + I(age^2) + urban + livch + (1 + urban | district), d, binomial)
#   anova(m2, m1); logLik(glm(y ~ age + I(age^2) + urban + livch, d, family = binomial))
# (d = mlmRev::Contraception as in tests/reference/references.R)
LME4_ANOVA = {"npar": (8, 10), "AIC": (2388.72870689271, 2380.61074094725),
              "BIC": (2433.26747230082, 2436.28419770738), "Chisq": 12.11797, "Df": 2,
              "p": 0.0023368}
R_GLM_LOGLIK = -1208.82943479682
# lme4's contra fits stop with max|grad| ~ 3e-3 (its own convergence warning), so its
# log-likelihoods are up to 2.3e-4 below the optimum: compare to 1e-3, not tighter.
LME4_STOPPING_ATOL = 1e-3


@pytest.fixture(scope="module")
def fits():
    d = load_contraception()
    m1 = mlglm.glmer(FIXED + " + (1 | district)", d)
    m2 = mlglm.glmer(FIXED + " + (1 + urban | district)", d)
    glm = smf.glm("y ~ age + I(age**2) + urban + livch", d, family=sm.families.Binomial()).fit()
    return m1, m2, glm


def test_anova_matches_lme4(fits):
    m1, m2, _ = fits
    tab = mlglm.anova(m2, m1)
    assert tuple(tab["npar"]) == LME4_ANOVA["npar"]
    np.testing.assert_allclose(tab["AIC"], LME4_ANOVA["AIC"], atol=LME4_STOPPING_ATOL)
    np.testing.assert_allclose(tab["BIC"], LME4_ANOVA["BIC"], atol=LME4_STOPPING_ATOL)
    assert tab["Chisq"].iloc[1] == pytest.approx(LME4_ANOVA["Chisq"], abs=LME4_STOPPING_ATOL)
    assert tab["Df"].iloc[1] == LME4_ANOVA["Df"]
    assert tab["Pr(>Chisq)"].iloc[1] == pytest.approx(LME4_ANOVA["p"], abs=1e-5)
    assert (tab["deviance"] == -2 * tab["logLik"]).all()


def test_lr_test_glm_vs_glmm_uses_the_boundary_mixture(fits):
    m1, _, glm = fits
    assert glm.llf == pytest.approx(R_GLM_LOGLIK, rel=1e-10)
    t = m1.compare_lr_test(glm)
    assert t.df == 1
    assert t.statistic == pytest.approx(2 * (m1.llf - glm.llf), rel=1e-12)
    assert t.pvalue == pytest.approx(0.5 * stats.chi2.sf(t.statistic, 1), rel=1e-12)
    assert "mixture" in t.reference
    plain = mlglm.compare_lr_test(m1, glm, boundary=False)
    assert plain.pvalue == pytest.approx(2 * t.pvalue, rel=1e-12)


def test_random_slope_test_mixture_of_chi2_1_and_chi2_2(fits):
    m1, m2, _ = fits
    t = mlglm.compare_lr_test(m1, m2)          # order does not matter
    lr = 2 * (m2.llf - m1.llf)
    assert t.pvalue == pytest.approx(0.5 * stats.chi2.sf(lr, 1) + 0.5 * stats.chi2.sf(lr, 2))


def test_reml_fits_are_refused():
    from mlglm.datasets import load_hsb
    h = load_hsb()
    a = mlglm.lmer("mAch ~ 1 + (1 | school)", h)
    b = mlglm.lmer("mAch ~ meanses + (1 | school)", h)
    with pytest.raises(ValueError, match="REML"):
        mlglm.compare_lr_test(a, b)


def test_anova_prints_whole_in_80_columns(fits):
    """Issue 10: the table's formula index made pandas split it into column blocks and
    truncate it. It prints as R does: the formulas as m1, m2 above one table, every
    line within 80 characters, every number in it."""
    m1, m2, _ = fits
    tab = mlglm.anova(m2, m1)
    text = repr(tab)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0] == "Models:"
    assert lines[1].startswith("m1: y ~ age") and "(1 | district)" in lines[1]
    header = next(line for line in lines if line.split()[:1] == ["npar"])
    assert header.split() == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df",
                              "Pr(>Chisq)"]
    row = lines[-1].split()
    assert row[0] == "m2" and int(row[1]) == 10
    assert float(row[2]) == pytest.approx(tab["AIC"].iloc[1], abs=0.005)
    assert float(row[6]) == pytest.approx(tab["Chisq"].iloc[1], abs=5e-5)
    assert "..." not in text and str(tab) == text


def test_anova_labels_spell_the_random_part_as_lme4():
    """The random part in each label is lme4's spelling of the fitted model, however it
    was built: independent effects with ||, a term without intercept with 0 +, a term
    with two blocks as two bar terms (groups= fits used to print (1 + cses | school) and
    (cses | school) for the first two)."""
    d = mlglm.datasets.load_hsb()
    fit = dict(family=sm.families.Gaussian())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = mlglm.MixedGLM.from_formula("mAch ~ cses", d, groups="school", re_formula="~cses",
                                           cov_struct="diagonal", **fit).fit(reml=False)
        slope = mlglm.MixedGLM.from_formula("mAch ~ cses", d, groups="school",
                                            re_formula="~0 + cses", **fit).fit(reml=False)
        blocks = mlglm.lmer("mAch ~ cses + meanses + (1 + cses | school) + "
                            "(0 + meanses | school)", d, reml=False)
    assert list(mlglm.anova(slope, diag).index) == ["mAch ~ cses + (0 + cses | school)",
                                                    "mAch ~ cses + (1 + cses || school)"]
    assert mlglm.anova(blocks, diag).index[1] == \
        "mAch ~ cses + meanses + (1 + cses | school) + (0 + meanses | school)"
