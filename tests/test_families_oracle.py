"""The negative binomial and Gamma core against the naive oracle (tests/oracle.py).

The oracle takes its per-row log-likelihoods from scipy.stats (nbinom, gamma), finds
each group's mode with scipy.optimize and finite differences, and integrates by
scipy.integrate; it shares no code with ``mlglm``. At the same parameters:

* Laplace and AGHQ (nagq 5 and 9) per-group log-likelihoods equal the oracle's to
  ORACLE_RTOL = 1e-8, q = 1 and 2, NB2 (log) and Gamma (log, inverse);
* AGHQ with many nodes equals brute-force integration to EXACT_RTOL = 1e-6.

No hard-coded reference numbers: both sides are computed here.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from mlglm.core.spec.covariance import theta_from_Sigma, theta_to_Lambda
from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.blockdiag.objective import MarginalLoglik

from tolerances import EXACT_RTOL, ORACLE_RTOL

SIGMA = {1: np.array([[0.5]]), 2: np.array([[0.5, 0.1], [0.1, 0.3]])}
#: dispersion used to simulate and to evaluate: NB theta, Gamma phi (= 1/shape)
DISPERSION = {"negative_binomial": 2.5, "gamma": 0.3}
CASES = [("negative_binomial", "log"), ("gamma", "log"), ("gamma", "inverse")]
IDS = [f"{f}-{l}" for f, l in CASES]


def simulate(family, link, q, seed, n_groups=8, n_per=(3, 10)):
    """X = [1, normal, binary], Z = the first q columns; integer group labels 0..G-1;
    rows interleaved; an offset. The inverse link is kept away from 0 (eta ~ 1)."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(n_per[0], n_per[1], size=n_groups)
    g = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(g)
    n = g.size
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.binomial(1, 0.5, size=n)])
    Z = X[:, :q]
    scale = 0.15 if link == "inverse" else 1.0
    Sigma = SIGMA[q] * scale ** 2
    b = rng.normal(size=(n_groups, q)) @ np.linalg.cholesky(Sigma).T
    beta = np.array([1.0, 0.1, -0.1]) if link == "inverse" else np.array([0.4, 0.5, -0.4])
    offset = rng.normal(scale=0.2 * scale, size=n)
    eta = X @ beta + np.einsum("nq,nq->n", Z, b[g]) + offset
    mu = Family(family, link).kernel().inverse_link(eta)
    d = DISPERSION[family]
    y = (rng.negative_binomial(d, d / (d + mu)).astype(float) if family == "negative_binomial"
         else rng.gamma(1 / d, mu * d))
    return dict(y=y, X=X, Z=Z, g=g, offset=offset, family=family, link=link,
                beta=beta + 0.02, Sigma=Sigma * 1.1, dispersion=d * 1.2)


def core_per_group(d, nagq):
    fl = Family(d["family"], d["link"]).kernel()
    data = make_grouped_data(d["y"], d["X"], d["Z"], d["g"], offset=d["offset"])
    obj = MarginalLoglik(fl, data, nagq=nagq)
    x = np.concatenate([d["beta"], theta_from_Sigma(d["Sigma"]), [np.log(d["dispersion"])]])
    obj.u = None
    per = obj.per_group(x) + obj.group_constants(x)
    obj.u = None
    assert obj(x) == pytest.approx(per.sum(), rel=1e-13)
    return per, x


def oracle_per_group(d, method, nagq, x):
    q = d["Z"].shape[1]
    p = len(d["beta"])
    Lambda = theta_to_Lambda(x[p:p + q * (q + 1) // 2], q)
    return oracle.marginal_loglik(d["y"], d["X"], d["Z"], d["g"], d["beta"], None,
                                  (d["family"], d["dispersion"]), d["link"],
                                  offset=d["offset"], method=method, nagq=nagq,
                                  per_group=True, Lambda=Lambda)


def assert_rel(a, b, rtol, what):
    rel = np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))
    assert np.all(rel <= rtol), f"{what}: worst relative difference {rel.max():.2e} > {rtol}"


@pytest.mark.parametrize("method, nagq", [("laplace", 1), ("aghq", 5), ("aghq", 9)],
                         ids=["laplace", "aghq5", "aghq9"])
@pytest.mark.parametrize("q", [1, 2])
@pytest.mark.parametrize("family, link", CASES, ids=IDS)
def test_core_equals_oracle_at_same_parameters(family, link, q, method, nagq):
    d = simulate(family, link, q, seed=10 * q + len(link))
    ours, x = core_per_group(d, nagq)
    ref = oracle_per_group(d, method, nagq, x)
    assert_rel(ours, ref, ORACLE_RTOL, f"{family}/{link} per group")


@pytest.mark.parametrize("q", [1, pytest.param(2, marks=pytest.mark.slow)])
@pytest.mark.parametrize("family, link", CASES, ids=IDS)
def test_many_node_aghq_equals_brute_force_integral(family, link, q):
    """nagq = 25 (q = 1) / 15 (q = 2) against scipy.integrate over the random effects
    (q = 2: dblquad, 10-20 s per case, marked slow)."""
    d = simulate(family, link, q, seed=100 + q, n_groups=5)
    ours, x = core_per_group(d, 25 if q == 1 else 15)
    exact = oracle_per_group(d, "exact", None, x)
    assert_rel(ours, exact, EXACT_RTOL, f"{family}/{link} q={q} vs integral")


