"""Bootstrap replicates as results objects (issue 10, item 1).

``BootstrapResult.apply(f)`` used to hand ``f`` a view of the original fit with only
``fe_params``, ``cov_re`` and ``scale`` swapped: ``llf``, ``bse``, predictions and random
effects were the original fit's in every replicate (zero-width bootstrap intervals) and
``params`` was a bare array. Each replicate is now the results object of its refit.

The checks: a statistic of every kind varies across the replicates and equals the
same statistic of a refit done here, directly, on that replicate's response through
the public formula API, started where the bootstrap starts its refits (the original
estimates, lme4's ``bootMer`` default). The refit here is the same computation, so the
agreement is to the refit tolerances of tests/tolerances.py.
"""
from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import mlglm
from mlglm.inference.profile import natural_values
from tolerances import REFIT_LLF_ATOL, REFIT_PARAM_ATOL

N_BOOT = 4


def _statistics(new, label):
    """Every kind of statistic a user reaches for, by name or label."""
    return {
        "llf": lambda r: r.llf,
        "params by name": lambda r: r.params[r.model.exog_names[1]],
        "bse by name": lambda r: r.bse[r.model.exog_names[1]],
        "predict (conditional)": lambda r: r.predict(new, conditional=True).iloc[0],
        "predict (population)": lambda r: r.predict(new).iloc[1],
        "predict_marginal": lambda r: r.predict_marginal(new, se=False)["mean"].iloc[2],
        "random_effects": lambda r: r.random_effects[label].iloc[-1],
        "cov_re by label": lambda r: r.cov_re.iloc[-1, -1],
        "resid": lambda r: np.asarray(r.resid)[0],
    }


CASES = {
    # contraception, Laplace, correlated random intercept and slope (conftest "contra_rs")
    "binomial": dict(formula="y ~ age + I(age**2) + urban + livch", groups="district",
                     re_formula="~urban", family=sm.families.Binomial, response="y",
                     label="1"),
    # High School and Beyond, REML, random intercept and slope
    "gaussian": dict(formula="mAch ~ cses + meanses", groups="school", re_formula="~cses",
                     family=sm.families.Gaussian, response="mAch", label="1224"),
}


def _data(case, contraception, hsb):
    return contraception if case == "binomial" else hsb


