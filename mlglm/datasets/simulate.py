r"""Simulate data from a two-level GLMM with one grouping factor.

The model drawn from is, for row i of group j,

.. math::

    \eta_{ij} = x_{ij}'\beta + z_{ij}' b_j, \qquad b_j \sim N(0, \Sigma),
    \qquad y_{ij} \mid b_j \sim F(g^{-1}(\eta_{ij})),

with covariates :math:`x_{ij} = (1, x_1, \dots, x_{p-1})`, each :math:`x_k`
drawn independently from N(0, 1), and :math:`z_{ij}` the first q entries of
:math:`x_{ij}` (random intercept, then random slopes on ``x1 .. x_{q-1}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.spec.family import FAMILY_NAMES, Distribution, distribution_named
from ..design.sm_families import statsmodels_distribution

__all__ = ["SimulatedGLMM", "simulate_glmm"]


@dataclass(frozen=True, eq=False)
class SimulatedGLMM:
    """Data drawn by :func:`simulate_glmm` together with the truth behind them.

    Attributes
    ----------
    data : pandas.DataFrame
        Columns ``y``, ``x1 .. x{p-1}``, ``g`` (group label, e.g. "g0001") and,
        for binomial data with more than one trial per row, ``n`` (trials;
        ``y`` is then the number of successes).
    family : str
        "binomial", "poisson", "gaussian", "negative_binomial" or "gamma".
    fe_params : numpy.ndarray
        True fixed effects, intercept first (length p).
    cov_re : numpy.ndarray
        True random-effects covariance, q x q.
    b : numpy.ndarray
        The random effects actually drawn, n_groups x q (row j is group j, in
        the sorted order of the labels in ``data["g"]``).
    scale : float
        Residual SD for the Gaussian family; 1.0 otherwise.
    dispersion : float or None
        Negative binomial theta or Gamma scale phi the data were drawn with.
    formula : str
        lme4-style formula, e.g. "y ~ x1 + x2 + (1 + x1 | g)"; binomial data
        with trials use "cbind(y, n - y) ~ ...".
    fixed : str
        Fixed part only, e.g. "y ~ x1 + x2" (for statsmodels-style calls).
    groups : str
        Name of the grouping column, "g".
    re_formula : str
        statsmodels-style random-effects formula: "1" or e.g. "~x1".
    """

    data: pd.DataFrame
    family: str
    fe_params: np.ndarray
    cov_re: np.ndarray
    b: np.ndarray
    scale: float
    formula: str
    fixed: str
    groups: str
    re_formula: str
    dispersion: float | None = None


def _distribution(family: Any) -> Distribution:
    """The distribution of a family given as a name or a statsmodels family object."""
    try:
        dist = distribution_named(family) if isinstance(family, str) else \
            statsmodels_distribution(family)
    except ValueError:
        dist = None
    if dist is None:
        raise ValueError(f"family must be one of {FAMILY_NAMES} or a statsmodels "
                         f"Binomial/Poisson/Gaussian/NegativeBinomial/Gamma object, got "
                         f"{family!r}")
    return dist


def _inverse_link(family: Any, dist: Distribution):
    """The mean function: the family object's own link, else logit^-1 (binomial), the
    identity (Gaussian) or exp (the log link of the others)."""
    if not isinstance(family, str):
        return family.link.inverse
    if dist.is_binomial:
        return lambda eta: 1.0 / (1.0 + np.exp(-eta))
    if dist.is_gaussian:
        return lambda eta: eta
    return np.exp


def _as_cov(cov_re: Any) -> np.ndarray:
    """cov_re as a symmetric positive semi-definite q x q array."""
    cov = np.atleast_2d(np.asarray(cov_re, dtype=float))
    q = cov.shape[0]
    if cov.shape != (q, q):
        raise ValueError(f"cov_re must be a scalar or a square matrix, got shape {cov.shape}")
    if not np.allclose(cov, cov.T):
        raise ValueError("cov_re must be symmetric")
    if np.linalg.eigvalsh(cov).min() < -1e-10 * max(1.0, np.abs(cov).max()):
        raise ValueError("cov_re must be positive semi-definite")
    return cov


def _cov_factor(cov: np.ndarray) -> np.ndarray:
    """A matrix F with F F' = cov: Cholesky if positive definite, else from eigh."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        w, v = np.linalg.eigh(cov)
        return v * np.sqrt(np.clip(w, 0.0, None))


def _group_sizes(group_size: Any, n_groups: int) -> np.ndarray:
    """Per-group sizes from an int or a sequence of length n_groups."""
    sizes = np.asarray(group_size)
    if sizes.ndim == 0:
        sizes = np.full(n_groups, int(sizes))
    if sizes.shape != (n_groups,):
        raise ValueError(f"group_size must be an int or have length n_groups={n_groups}")
    if not np.issubdtype(sizes.dtype, np.integer) or sizes.min() < 1:
        raise ValueError("group sizes must be positive integers")
    return sizes.astype(np.intp)


def _formulas(p: int, q: int, binomial_trials: bool) -> tuple[str, str, str]:
    """(lme4 formula, fixed formula, statsmodels re_formula) for p betas, q effects."""
    response = "cbind(y, n - y)" if binomial_trials else "y"
    covariates = [f"x{k}" for k in range(1, p)]
    fixed = f"{response} ~ " + (" + ".join(covariates) if covariates else "1")
    slopes = covariates[: q - 1]
    bar = "(" + " + ".join(["1"] + slopes) + " | g)"
    re_formula = "~" + " + ".join(slopes) if slopes else "1"
    return f"{fixed} + {bar}", fixed, re_formula


