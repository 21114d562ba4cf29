"""MixedGLM's constructor skips MixedLM.__init__'s per-row and per-group loops.

The attributes statsmodels' MixedLM sets up (group labels, ``row_indices``, the
per-group lists ``endog_li`` ... ``_aex_r2``, the reparametrisation ``_lin`` /
``_quad``, names and dimensions) are computed by mlglm with vectorised numpy or
lazily on first use. Here they are compared with the originals of a
``statsmodels.regression.mixed_linear_model.MixedLM`` built on the same data, and
statsmodels' own Gaussian log-likelihood (which reads the lazy lists) is evaluated
through both models.
"""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.regression.mixed_linear_model import MixedLM

import mlglm
from mlglm import MixedGLMInputError


def _data(kind, seed=0):
    rng = np.random.default_rng(seed)
    G = 13
    g = rng.integers(0, G, size=200)
    g[:G] = np.arange(G)                   # every group present
    labels = {"int": g * 7 - 20,
              "str": np.array([f"s{k:02d}" for k in g], dtype=object),
              "unicode": np.array([f"u{k}" for k in g]),  # '<U' dtype, unsorted as ints
              "float": g / 4.0}[kind]
    x1, x2 = rng.normal(size=200), rng.normal(size=200)
    y = 1.0 + 0.5 * x1 + rng.normal(size=G)[g] + rng.normal(size=200)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": labels})


SIMPLE_ATTRS = ["k_fe", "k_re", "k_re2", "k_vc", "k_params", "n_groups", "nobs", "n_totobs",
                "use_sqrt", "exog_names", "endog_names", "group_labels"]


def _compare(mod, ref):
    for a in SIMPLE_ATTRS:
        assert getattr(mod, a) == getattr(ref, a), a
    assert [type(v) for v in mod.group_labels] == [type(v) for v in ref.group_labels] or \
        all(a == b and hash(a) == hash(b) for a, b in zip(mod.group_labels, ref.group_labels))
    assert list(mod.row_indices) == list(ref.row_indices)
    for k in ref.row_indices:
        assert list(mod.row_indices[k]) == list(ref.row_indices[k])
    for name in ("endog_li", "exog_li", "exog_re_li", "exog_re2_li", "_aex_r", "_aex_r2"):
        a, b = getattr(mod, name), getattr(ref, name)
        assert len(a) == len(b), name
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v, err_msg=name)
    for u, v in zip(mod._lin, ref._lin):
        np.testing.assert_array_equal(u, v)
    for u, v in zip(mod._quad, ref._quad):
        np.testing.assert_array_equal(u, v)
    assert mod.data.param_names == ref.data.param_names
    assert mod.data.exog_re_names == ref.data.exog_re_names
    assert mod.data.exog_re_names_full == ref.data.exog_re_names_full
    np.testing.assert_array_equal(mod.exog_re, ref.exog_re)
    np.testing.assert_array_equal(mod.groups, ref.groups)
    assert set(ref._init_keys) <= set(mod._init_keys)
    # statsmodels' own Gaussian log-likelihood reads the lazily built lists
    mod.cov_pen = ref.cov_pen = None           # set by MixedLM.fit, read by loglike
    params = sm.regression.mixed_linear_model.MixedLMParams.from_components(
        np.array([0.9, 0.4, -0.1][:mod.k_fe]), cov_re=np.eye(mod.k_re) * 0.7)
    assert MixedLM.loglike(mod, params, profile_fe=False) == pytest.approx(
        ref.loglike(params, profile_fe=False), rel=1e-12)
    # the integer codes index the sorted labels
    labels = np.array(mod.group_labels, dtype=object)
    assert all(labels[mod.group_codes] == np.asarray(mod.groups, dtype=object))


@pytest.mark.parametrize("kind", ["int", "str", "unicode", "float"])
def test_formula_model_matches_mixedlm(kind):
    df = _data(kind)
    ref = MixedLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="~x1")
    mod = mlglm.MixedGLM.from_formula("y ~ x1 + x2", df, groups="g", re_formula="~x1",
                                      family=sm.families.Gaussian())
    _compare(mod, ref)


@pytest.mark.parametrize("re", [None, "x1"])
def test_array_model_matches_mixedlm(re):
    df = _data("int", seed=1)
    X = sm.add_constant(df[["x1"]].to_numpy())
    Z = None if re is None else np.column_stack([np.ones(len(df)), df[re].to_numpy()])
    ref = MixedLM(df["y"].to_numpy(), X, df["g"].to_numpy(), exog_re=Z)
    mod = mlglm.MixedGLM(df["y"].to_numpy(), X, df["g"].to_numpy(), exog_re=Z,
                         family=sm.families.Gaussian())
    _compare(mod, ref)


def test_lazy_lists_survive_pickling_and_refits():
    df = _data("str")
    mod = mlglm.MixedGLM.from_formula("y ~ x1", df, groups="g", re_formula="1",
                                      family=sm.families.Gaussian())
    assert "row_indices" not in vars(mod)          # not built by the constructor
    back = pickle.loads(pickle.dumps(mod))
    ref = MixedLM.from_formula("y ~ x1", df, groups="g", re_formula="1")
    assert back.row_indices == ref.row_indices
    assert mod.fit().llf == pytest.approx(back.fit().llf, abs=1e-12)


def test_missing_group_label_is_an_input_error():
    df = _data("str")
    df.loc[3, "g"] = None
    with pytest.raises(MixedGLMInputError):
        mlglm.MixedGLM.from_formula("y ~ x1", df, groups="g", family=sm.families.Gaussian())


def test_unknown_keyword_rejected_like_mixedlm():
    df = _data("int")
    with pytest.raises(ValueError, match="not permitted"):
        mlglm.MixedGLM(df["y"], df[["x1"]], df["g"], family=sm.families.Gaussian(), bogus=1)
