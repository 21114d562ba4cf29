"""Every bad input named in the reliability issue ends in a documented exception whose
message says what to do (no bare numpy/scipy traceback)."""
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm import FormulaError, MixedGLMInputError


def _data(seed=0, n_groups=12, size=8):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{j:02d}" for j in range(n_groups)], size)
    x = rng.normal(size=g.size)
    eta = 0.3 + 0.8 * x + rng.normal(scale=0.7, size=n_groups).repeat(size)
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g,
                         "count": rng.poisson(np.exp(eta)), "t": rng.uniform(1, 3, g.size)})


B = sm.families.Binomial()
P = sm.families.Poisson()


def _fit(formula, df, **kw):
    fam = kw.pop("family", B)
    method = kw.pop("method", None)
    nagq = kw.pop("nagq", None)
    groups = kw.pop("groups", "g")
    m = mlglm.MixedGLM.from_formula(formula, df, groups=groups, family=fam, **kw)
    return m.fit(method=method, nagq=nagq)


CASES = [
    # (name, callable, exception type, fragment of the message)
    ("binomial response outside [0, 1]",
     lambda d: _fit("count ~ x", d.assign(count=d["count"] + 2)), MixedGLMInputError, "0/1"),
    ("proportions not matching n_trials",
     lambda d: _fit("p ~ x", d.assign(p=0.3), n_trials=np.full(len(d), 2)),
     MixedGLMInputError, "whole numbers"),
    ("negative Poisson counts",
     lambda d: _fit("c ~ x", d.assign(c=-d["count"] - 1), family=P), MixedGLMInputError,
     "non-negative"),
    ("non-integer Poisson counts",
     lambda d: _fit("c ~ x", d.assign(c=d["count"] + 0.5), family=P), MixedGLMInputError,
     "whole numbers"),
    ("NaN without missing='drop'",
     lambda d: _fit("y ~ x", d.assign(x=np.where(np.arange(len(d)) == 3, np.nan, d["x"]))),
     MixedGLMInputError, "missing='drop'"),
    ("inf in an offset",
     lambda d: _fit("y ~ x", d, offset=np.where(np.arange(len(d)) == 1, np.inf, 0.0)),
     MixedGLMInputError, "missing='drop'"),
    ("group column that does not exist",
     lambda d: _fit("y ~ x", d, groups="school"), MixedGLMInputError, "not a column"),
    ("a single group",
     lambda d: _fit("y ~ x", d.assign(g="one")), MixedGLMInputError, "at least two groups"),
    ("rank-deficient fixed effects",
     lambda d: _fit("y ~ x + x2", d.assign(x2=3 * d["x"])), MixedGLMInputError, "x2"),
    ("constant column beside the intercept",
     lambda d: _fit("y ~ x + k", d.assign(k=1.0)), MixedGLMInputError, "k"),
    ("zero exposure",
     lambda d: _fit("count ~ x", d, family=P, exposure=np.where(np.arange(len(d)) == 0, 0.0, 1.0)),
     MixedGLMInputError, "exposure must be positive"),
    ("exposure for a binomial model",
     lambda d: _fit("y ~ x", d, exposure=d["t"].to_numpy()), MixedGLMInputError, "Poisson"),
    ("nagq < 1", lambda d: _fit("y ~ x", d, method="aghq", nagq=0), MixedGLMInputError,
     "positive integer"),
    ("absurd nagq^q",
     lambda d: _fit("y ~ x", d, re_formula="~x", method="aghq", nagq=1000),
     MixedGLMInputError, "lower nagq"),
    ("nagq > 1 with method='laplace'",
     lambda d: _fit("y ~ x", d, method="laplace", nagq=5), MixedGLMInputError, "aghq"),
    ("unsupported link",
     lambda d: _fit("y ~ x", d, family=sm.families.Poisson(link=sm.families.links.Identity())),
     MixedGLMInputError, "not supported"),
    ("family class instead of instance",
     lambda d: _fit("y ~ x", d, family=sm.families.Binomial), MixedGLMInputError, "instance"),
    ("unparsable statsmodels formula",
     lambda d: _fit("y ~ x +", d), MixedGLMInputError, "could not build"),
    ("unparsable lme4 formula",
     lambda d: mlglm.glmer("y ~ x + (1 + x | g", d), FormulaError, "^"),
    ("two terms with the same grouping",
     lambda d: mlglm.glmer("y ~ x + (1 | g) + (1 | h)", d.assign(h=d["g"])),
     MixedGLMInputError, "two terms give the same grouping: g and h"),
    ("a second factor with one level",
     lambda d: mlglm.lmer("y ~ x + (1 | g) + (1 | k)", d.assign(k="one")),
     MixedGLMInputError, "single level"),
    ("an observation-level factor in a linear mixed model",
     lambda d: mlglm.lmer("y ~ x + (1 | g) + (1 | obs)", d.assign(obs=np.arange(len(d)))),
     MixedGLMInputError, "unidentifiable"),
    ("a grouping factor that is not a column",
     lambda d: mlglm.lmer("y ~ x + (1 | g) + (1 | school)", d), MixedGLMInputError,
     "not a column"),
    ("no random-effects term",
     lambda d: mlglm.glmer("y ~ x", d), FormulaError, "GLM"),
    ("REML for a GLMM",
     lambda d: mlglm.MixedGLM.from_formula("y ~ x", d, groups="g", family=B).fit(reml=True),
     MixedGLMInputError, "Gaussian"),
]