def simulate_glmm(family: Any, n_groups: int, group_size: int | Sequence[int],
                  fe_params: Sequence[float], cov_re: Any, seed: Any = None, *,
                  n_trials: int | Sequence[int] = 1, scale: float = 1.0,
                  dispersion: float | None = None) -> SimulatedGLMM:
    r"""Draw data from a two-level GLMM with one grouping factor.

    Row i of group j has linear predictor
    :math:`\eta_{ij} = \beta_0 + \sum_{k=1}^{p-1} \beta_k x_{k,ij} + z_{ij}' b_j`
    with :math:`x_{k,ij} \sim N(0, 1)` independently,
    :math:`z_{ij} = (1, x_{1,ij}, \dots, x_{q-1,ij})` and
    :math:`b_j \sim N(0, \Sigma)`. The response is Bernoulli/binomial with
    mean :math:`n_{ij}\,\mathrm{logit}^{-1}(\eta_{ij})`, Poisson with mean
    :math:`\exp(\eta_{ij})`, negative binomial (NB2, size theta =
    ``dispersion``) or Gamma (scale phi = ``dispersion``, shape 1/phi) with mean
    :math:`\exp(\eta_{ij})`, or Gaussian with mean :math:`\eta_{ij}` and SD
    ``scale``. A statsmodels family object uses its own link's inverse.

    Parameters
    ----------
    family : {"binomial", "poisson", "gaussian", "negative_binomial", "gamma"} or
        statsmodels family
        Response distribution (objects by their statsmodels class).
    n_groups : int
        Number of groups.
    group_size : int or sequence of int
        Rows per group: one size for all groups, or one per group.
    fe_params : sequence of float
        :math:`\beta`, intercept first, then one coefficient per covariate
        ``x1 .. x{p-1}``.
    cov_re : float or array_like (q, q)
        :math:`\Sigma`, covariance of the random intercept and of the random
        slopes on ``x1 .. x{q-1}`` (needs q <= p). A scalar means q = 1.
    seed : None, int or numpy.random.Generator
        Passed to :func:`numpy.random.default_rng`; the same seed gives the
        same data.
    n_trials : int or sequence of int, default 1
        Binomial trials per row (one value, or one per row). With more than
        one trial the data get a column ``n``.
    scale : float, default 1.0
        Residual standard deviation of the Gaussian family.
    dispersion : float
        Negative binomial theta (Var = mu + mu^2 / theta) or Gamma scale phi
        (Var = phi mu^2); required for those families.

    Returns
    -------
    SimulatedGLMM
        The data frame, the true parameters, the drawn random effects ``b``
        and the formulas that describe the model.

    Examples
    --------
    >>> sim = simulate_glmm("binomial", 50, 20, [-0.5, 1.0], [[0.5, 0.1], [0.1, 0.2]], seed=1)
    >>> sim.formula
    'y ~ x1 + (1 + x1 | g)'
    """
    dist = _distribution(family)
    inv_link = _inverse_link(family, dist)
    beta = np.asarray(fe_params, dtype=float).ravel()
    cov = _as_cov(cov_re)
    p, q = beta.size, cov.shape[0]
    if p < 1:
        raise ValueError("fe_params needs at least an intercept")
    if q > p:
        raise ValueError(f"cov_re is {q} x {q} but there are only {p - 1} covariates "
                         "to carry random slopes")
    if int(n_groups) < 1:
        raise ValueError("n_groups must be at least 1")
    n_groups = int(n_groups)
    sizes = _group_sizes(group_size, n_groups)
    nobs = int(sizes.sum())
    if scale <= 0:
        raise ValueError("scale must be positive")
    if (dist.has_dispersion and not dist.is_gaussian) != (dispersion is not None):
        raise ValueError("dispersion= (theta, or the Gamma scale) is for the negative "
                         "binomial and Gamma families, and they need it")
    if dispersion is not None and not dispersion > 0:
        raise ValueError("dispersion must be positive")

    rng = np.random.default_rng(seed)
    # Draw order (fixed, so a seed reproduces the data): b, covariates, response.
    b = rng.standard_normal((n_groups, q)) @ _cov_factor(cov).T
    X = np.column_stack([np.ones(nobs), rng.standard_normal((nobs, p - 1))])
    codes = np.repeat(np.arange(n_groups), sizes)
    eta = X @ beta + np.einsum("ik,ik->i", X[:, :q], b[codes])
    mu = inv_link(eta)

    trials = None
    if dist.is_binomial:
        trials = np.broadcast_to(np.asarray(n_trials), (nobs,)).astype(np.int64)
        if trials.min() < 1:
            raise ValueError("n_trials must be positive")
    # the family's own draw (mlglm.core.spec.family); the Gaussian's dispersion is sigma^2
    d = float(scale) ** 2 if dist.is_gaussian else dispersion
    y = dist.draw(mu, rng, 1 if trials is None else trials, d, 1.0)
    if dist.discrete:
        y = y.astype(np.int64)

    width = max(4, len(str(n_groups)))
    labels = np.array([f"g{j + 1:0{width}d}" for j in range(n_groups)], dtype=object)
    data = pd.DataFrame({"y": y})
    for k in range(1, p):
        data[f"x{k}"] = X[:, k]
    data["g"] = labels[codes]
    with_trials = trials is not None and bool((trials > 1).any())
    if with_trials:
        data["n"] = trials
    formula, fixed, re_formula = _formulas(p, q, with_trials)
    for arr in (beta, cov, b):
        arr.setflags(write=False)
    return SimulatedGLMM(data=data, family=dist.name, fe_params=beta, cov_re=cov, b=b,
                         scale=float(scale) if dist.is_gaussian else 1.0,
                         formula=formula, fixed=fixed, groups="g", re_formula=re_formula,
                         dispersion=None if dispersion is None else float(dispersion))
