"""Rows sorted by group, segment sums and per-group q x q stacks.

Every per-group quantity the objective needs is a sum over the rows of that
group (Z'd1, Z'W Z, X'...). Once rows are sorted by group those sums are
``np.add.reduceat`` over contiguous segments: one vectorised pass, no Python
loop over groups and no padding. :class:`GroupedData` holds the sorted arrays
and the products that never change during a fit (the unique entries of
z_i z_i', the constant part of the log-likelihood).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...numerics.smallmat import pair_index

__all__ = ["GroupedData", "make_grouped_data", "segment_sum", "vech_pairs",
           "sym_from_pairs"]


def vech_pairs(q: int) -> tuple[np.ndarray, np.ndarray]:
    """Row/column indices (r <= c ordering by rows of the upper triangle) of the
    q(q+1)/2 unique entries of a symmetric q x q matrix (cached, read-only)."""
    return pair_index(q)


def sym_from_pairs(V: np.ndarray, q: int) -> np.ndarray:
    """Symmetric (..., q, q) stack from its unique entries V (..., q(q+1)/2)."""
    r, c = vech_pairs(q)
    out = np.empty(V.shape[:-1] + (q, q))
    out[..., r, c] = V
    out[..., c, r] = V
    return out



def segment_sum(A: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sum the rows of A within each contiguous segment beginning at ``starts``."""
    return np.add.reduceat(A, starts, axis=0)


@dataclass(frozen=True, eq=False)
class GroupedData:
    """Model data with rows sorted by group (every group non-empty).

    Attributes
    ----------
    y, m : (n,) response (successes for the binomial) and trials (ones otherwise).
    X : (n, p) fixed-effects design, column-major (each column one contiguous
    vector: X beta and X'r, once per evaluation, run 2-3 times faster than on
    a row-major copy).  Z : (n, q) random-effects design.
    offset : (n,) offset (log exposure included).
    starts : (G,) first row of each group.  sizes : (G,) rows per group.
    ZT : (q, n) Z transposed, each column of Z one contiguous vector (the inner
    loops work column by column; a strided column of Z is slower to stream).
    ZZT : (q(q+1)/2, n) unique products z_ir z_ic (r <= c), fixed for the fit;
    ``ZZ`` is its (n, q(q+1)/2) transposed view.
    order : (n,) the permutation that sorted the caller's rows (sorted = orig[order]).
    freq, var : (n,) prior weights (frequency and variance weights, as ``sm.GLM``
    defines them) or None. With weights, ``y`` and ``m`` are the kernels'
    arguments w y and w m, w = freq x var (:mod:`mlglm.core.spec.families`), and
    ``y_obs``, ``m_obs`` the response and trials as observed.
    """

    y: np.ndarray
    m: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    offset: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    ZT: np.ndarray
    ZZT: np.ndarray
    order: np.ndarray
    freq: np.ndarray | None = None
    var: np.ndarray | None = None
    y_obs: np.ndarray | None = None
    m_obs: np.ndarray | None = None

    def __post_init__(self):
        if self.y_obs is None:
            object.__setattr__(self, "y_obs", self.y)
            object.__setattr__(self, "m_obs", self.m)

    @property
    def ZZ(self) -> np.ndarray:
        return self.ZZT.T

    @property
    def weights(self) -> np.ndarray | None:
        """w = freq x var, the factor of every row's kernel (None: unweighted)."""
        if self.freq is None and self.var is None:
            return None
        if self.freq is None:
            return self.var
        return self.freq if self.var is None else self.freq * self.var

    @cached_property
    def m_rows(self):
        """``m`` for the row-wise kernels: the scalar 1.0 when every row has one
        trial (Bernoulli or non-binomial data), so kernels can skip multiplying
        by m; else the (n,) array."""
        return 1.0 if bool(np.all(self.m == 1.0)) else self.m

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def n_groups(self) -> int:
        return self.starts.shape[0]

    def gsum(self, A: np.ndarray) -> np.ndarray:
        """Per-group sums of the rows of A (G, ...)."""
        return segment_sum(A, self.starts)

    def expand(self, a: np.ndarray) -> np.ndarray:
        """Per-group values repeated onto their rows: a[group of each row], done with np.repeat
        (rows are sorted by group), which is many times faster than fancy indexing."""
        return np.repeat(a, self.sizes, axis=0)

    def subset_groups(self, lo: int, hi: int) -> "GroupedData":
        """The contiguous block of groups lo..hi-1 (a view, for chunked AGHQ)."""
        r0 = self.starts[lo]
        r1 = self.starts[hi] if hi < self.n_groups else self.n
        sl = slice(r0, r1)
        cut = (lambda a: None if a is None else a[sl])   # noqa: E731
        return GroupedData(self.y[sl], self.m[sl], self.X[sl], self.Z[sl], self.offset[sl],
                           self.starts[lo:hi] - r0, self.sizes[lo:hi],
                           self.ZT[:, sl], self.ZZT[:, sl], self.order[sl], cut(self.freq),
                           cut(self.var), self.y_obs[sl], self.m_obs[sl])


def make_grouped_data(y, X, Z, group_codes, offset=None, m=None, freq=None,
                      var=None) -> GroupedData:
    """Sort rows by integer group codes 0..G-1 (stable) and precompute products.

    Groups with no rows are not allowed: pass codes from ``np.unique(...,
    return_inverse=True)``. ``freq``, ``var``: prior weights (see :class:`GroupedData`).
    """
    y = np.asarray(y, dtype=float)
    n = y.shape[0]
    X = np.asarray(X, dtype=float).reshape(n, -1)
    Z = np.asarray(Z, dtype=float).reshape(n, -1)
    codes = np.asarray(group_codes).astype(np.intp, copy=False)
    offset = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    m = np.ones(n) if m is None else np.asarray(m, dtype=float)
    order = np.argsort(codes, kind="stable")
    gidx = codes[order]
    G = int(gidx[-1]) + 1 if n else 0
    sizes = np.bincount(gidx, minlength=G)
    if np.any(sizes == 0):
        raise ValueError("group codes must be 0..G-1 with every group present")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    Zs = np.ascontiguousarray(Z[order])
    ZT = np.ascontiguousarray(Zs.T)
    r, c = vech_pairs(Z.shape[1])
    ZZT = ZT[r] * ZT[c]
    X = np.asfortranarray(X[order])
    if freq is None and var is None:
        return GroupedData(y[order], m[order], X, Zs, offset[order], starts, sizes, ZT, ZZT,
                           order)
    f = None if freq is None else np.asarray(freq, dtype=float)[order]
    v = None if var is None else np.asarray(var, dtype=float)[order]
    w = f if v is None else (v if f is None else f * v)
    ys, ms = y[order], m[order]
    return GroupedData(w * ys, w * ms, X, Zs, offset[order], starts, sizes, ZT, ZZT, order,
                       f, v, ys, ms)
