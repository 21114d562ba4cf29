"""Stacks of small symmetric positive-definite matrices: inverse, solve, log-det.

Every group contributes one q x q matrix H_j = Lambda'M_j Lambda + I. LAPACK's
batched routines carry a per-matrix overhead that dominates when there are
10^4 groups of 2 x 2 matrices, so q = 1 and q = 2 use the closed forms
(1/h; the adjugate over the determinant) and larger q fall back to numpy.linalg.
The same goes for the Cholesky factor and its inverse (:func:`chol_and_inverse`,
the Gaussian LMM's blocks L_j). The ``pairs_*`` functions work on stacks stored
by their unique entries with the groups along the last axis (the layout of the
Laplace inner loops, see the comment above :func:`pair_index`).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["spd_inv", "spd_solve", "spd_logdet", "chol_and_inverse", "pair_index",
           "full_index", "pairs_to_full", "full_to_pairs", "congruence", "pairs_solve",
           "pairs_inv", "pairs_logdet", "pairs_matvec", "pairs_cross_sum"]


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


def chol_and_inverse(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors L_j (L_j L_j' = H_j) and their inverses, (G, q, q) each.

    q = 1: sqrt(h) and its reciprocal. q = 2: l11 = sqrt(a), l21 = b / l11,
    l22 = sqrt(d - l21^2), and the triangular inverse
    [[1/l11, 0], [-l21/(l11 l22), 1/l22]]. Larger q: numpy.linalg (batched
    LAPACK, whose per-matrix overhead only matters for these tiny blocks).
    """
    q = H.shape[-1]
    if q == 1:
        L = np.sqrt(H)
        return L, 1.0 / L
    if q == 2:
        l11 = np.sqrt(H[:, 0, 0])
        l21 = H[:, 1, 0] / l11
        l22 = np.sqrt(H[:, 1, 1] - l21 * l21)
        L = np.zeros_like(H)
        L[:, 0, 0], L[:, 1, 0], L[:, 1, 1] = l11, l21, l22
        Linv = np.zeros_like(H)
        Linv[:, 0, 0] = 1.0 / l11
        Linv[:, 1, 1] = 1.0 / l22
        Linv[:, 1, 0] = -l21 / (l11 * l22)
        return L, Linv
    L = np.linalg.cholesky(H)
    return L, np.linalg.inv(L)


def spd_logdet(H: np.ndarray) -> np.ndarray:
    """log det H for a (G, q, q) stack of positive-definite matrices."""
    q = H.shape[-1]
    if q == 1:
        return np.log(H[:, 0, 0])
    if q == 2:
        return np.log(H[:, 0, 0] * H[:, 1, 1] - H[:, 0, 1] * H[:, 1, 0])
    return np.linalg.slogdet(H)[1]


# ---------------------------------------------------------------------------
# Stacks stored by their unique entries ("pairs"), groups along the last axis.
#
# The per-group matrices M_j = sum_i d2_i z_i z_i', H_j and P_j = H_j^{-1} are
# symmetric, so the inner loops keep only their q(q+1)/2 unique entries, as an
# (n_pairs, G) array whose row k is entry (r_k, c_k), r_k <= c_k, in the order
# of np.triu_indices(q) (the order of :func:`mlglm.core.engines.blockdiag.grouping.vech_pairs`).
# Each row is one contiguous vector over the groups, so every operation below
# is a handful of whole-vector numpy operations (or one small BLAS product)
# instead of a numpy call per group or a batched matmul over (G, q, q), whose
# per-matrix overhead dominated the Laplace fit with 10^4 groups of 2 x 2
# matrices.
# ---------------------------------------------------------------------------

