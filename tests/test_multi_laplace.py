"""The several-factor Laplace objective (core/laplace_multi.py): value against a naive
dense oracle (scipy's trust-region Newton for the joint mode, a dense log-determinant),
exact gradient against central differences, and one factor as a special case."""
import numpy as np
import pytest
from scipy import optimize

from mlglm.core.engines.crossed.blocked import BlockedStructure
from mlglm.core.spec.covpattern import diagonal, unstructured
from mlglm.core.engines.crossed.crossprod import CrossPlan
from mlglm.core.spec.family import Family
from mlglm.core.engines.blockdiag.grouping import make_grouped_data
from mlglm.core.engines.crossed.objective import MultiLaplace
from mlglm.core.engines.blockdiag.objective import MarginalLoglik
from mlglm.core.spec.terms import ReTerm, ReTerms
from tolerances import GRAD_ATOL, GRAD_RTOL, ORACLE_RTOL, SAME_NUMBER_RTOL


def _dense_laplace(fl, y, m, X, off, terms, x):
    """log L by the book: the joint mode of h(u) by scipy (trust-exact, dense Hessian)
    and -1/2 log|Lambda'Z'WZ Lambda + I| from a dense slogdet."""
    p = X.shape[1]
    beta, Lams = x[:p], terms.Lambdas(x[p:])
    n = len(y)
    cols = []
    for t, L in zip(terms, Lams):
        Zf = np.zeros((n, t.n_levels * t.q))
        for r in range(t.q):
            Zf[np.arange(n), t.codes * t.q + r] = t.Z[:, r]
        cols.append(Zf @ np.kron(np.eye(t.n_levels), L))
    ZL = np.hstack(cols)
    eta0 = off + X @ beta

    def negh(u):
        return -(fl.loglik(eta0 + ZL @ u, y, m).sum() - u @ u / 2)

    def grad(u):
        return -(ZL.T @ fl.derivatives(eta0 + ZL @ u, y, m)[0] - u)

    def hess(u):
        d2 = fl.derivatives(eta0 + ZL @ u, y, m)[1]
        return ZL.T @ (d2[:, None] * ZL) + np.eye(u.size)
    r = optimize.minimize(negh, np.zeros(ZL.shape[1]), jac=grad, hess=hess, method="trust-exact",
                          options={"gtol": 1e-13})
    return -r.fun - 0.5 * np.linalg.slogdet(hess(r.x))[1]


def _problem(family, link, seed=3, n=300):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 30, n), rng.integers(0, 8, n)
    c = a // 6
    x1, z = rng.normal(size=n), rng.normal(size=n)
    X = np.column_stack([np.ones(n), x1])
    eta = 0.2 + 0.5 * x1 + rng.normal(size=30)[a] + 0.7 * rng.normal(size=8)[b] \
        + 0.5 * rng.normal(size=5)[c]
    if family == "binomial":
        m = np.full(n, 3.0)
        y = rng.binomial(3, 1 / (1 + np.exp(-eta))).astype(float)
    else:
        m = np.ones(n)
        y = rng.poisson(np.exp(eta)).astype(float)
    one = np.ones((n, 1))
    structures = {
        "crossed": [ReTerm("a", a, 30, one, unstructured(1)), ReTerm("b", b, 8, one, unstructured(1))],
        "three terms": [ReTerm("a", a, 30, np.column_stack([one[:, 0], z]), unstructured(2)),
                        ReTerm("b", b, 8, np.column_stack([one[:, 0], x1]), diagonal(2)),
                        ReTerm("c", c, 5, one, unstructured(1))],
        # every term scalar, two of them slopes, two dense terms (the scalar leverage path)
        "scalar slopes": [ReTerm("a", a, 30, z[:, None], unstructured(1)),
                          ReTerm("b", b, 8, x1[:, None], unstructured(1)),
                          ReTerm("c", c, 5, one, unstructured(1))],
        "nested": [ReTerm("a", a, 30, one, unstructured(1)),
                   ReTerm("c", c, 5, np.column_stack([one[:, 0], z]), unstructured(2))],
    }
    return Family(family, link).kernel(), y, m, X, np.zeros(n), structures, rng


