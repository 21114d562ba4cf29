"""The vectorised core against the naive per-group oracle (tests/oracle.py).

The oracle loops over groups, finds each conditional mode with scipy.optimize,
takes every derivative by finite differences and integrates by scipy.integrate;
it shares no code with ``mlglm``. Here:

* at the same parameters, the core's Laplace and AGHQ (nagq 5 and 9) log-likelihoods
  equal the oracle's, group by group, to ORACLE_RTOL = 1e-8 (binomial logit and
  Poisson log with an offset, q = 1 and q = 2; also probit / cloglog with trials);
* AGHQ with many nodes equals brute-force integration (oracle method="exact") to
  EXACT_RTOL = 1e-6 for q = 1 and q = 2;
* Contraception, ``y ~ age + I(age^2) + urban + livch + (1 + urban | district)``: at
  our AGHQ nagq = 11 estimates, our log-likelihood equals the brute-force 2-D integral
  (DESIGN.md section 5, "AGHQ with random slopes is checked against brute-force
  integration"): a fast variant on six districts, and all 60 districts (~45 s).

No hard-coded reference numbers: both sides are computed here.
"""
from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

import mlglm
import oracle
from mlglm.core.spec.covariance import theta_from_Sigma, theta_to_Lambda
from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.blockdiag.objective import MarginalLoglik

from tolerances import EXACT_RTOL, ORACLE_RTOL

SIGMA = {1: np.array([[0.8]]), 2: np.array([[0.8, 0.25], [0.25, 0.5]])}


