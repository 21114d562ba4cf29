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


# =============================================================================================
# Issue 25, "Silently wrong", item 2: a formula's names resolve where the model is built
# (statsmodels' eval_env), never in mlglm's own frames.
# =============================================================================================

SCALE = 2.5                       # a module-level constant a formula may use


def sq(v):                        # a function of the user's own
    return v * v


def _lmm_frame(seed=3, n_groups=15, size=8, shift=2.0):
    """A small Gaussian data set (x centred at ``shift``); the response is ``resp`` so
    that ``y`` is free to be a user's variable."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size) + shift
    resp = 1.0 + 0.5 * x + rng.normal(size=n_groups).repeat(size) + rng.normal(size=g.size)
    return pd.DataFrame({"resp": resp, "x": x, "g": g, "t": rng.uniform(1, 3, g.size)})


def _values(res):
    return np.asarray(res.params, dtype=float)


def test_user_function_and_module_constant_resolve_in_the_callers_namespace():
    """``sq(x)`` and ``I(x * SCALE)`` raised NameError (names looked up in mlglm's
    frames); now they resolve in the caller's module, in every entry point."""
    d = _lmm_frame()
    want = mlglm.lmer("resp ~ x2 + xs + (1 | g)", d.assign(x2=d["x"] ** 2, xs=d["x"] * SCALE))
    a = mlglm.lmer("resp ~ sq(x) + I(x * SCALE) + (1 | g)", d)
    b = mlglm.MixedGLM.from_formula("resp ~ sq(x) + I(x * SCALE)", d, groups="g").fit()
    for got in (a, b):
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)
    # the pooling comparison, which refits the fixed part as GLMs
    pc = mlglm.compare_pooling("resp ~ sq(x) + I(x * SCALE)", d, groups="g")
    np.testing.assert_allclose(_values(pc.mixed), _values(want), rtol=1e-10)
    # the random-effects formula too
    c = mlglm.lmer("resp ~ x + (1 + I(x * SCALE) | g)", d)
    e = mlglm.lmer("resp ~ x + (1 + xs | g)", d.assign(xs=d["x"] * SCALE))
    assert c.llf == pytest.approx(e.llf, rel=1e-10)


def test_names_that_mlglm_uses_internally_resolve_to_the_users_objects():
    """A user's ``data``, ``formula``, ``df`` and ``y`` in a function scope: on main
    ``I(x - data.x.mean())`` silently centred at the mean of mlglm's own frame and
    ``formula`` was mlglm's local string."""
    d = _lmm_frame()
    data = _lmm_frame(seed=9, shift=-4.0)        # another frame: a different mean of x
    formula, df, y = 3.0, 0.5, 4.0
    for term, column in (("I(x - data.x.mean())", d["x"] - data["x"].mean()),
                         ("I(sq(x) * formula)", d["x"] ** 2 * formula),
                         ("I(sq(x) + df)", d["x"] ** 2 + df),
                         ("I(sq(x) * y)", d["x"] ** 2 * y)):
        got = mlglm.lmer(f"resp ~ {term} + (1 | g)", d)
        want = mlglm.lmer("resp ~ z + (1 | g)", d.assign(z=column))
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10, err_msg=term)
        got = mlglm.MixedGLM.from_formula(f"resp ~ {term}", d, groups="g").fit()
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10, err_msg=term)


def test_names_resolve_at_module_scope():
    """The same names defined at the top level of a module (run here in a fresh
    namespace, as a script's top level runs)."""
    d = _lmm_frame()
    other = _lmm_frame(seed=9, shift=-4.0)
    src = ("import mlglm\n"
           "data = OTHER\n"
           "formula = 3.0\n"
           "def cube(v):\n"
           "    return v ** 3\n"
           "res = mlglm.lmer('resp ~ I(x - data.x.mean()) + I(cube(x) * formula) + (1 | g)',"
           " FRAME)\n"
           "res2 = mlglm.MixedGLM.from_formula('resp ~ I(x - data.x.mean()) + "
           "I(cube(x) * formula)', FRAME, groups='g').fit()\n")
    namespace = {"OTHER": other, "FRAME": d}
    exec(compile(src, "<script>", "exec"), namespace)     # noqa: S102 - a module's top level
    want = mlglm.lmer("resp ~ z1 + z2 + (1 | g)",
                      d.assign(z1=d["x"] - other["x"].mean(), z2=3.0 * d["x"] ** 3))
    for got in (namespace["res"], namespace["res2"]):
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)