def _fit(spec, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlglm.MixedGLM.from_formula(spec["formula"], data, groups=spec["groups"],
                                           re_formula=spec["re_formula"],
                                           family=spec["family"]()).fit(**kw)


@pytest.fixture(scope="module")
def boots(contraception, hsb):
    out = {}
    for case, spec in CASES.items():
        res = _fit(spec, _data(case, contraception, hsb))
        out[case] = (res, res.bootstrap(N_BOOT, seed=11, progress=False))
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_every_statistic_varies_and_equals_a_direct_refit(boots, case, contraception, hsb):
    spec = CASES[case]
    data = _data(case, contraception, hsb)
    res, boot = boots[case]
    assert boot.n_failed == 0
    new = data.head(3)
    stats = _statistics(new, spec["label"])
    applied = {name: boot.apply(f) for name, f in stats.items()}
    for name, values in applied.items():
        assert isinstance(values, pd.Series) and len(values) == N_BOOT, name
        assert values.nunique() == N_BOOT, f"{name} does not vary across replicates"
    for r in (0, N_BOOT - 1):
        y = boot.response(r)
        direct = _fit(spec, data.assign(**{spec["response"]: y}),
                      **({} if case == "gaussian" else {"start_params": np.asarray(res.params)}))
        # the replicate's response is the one the bootstrap refitted: its estimates
        assert np.allclose(natural_values(direct), boot.replicates.iloc[r],
                           atol=REFIT_PARAM_ATOL)
        for name, f in stats.items():
            want = f(direct)
            tol = REFIT_LLF_ATOL if name == "llf" else REFIT_PARAM_ATOL
            assert applied[name].iloc[r] == pytest.approx(want, abs=tol, rel=tol), name


def test_replicate_is_a_results_object(boots):
    res, boot = boots["binomial"]
    rep = boot.replicate(1)
    assert type(rep) is type(res)
    assert isinstance(rep.params, pd.Series) and list(rep.params.index) == list(res.params.index)
    assert rep.params["urban[T.Y]"] == pytest.approx(boot.replicates["urban[T.Y]"].iloc[1],
                                                     abs=1e-12)
    assert rep.llf == pytest.approx(boot.llf[1], abs=1e-12)
    np.testing.assert_array_equal(rep.model.endog, boot.response(1))
    assert not np.array_equal(rep.model.endog, res.model.endog)
    assert "Log-likelihood" in str(rep.summary())
    # a vector statistic gives one row per replicate
    table = boot.apply(lambda r: r.params)
    assert table.shape == (N_BOOT, len(res.params))
    assert list(table.columns) == list(res.params.index)
    np.testing.assert_allclose(table["age"], boot.replicates["age"], atol=1e-12)


def test_apply_is_reproducible_for_any_n_jobs(hsb):
    res = mlglm.lmer("mAch ~ cses + (1 | school)", hsb)
    a = res.bootstrap(3, seed=5, progress=False)
    b = res.bootstrap(3, seed=5, progress=False, n_jobs=2)
    pd.testing.assert_frame_equal(a.replicates, b.replicates)
    f = lambda r: r.random_effects["1224"].iloc[0] + r.llf  # noqa: E731
    pd.testing.assert_series_equal(a.apply(f), b.apply(f))


def test_failed_refits_are_nan_and_have_no_replicate(boots, monkeypatch):
    import mlglm.inference.bootstrap as mb
    res, _ = boots["gaussian"]
    real = mb._refit
    calls = {"n": 0}

    def flaky(spec, y):
        calls["n"] += 1
        if calls["n"] == 2:
            raise np.linalg.LinAlgError("boom")
        return real(spec, y)
    monkeypatch.setattr(mb, "_refit", flaky)
    with pytest.warns(RuntimeWarning, match="1 of 3"):
        boot = res.bootstrap(3, seed=1, progress=False)
    values = boot.apply(lambda r: r.llf)
    assert np.isnan(values.iloc[1]) and np.isfinite(values.iloc[[0, 2]]).all()
    with pytest.raises(ValueError, match="refit 1 failed"):
        boot.replicate(1)


class _KillerProblem:
    """A core Problem whose refit of one response ends the worker process at once
    (``os._exit``: no exception, no cleanup -- as the OOM killer or a crash in compiled
    code would), so the pool breaks (issue 25, item 10)."""

    def __init__(self, problem, y_kill):
        self.problem, self.y_kill = problem, y_kill

    def with_response(self, y):
        if np.array_equal(y, self.y_kill):
            os._exit(3)
        return self.problem.with_response(y)


@pytest.mark.parametrize("formula,data", [
    ("Reaction ~ Days + (1 | Subject)", "sleepstudy"),       # one grouping factor
    ("strength ~ 1 + (1 | batch/cask)", "pastes"),           # nested factors
])
def test_a_dead_worker_loses_only_its_own_replicate(monkeypatch, formula, data):
    """Issue 25, item 10: bootstrap(n_jobs=2) raised BrokenProcessPool and lost every
    finished replicate when one worker process died. Finished replicates are kept, the
    ones the broken pool took down are run again, the one that kills its worker is a NaN
    row, and a warning gives the count; the rest equal a serial run's."""
    import mlglm.inference.bootstrap as mb
    n, seed, kill = 6, 7, 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # pastes: a singular fit is not the point
        res = mlglm.lmer(formula, getattr(mlglm.datasets, f"load_{data}")())
    serial = res.bootstrap(n, seed=seed, progress=False)
    real = mb._spec

    def spec_with_killer(results):
        spec = real(results)
        rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(n)[kill])
        spec["problem"] = _KillerProblem(spec["problem"], mb._draw(spec, rng))
        return spec
    monkeypatch.setattr(mb, "_spec", spec_with_killer)
    with pytest.warns(RuntimeWarning, match=r"worker process died.*1 of 6 \(replicate 4\)"):
        boot = res.bootstrap(n, seed=seed, progress=False, n_jobs=2)
    assert boot.lost == [kill] and boot.n_failed == 1
    assert boot.replicates.iloc[kill].isna().all()
    keep = [r for r in range(n) if r != kill]
    pd.testing.assert_frame_equal(boot.replicates.iloc[keep], serial.replicates.iloc[keep])
    with pytest.raises(ValueError, match="lost with a worker process"):
        boot.replicate(kill)
    assert np.isfinite(boot.conf_int().iloc[0][["lower", "upper"]].astype(float)).all()