def simulate(family, q, seed, link=None, trials=False, n_groups=8, n_per=(3, 10)):
    """Small data set: X = [1, normal, binary], Z = first q columns of X; integer group
    labels 0..G-1 (so the oracle's sorted-label order is the core's group order);
    rows interleaved across groups; a non-zero offset for the Poisson family."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_per[0], n_per[1], size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(g)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.binomial(1, 0.5, size=n)])
    Z = X[:, :q]
    b = rng.normal(size=(n_groups, q)) @ np.linalg.cholesky(SIGMA[q]).T
    beta = np.array([-0.2, 0.6, -0.5])
    offset = rng.normal(scale=0.2, size=n) if family == "poisson" else None
    eta = X @ beta + np.einsum("nq,nq->n", Z, b[g]) + (0.0 if offset is None else offset)
    link = link or ("logit" if family == "binomial" else "log")
    mu = Family(family, link).kernel().inverse_link(eta)
    m = None
    if family == "binomial":
        m = rng.integers(1, 6, size=n).astype(float) if trials else None
        y = rng.binomial(1 if m is None else m.astype(int), mu).astype(float)
    else:
        y = rng.poisson(mu).astype(float)
    return dict(y=y, X=X, Z=Z, g=g, offset=offset, m=m, family=family, link=link,
                beta=beta + 0.05, Sigma=SIGMA[q] * 1.1)


def core_per_group(d, nagq):
    """Per-group log L_j from the core, response constants added back per group."""
    fl = Family(d["family"], d["link"]).kernel()
    data = make_grouped_data(d["y"], d["X"], d["Z"], d["g"], offset=d["offset"], m=d["m"])
    obj = MarginalLoglik(fl, data, nagq=nagq)
    x = np.concatenate([d["beta"], theta_from_Sigma(d["Sigma"])])
    obj.u = None
    per = obj.per_group(x) + data.gsum(fl.log_const(data.y, data.m))
    obj.u = None
    total = obj(x)
    assert total == pytest.approx(per.sum(), rel=1e-13)
    return per, x


def oracle_per_group(d, method, nagq=None, x=None):
    q = d["Z"].shape[1]
    Lambda = theta_to_Lambda(x[len(d["beta"]):], q) if x is not None else None
    return oracle.marginal_loglik(d["y"], d["X"], d["Z"], d["g"], d["beta"], d["Sigma"],
                                  d["family"], d["link"], m=d["m"], offset=d["offset"],
                                  method=method, nagq=nagq, per_group=True, Lambda=Lambda)


def assert_rel(a, b, rtol, what=""):
    a, b = np.asarray(a, float), np.asarray(b, float)
    rel = np.abs(a - b) / np.abs(b)
    assert np.all(rel <= rtol), f"{what}: worst relative difference {rel.max():.2e} > {rtol}"


# --------------------------------------------------------- same parameters, same method
@pytest.mark.parametrize("method, nagq", [("laplace", 1), ("aghq", 5), ("aghq", 9)],
                         ids=["laplace", "aghq5", "aghq9"])
@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_core_equals_oracle_at_same_parameters(family, q, method, nagq):
    d = simulate(family, q, seed=10 * q + (family == "poisson"))
    ours, x = core_per_group(d, nagq)
    ref = oracle_per_group(d, method, nagq, x)
    assert_rel(ours, ref, ORACLE_RTOL, "per group")
    assert_rel(ours.sum(), ref.sum(), ORACLE_RTOL, "total")


@pytest.mark.parametrize("method, nagq", [("laplace", 1), ("aghq", 5)], ids=["laplace", "aghq5"])
@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_core_equals_oracle_binomial_links_with_trials(link, q, method, nagq):
    d = simulate("binomial", q, seed=30 + q, link=link, trials=True)
    ours, x = core_per_group(d, nagq)
    ref = oracle_per_group(d, method, nagq, x)
    assert_rel(ours, ref, ORACLE_RTOL, f"binomial/{link} with trials")


def test_model_loglike_equals_oracle():
    """The same comparison through the public array API: MixedGLM(endog, exog, groups,
    exog_re, family).loglike(params) with params = (beta, vech(Sigma)), row-major lower."""
    d = simulate("poisson", 2, seed=41)
    model = mlglm.MixedGLM(d["y"], d["X"], d["g"], exog_re=d["Z"], offset=d["offset"],
                           family=sm.families.Poisson())
    params = np.concatenate([d["beta"], d["Sigma"][np.tril_indices(2)]])
    for method, nagq in (("laplace", None), ("aghq", 5)):
        ours = model.loglike(params, method=method, nagq=nagq)
        ref = oracle.marginal_loglik(d["y"], d["X"], d["Z"], d["g"], d["beta"], d["Sigma"],
                                     "poisson", offset=d["offset"], method=method, nagq=nagq)
        assert_rel(ours, ref, ORACLE_RTOL, method)


# ------------------------------------------------------------ AGHQ -> exact integral
@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_aghq_many_nodes_equals_brute_force_q1(family):
    d = simulate(family, 1, seed=51)
    ours, _ = core_per_group(d, 25)
    exact = oracle_per_group(d, "exact")
    assert_rel(ours, exact, EXACT_RTOL, "nagq=25 vs exact, q=1")
    # ... while Laplace is visibly different for these small groups (the test has teeth)
    lap, _ = core_per_group(d, 1)
    assert np.max(np.abs(lap - exact) / np.abs(exact)) > 100 * EXACT_RTOL


@pytest.mark.parametrize("family", ["binomial", "poisson"])
def test_aghq_many_nodes_equals_brute_force_q2(family):
    d = simulate(family, 2, seed=52, n_groups=4, n_per=(4, 8))
    ours, _ = core_per_group(d, 15)
    exact = oracle_per_group(d, "exact")
    assert_rel(ours, exact, EXACT_RTOL, "nagq=15 vs exact, q=2")
    lap, _ = core_per_group(d, 1)
    assert np.max(np.abs(lap - exact) / np.abs(exact)) > 100 * EXACT_RTOL


# ------------------------------------- Contraception (1 + urban | district) at our AGHQ fit
# six districts chosen to cover the shapes a group can take: 2 rows all urban ("3"),
# no urban rows so the slope is not identified by the data ("10"), the largest
# (118 rows, "14"), 4 rows ("49"), all urban ("53", 19 rows; "55", 6 rows)
FAST_DISTRICTS = ["3", "10", "14", "49", "53", "55"]


def _contraception_check(reference_fit, contraception, districts):
    res = reference_fit("contra_rs", 11)
    assert res.converged
    df = contraception if districts is None else \
        contraception[contraception["district"].isin(districts)]
    model = mlglm.MixedGLM.from_formula("y ~ age + I(age**2) + urban + livch", df,
                                        groups="district", re_formula="~urban",
                                        family=sm.families.Binomial())
    assert list(model.exog_names) == list(res.model.exog_names)
    params = np.asarray(res.params)
    ours = model.loglike(params, method="aghq", nagq=11)
    if districts is None:
        assert ours == pytest.approx(res.llf, rel=1e-12)
    exact = oracle.marginal_loglik(model.endog, model.exog, model.exog_re,
                                   np.asarray(model.groups), params[:model.k_fe],
                                   np.asarray(res.cov_re), "binomial", method="exact")
    assert_rel(ours, exact, EXACT_RTOL, "contraception AGHQ(11) vs brute force")


def test_contraception_random_slope_aghq_equals_brute_force_subset(reference_fit,
                                                                   contraception):
    _contraception_check(reference_fit, contraception, FAST_DISTRICTS)


def test_contraception_random_slope_aghq_equals_brute_force_all_districts(reference_fit,
                                                                          contraception):
    """All 60 districts, 1934 rows: 40-50 s of scipy dblquad on 2 cores (under the 60 s
    above which it would be marked slow; the subset variant above takes ~4 s)."""
    _contraception_check(reference_fit, contraception, None)