@lru_cache(maxsize=None)
def pair_index(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(r, c), r <= c: the entry of the q x q matrix held by each pair row."""
    r, c = np.triu_indices(q)
    r.setflags(write=False)
    c.setflags(write=False)
    return r, c


@lru_cache(maxsize=None)
def full_index(q: int) -> np.ndarray:
    """For each (x, y) of a q x q matrix in row-major order, the pair row holding it."""
    r, c = pair_index(q)
    idx = np.empty((q, q), dtype=np.intp)
    idx[r, c] = np.arange(r.size)
    idx[c, r] = np.arange(r.size)
    out = idx.ravel()
    out.setflags(write=False)
    return out


def _q_of(n_pairs: int) -> int:
    return int(round((np.sqrt(8 * n_pairs + 1) - 1) / 2))


def pairs_to_full(Vp: np.ndarray) -> np.ndarray:
    """The (G, q, q) stack from its unique entries Vp (n_pairs, G)."""
    q = _q_of(Vp.shape[0])
    return np.ascontiguousarray(Vp[full_index(q)].T).reshape(-1, q, q)


def full_to_pairs(V: np.ndarray) -> np.ndarray:
    """Unique entries (n_pairs, G) of a symmetric (G, q, q) stack."""
    r, c = pair_index(V.shape[-1])
    return np.ascontiguousarray(V[:, r, c].T)


def congruence(Lambda: np.ndarray) -> np.ndarray:
    """K with pairs(Lambda' M Lambda) = K @ pairs(M) for every symmetric M.

    (Lambda' M Lambda)_rc = sum_{a,b} Lambda_ar M_ab Lambda_bc; collecting the
    symmetric pair (a, b), (b, a) of M gives
    K[(r,c), (a,b)] = Lambda_ar Lambda_bc + [a != b] Lambda_br Lambda_ac,
    so one (n_pairs x n_pairs) @ (n_pairs x G) product transforms every group.
    """
    Lambda = np.asarray(Lambda, dtype=float)
    r, c = pair_index(Lambda.shape[0])
    K = Lambda[r[None, :], r[:, None]] * Lambda[c[None, :], c[:, None]]
    off = r != c
    K[:, off] += (Lambda[c[None, :], r[:, None]] * Lambda[r[None, :], c[:, None]])[:, off]
    return K


def pairs_solve(Hp: np.ndarray, g: np.ndarray) -> np.ndarray:
    """H_j^{-1} g_j for every group: Hp (n_pairs, G) positive definite, g (q, G)."""
    q = g.shape[0]
    if q == 1:
        return g / Hp
    if q == 2:
        a, b, d = Hp
        det = a * d - b * b
        out = np.empty_like(g)
        np.multiply(d, g[0], out=out[0])
        out[0] -= b * g[1]
        np.multiply(a, g[1], out=out[1])
        out[1] -= b * g[0]
        out /= det
        return out
    return np.linalg.solve(pairs_to_full(Hp), g.T[..., None])[..., 0].T


def pairs_inv(Hp: np.ndarray) -> np.ndarray:
    """Unique entries of H_j^{-1} (adjugate over determinant for q <= 2)."""
    q = _q_of(Hp.shape[0])
    if q == 1:
        return 1.0 / Hp
    if q == 2:
        a, b, d = Hp
        det = a * d - b * b
        return np.stack([d, -b, a]) / det
    return full_to_pairs(np.linalg.inv(pairs_to_full(Hp)))


def pairs_logdet(Hp: np.ndarray) -> np.ndarray:
    """log det H_j for every group (G,)."""
    q = _q_of(Hp.shape[0])
    if q == 1:
        return np.log(Hp[0])
    if q == 2:
        return np.log(Hp[0] * Hp[2] - Hp[1] * Hp[1])
    return np.linalg.slogdet(pairs_to_full(Hp))[1]


def pairs_matvec(Vp: np.ndarray, x: np.ndarray) -> np.ndarray:
    """V_j x_j for every group: Vp (n_pairs, G) symmetric, x (q, G) -> (q, G)."""
    q = x.shape[0]
    if q == 1:
        return Vp * x
    if q == 2:
        return np.stack([Vp[0] * x[0] + Vp[1] * x[1], Vp[1] * x[0] + Vp[2] * x[1]])
    return np.einsum("xyg,yg->xg", Vp[full_index(q)].reshape(q, q, -1), x)


def pairs_cross_sum(Ap: np.ndarray, Bp: np.ndarray) -> np.ndarray:
    """C[x, a, b, y] = sum_j (A_j)_xa (B_j)_by for symmetric stacks, as one
    (q^2 x G) @ (G x q^2) product."""
    q = _q_of(Ap.shape[0])
    idx = full_index(q)
    return (Ap[idx] @ Bp[idx].T).reshape(q, q, q, q)