def test_eval_env_keyword_as_statsmodels():
    """``eval_env=``: a dict of names, -1 for none, an int for frames further up."""
    d = _lmm_frame()
    want = mlglm.lmer("resp ~ xs + (1 | g)", d.assign(xs=d["x"] * 7.0))
    got = mlglm.lmer("resp ~ I(x * k) + (1 | g)", d, eval_env={"k": 7.0})
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)
    got = mlglm.MixedGLM.from_formula("resp ~ I(x * k)", d, groups="g",
                                      eval_env={"k": 7.0}).fit()
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)

    def inner():                  # eval_env=1: the namespace of inner's caller
        return mlglm.lmer("resp ~ I(x * k) + (1 | g)", d, eval_env=1)
    k = 7.0
    np.testing.assert_allclose(_values(inner()), _values(want), rtol=1e-10)
    assert k == 7.0
    with pytest.raises(MixedGLMInputError, match="NameError.*SCALE"):
        mlglm.lmer("resp ~ I(x * SCALE) + (1 | g)", d, eval_env=-1)


def _fit_in_a_function(d):
    k = 2.0                       # a local the formula uses; gone once this returns
    return mlglm.lmer("resp ~ I(x * k) + t + (1 | g)", d)


def test_update_refits_in_the_original_environment():
    """update() re-evaluates the formula: names it used keep the values of the original
    fit's namespace (as R's update keeps the formula's environment); names it adds
    resolve in the caller of update()."""
    d = _lmm_frame()
    res = _fit_in_a_function(d)
    k = -100.0                    # a different k here must not be picked up  # noqa: F841
    want = mlglm.lmer("resp ~ xs + (1 | g)", d.assign(xs=2.0 * d["x"]))
    for got in (res.update("~ . - t"), mlglm.update(res, "~ . - t")):
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)
    more = res.update("~ . + sq(t)")
    want = mlglm.lmer("resp ~ xs + t + t2 + (1 | g)",
                      d.assign(xs=2.0 * d["x"], t2=d["t"] ** 2))
    np.testing.assert_allclose(_values(more), _values(want), rtol=1e-10)


# =============================================================================================
# Issue 25, "Silently wrong", item 4: arrays given as pandas Series are aligned by index
# =============================================================================================

def _shuffled(series, seed=0):
    """The same labels and values, rows in another order."""
    return series.iloc[np.random.default_rng(seed).permutation(len(series))]


def test_subset_series_is_aligned_by_index_not_by_position():
    """A boolean Series in another order selected arbitrary rows (applied by position)."""
    d = _data()
    keep = d["x"] > -0.5
    want = _fit("y ~ x", d[keep])
    got = _fit("y ~ x", d, subset=_shuffled(keep))
    assert got.nobs == want.nobs
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-8)
    # a string: pandas' DataFrame.eval, the caller's variables as @name
    limit = -0.5  # noqa: F841 - used as @limit
    for text in ("x > -0.5", "x > @limit"):     # (the caller's names: this function's)
        got = mlglm.MixedGLM.from_formula("y ~ x", d, groups="g", family=B, subset=text).fit()
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-8)
    with pytest.raises(MixedGLMInputError, match="lacks 10 of data's"):
        _fit("y ~ x", d, subset=keep.iloc[10:])
    with pytest.raises(MixedGLMInputError, match="DataFrame.eval"):
        _fit("y ~ x", d, subset="x >> 0")


