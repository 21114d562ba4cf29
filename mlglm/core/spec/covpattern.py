"""Which entries of a term's covariance factor Lambda are free, and which theta they are.

One grouping factor carries q random effects per level, b_j = Lambda u_j, and
Lambda (q x q, lower triangular) is built from theta. Users ask for three
shapes, and their combinations:

* an **unstructured** block of s effects (lme4 ``(1 + x | g)``): the s(s+1)/2
  lower-triangle entries of the block are free (correlated effects);
* independent effects (lme4 ``(1 + x || g)``, or ``(1 | g) + (0 + x | g)``):
  several unstructured blocks of size 1;
* a **tied** block of c effects with one common variance and no correlation
  (statsmodels' ``vc_formula={"a": "0 + v1 + v2"}``): Lambda_block = theta I_c,
  one parameter for c diagonal entries.

A :class:`CovPattern` is the list of blocks, in column order. theta holds, block
after block, the column-major lower triangle of each unstructured block (the
order lme4 and MixedModels.jl use) and one entry per tied block, so a single
unstructured block has today's ``theta_index(q)`` layout and q blocks of size 1
have ``theta_index(q, diagonal=True)``'s.

For every free entry e of Lambda the pattern stores its position (``rows[e]``,
``cols[e]``) and its parameter ``idx[e]``; a parameter may fill several entries
(tied blocks). Hence Lambda = scatter(theta[idx]) and, for any scalar function
f(Lambda), df/dtheta_k = sum_{e: idx[e] = k} df/dLambda[rows[e], cols[e]]
(:meth:`CovPattern.gradient`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["CovBlock", "CovPattern", "unstructured", "diagonal", "tied"]


@dataclass(frozen=True)
class CovBlock:
    """A run of ``size`` consecutive effects: ``"unstructured"`` or ``"tied"``."""

    kind: str
    size: int

    def __post_init__(self):
        if self.kind not in ("unstructured", "tied"):
            raise ValueError(f"unknown covariance block kind {self.kind!r}")
        if self.size < 1:
            raise ValueError("a covariance block has at least one effect")

    @property
    def n_theta(self) -> int:
        return self.size * (self.size + 1) // 2 if self.kind == "unstructured" else 1


@dataclass(frozen=True, eq=False)
class CovPattern:
    """Free entries of Lambda for a term of q effects (see the module docstring).

    Attributes
    ----------
    blocks : tuple of CovBlock, in column order.
    q : number of effects (sum of block sizes).
    rows, cols, idx : (n_entries,) int arrays: position in Lambda and theta
        index of every free entry (entries of theta k in column-major order).
    n_theta : number of parameters.
    """

    blocks: tuple
    q: int = field(init=False)
    rows: np.ndarray = field(init=False, repr=False)
    cols: np.ndarray = field(init=False, repr=False)
    idx: np.ndarray = field(init=False, repr=False)
    n_theta: int = field(init=False)

    def __post_init__(self):
        rows, cols, idx = [], [], []
        start = k = 0
        for b in self.blocks:
            if b.kind == "unstructured":
                for c in range(b.size):
                    for r in range(c, b.size):
                        rows.append(start + r)
                        cols.append(start + c)
                        idx.append(k)
                        k += 1
            else:
                for r in range(b.size):
                    rows.append(start + r)
                    cols.append(start + r)
                    idx.append(k)
                k += 1
            start += b.size
        object.__setattr__(self, "q", start)
        for name, a in (("rows", rows), ("cols", cols), ("idx", idx)):
            arr = np.array(a, dtype=np.intp)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "n_theta", k)

    def __eq__(self, other):
        return isinstance(other, CovPattern) and self.blocks == other.blocks

    def __hash__(self):
        return hash(self.blocks)

    def __repr__(self):
        return f"CovPattern({', '.join(f'{b.kind}({b.size})' for b in self.blocks)})"

    # ------------------------------------------------------------------ shape
    @property
    def is_unstructured(self) -> bool:
        """One unstructured block over all q effects."""
        return len(self.blocks) == 1 and self.blocks[0].kind == "unstructured"

    @property
    def is_diagonal(self) -> bool:
        """q independent effects (blocks of size 1)."""
        return all(b.size == 1 for b in self.blocks)

    @cached_property
    def theta_on_diagonal(self) -> np.ndarray:
        """Boolean (n_theta,): theta_k sits on Lambda's diagonal (a standard deviation
        factor; its zero is a singular fit)."""
        out = np.zeros(self.n_theta, dtype=bool)
        out[self.idx[self.rows == self.cols]] = True
        return out

    @cached_property
    def first_entry(self) -> np.ndarray:
        """For each theta_k, the first entry it fills (to read theta off a Lambda)."""
        first = np.full(self.n_theta, -1, dtype=np.intp)
        for e in range(self.idx.size - 1, -1, -1):
            first[self.idx[e]] = e
        return first

    def block_slices(self):
        """(block, column slice, theta slice) for every block."""
        c = t = 0
        for b in self.blocks:
            yield b, slice(c, c + b.size), slice(t, t + b.n_theta)
            c += b.size
            t += b.n_theta

    # ------------------------------------------------------------- mappings
    def Lambda(self, theta) -> np.ndarray:
        """Lambda (q x q, lower triangular) from theta."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_theta,):
            raise ValueError(f"theta must have {self.n_theta} elements for {self!r}, got "
                             f"shape {theta.shape}")
        L = np.zeros((self.q, self.q))
        L[self.rows, self.cols] = theta[self.idx]
        return L

    def theta(self, Lambda) -> np.ndarray:
        """theta from a Lambda of this pattern (entries outside it are ignored)."""
        Lambda = np.asarray(Lambda, dtype=float)
        e = self.first_entry
        return Lambda[self.rows[e], self.cols[e]].copy()

    def gradient(self, dLambda) -> np.ndarray:
        """d f / d theta from d f / d Lambda (a full q x q array of partials)."""
        dLambda = np.asarray(dLambda, dtype=float)
        return np.bincount(self.idx, weights=dLambda[self.rows, self.cols],
                           minlength=self.n_theta)

    def theta_from_Sigma(self, Sigma) -> np.ndarray:
        """theta whose Lambda Lambda' is Sigma restricted to the pattern: the lower
        Cholesky factor of each unstructured block (zero pivots leave zero columns,
        so boundary fits map back exactly); sqrt of the mean variance of a tied block."""
        Sigma = np.asarray(Sigma, dtype=float)
        out = np.empty(self.n_theta)
        for b, cs, ts in self.block_slices():
            S = Sigma[cs, cs]
            if b.kind == "tied":
                out[ts] = np.sqrt(max(float(np.mean(np.diag(S))), 0.0))
            else:
                L = _psd_cholesky(S)
                r, c = np.tril_indices(b.size)
                order = np.lexsort((r, c))            # column-major lower triangle
                out[ts] = L[r[order], c[order]]
        return out

    def canonical(self, theta) -> np.ndarray:
        """theta with every column of Lambda flipped to a non-negative diagonal
        (Sigma = Lambda Lambda' is unchanged by a column's sign)."""
        L = self.Lambda(theta)
        flip = np.where(np.diag(L) < 0, -1.0, 1.0)
        return self.theta(L * flip[None, :])


def _psd_cholesky(S) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite S, zero columns at zero pivots."""
    q = S.shape[0]
    L = np.zeros((q, q))
    for j in range(q):
        d = S[j, j] - L[j, :j] @ L[j, :j]
        if d <= 1e-14 * max(1.0, abs(S[j, j])):
            continue
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, q):
            L[i, j] = (S[i, j] - L[i, :j] @ L[j, :j]) / L[j, j]
    return L


def unstructured(q: int) -> CovPattern:
    """One unstructured block of q correlated effects."""
    return CovPattern((CovBlock("unstructured", q),))


def diagonal(q: int) -> CovPattern:
    """q independent effects, each with its own variance."""
    return CovPattern(tuple(CovBlock("unstructured", 1) for _ in range(q)))


def tied(c: int) -> CovPattern:
    """c independent effects sharing one variance."""
    return CovPattern((CovBlock("tied", c),))