FAMILIES = [("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"),
            ("poisson", "log")]


@pytest.mark.parametrize("family, link", FAMILIES)
@pytest.mark.parametrize("structure", ["crossed", "three terms", "scalar slopes", "nested"])
@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_value_equals_dense_oracle_and_gradient_is_exact(family, link, structure, mode):
    fl, y, m, X, off, structures, rng = _problem(family, link)
    terms = ReTerms(structures[structure])
    obj = MultiLaplace(fl, y, m, X, off, terms, CrossPlan(terms, BlockedStructure(terms, mode=mode)))
    x = np.concatenate([[0.1, 0.4], rng.uniform(0.3, 1.0, terms.n_theta)])
    value, grad = obj.value_and_gradient(x)
    assert value == pytest.approx(_dense_laplace(fl, y, m, X, off, terms, x), rel=ORACLE_RTOL)
    h = 1e-5
    fd = []
    for e in np.eye(x.size):
        obj.u = None
        up = obj(x + h * e)
        obj.u = None
        fd.append((up - obj(x - h * e)) / (2 * h))
    fd = np.array(fd)
    assert np.all(np.abs(grad - fd) <= 10 * (GRAD_ATOL + GRAD_RTOL * np.abs(fd)))


def test_one_factor_is_the_one_factor_engine():
    fl, y, m, X, off, structures, rng = _problem("binomial", "logit")
    t = structures["three terms"][0]
    multi = MultiLaplace(fl, y, m, X, off, ReTerms((t,)))
    one = MarginalLoglik(fl, make_grouped_data(y, X, t.Z, t.codes, offset=off, m=m), 1,
                         pattern=t.pattern)
    x = np.concatenate([[0.1, 0.4], [0.8, 0.2, 0.5]])
    v1, g1 = multi.value_and_gradient(x)
    v2, g2 = one.value_and_gradient(x)
    assert v1 == pytest.approx(v2, rel=SAME_NUMBER_RTOL * 100)
    assert np.allclose(g1, g2, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("structure", ["crossed", "scalar slopes"])
def test_theta_curvature_guess_and_the_fit_it_starts(structure):
    """The preconditioner's one-way guess of -d2 log L / d theta_k^2 (MultiLaplace.
    theta_curvature) is within a factor 3 of central differences of the exact gradient
    at the start where the data have those variances ("crossed"; the slopes of "scalar
    slopes" have none, and there the Fisher-type guess is 3.5 times the observed
    curvature at theta = 0.5), and the fit it preconditions is the fit the
    finite-difference preconditioner gives (llf to 1e-9 relative, x to 1e-4)."""
    from mlglm.core.fit.optimize import fit_glmm
    fl, y, m, X, off, structures, rng = _problem("binomial", "logit")
    terms = ReTerms(structures[structure])
    obj = MultiLaplace(fl, y, m, X, off, terms)
    x0 = obj.start()
    obj.u = None
    obj.beta_information(x0)
    guess = obj.theta_curvature(x0)
    p = X.shape[1]
    for i, c in enumerate(guess if structure == "crossed" else []):
        h = 1e-4
        e = np.zeros(x0.size)
        e[p + i] = h
        fd = -(obj.value_and_gradient(x0 + e)[1][p + i]
               - obj.value_and_gradient(x0 - e)[1][p + i]) / (2 * h)
        assert fd / 3 < c < 3 * fd
    fast = fit_glmm(MultiLaplace(fl, y, m, X, off, terms))
    slow_obj = MultiLaplace(fl, y, m, X, off, terms)
    slow_obj.theta_curvature = lambda x: None          # the finite-difference preconditioner
    slow = fit_glmm(slow_obj)
    assert fast.llf == pytest.approx(slow.llf, rel=1e-9)
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-4, atol=1e-5)