def test_row_arrays_given_as_series_are_aligned_by_index():
    """offset=, exposure=, freq_weights=, var_weights=, n_trials= and groups= given as
    Series in another order: the same fit as the column names give."""
    d = _data().assign(w=lambda f: np.random.default_rng(5).integers(1, 4, len(f)),
                       v=lambda f: np.random.default_rng(6).uniform(0.5, 2, len(f)),
                       k=3, p=lambda f: np.random.default_rng(7).binomial(3, 0.4, len(f)) / 3)
    cases = [
        ("count ~ x", dict(family=P, offset="t"), dict(family=P, offset=_shuffled(d["t"]))),
        ("count ~ x", dict(family=P, exposure="t"), dict(family=P, exposure=_shuffled(d["t"]))),
        ("count ~ x", dict(family=P, freq_weights="w"),
         dict(family=P, freq_weights=_shuffled(d["w"]))),
        ("count ~ x", dict(family=P, var_weights="v"),
         dict(family=P, var_weights=_shuffled(d["v"]))),
        ("p ~ x", dict(n_trials="k"), dict(n_trials=_shuffled(d["k"].astype(float) +
                                                             0 * d["x"]))),
        ("y ~ x", dict(groups="g"), dict(groups=_shuffled(d["g"]))),
    ]
    for formula, by_name, by_series in cases:
        want, got = _fit(formula, d, **by_name), _fit(formula, d, **by_series)
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-8,
                                   err_msg=str(list(by_name)))
    with pytest.raises(MixedGLMInputError, match="index lacks 5 of data's 96 row labels"):
        _fit("count ~ x", d, family=P, offset=d["t"].iloc[5:])
    # arrays without an index stay positional
    got = _fit("count ~ x", d, family=P, offset=d["t"].to_numpy())
    np.testing.assert_allclose(_values(got), _values(_fit("count ~ x", d, family=P,
                                                           offset="t")), rtol=1e-12)


# =============================================================================================
# Issue 25, "Limits and messages", item 13: offset() and cbind() are evaluated as patsy
# evaluates formula terms -- in the caller's namespace, not in a pretend sandbox
# =============================================================================================

def test_offset_and_cbind_expressions_use_the_callers_names():
    """A user's function and constant in offset() and cbind() (on main: "not a column of
    the data"); R's log still available; the docs no longer claim a sandbox."""
    import mlglm.design.expressions as ex
    d = _data()

    def logt(v):
        return np.log(v)
    half = 0.5
    want = _fit("count ~ x", d, family=P, offset=0.5 * np.log(d["t"]))
    got = mlglm.glmer("count ~ x + offset(logt(t) * half) + (1 | g)", d, family="poisson")
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-8)
    got = mlglm.glmer("count ~ x + offset(log(t) * half) + (1 | g)", d, family="poisson")
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-8)
    extra = 2
    d2 = d.assign(n=d["y"] + 2)
    a = mlglm.glmer("cbind(y, n - y) ~ x + (1 | g)", d2)
    b = mlglm.glmer("cbind(y, y + extra - y) ~ x + (1 | g)", d)
    np.testing.assert_allclose(_values(a), _values(b), rtol=1e-10)
    assert "sandbox" in ex.__doc__ and "not a sandbox" in ex.__doc__
    assert "__builtins__\": {}" not in open(ex.__file__).read()


# =============================================================================================
# Issue 25, "Limits and messages", item 12: a sentence where a raw traceback was
# =============================================================================================

@pytest.fixture(scope="module")
def small_fit():
    return _fit("y ~ x", _data())


