"""Relative covariance factor: theta <-> Lambda, and the bounds on theta.

The random effects of one group are b = Lambda u with u ~ N(0, I_q) and Lambda
lower triangular, so Sigma = Lambda Lambda' (GLMM) or sigma^2 Lambda Lambda'
(Gaussian LMM, where Lambda is relative to the residual SD).

theta holds the free elements of Lambda in column-major order of the lower
triangle (the order lme4 and MixedModels.jl use), e.g. for q = 2
theta = (Lambda_11, Lambda_21, Lambda_22). With ``diagonal=True`` only the
diagonal is free (uncorrelated random effects, ``(1 + x || g)``).
Diagonal elements are bounded below by 0 (a zero is a singular fit); the
off-diagonal elements are free.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["n_theta", "theta_index", "theta_to_Lambda", "Lambda_to_theta",
           "theta_lower_bounds", "theta_is_diagonal_entry", "Sigma_from_Lambda",
           "theta_from_Sigma", "Sigma_from_vech"]


def theta_index(q: int, diagonal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices in Lambda of each theta element (column-major lower triangle).

    Cached (every objective evaluation maps theta to Lambda); the arrays are read-only.
    """
    return _theta_index(int(q), bool(diagonal))


@lru_cache(maxsize=None)
def _theta_index(q: int, diagonal: bool) -> tuple[np.ndarray, np.ndarray]:
    if diagonal:
        rows = cols = list(range(q))
    else:
        rows = [r for c in range(q) for r in range(c, q)]
        cols = [c for c in range(q) for r in range(c, q)]
    rows, cols = np.array(rows, dtype=np.intp), np.array(cols, dtype=np.intp)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


def n_theta(q: int, diagonal: bool = False) -> int:
    """Number of free parameters: q(q+1)/2, or q when diagonal."""
    return q if diagonal else q * (q + 1) // 2


def theta_is_diagonal_entry(q: int, diagonal: bool = False) -> np.ndarray:
    """Boolean mask over theta: True where the element sits on Lambda's diagonal."""
    r, c = theta_index(q, diagonal)
    return r == c


def theta_to_Lambda(theta, q: int, diagonal: bool = False) -> np.ndarray:
    """Lambda (q x q, lower triangular) from theta."""
    theta = np.asarray(theta, dtype=float)
    r, c = theta_index(q, diagonal)
    if theta.shape != (r.size,):
        raise ValueError(f"theta must have {r.size} elements for q={q}, got {theta.shape}")
    Lambda = np.zeros((q, q))
    Lambda[r, c] = theta
    return Lambda


def Lambda_to_theta(Lambda, diagonal: bool = False) -> np.ndarray:
    """theta from a lower-triangular Lambda (the inverse of :func:`theta_to_Lambda`)."""
    Lambda = np.asarray(Lambda, dtype=float)
    r, c = theta_index(Lambda.shape[0], diagonal)
    return Lambda[r, c].copy()


def theta_lower_bounds(q: int, diagonal: bool = False) -> np.ndarray:
    """Lower bounds for theta: 0 on Lambda's diagonal, -inf elsewhere."""
    return np.where(theta_is_diagonal_entry(q, diagonal), 0.0, -np.inf)


def Sigma_from_Lambda(Lambda) -> np.ndarray:
    """Sigma = Lambda Lambda'."""
    Lambda = np.asarray(Lambda, dtype=float)
    return Lambda @ Lambda.T


def Sigma_from_vech(v, q: int) -> np.ndarray:
    """The symmetric q x q matrix whose row-major lower triangle is v
    (the order of ``results.params`` after the fixed effects)."""
    S = np.zeros((q, q))
    S[np.tril_indices(q)] = np.asarray(v, dtype=float)
    return S + np.tril(S, -1).T


def theta_from_Sigma(Sigma, diagonal: bool = False) -> np.ndarray:
    """theta whose Lambda is the lower Cholesky factor of Sigma (diagonal >= 0).

    A positive semi-definite Sigma with zero pivots is handled by an LDL'-style
    factorisation that leaves zero columns, so boundary fits map back exactly.
    """
    Sigma = np.asarray(Sigma, dtype=float)
    q = Sigma.shape[0]
    if diagonal:
        return np.sqrt(np.clip(np.diag(Sigma), 0.0, None))
    L = np.zeros((q, q))
    for j in range(q):
        d = Sigma[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(1.0, abs(Sigma[j, j])):
            continue  # zero pivot: column j stays 0 (singular direction)
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (Sigma[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return Lambda_to_theta(L)
