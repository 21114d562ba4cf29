"""Crossed scalar terms: the fixed-map Schur update and the trace-identity gradient
(:mod:`mlglm.core.engines.crossed.scalar_schur`) against the general blocked path and central differences.

The general path (sparse product L_D1 L_D1', selected inverse on the pattern) is the
oracle here; it is itself checked against the dense multivariate normal density in
test_multi_lmm.py. Tolerances: criteria are the same floating-point sums in another
order (1e-12 relative); gradients to GRAD_RTOL (tolerances.py).
"""
import numpy as np
import pytest

from mlglm.core.engines.crossed.blocked import BlockedStructure
from mlglm.core.engines.crossed.crossprod import CrossPlan
from mlglm.core.spec.covpattern import unstructured
from mlglm.core.engines.lmm.blocked import (conditional_effects, multi_lmm_evaluate, multi_lmm_fit,
                                  multi_lmm_stats)
from mlglm.core.engines.crossed.scalar_schur import LAM_MIN, scalar_schur
from mlglm.core.spec.terms import ReTerm, ReTerms
from tolerances import GRAD_ATOL, GRAD_RTOL

SAME_RTOL = 1e-12


def _stats(seed=0, n=400, slope=True, first_slope=False):
    """Three crossed scalar factors: intercepts of a (40 levels, unequal sizes) and b,
    and a slope on z for c; with ``first_slope`` a carries a slope on x instead (the
    first term's a_j = sum x^2 all differ: one class per level)."""
    rng = np.random.default_rng(seed)
    a = np.minimum(rng.geometric(0.08, n) - 1, 39)
    a[:40] = np.arange(40)                         # every level occurs
    b = rng.integers(0, 9, n)
    c = rng.integers(0, 5, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    y = (1 + x + rng.normal(size=40)[a] + 0.7 * rng.normal(size=9)[b]
         + 0.5 * z * rng.normal(size=5)[c] + rng.normal(size=n))
    one = np.ones((n, 1))
    terms = [ReTerm("a", a, 40, x[:, None] if first_slope else one, unstructured(1)),
             ReTerm("b", b, 9, one, unstructured(1)),
             ReTerm("c", c, 5, z[:, None] if slope else one, unstructured(1))]
    terms = ReTerms(terms)
    st = BlockedStructure(terms, mode="sparse")
    return y, X, terms, multi_lmm_stats(y, X, terms, plan=CrossPlan(terms, st)), rng


def _general(stats, fn):
    """Run fn with the fixed-map path switched off (the general blocked path)."""
    saved = stats.A.__dict__.get("_schur")
    object.__setattr__(stats.A, "_schur", None)
    try:
        return fn()
    finally:
        object.__setattr__(stats.A, "_schur", saved)


@pytest.mark.parametrize("reml", [False, True])
@pytest.mark.parametrize("slope,first_slope", [(False, False), (True, False), (True, True)])
def test_fixed_map_equals_general_path(reml, slope, first_slope):
    y, X, terms, stats, rng = _stats(slope=slope, first_slope=first_slope)
    schur = scalar_schur(stats.A)
    assert schur is not None and stats.st.first == 0
    assert schur.c.size == (40 if first_slope else np.unique(np.bincount(terms[0].codes)).size)
    for _ in range(3):
        theta = rng.uniform(0.1, 1.5, 3)
        fast = multi_lmm_evaluate(theta, stats, reml)
        slow = _general(stats, lambda: multi_lmm_evaluate(theta, stats, reml))
        assert fast.criterion == pytest.approx(slow.criterion, rel=SAME_RTOL)
        np.testing.assert_allclose(fast.gradient, slow.gradient, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(fast.beta, slow.beta, rtol=1e-10)
        h = 1e-5
        fd = np.array([(multi_lmm_evaluate(theta + h * e, stats, reml, False).criterion
                        - multi_lmm_evaluate(theta - h * e, stats, reml, False).criterion)
                       / (2 * h) for e in np.eye(3)])
        assert np.all(np.abs(fast.gradient - fd) <= GRAD_ATOL * 100 + GRAD_RTOL * 100 * np.abs(fd))


def test_small_scale_falls_back_to_the_general_gradient():
    """Below LAM_MIN the trace identity divides by a tiny scale; the general formula
    takes over and the gradient still matches central differences."""
    y, X, terms, stats, rng = _stats(1)
    theta = np.array([0.8, LAM_MIN / 10, 0.5])
    schur = scalar_schur(stats.A)
    ev = multi_lmm_evaluate(theta, stats, False)
    lam_D = [theta[k] for k in stats.st.dense]
    S, V2, sih = schur.schur_upper(theta[stats.st.first], lam_D)
    assert schur.gradient_G(theta[stats.st.first], lam_D, ev.factor.inverse_DD_lower(), V2,
                            sih) is None
    slow = _general(stats, lambda: multi_lmm_evaluate(theta, stats, False))
    np.testing.assert_allclose(ev.gradient, slow.gradient, rtol=1e-10, atol=1e-10)


def test_conditional_variances_equal_the_selected_inverse():
    y, X, terms, stats, rng = _stats(2)
    theta = np.array([0.9, 0.6, 0.4])
    ev = multi_lmm_evaluate(theta, stats, True)
    Lams = terms.Lambdas(theta)
    fast = conditional_effects(terms, stats.st, Lams, ev.u, ev.factor, 1.3, scalar_schur(stats.A))
    slow = conditional_effects(terms, stats.st, Lams, ev.u, ev.factor, 1.3)
    for bf, bs in zip(fast[1], slow[1]):
        np.testing.assert_allclose(bf, bs, rtol=1e-10)


@pytest.mark.parametrize("reml", [False, True])
def test_fit_is_the_general_paths_fit(reml):
    y, X, terms, stats, rng = _stats(3)
    fast = multi_lmm_fit(y, X, terms, reml=reml, stats=stats)
    slow = _general(stats, lambda: multi_lmm_fit(y, X, terms, reml=reml, stats=stats))
    assert fast.llf == pytest.approx(slow.llf, rel=1e-10)
    np.testing.assert_allclose(fast.theta, slow.theta, rtol=1e-5)
    for bf, bs in zip(fast.b_cov, slow.b_cov):
        np.testing.assert_allclose(bf, bs, rtol=1e-5)
