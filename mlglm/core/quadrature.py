"""Normalised, symmetrised Gauss-Hermite rules and their product grids.

A rule with K points integrates against the standard normal density:
sum_k w_k f(t_k) ~= E[f(T)], T ~ N(0, 1), so the weights sum to one. Nodes come
from numpy's probabilists' Hermite rule (Golub-Welsch) and are then made
exactly antisymmetric (t_k = -t_{K+1-k}) and the weights exactly symmetric, as
MixedModels.jl does: the rule then integrates odd functions to zero exactly,
and K = 1 gives the single node 0 with weight 1 (the Laplace approximation).

For q random effects the product rule has K^q nodes t (rows) with weights
prod_d w_{k_d}; it is cached per (K, q).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.polynomial.hermite_e import hermegauss

__all__ = ["gauss_hermite", "product_grid", "MAX_GRID_POINTS"]

#: Largest product grid we build (K^q nodes); beyond it the memory and time
#: per evaluation stop being sensible for any data set.
MAX_GRID_POINTS = 200_000


@lru_cache(maxsize=64)
def gauss_hermite(K: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights w of the K-point rule for E[f(T)], T ~ N(0, 1).

    Returns read-only arrays; ``w.sum() == 1`` to rounding.
    """
    if K < 1:
        raise ValueError(f"nagq must be at least 1, got {K}")
    t, w = hermegauss(K)
    t = (t - t[::-1]) / 2.0
    w = (w + w[::-1]) / 2.0
    w = w / w.sum()
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


@lru_cache(maxsize=64)
def product_grid(K: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Product rule in q dimensions: nodes (K^q, q) and log-weights (K^q,).

    Log-weights are returned because the objective sums in log space.
    """
    if K ** q > MAX_GRID_POINTS:
        raise ValueError(
            f"nagq={K} with {q} random effects needs {K ** q:,} quadrature points per "
            f"group (limit {MAX_GRID_POINTS:,}); lower nagq")
    t, w = gauss_hermite(K)
    grids = np.meshgrid(*([t] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    wgrids = np.meshgrid(*([np.log(w)] * q), indexing="ij")
    logw = np.sum([g.ravel() for g in wgrids], axis=0)
    nodes.setflags(write=False)
    logw = np.asarray(logw, dtype=float)
    logw.setflags(write=False)
    return nodes, logw