CASES_12 = [
    ("an empty frame", lambda d, r: _fit("y ~ x", d.iloc[:0]), MixedGLMInputError, "no rows"),
    ("no rows left after subset=", lambda d, r: _fit("y ~ x", d, subset=d["x"] > 99),
     MixedGLMInputError, "after subset= has no rows"),
    ("duplicate column names",
     lambda d, r: _fit("y ~ x", pd.concat([d, d[["x"]]], axis=1)), MixedGLMInputError,
     "several columns named 'x'"),
    ("start_params of the wrong length", lambda d, r: r.model.fit(start_params=[0.0, 0.0]),
     MixedGLMInputError, "start_params has 2 values; the model has 3 parameters"),
    ("start_params with NaN", lambda d, r: r.model.fit(start_params=[0.0, np.nan, 1.0]),
     MixedGLMInputError, "x is NaN or inf"),
    ("a string column in offset()",
     lambda d, r: mlglm.glmer("count ~ x + offset(g) + (1 | g)", d, family="poisson"),
     MixedGLMInputError, "offset(g) must give numbers"),
    ("predict on an array with the wrong columns",
     lambda d, r: r.predict(d[["x"]].to_numpy()), ValueError,
     "the fixed-effects design has 2 (Intercept, x)"),
    ("predict on an array of strings", lambda d, r: r.predict(d[["g", "x"]].to_numpy()),
     ValueError, "exog must be numbers"),
    ("bootstrap(2.5)", lambda d, r: r.bootstrap(2.5), MixedGLMInputError,
     "must be an integer >= 1, got 2.5"),
    ("bootstrap(n_jobs='2')", lambda d, r: r.bootstrap(2, n_jobs="2"), MixedGLMInputError,
     "n_jobs must be a positive integer"),
    ("a subset= string that is not a condition", lambda d, r: _fit("y ~ x", d, subset="x + 1"),
     MixedGLMInputError, "must be a condition"),
    ("R's y ~ .", lambda d, r: _fit("y ~ .", d), MixedGLMInputError,
     "list the columns instead, e.g. 'y ~ x + count + t'"),
    ("R's y ~ . in glmer", lambda d, r: mlglm.glmer("y ~ . + (1 | g)", d), MixedGLMInputError,
     "'.' (every other column) is not expanded"),
    ("a column name patsy cannot read", lambda d, r: _fit("y ~ my-x", d.assign(**{"my-x": 1.0})),
     MixedGLMInputError, "is written Q(\"name\"): Q('my-x')"),
    ("maxiter=-1", lambda d, r: r.model.fit(maxiter=-1), MixedGLMInputError,
     "maxiter must be an integer >= 0"),
    ("a computed term that is NaN without missing='drop'",
     lambda d, r: _fit("y ~ np.log(x)", d), MixedGLMInputError,
     "contain NaN or inf (in np.log(x)); pass missing='drop'"),
]


@pytest.mark.parametrize("name, call, exc, fragment", CASES_12, ids=[c[0] for c in CASES_12])
def test_raw_tracebacks_are_sentences(name, call, exc, fragment, small_fit):
    with pytest.raises(exc) as info:
        call(_data(), small_fit)
    assert fragment in str(info.value)


def test_nullable_pandas_dtypes_fit_as_their_numpy_counterparts():
    """A nullable ``boolean`` response (bool is documented) failed inside patsy; Int64 and
    boolean columns are read as numbers and bools, NA handled by ``missing=``."""
    d = _data()
    want = _fit("yb ~ x", d.assign(yb=d["y"].astype(bool)))
    got = _fit("yb ~ x", d.assign(yb=d["y"].astype("boolean")))
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)
    with_na = d.assign(yb=d["y"].astype("boolean").where(np.arange(len(d)) != 4))
    with pytest.raises(MixedGLMInputError, match="missing='drop'"):
        _fit("yb ~ x", with_na)
    with pytest.warns(mlglm.DataWarning, match="dropped 1 rows"):
        got = _fit("yb ~ x", with_na, missing="drop")
    np.testing.assert_allclose(_values(got), _values(_fit("yb ~ x", d.assign(
        yb=d["y"].astype(bool)).drop(index=d.index[4]))), rtol=1e-10)


def test_r_style_column_names_with_dots():
    """A column ``x.1`` (valid in R, an attribute access in Python) is read as the
    column in both spellings of a formula."""
    d = _data()
    want = _fit("y ~ x", d)
    dotted = d.rename(columns={"x": "x.1"})
    for got in (_fit("y ~ x.1", dotted), mlglm.glmer("y ~ x.1 + (1 | g)", dotted),
                _fit('y ~ Q("x.1")', dotted)):
        np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)