@pytest.mark.parametrize("name, call, exc, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_documented_error_with_advice(name, call, exc, fragment):
    with pytest.raises(exc) as info:
        call(_data())
    assert fragment in str(info.value)


def test_missing_drop_drops_rows_consistently_and_says_how_many():
    d = _data()
    x = d["x"].to_numpy().copy()
    x[[2, 5]] = np.nan
    off = np.zeros(len(d))
    off[7] = np.nan
    with pytest.warns(mlglm.DataWarning, match="dropped 3 rows"):
        m = mlglm.MixedGLM.from_formula("y ~ x", d.assign(x=x), groups="g", family=B,
                                        offset=off, missing="drop")
    assert m.nobs == len(d) - 3 and m.offset.shape == (len(d) - 3,)
    assert "Rows dropped (missing):" in str(m.fit().summary())


# ------------------------------------------------------------------------------------------
# Issue 25, "Silently wrong": 1 (a start on the variance boundary: a negative variance is
# refused; 0 is legal and left, tests/test_start_values.py) and 3 (a constant response: lme4
# stops with "Response is constant"; mlglm returned converged=True, an intercept of -100.7
# and SEs of ~1e20 for all-zero counts)
# ------------------------------------------------------------------------------------------
SILENTLY_WRONG_25 = [
    ("all-zero Poisson counts",
     lambda d: _fit("count ~ x", d.assign(count=0), family=P), "every count is 0"),
    ("all-zero negative binomial counts",
     lambda d: mlglm.glmer("count ~ x + (1 | g)", d.assign(count=0), family="negative_binomial"),
     "every count is 0"),
    ("binomial, every trial a failure",
     lambda d: _fit("y ~ x", d.assign(y=0)), "every trial is a failure"),
    ("binomial, every trial a success",
     lambda d: _fit("y ~ x", d.assign(y=1)), "every trial is a success"),
    ("binomial counts, every trial a success",
     lambda d: mlglm.glmer("s + f ~ x + (1 | g)", d.assign(s=3, f=0), family="binomial"),
     "every trial is a success"),
    ("constant Gaussian response",
     lambda d: mlglm.lmer("y ~ x + (1 | g)", d.assign(y=2.5)), "every value is 2.5"),
    ("constant Gamma response",
     lambda d: mlglm.glmer("t ~ x + (1 | g)", d.assign(t=2.0), family="gamma"),
     "every value is 2"),
    ("a negative variance in start_params",
     lambda d: mlglm.MixedGLM.from_formula("y ~ x", d, groups="g", family=B).fit(
         start_params=[0.3, 0.8, -0.5]), "the variance of Intercept is -0.5"),
    ("a correlation beyond 1 in start_params",
     lambda d: mlglm.MixedGLM.from_formula("y ~ x", d, groups="g", re_formula="~x",
                                           family=B).fit(start_params=[0.3, 0.8, 1.0, 3.0, 1.0]),
     "correlation is beyond"),
]


@pytest.mark.parametrize("name, call, fragment", SILENTLY_WRONG_25,
                         ids=[c[0] for c in SILENTLY_WRONG_25])
def test_issue25_silently_wrong_inputs_are_refused(name, call, fragment):
    with pytest.raises(MixedGLMInputError) as info:
        call(_data())
    assert fragment in str(info.value)


def test_constant_response_check_counts_only_weighted_rows():
    """Rows with frequency weight 0 are absent: a response that is constant on the others
    (every weighted count 0) is refused."""
    d = _data()
    w = np.ones(len(d))
    w[d["count"].to_numpy() > 0] = 0.0
    with pytest.raises(MixedGLMInputError, match="every count is 0"):
        mlglm.glmer("count ~ x + (1 | g)", d, family="poisson", freq_weights=w)
