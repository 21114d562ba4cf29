"""Data for the quadrature study: the hard and the easy regimes of issue 13.

Every simulator returns a pandas DataFrame with columns y, time, x, trt, id (integer
codes 0..G-1), the formula to fit and the true (beta, Sigma); seeds go through
``np.random.default_rng(seed)``.

* :func:`hard_binary`: longitudinal binary data like the data set of the issue: G
  subjects with n_j visits at time = 0, 1, ..., n_j - 1 (scaled by ``time_scale``), a
  treatment at subject level, ``y ~ time * trt + (1 + time | id)``, a random-intercept
  SD of 2-8 on the logit scale and a random slope on time; with an intercept SD of 8
  most subjects are all-0 or all-1.
* :func:`poisson_small`: Poisson counts with mean about 0.4,
  ``y ~ x + (1 + x | id)``, 3-10 rows per group.
* :func:`easy_binomial`, :func:`easy_poisson`: the simulated benchmark regime
  (benchmarks/cases.py: moderate SDs, 20 rows per group).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["hard_binary", "poisson_small", "easy_binomial", "easy_poisson", "Sigma_of"]

#: fixed effects of the hard binary design: (Intercept), time, trt, time:trt
HARD_BETA = (-2.0, -0.4, 0.5, -0.3)


def Sigma_of(sd0, sd1, corr):
    """2 x 2 covariance from two SDs and a correlation."""
    c = corr * sd0 * sd1
    return np.array([[sd0 ** 2, c], [c, sd1 ** 2]])


def _frame(rng, sizes, time_scale):
    G = sizes.size
    gid = np.repeat(np.arange(G), sizes)
    time = np.concatenate([np.arange(s) for s in sizes]).astype(float) * time_scale
    trt = rng.integers(0, 2, size=G)[gid].astype(float)
    return gid, time, trt


def hard_binary(seed, G=300, sizes=(3, 10), sd0=8.0, sd1=1.0, corr=-0.2, time_scale=1.0,
                beta=HARD_BETA):
    """Binary ``y ~ time * trt + (1 + time | id)``; ``sizes`` an int (every group) or a
    (min, max) range of visits per subject."""
    rng = np.random.default_rng(seed)
    if np.isscalar(sizes):
        n = np.full(G, int(sizes))
    else:
        n = rng.integers(sizes[0], sizes[1] + 1, size=G)
    gid, time, trt = _frame(rng, n, time_scale)
    Sigma = Sigma_of(sd0, sd1, corr)
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky(Sigma).T
    beta = np.asarray(beta, float)
    eta = (beta[0] + beta[1] * time + beta[2] * trt + beta[3] * time * trt
           + b[gid, 0] + b[gid, 1] * time)
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float)
    df = pd.DataFrame({"y": y, "time": time, "trt": trt, "id": gid})
    return df, "y ~ time * trt + (1 + time | id)", beta, Sigma


def poisson_small(seed, G=300, sizes=(3, 10), sd0=1.0, sd1=0.5, corr=0.3,
                  beta=(-1.2, 0.3)):
    """Poisson ``y ~ x + (1 + x | id)`` with small counts (mean about 0.4)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(sizes[0], sizes[1] + 1, size=G)
    gid = np.repeat(np.arange(G), n)
    x = rng.normal(size=gid.size)
    Sigma = Sigma_of(sd0, sd1, corr)
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky(Sigma).T
    eta = beta[0] + beta[1] * x + b[gid, 0] + b[gid, 1] * x
    y = rng.poisson(np.exp(eta)).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "id": gid})
    return df, "y ~ x + (1 + x | id)", np.asarray(beta, float), Sigma


def easy_binomial(seed, G=200, size=20, beta=(-0.5, 0.8)):
    """Binomial ``y ~ x + (1 + x | id)``, Sigma of the benchmark cases
    ([[0.6, 0.15], [0.15, 0.3]], benchmarks/cases.py)."""
    rng = np.random.default_rng(seed)
    gid = np.repeat(np.arange(G), size)
    x = rng.normal(size=gid.size)
    Sigma = np.array([[0.6, 0.15], [0.15, 0.3]])
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky(Sigma).T
    eta = beta[0] + beta[1] * x + b[gid, 0] + b[gid, 1] * x
    y = rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "id": gid})
    return df, "y ~ x + (1 + x | id)", np.asarray(beta, float), Sigma


def easy_poisson(seed, G=200, size=20, beta=(0.5, 0.3)):
    """Poisson ``y ~ x + (1 + x | id)``, Sigma of the benchmark cases
    ([[0.2, 0.04], [0.04, 0.1]])."""
    rng = np.random.default_rng(seed)
    gid = np.repeat(np.arange(G), size)
    x = rng.normal(size=gid.size)
    Sigma = np.array([[0.2, 0.04], [0.04, 0.1]])
    b = rng.normal(size=(G, 2)) @ np.linalg.cholesky(Sigma).T
    eta = beta[0] + beta[1] * x + b[gid, 0] + b[gid, 1] * x
    y = rng.poisson(np.exp(eta)).astype(float)
    df = pd.DataFrame({"y": y, "x": x, "id": gid})
    return df, "y ~ x + (1 + x | id)", np.asarray(beta, float), Sigma
