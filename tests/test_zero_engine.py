"""The one-term engine of zero-inflated, hurdle and beta GLMMs (issue 23):
``mlglm.core.engines.blockdiag.objective_aux.AuxiliaryLoglik`` and the safeguarded inner Newton
(``mlglm.core.engines.blockdiag.modes_safeguarded``).

* At glmmTMB's reported parameters (``tests/reference/zi_open.json``, made by
  ``tests/reference/references_zi.R`` with glmmTMB 1.1.5) the engine's Laplace
  log-likelihood equals glmmTMB's ``logLik`` and the naive oracle's
  (``tests/zi_oracle.py``) for all five references.
* The exact gradient in x = (beta, theta, gamma, t) against central differences, for
  the Laplace and the AGHQ objective.
* AGHQ with 25 points against the oracle's exact integral (scipy quad per group).
* The conditional modes on a group where the plain Newton iteration fails.
"""
from __future__ import annotations

import numpy as np
import pytest

from mlglm.core.engines.blockdiag.aghq import aghq_loglik
from mlglm.core.spec.families_auxiliary import BoundAuxiliaryKernel
from mlglm.core.spec.families_beta import BetaLogit
from mlglm.core.spec.families_zero import HurdleNB2, ZeroInflatedNB2, ZeroInflatedPoisson
from mlglm.core.spec.covpattern import unstructured
from mlglm.core.engines.crossed.crossprod import CrossPlan
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.crossed.objective import multi_modes
from mlglm.core.engines.crossed.objective_aux import safeguarded_multi_modes
from mlglm.core.engines.blockdiag.modes import ModeFailure, conditional_modes
from mlglm.core.engines.blockdiag.modes_safeguarded import safeguarded_modes
from mlglm.core.engines.blockdiag.objective_aux import AuxiliaryLoglik
from mlglm.core.spec.terms import ReTerm, ReTerms
from test_zero_families import CASES, _case
from tolerances import EXACT_RTOL, GRAD_ATOL, GRAD_RTOL, LLF_AT_PARAMS_RTOL, ORACLE_RTOL
from zi_oracle import marginal_loglik

KERNELS = {"zipoisson": ZeroInflatedPoisson(), "zinb2": ZeroInflatedNB2(),
           "hurdle_nb2": HurdleNB2(), "beta": BetaLogit()}


def _objective(name, nagq=1, groups_kept=None):
    """(objective, x at glmmTMB's estimates, case) of a reference case; ``groups_kept``
    keeps the rows of the first k groups only."""
    family, y, X, beta, Xzi, gamma, groups, sigma, t, ref = _case(name)
    if groups_kept is not None:
        keep = np.isin(groups, np.unique(groups)[:groups_kept])
        y, X, groups = y[keep], X[keep], groups[keep]
        Xzi = None if Xzi is None else Xzi[keep]
    codes = np.unique(groups, return_inverse=True)[1]
    data = make_grouped_data(y, X, np.ones((y.size, 1)), codes)
    obj = AuxiliaryLoglik(KERNELS[family], data, Xzi, nagq=nagq)
    x = np.concatenate([beta, [sigma]] + ([gamma] if Xzi is not None else [])
                       + ([[t]] if t is not None else []))
    return obj, x, (family, y, X, beta, Xzi, gamma, groups, sigma, t, ref)


@pytest.mark.parametrize("name", CASES)
def test_llf_at_glmmtmb_parameters(name):
    # glmmTMB's logLik (Laplace) at its own estimates; observed agreement <= 3e-13
    obj, x, case = _objective(name)
    family, y, X, beta, Xzi, gamma, groups, sigma, t, ref = case
    llf = obj.value_and_gradient(x)[0]
    assert llf == pytest.approx(ref["loglik"], rel=LLF_AT_PARAMS_RTOL)
    oracle = marginal_loglik(family, y, X, beta, groups, sigma, Xzi, gamma, t)
    assert llf == pytest.approx(oracle, rel=ORACLE_RTOL)
    assert obj(x) == pytest.approx(llf, rel=1e-12)


def _central(obj, x, i, h):
    def f(z):
        obj.u, obj._last = None, None
        return obj.value_and_gradient(z)[0]
    e = np.zeros_like(x)
    e[i] = h
    d1 = (f(x + e) - f(x - e)) / (2 * h)
    d2 = (f(x + 2 * e) - f(x - 2 * e)) / (4 * h)
    return (4 * d1 - d2) / 3


@pytest.mark.parametrize("name,nagq", [("sal_zinb2", 1), ("sal_zinb2", 5),
                                       ("sal_hurdle_nb2", 1), ("sal_zip", 3),
                                       ("beta_sim", 1), ("beta_sim", 5)])
