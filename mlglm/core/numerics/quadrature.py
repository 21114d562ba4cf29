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

from .memory import available_bytes, format_bytes, grid_bytes

__all__ = ["gauss_hermite", "product_grid", "MAX_GRID_POINTS", "MAX_POINTS_PER_DIMENSION",
           "grid_problem"]

#: Largest product grid we build (K^q nodes); beyond it the memory and time
#: per evaluation stop being sensible for any data set.
MAX_GRID_POINTS = 200_000
#: Most points of a one-dimensional rule. numpy's ``hermegauss`` (Golub-Welsch on a
#: K x K companion matrix) overflows from K = 372 on (NaN weights); up to 371 its
#: rules integrate t^2, t^4 and e^t against N(0, 1) to 3e-15. 301 leaves a margin
#: (and nodes beyond |t| = 35 carry weights below 1e-250 anyway).
MAX_POINTS_PER_DIMENSION = 301


def grid_problem(K: int, q: int, max_rows: int | None = None) -> str:
    """Why K points per dimension in q dimensions cannot be used, or "": more than
    :data:`MAX_POINTS_PER_DIMENSION` per dimension, more than :data:`MAX_GRID_POINTS`
    in the product, or (given the rows of the largest group) a chunk of rows x points
    whose arrays would not fit in the memory available (:mod:`mlglm.core.numerics.memory`).
    Checked before any rule or grid is built."""
    if K > MAX_POINTS_PER_DIMENSION:
        return (f"nagq={K} points per dimension is beyond the {MAX_POINTS_PER_DIMENSION} "
                "a Gauss-Hermite rule can be computed for (its weights overflow); lower nagq")
    nodes = K ** q
    if nodes > MAX_GRID_POINTS:
        return (f"nagq={K} with {q} random effects is a product grid of {nodes:,} points per "
                f"group (about {nodes * 8 / 1e6:,.0f} MB per 1,000 rows); the limit is "
                f"{MAX_GRID_POINTS:,}; lower nagq")
    if max_rows is not None:
        need, avail = grid_bytes(nodes, max_rows), available_bytes()
        if need > avail:
            return (f"nagq={K} with {q} random effects is {nodes:,} points per group; with "
                    f"{max_rows:,} rows in the largest group the quadrature needs about "
                    f"{format_bytes(need)} at once, and {format_bytes(avail)} is available; "
                    "lower nagq")
    return ""


@lru_cache(maxsize=64)
def gauss_hermite(K: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes t and weights w of the K-point rule for E[f(T)], T ~ N(0, 1).

    Returns read-only arrays; ``w.sum() == 1`` to rounding.
    """
    if K < 1:
        raise ValueError(f"nagq must be at least 1, got {K}")
    if K > MAX_POINTS_PER_DIMENSION:
        raise ValueError(grid_problem(K, 1))
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
    problem = grid_problem(K, q)
    if problem:
        raise ValueError(problem)
    t, w = gauss_hermite(K)
    grids = np.meshgrid(*([t] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    wgrids = np.meshgrid(*([np.log(w)] * q), indexing="ij")
    logw = np.sum([g.ravel() for g in wgrids], axis=0)
    nodes.setflags(write=False)
    logw = np.asarray(logw, dtype=float)
    logw.setflags(write=False)
    return nodes, logw