def test_apply_builds_each_replicate_once():
    """Issue 21: boot.apply rebuilt every replicate's results object on each call (and
    each rebuild re-parsed the formula through statsmodels' unpickling of the model's
    data). The replicates are kept: a second statistic gets the same objects."""
    res = mlglm.lmer("Reaction ~ Days + (1 | Subject)", mlglm.datasets.load_sleepstudy())
    boot = res.bootstrap(5, seed=3, progress=False)
    first, second = [], []
    boot.apply(lambda r: first.append(r) or r.llf)
    boot.apply(lambda r: second.append(r) or r.llf)
    assert len(first) == len(second) == 5
    assert all(a is b for a, b in zip(first, second))
    boot.clear_cache()
    rebuilt = boot.replicate(2)
    assert rebuilt is not first[2] and rebuilt.llf == pytest.approx(boot.llf[2], abs=1e-12)


def test_one_term_is_labelled_alike_however_spelled(hsb):
    """Issue 22: the bootstrap's labels of one random-effects term do not depend on how the
    term was spelled. An array-built random intercept (``MixedGLM(endog, exog, groups)``)
    was labelled "sd(Group Var)" in binomial fits, and one term of two blocks spelled with
    bars, ``(1 + cses | school) + (0 + meanses | school)``, "sd(Intercept | school)" (the
    several-factor labels); both now have the labels of a ``groups=`` / one-bar model, and
    the array-built fit's replicates are the formula-built one's (same model, same seed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formula = mlglm.glmer("I(mAch > 13) ~ cses + (1 | school)", hsb, family="binomial")
        X = np.column_stack([np.ones(len(hsb)), hsb["cses"]])
        arrays = mlglm.MixedGLM((hsb["mAch"] > 13).to_numpy(float), X, hsb["school"].to_numpy(),
                                family=sm.families.Binomial()).fit()
        blocks = mlglm.lmer("mAch ~ cses + (1 + cses | school) + (0 + meanses | school)", hsb)
    a, b = (r.bootstrap(2, seed=4, progress=False) for r in (formula, arrays))
    assert list(a.replicates.columns) == ["Intercept", "cses", "sd(Intercept)"]
    assert list(b.replicates.columns) == ["const", "x1", "sd(Intercept)"]
    np.testing.assert_allclose(b.replicates.to_numpy(), a.replicates.to_numpy(),
                               atol=REFIT_PARAM_ATOL)
    c = blocks.bootstrap(1, seed=4, progress=False)
    assert list(c.replicates.columns) == ["Intercept", "cses", "sd(Intercept)", "sd(cses)",
                                          "sd(meanses)", "cor(Intercept, cses)", "sigma"]


def test_replicate_params_of_a_refit_at_the_boundary(boots):
    """A refit whose intercept SD is 0 has no correlation (NaN) but its covariance is 0:
    replicate_params made that covariance NaN for one grouping factor, so the bootstrap
    intervals of ``conf_int(method="bootstrap")`` (which drop NaN rows) lost the refit."""
    res, boot = boots["binomial"]
    reps = boot.replicates.copy()
    reps.loc[0, "sd(Intercept)"] = 0.0
    reps.loc[0, "cor(Intercept, urban[T.Y])"] = np.nan
    at_zero = dataclasses.replace(boot, replicates=reps)
    row = at_zero.replicate_params().iloc[0]
    assert not row.isna().any()
    assert row["district Var"] == 0.0 and row["district x urban[T.Y] Cov"] == 0.0
    assert row["urban[T.Y] Var"] == pytest.approx(reps.loc[0, "sd(urban[T.Y])"] ** 2, rel=1e-14)
    ci = res.conf_int(method="bootstrap", boot=at_zero)
    assert ci.loc["district Var", 0] == pytest.approx(
        at_zero.replicate_params()["district Var"].quantile(0.025), rel=1e-12)