def test_gradient_against_central_differences(name, nagq):
    # away from the optimum (every parameter moved), so no component is ~0 by accident
    obj, x, _ = _objective(name, nagq)
    x = x + 0.05 * np.sin(np.arange(x.size) + 1.0)
    obj.u = None
    g = obj.value_and_gradient(x)[1]
    fd = np.array([_central(obj, x, i, 1e-3) for i in range(x.size)])
    np.testing.assert_allclose(g, fd, rtol=GRAD_RTOL, atol=GRAD_ATOL)


@pytest.mark.parametrize("name", ["sal_zinb2", "beta_sim"])
def test_aghq25_against_the_exact_integral(name):
    # a small data set: the first 4 sites (groups) of the reference data
    obj, x, case = _objective(name, nagq=25, groups_kept=4)
    family, y, X, beta, Xzi, gamma, groups, sigma, t, ref = case
    exact = marginal_loglik(family, y, X, beta, groups, sigma, Xzi, gamma, t, method="exact")
    assert obj.value_and_gradient(x)[0] == pytest.approx(exact, rel=EXACT_RTOL)


def test_nagq1_aghq_is_laplace():
    lap, x, _ = _objective("sal_zinb2", 1)
    one = lap.with_nagq(1)
    state = one.modes(x)
    fl = one.kernel_at(x)
    vals = aghq_loglik(fl, one.data, state, one.pattern.Lambda(x[one.p:one.p + 1]), 1)
    assert vals.sum() + one._constants(x) == pytest.approx(lap(x), rel=1e-12)


def test_chunked_aghq_equals_unchunked():
    obj, x, _ = _objective("sal_zinb2", nagq=7)
    v, g = obj.value_and_gradient(x)
    small = AuxiliaryLoglik(obj.aux, obj.data, obj.X_zi_input, nagq=7, chunk_elements=200)
    v2, g2 = small.value_and_gradient(x)
    assert v2 == pytest.approx(v, rel=1e-12)
    np.testing.assert_allclose(g2, g, rtol=1e-9, atol=1e-10)


# --------------------------------------------------------- the inner Newton iteration
def _hard_group():
    """One ZIP group where h is not concave at the start (docs/zero_inflation_math.md
    section 5): 30 zeros and a 3, eta0 = 0.5, pi = 1/2 (a = 0), sigma = 3."""
    y = np.r_[np.zeros(30), 3.0]
    X = np.ones((31, 1))
    codes = np.zeros(31, dtype=int)
    data = make_grouped_data(y, X, np.ones((31, 1)), codes)
    fl = BoundAuxiliaryKernel(ZeroInflatedPoisson(), np.zeros(31), None, np.ones((31, 1)))
    return data, fl, np.array([0.5]), np.array([[3.0]])


def test_plain_newton_fails_where_the_safeguarded_iteration_converges():
    data, fl, beta, Lambda = _hard_group()
    # the plain iteration (step halving on h, which assumes H positive definite) does
    # not find the mode: its step from 0 is a descent direction, halved to nothing, and
    # it stops at b = 0 (observed), 2 away from the mode
    try:
        plain = conditional_modes(fl, data, beta, Lambda, maxiter=30)
        plain_b = float(plain.u[0, 0] * 3.0)
    except ModeFailure:
        plain_b = None
    state = safeguarded_modes(fl, data, beta, Lambda)
    b = float(state.u[0, 0] * 3.0)
    # the oracle's mode (tests/zi_oracle.py, scipy Brent on h): -1.99186
    assert b == pytest.approx(-1.99186, abs=1e-5)
    assert plain_b is None or abs(plain_b - b) > 1.0
    assert state.Hp[0, 0] > 0          # a maximum: the observed curvature is positive there


def test_safeguarded_iteration_from_far_starts():
    data, fl, beta, Lambda = _hard_group()
    ref = safeguarded_modes(fl, data, beta, Lambda).u[0, 0]
    for start in (-20.0, -3.0, 0.5, 8.0, 30.0):
        u = safeguarded_modes(fl, data, beta, Lambda, u0=np.array([[start]])).u[0, 0]
        assert u == pytest.approx(ref, abs=1e-8)


def test_safeguarded_joint_modes_where_plain_newton_fails():
    # the same group through the several-factor engine's joint iteration
    data, fl, beta, Lambda = _hard_group()
    terms = ReTerms((ReTerm("g", np.zeros(31, dtype=int), 1, np.ones((31, 1)),
                            unstructured(1)),))
    plan = CrossPlan(terms)
    eta_fixed = np.full(31, 0.5)
    try:
        with np.errstate(invalid="ignore"):
            plain = multi_modes(fl, plan, data.y, 1.0, eta_fixed, (Lambda,))
        plain_b = float(plain.u[0][0, 0] * 3.0)
    except (ModeFailure, np.linalg.LinAlgError):
        plain_b = None
    st = safeguarded_multi_modes(fl, plan, data.y, 1.0, eta_fixed, (Lambda,))
    assert float(st.u[0][0, 0] * 3.0) == pytest.approx(-1.99186, abs=1e-5)
    assert plain_b is None or abs(plain_b + 1.99186) > 1.0
