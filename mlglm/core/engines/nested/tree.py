"""Nested grouping factors: the tree of levels and block elimination on it.

When the grouping factors form a chain, each nested in the next (children in
families in communities), number the levels l = 0 (innermost: the factor with
the most levels) .. T-1 (top). Every row lies in exactly one node of every
level, and every node of level l < T-1 has one parent at level l + 1. The
random effects of a node c at level l are u_c (q_l of them); the *path* of c
is c and its ancestors, and its path vector (u_c, u_parent, ..., u_top) has
Q_l = q_l + ... + q_{T-1} entries. A row's path vector is that of its level-0
node: D = Q_0 entries, and a_i = (Lambda_0'z_i0, ..., Lambda_{T-1}'z_i,T-1)
so that eta_i = o_i + x_i'beta + a_i'u_path(i).

Sorting rows by (top, ..., level 0) makes every node a contiguous run of rows
and the children of every node a contiguous run of nodes, so all sums over a
node's rows or children are ``np.add.reduceat`` and all broadcasts from a node
to its rows or children are ``np.repeat`` (:class:`NestedLayout`).

The Hessian H = Lambda'Z'WZ Lambda + I is block diagonal by top-level group,
and within one its non-zero blocks are exactly those between a node and its
ancestors (a row couples the nodes of its path). Eliminating from the innermost
level outwards therefore fills nothing in. With F_c the (Q_l x Q_l) matrix on
c's path collected so far,

    F_c = [sum over rows of c of d2_i a_i a_i']  (level 0)  or
          [sum over children d of Schur(F_d)]      (level l > 0),  plus I on u_c,
    F_c = [[A_c, E_c], [E_c', G_c]]   (A_c: q_l x q_l; E_c: q_l x Q_{l+1}),
    Schur(F_c) = G_c - E_c' A_c^{-1} E_c,   C_c = A_c^{-1} E_c,

and at the top A_top = F_top is the outer Schur complement. Then
log|H| = sum over all nodes of log|A_c| (:func:`tree_factor`), H s = b is a
sweep up (eliminate) and a sweep down (s_c = A_c^{-1} b~_c - C_c s_ancestors,
:func:`tree_solve`), the diagonal blocks of H^{-1} follow from the same C_c
top-down (:func:`tree_diag_inverse`), and derivatives of every A_c and C_c
with respect to a perturbation of the level-0 sums propagate through the same
sweep (:func:`tree_dfactor`, forward mode). Each step is a batch of small
dense matrices, one per node: O(n) work, never a dense matrix over a top
group's random effects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from ...spec.terms import ReTerms

__all__ = ["NestedLayout", "Block", "TreeFactor", "tree_factor", "tree_solve",
           "tree_dfactor", "tree_diag_inverse", "expand", "reduce"]


@dataclass(frozen=True, eq=False)
class Block:
    """A contiguous range of top-level groups (all of them, or a chunk).

    rows : slice of the sorted rows.  nodes : per level, slice of its nodes.
    row_starts, row_sizes : per level, (J_l,) first row (relative to ``rows``)
    and number of rows of each node.  child_starts, child_counts : per level
    l < T-1, (J_{l+1},) first child (relative) and number of children of each
    node of level l + 1.  node_starts[(l, m)] : for l < m, (J_m,) first level-l
    node below each level-m node; node_counts likewise.
    """

    rows: slice
    nodes: tuple
    row_starts: tuple
    row_sizes: tuple
    child_starts: tuple
    child_counts: tuple
    node_starts: dict
    node_counts: dict
    _aggregators: dict = field(default_factory=dict, repr=False)

    def aggregator(self, lo: int, hi: int):
        """The (J_hi x J_lo) 0/1 CSR matrix summing level ``lo`` values (-1: rows)
        over the nodes of level ``hi`` (built once per pair of levels)."""
        key = (lo, hi)
        if key not in self._aggregators:
            counts = expand_counts(self, lo, hi)
            J = counts.size
            self._aggregators[key] = sparse.csr_matrix(
                (np.ones(int(counts.sum())), np.arange(int(counts.sum())),
                 np.append(0, np.cumsum(counts))), shape=(J, int(counts.sum())))
        return self._aggregators[key]

    def parent_codes(self, lo: int, hi: int) -> np.ndarray:
        """(codes, J_hi): for each level-``lo`` node (-1: row), the index of its
        level-``hi`` node, and the number of level-``hi`` nodes (built once per pair)."""
        key = ("codes", lo, hi)
        if key not in self._aggregators:
            counts = expand_counts(self, lo, hi)
            self._aggregators[key] = (np.repeat(np.arange(counts.size), counts), counts.size)
        return self._aggregators[key]

    @property
    def n(self) -> int:
        return self.rows.stop - self.rows.start

    @property
    def J(self) -> tuple:
        return tuple(s.stop - s.start for s in self.nodes)


def expand_counts(blk: Block, lo: int, hi: int) -> np.ndarray:
    """Number of level-``lo`` nodes (-1: rows) below each level-``hi`` node."""
    return blk.row_sizes[hi] if lo < 0 else (
        blk.child_counts[lo] if hi == lo + 1 else blk.node_counts[(lo, hi)])


def expand(blk: Block, x, lo: int, hi: int, axis: int = 0):
    """Per-node values of level ``hi`` repeated onto the nodes of level ``lo`` below
    them (``lo = -1``: onto the rows)."""
    return np.repeat(x, expand_counts(blk, lo, hi), axis=axis)


def reduce(blk: Block, x, lo: int, hi: int, axis: int = 0):
    """Sums of per-node values of level ``lo`` (``-1``: per-row values) over the
    nodes of level ``hi`` above them.

    This is a product with the sparse 0/1 aggregation matrix: ``np.add.reduceat``
    with segments of a few rows or nodes (families of two children) reduces one
    short segment at a time and was 2-15 times slower, along either axis.
    ``axis=1`` takes a (k, n) array and returns (k, J).

    A few columns (k <= ``BINCOUNT_COLUMNS``) go through ``np.bincount`` instead,
    one call per column: it adds in the same order as the sparse product (row by
    row, so the sums are bit for bit the same) without scipy's per-call dispatch,
    which dominates on small data (grouseticks: about 1,400 sums per fit).
    """
    if axis == 1:
        if x.shape[0] <= BINCOUNT_COLUMNS:
            return _bincount_rows(blk, x, lo, hi)
        return (blk.aggregator(lo, hi) @ x.T).T
    x2 = x.reshape(x.shape[0], -1)
    out = _bincount_rows(blk, x2.T, lo, hi).T if x2.shape[1] <= BINCOUNT_COLUMNS \
        else blk.aggregator(lo, hi) @ x2
    return out.reshape((out.shape[0],) + x.shape[1:])


#: :func:`reduce` sums at most this many columns by ``np.bincount`` (else one
#: sparse product for all of them).
BINCOUNT_COLUMNS = 4


def _bincount_rows(blk: Block, rows, lo: int, hi: int) -> np.ndarray:
    """(k, J_hi) sums of each of the k rows (length n_lo) over the level-``hi`` nodes."""
    codes, J = blk.parent_codes(lo, hi)
    out = np.empty((len(rows), J))
    for r, w in zip(out, rows):
        r[:] = np.bincount(codes, weights=w, minlength=J)
    return out


class NestedLayout:
    """Rows sorted by (top, ..., level 0) and the maps between levels.

    Parameters
    ----------
    terms : ReTerms whose factors form a nested chain.
    order : term indices innermost -> top (default ``terms.nesting_order()``).

    Attributes
    ----------
    order, T : term of each level, number of levels.
    q, Q, off : per level q_l, path dimension Q_l and the offset of u_l in a
        level-0 path vector (D = Q_0 = sum q_l).
    perm : (n,) sorted row r is original row perm[r].
    level_codes : per level, (J_l,) the term's level code of each node.
    whole : the :class:`Block` of all top-level groups.
    """

    def __init__(self, terms: ReTerms, order=None):
        order = terms.nesting_order() if order is None else list(order)
        if order is None:
            raise ValueError(f"the grouping factors {', '.join(terms.names)} are not nested")
        self.order = tuple(order)
        self.T = T = len(order)
        self.q = tuple(terms[k].q for k in order)
        self.Q = tuple(int(sum(self.q[l:])) for l in range(T))
        self.off = tuple(int(sum(self.q[:l])) for l in range(T))
        self.D = self.Q[0]
        codes = [terms[k].codes for k in order]
        self.perm = perm = np.lexsort(codes)      # the last key (the top level) is the primary one
        n = perm.size
        self.n = n
        node_of_row, row_starts, level_codes = [], [], []
        for l, k in enumerate(order):
            c = codes[l][perm]
            change = np.empty(n, dtype=bool)
            change[:1] = True
            change[1:] = c[1:] != c[:-1]
            starts = np.flatnonzero(change)
            if starts.size != terms[k].n_levels:
                raise ValueError(f"factor {terms[k].name} is not nested in the factors above it")
            row_starts.append(starts)
            node_of_row.append(np.cumsum(change) - 1)
            level_codes.append(c[starts])
        self.node_of_row = tuple(node_of_row)
        self.level_codes = tuple(level_codes)
        self._row_starts = tuple(row_starts)
        self.J = tuple(s.size for s in row_starts)
        # first node of level l below each top-level group, for chunks
        self._top_first = [node_of_row[l][row_starts[T - 1]] for l in range(T)]
        self.whole = self.block(0, self.J[T - 1])

    def block(self, lo: int, hi: int) -> Block:
        """The :class:`Block` of top-level groups lo..hi-1."""
        T = self.T
        r0 = int(self._row_starts[T - 1][lo])
        r1 = int(self._row_starts[T - 1][hi]) if hi < self.J[T - 1] else self.n
        nodes, row_starts, row_sizes = [], [], []
        for l in range(T):
            a = int(self._top_first[l][lo])
            b = int(self._top_first[l][hi]) if hi < self.J[T - 1] else self.J[l]
            nodes.append(slice(a, b))
            st = self._row_starts[l][a:b] - r0
            row_starts.append(st)
            row_sizes.append(np.diff(np.append(st, r1 - r0)))
        node_starts, node_counts = {}, {}
        for l in range(T):
            for m in range(l + 1, T):
                rs = self._row_starts[m][nodes[m]]
                st = self.node_of_row[l][rs] - nodes[l].start
                node_starts[(l, m)] = st
                node_counts[(l, m)] = np.diff(np.append(st, nodes[l].stop - nodes[l].start))
        child_starts = tuple(node_starts[(l, l + 1)] for l in range(T - 1))
        child_counts = tuple(node_counts[(l, l + 1)] for l in range(T - 1))
        return Block(slice(r0, r1), tuple(nodes), tuple(row_starts), tuple(row_sizes),
                     child_starts, child_counts, node_starts, node_counts)

    def chunks(self, per_row: int, budget: int):
        """Top-level ranges (lo, hi) whose rows x ``per_row`` stay under ``budget``."""
        T = self.T
        G = self.J[T - 1]
        ends = np.append(self._row_starts[T - 1][1:], self.n)
        rows_max = max(budget // max(per_row, 1), 1)
        lo = 0
        while lo < G:
            base = self._row_starts[T - 1][lo]
            hi = int(np.searchsorted(ends, base + rows_max, side="right"))
            hi = min(max(hi, lo + 1), G)
            yield lo, hi
            lo = hi


# ------------------------------------------------------------------ elimination
@dataclass(frozen=True, eq=False)
class TreeFactor:
    """The block elimination of H over a :class:`Block` (module docstring).

    A, R : per level (J_l, q_l, q_l) pivot blocks A_c and their lower Cholesky
    factors (the top level's A is the outer Schur complement).  C : per level
    l < T-1, (J_l, q_l, Q_{l+1}) C_c = A_c^{-1} E_c.  logdet : (J_top,)
    log|H_j| per top-level group, sum of 2 log|R_c| over its nodes.
    """

    A: tuple
    R: tuple
    C: tuple
    logdet: np.ndarray


def _chol(A):
    q = A.shape[-1]
    if q == 1:
        if not np.all(A > 0.0):          # also catches NaN (overflowing weights)
            raise np.linalg.LinAlgError("a pivot block of H is not positive definite")
        return np.sqrt(A)
    return np.linalg.cholesky(A)


def _solve(A, B):
    """A^{-1} B for (J, q, q) A and (J, q, k) B."""
    if A.shape[-1] == 1:
        return B / A
    return np.linalg.solve(A, B)


def tree_factor(blk: Block, q: tuple, F0: np.ndarray) -> TreeFactor:
    """Eliminate H from the level-0 path sums F0 = sum_i d2_i a_i a_i' (J_0, D, D)
    (the prior's identity is added here, level by level)."""
    T = len(q)
    A, R, C = [], [], []
    logdet = None
    F = F0
    for l in range(T):
        ql = q[l]
        Al = F[:, :ql, :ql].copy()
        d = np.arange(ql)
        Al[:, d, d] += 1.0
        Rl = _chol(Al)
        A.append(Al)
        R.append(Rl)
        ld = 2.0 * np.log(np.diagonal(Rl, axis1=1, axis2=2)).sum(axis=1)
        logdet = ld if logdet is None else reduce(blk, logdet, l - 1, l) + ld
        if l == T - 1:
            break
        E = F[:, :ql, ql:]
        Cl = _solve(Al, E)
        C.append(Cl)
        S = F[:, ql:, ql:] - np.swapaxes(E, 1, 2) @ Cl
        F = reduce(blk, S, l, l + 1)
    return TreeFactor(tuple(A), tuple(R), tuple(C), logdet)


def tree_solve(blk: Block, q: tuple, fac: TreeFactor, b) -> list:
    """s = H^{-1} b for per-level right-hand sides b[l] (J_l, q_l, k); returns the
    per-level (J_l, q_l, k) solution."""
    T = len(q)
    k = b[0].shape[-1]
    r = np.zeros((b[0].shape[0], sum(q), k))
    r[:, :q[0]] = b[0]
    y = []
    for l in range(T - 1):
        ql = q[l]
        yl = _solve(fac.A[l], r[:, :ql])
        y.append(yl)
        rest = r[:, ql:] - np.swapaxes(fac.C[l], 1, 2) @ r[:, :ql]
        r = reduce(blk, rest, l, l + 1)
        r[:, :q[l + 1]] += b[l + 1]
    s = [None] * T
    s[T - 1] = path = _solve(fac.A[T - 1], r)
    for l in range(T - 2, -1, -1):
        pa = expand(blk, path, l, l + 1)
        s[l] = y[l] - fac.C[l] @ pa
        if l:
            path = np.concatenate([s[l], pa], axis=1)
    return s


def tree_diag_inverse(blk: Block, q: tuple, fac: TreeFactor) -> list:
    """Diagonal blocks [H^{-1}]_cc per level, (J_l, q_l, q_l).

    Top-down with the path covariance P_c of (u_c, ancestors):
    [H^{-1}]_cc = A_c^{-1} + C_c P_anc C_c', [H^{-1}]_{c,anc} = -C_c P_anc.
    """
    T = len(q)
    out = [None] * T
    P = np.linalg.inv(fac.A[T - 1])
    out[T - 1] = P
    for l in range(T - 2, -1, -1):
        Pa = expand(blk, P, l, l + 1)
        C = fac.C[l]
        CP = C @ Pa
        Scc = np.linalg.inv(fac.A[l]) + CP @ np.swapaxes(C, 1, 2)
        out[l] = Scc
        if l:
            top = np.concatenate([Scc, -CP], axis=2)
            bottom = np.concatenate([-np.swapaxes(CP, 1, 2), Pa], axis=2)
            P = np.concatenate([top, bottom], axis=1)
    return out


def tree_dfactor(blk: Block, q: tuple, fac: TreeFactor, dF0: np.ndarray):
    """Forward-mode derivatives of the elimination.

    dF0 : (J_0, D, D, P) derivatives of the level-0 sums in P directions.
    Returns (dA, dC): per level (J_l, q_l, q_l, P) and, for l < T-1,
    (J_l, q_l, Q_{l+1}, P), from

        dC = A^{-1} (dE - dA C),
        dSchur = dG - C'dE - dE'C + C'dA C   (summed over children).
    """
    T = len(q)
    dA, dC = [], []
    dF = dF0
    for l in range(T):
        ql = q[l]
        dAl = dF[:, :ql, :ql]
        dA.append(dAl)
        if l == T - 1:
            break
        C = fac.C[l]
        dE = dF[:, :ql, ql:]
        J = dE.shape[0]
        rhs = dE - np.einsum("jabp,jbc->jacp", dAl, C)
        dCl = _solve(fac.A[l], rhs.reshape(J, ql, -1)).reshape(rhs.shape)
        dC.append(dCl)
        CdE = np.einsum("jab,jacp->jbcp", C, dE)
        dS = (dF[:, ql:, ql:] - CdE - np.swapaxes(CdE, 1, 2)
              + np.einsum("jab,jacp,jcd->jbdp", C, dAl, C))
        dF = reduce(blk, dS, l, l + 1)
    return dA, dC