# ------------------------------------------------------------------ nested factors
def nested_data(family, link, seed, n_top=5, n_mid=3, n_rows=3):
    """Rows in families (level 0) in communities (level 1): codes, y from the model."""
    rng = np.random.default_rng(seed)
    n = n_top * n_mid * n_rows
    fam_ = np.arange(n) // n_rows
    com = fam_ // n_mid
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    scale = 0.15 if link == "inverse" else 1.0
    beta = np.array([1.0, 0.1]) if link == "inverse" else np.array([0.5, 0.3])
    eta = X @ beta + scale * (0.6 * rng.normal(size=n_top)[com]
                              + 0.4 * rng.normal(size=n_top * n_mid)[fam_])
    mu = Family(family, link).kernel().inverse_link(eta)
    d = DISPERSION[family]
    y = (rng.negative_binomial(d, d / (d + mu)).astype(float) if family == "negative_binomial"
         else rng.gamma(1 / d, mu * d))
    return dict(y=y, X=X, com=com, fam=fam_, n_top=n_top, n_mid=n_mid, beta=beta,
                sds=(0.6 * scale, 0.4 * scale), family=family, link=link, dispersion=d)


@pytest.mark.parametrize("family, link", CASES, ids=IDS)
def test_nested_aghq_equals_brute_force_integral(family, link):
    """Nested AGHQ through both levels (25 points per level) equals iterated
    Gauss-Legendre integration (tests/oracle_nested.py, scipy.stats densities) to
    EXACT_RTOL; Laplace on the same data is the several-factor Laplace (MultiLaplace)."""
    import oracle_nested
    from mlglm.core.spec.covpattern import unstructured
    from mlglm.core.engines.crossed.objective import MultiLaplace
    from mlglm.core.engines.nested.objective import NestedObjective
    from mlglm.core.spec.terms import ReTerm, ReTerms
    d = nested_data(family, link, seed=3)
    n = d["y"].size
    one = np.ones((n, 1))
    terms = ReTerms((ReTerm("c", d["com"], d["n_top"], one, unstructured(1)),
                     ReTerm("c:f", d["fam"], d["n_top"] * d["n_mid"], one, unstructured(1))))
    fl = Family(family, link).kernel()
    x = np.concatenate([d["beta"], np.asarray(d["sds"]) * 1.1, [np.log(d["dispersion"])]])
    args = (d["y"], np.ones(n), d["X"], np.zeros(n), terms)
    got = NestedObjective(fl, *args, nagq=25)(x)
    levels = [(d["com"], one, np.array([[x[2]]])), (d["fam"], one, np.array([[x[3]]]))]
    exact = oracle_nested.nested_loglik(d["y"], d["X"], d["beta"], levels,
                                        (family, d["dispersion"]), link)
    assert got == pytest.approx(exact, rel=EXACT_RTOL)
    lap = NestedObjective(fl, *args, nagq=1)
    assert lap(x) == pytest.approx(MultiLaplace(fl, *args)(x), rel=1e-10)


@pytest.mark.parametrize("nagq", [1, 3], ids=["laplace", "aghq3"])
@pytest.mark.parametrize("family, link", CASES[:2], ids=IDS[:2])
def test_nested_gradient_with_dispersion_and_weights(family, link, nagq):
    """The nested engine's exact gradient (including d/dt) against central differences,
    a correlated random slope at the top level, frequency and variance weights."""
    from mlglm.core.spec.covpattern import unstructured
    from mlglm.core.engines.nested.objective import NestedObjective
    from mlglm.core.spec.terms import ReTerm, ReTerms
    d = nested_data(family, link, seed=8, n_top=8, n_mid=3, n_rows=4)
    n = d["y"].size
    rng = np.random.default_rng(1)
    Z2 = np.column_stack([np.ones(n), rng.normal(size=n)])
    terms = ReTerms((ReTerm("c", d["com"], d["n_top"], Z2, unstructured(2)),
                     ReTerm("c:f", d["fam"], d["n_top"] * d["n_mid"], np.ones((n, 1)),
                            unstructured(1))))
    obj = NestedObjective(Family(family, link).kernel(), d["y"], np.ones(n), d["X"],
                          np.zeros(n), terms, nagq, freq=rng.integers(1, 4, n).astype(float),
                          var=rng.uniform(0.5, 2.0, n))
    x = obj.start() + 0.05
    obj.u = None
    _, g = obj.value_and_gradient(x)

    def val(z):
        obj.u = None
        return obj(z)
    h = 1e-4
    fd = np.array([(4 * (val(x + h * e) - val(x - h * e)) / (2 * h)
                    - (val(x + 2 * h * e) - val(x - 2 * h * e)) / (4 * h)) / 3
                   for e in np.eye(x.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6)