def test_numpy_integers_are_integers():
    """nagq=np.int64(5) was refused by glmer as "not an integer"."""
    d = _data()
    a = mlglm.glmer("y ~ x + (1 | g)", d, nagq=np.int64(5))
    b = mlglm.glmer("y ~ x + (1 | g)", d, nagq=5)
    assert a.nagq == 5 and a.llf == b.llf
    c = mlglm.glmer("y ~ x + (1 | g)", d, nAGQ=np.int32(5), maxiter=np.int64(200))
    assert c.llf == b.llf


def test_near_collinear_columns_are_reported_as_collinearity_not_separation():
    """x2 = x + 1e-7 noise: huge cancelling coefficients were reported as "possible
    separation"; now a CollinearityWarning with the condition number, and no
    separation."""
    import warnings
    d = _data()
    d = d.assign(x2=d["x"] + 1e-7 * np.random.default_rng(1).normal(size=len(d)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = _fit("y ~ x + x2", d)
    kinds = {type(w.message).__name__ for w in caught}
    assert "CollinearityWarning" in kinds and "SeparationWarning" not in kinds
    assert res.separation is None
    assert "condition number" in res.collinearity and "x, x2" in res.collinearity
    assert "Near-collinear fixed effects" in str(res.summary())
    # real separation is still reported as separation: x > 0 predicts y exactly
    sep = d.assign(y=(d["x"] > 0).astype(int))
    with pytest.warns(mlglm.SeparationWarning):
        res = _fit("y ~ x", sep)
    assert res.collinearity is None


def test_missing_drop_covers_computed_terms_and_non_ascii_names():
    """NaN made by np.log of negatives (after patsy's evaluation) and NaN in a column
    named with non-ASCII letters were not seen by missing='drop' (patsy then raised
    "factor contains missing values")."""
    d = _data()
    n_neg = int((d["x"] <= 0).sum())
    with pytest.warns(mlglm.DataWarning, match=rf"dropped {n_neg} rows .*np\.log\(x\)"):
        got = _fit("y ~ np.log(x)", d, missing="drop")
    want = _fit("y ~ lx", d[d["x"] > 0].assign(lx=np.log(d["x"][d["x"] > 0])))
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)
    x = d["x"].to_numpy().copy()
    x[[3, 7]] = np.nan
    with pytest.warns(mlglm.DataWarning, match="dropped 2 rows .*größe"):
        got = _fit("y ~ größe", d.assign(größe=x), missing="drop")
    want = _fit("y ~ x", d.drop(index=d.index[[3, 7]]))
    np.testing.assert_allclose(_values(got), _values(want), rtol=1e-10)


# =============================================================================================
# Issue 25, "Limits and messages", item 11: limits enforced up front, with the figure
# (nothing large is allocated by these tests: the refusals come first)
# =============================================================================================

def test_quadrature_rules_beyond_their_limit_are_refused_before_they_are_built():
    """nagq=199999 with q = 1 passed the grid limit and numpy asked for 298 GiB (the
    rule's companion matrix); above 371 points numpy's rule has NaN weights."""
    from mlglm.core.numerics.quadrature import gauss_hermite, product_grid
    from mlglm.design.fit_checks import _resolve_nagq
    for K in (303, 1001, 199_999):
        with pytest.raises(MixedGLMInputError, match="Gauss-Hermite rule"):
            _resolve_nagq("aghq", K, 1)
        with pytest.raises(ValueError, match="lower nagq"):
            gauss_hermite(K)
    with pytest.raises(ValueError, match="lower nagq"):
        product_grid(447, 2)        # 447^2 < 200,000 points, but no 447-point rule
    t, w = gauss_hermite(301)               # the largest rule offered is a good one
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    assert np.sum(w * t ** 2) == pytest.approx(1.0, abs=1e-12)
    assert np.sum(w * np.exp(t)) == pytest.approx(np.exp(0.5), rel=1e-12)


def test_the_fit_time_check_beyond_the_grid_limit_is_skipped_with_a_note(monkeypatch):
    """nagq=447 with q = 2 fitted, then its check with 449 points exceeded the limit and
    the fit was thrown away. Here the limit is lowered so that nagq = 7 fits and its
    check (9 points) does not: the fit stands and says the check was skipped."""
    import mlglm.core.numerics.quadrature as quad
    monkeypatch.setattr(quad, "MAX_GRID_POINTS", 50)
    res = _fit("y ~ x", _data(), re_formula="~x", method="aghq", nagq=7)   # 49 points
    chk = res.optim.quadrature_check
    assert chk.skipped and chk.nagq_check == 9 and np.isnan(chk.llf_check)
    assert "Quadrature check skipped" in str(res.summary())
    with pytest.raises(MixedGLMInputError, match="product grid of 81 points"):
        _fit("y ~ x", _data(), re_formula="~x", method="aghq", nagq=9)


def test_quadrature_memory_is_estimated_before_the_fit(monkeypatch):
    """rows x points of the largest group beyond the memory available: refused with the
    estimate, before any grid is built."""
    import mlglm.core.numerics.memory as memory
    monkeypatch.setattr(memory, "LIMIT", 50_000_000)
    d = _data(n_groups=2, size=60)
    with pytest.raises(MixedGLMInputError, match=r"60 rows in the largest group the quadrature "
                                                 r"needs about 96 MB at once, and 50 MB"):
        _fit("y ~ x", d, re_formula="~x", method="aghq", nagq=101)


def _crossed(n_a, n_b, n=None, seed=0):
    rng = np.random.default_rng(seed)
    n = n or 2 * (n_a + n_b)
    a = np.concatenate([np.arange(n_a), rng.integers(0, n_a, n - n_a)])
    b = np.concatenate([rng.integers(0, n_b, n - n_b), np.arange(n_b)])
    return pd.DataFrame({"a": a, "b": b, "x": rng.normal(size=n),
                         "resp": rng.normal(size=n), "yb": rng.integers(0, 2, n)})


def test_crossed_factors_beyond_memory_are_refused_when_the_model_is_built(monkeypatch):
    """Crossed factors of 10^5 x 10^4 levels (README: refused) hit MemoryError inside
    scipy: the dense block is now estimated (N_D^2 x 9 copies for an LMM, x 14 for a
    GLMM) and refused when the model is built, with the figure."""
    import mlglm.core.numerics.memory as memory
    monkeypatch.setattr(memory, "LIMIT", 2_000_000)
    d = _crossed(400, 200)
    # 200 x 200 dense block: 8 * 9 * 200^2 = 2.88 MB (LMM), 4.48 MB (GLMM)
    with pytest.raises(MixedGLMInputError, match=r"dense block of 200 x 200 beyond the largest "
                                                 r"factor \(a, 400 levels\), about 2\.88 MB"):
        mlglm.MixedGLM.from_formula("resp ~ x", d, groups=np.ones(len(d)),
                                    vc_formula={"a": "0 + C(a)", "b": "0 + C(b)"})
    with pytest.raises(MixedGLMInputError, match="about 4.48 MB during the fit; 2 MB"):
        mlglm.glmer("yb ~ x + (1 | a) + (1 | b)", d)
    monkeypatch.setattr(memory, "LIMIT", None)
    # beyond the dense limit of 12,000 whatever the memory: refused before the fit
    big = _crossed(12_500, 12_100, n=25_000)
    with pytest.raises(MixedGLMInputError, match="dense block of 12,100 x 12,100.*the limit "
                                                 "is 12,000"):
        mlglm.design.lme4_front.lme4_model(mlglm.MixedGLM, "resp ~ x + (1 | a) + (1 | b)", big,
                                    sm.families.Gaussian())


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
