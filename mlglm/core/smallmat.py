"""Stacks of small symmetric positive-definite matrices: inverse, solve, log-det.

Every group contributes one q x q matrix H_j = Lambda'M_j Lambda + I. LAPACK's
batched routines carry a per-matrix overhead that dominates when there are
10^4 groups of 2 x 2 matrices, so q = 1 and q = 2 use the closed forms
(1/h; the adjugate over the determinant) and larger q fall back to numpy.linalg.
"""
from __future__ import annotations

import numpy as np

__all__ = ["spd_inv", "spd_solve", "spd_logdet"]


def spd_inv(H: np.ndarray) -> np.ndarray:
    """H^{-1} for a (G, q, q) stack."""
    q = H.shape[-1]
    if q == 1:
        return 1.0 / H
    if q == 2:
        a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * d - b * b
        out = np.empty_like(H)
        out[:, 0, 0] = d / det
        out[:, 1, 1] = a / det
        out[:, 0, 1] = out[:, 1, 0] = -b / det
        return out
    return np.linalg.inv(H)


def spd_solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H^{-1} g for a (G, q, q) stack and (G, q) right-hand sides."""
    q = H.shape[-1]
    if q == 1:
        return g / H[:, 0, :]
    if q == 2:
        a, b, d = H[:, 0, 0], H[:, 0, 1], H[:, 1, 1]
        det = a * d - b * b
        out = np.empty_like(g)
        out[:, 0] = (d * g[:, 0] - b * g[:, 1]) / det
        out[:, 1] = (a * g[:, 1] - b * g[:, 0]) / det
        return out
    return np.linalg.solve(H, g[..., None])[..., 0]


def spd_logdet(H: np.ndarray) -> np.ndarray:
    """log det H for a (G, q, q) stack of positive-definite matrices."""
    q = H.shape[-1]
    if q == 1:
        return np.log(H[:, 0, 0])
    if q == 2:
        return np.log(H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] * H[:, 1, 0])
    return np.linalg.slogdet(H)[1]
