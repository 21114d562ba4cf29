"""Issue 13's claim for nagq="auto", reduced for CI (benchmarks/quadrature_vs_glmm.py has
the full version: 20 data sets of 300 subjects, results in benchmarks/QUADRATURE.md).

Hard binary data (benchmarks/quadrature_data.hard_binary: 7 visits, random-intercept SD
8, slope SD 1): the true log-likelihood (brute force, benchmarks/quadrature_oracle.py,
composite Gauss-Legendre, nothing from mlglm) at the estimates nagq="auto" reaches is
within 0.01 of the best found with nagq = 11, 21 or 41, while the default nagq = 11
falls short of it and warns.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import mlglm
from bench_scripts import load


@pytest.mark.slow
def test_auto_reaches_the_best_true_loglik_found_with_up_to_41_points():
    vs = load("quadrature_vs_glmm")
    df, formula, _, _ = vs.dataset(seed=0, groups=120)
    with pytest.warns(mlglm.QuadratureWarning):
        default = mlglm.glmer(formula, df, family="binomial", nagq=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto = mlglm.glmer(formula, df, family="binomial", nagq="auto")
        chain, start = [], None
        for K in (11, 21, 41):
            r = default.model.fit(method="aghq", nagq=K, start_params=start)
            start = np.asarray(r.params)
            chain.append(vs.truth(df, start))
    true_auto = vs.truth(df, np.asarray(auto.params))
    true_default = vs.truth(df, np.asarray(default.params))
    best = max(chain + [true_auto, true_default])
    assert auto.nagq > 11
    assert true_auto >= best - 0.01
    assert true_default < best - 0.01          # the default is not adequate here
