"""Random-effects terms: grouping factors, their Z columns and covariance patterns.

A model has terms k = 1..T. Term k is one grouping factor with J_k levels
(``codes``: the level of every row), q_k columns Z_k (the effects carried per
level) and a covariance pattern (:mod:`mlglm.core.spec.covpattern`) for
Lambda_k; its random effects are b_kj = Lambda_k u_kj, u ~ N(0, I). All bar
terms on the same grouping factor are one term here (lme4's
``(1 | g) + (0 + x | g)`` is one factor with two independent blocks), so two
different terms always mean two different factors. theta is the
concatenation of the terms' parameter vectors in term order.

One grouping factor is the case T = 1 and keeps its own engine (per-group
q x q blocks). With several factors the structure decides the engine:

* **nested**: the terms can be ordered so that each factor nests in the next
  (every level of the inner factor lies within one level of the outer one,
  e.g. class within school); the likelihood then factorises over the levels
  of the outermost factor (adaptive quadrature through every level, sharding);
* **crossed**: anything else (subjects x items). The profiled LMM and the
  Laplace GLMM of both kinds use the blocked factorisation of
  :mod:`mlglm.core.engines.crossed.blocked`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .covpattern import CovPattern

__all__ = ["ReTerm", "ReTerms", "nests_in"]


@dataclass(frozen=True, eq=False)
class ReTerm:
    """One grouping factor with its effects.

    Attributes
    ----------
    name : factor name as reported (``"school"``, ``"school:class"``).
    codes : (n,) intp level of each row, 0..n_levels-1 (every level occurs).
    n_levels : J, the number of levels.
    Z : (n, q) random-effects design of the factor.
    pattern : covariance pattern of Lambda (q x q).
    column_names : names of the q effects (``"Intercept"``, ``"x"``, ...).
    levels : optional labels of the levels (any array of length J).
    """

    name: str
    codes: np.ndarray
    n_levels: int
    Z: np.ndarray
    pattern: CovPattern
    column_names: tuple = ()
    levels: object = field(default=None, repr=False)

    def __post_init__(self):
        Z = np.asarray(self.Z, dtype=float)
        if Z.ndim == 1:
            Z = Z[:, None]
        object.__setattr__(self, "Z", Z)
        object.__setattr__(self, "codes", np.asarray(self.codes, dtype=np.intp))
        if Z.shape[1] != self.pattern.q:
            raise ValueError(f"term {self.name}: Z has {Z.shape[1]} columns, the covariance "
                             f"pattern {self.pattern!r} has {self.pattern.q}")
        if self.codes.shape[0] != Z.shape[0]:
            raise ValueError(f"term {self.name}: {self.codes.shape[0]} codes for {Z.shape[0]} rows")

    @property
    def q(self) -> int:
        return self.pattern.q

    @property
    def n_theta(self) -> int:
        return self.pattern.n_theta

    @property
    def size(self) -> int:
        """J q, this term's share of the random-effects vector."""
        return self.n_levels * self.q

    @cached_property
    def intercept_only(self) -> bool:
        """One effect whose Z column is all ones (z_i b = b: no multiplication needed)."""
        return self.q == 1 and bool(np.all(self.Z == 1.0))


def nests_in(inner: ReTerm, outer: ReTerm) -> bool:
    """Whether every level of ``inner`` lies within a single level of ``outer``."""
    if inner.n_levels < outer.n_levels:
        return False
    # one outer level recorded per inner level (any of its rows'); nested iff every
    # row agrees with it -- two passes over the rows, no sort or hash
    outer_of = np.empty(inner.n_levels, dtype=outer.codes.dtype)
    outer_of[inner.codes] = outer.codes
    return bool(np.array_equal(outer_of[inner.codes], outer.codes))


@dataclass(frozen=True, eq=False)
class ReTerms:
    """The random-effects structure: terms, theta layout, nesting.

    Attributes
    ----------
    terms : tuple of ReTerm (the user's order; reporting follows it).
    theta_slices : slice of theta per term.
    n_theta : total number of covariance parameters.
    """

    terms: tuple
    theta_slices: tuple = field(init=False)
    n_theta: int = field(init=False)

    def __post_init__(self):
        terms = tuple(self.terms)
        object.__setattr__(self, "terms", terms)
        if not terms:
            raise ValueError("a mixed model needs at least one random-effects term")
        n = terms[0].Z.shape[0]
        if any(t.Z.shape[0] != n for t in terms):
            raise ValueError("all random-effects terms must have the same number of rows")
        slices, start = [], 0
        for t in terms:
            slices.append(slice(start, start + t.n_theta))
            start += t.n_theta
        object.__setattr__(self, "theta_slices", tuple(slices))
        object.__setattr__(self, "n_theta", start)

    def __len__(self):
        return len(self.terms)

    def __iter__(self):
        return iter(self.terms)

    def __getitem__(self, k):
        return self.terms[k]

    @property
    def n(self) -> int:
        return self.terms[0].Z.shape[0]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.terms]

    def Lambdas(self, theta) -> list[np.ndarray]:
        """Lambda_k for every term from the full theta."""
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_theta,):
            raise ValueError(f"theta must have {self.n_theta} elements, got {theta.shape}")
        return [t.pattern.Lambda(theta[s]) for t, s in zip(self.terms, self.theta_slices)]

    def theta_on_diagonal(self) -> np.ndarray:
        """Boolean (n_theta,): the parameters on some Lambda_k's diagonal."""
        return np.concatenate([t.pattern.theta_on_diagonal for t in self.terms])

    def canonical(self, theta) -> np.ndarray:
        """theta with non-negative diagonals of every Lambda_k (same likelihood)."""
        theta = np.asarray(theta, dtype=float)
        return np.concatenate([t.pattern.canonical(theta[s])
                               for t, s in zip(self.terms, self.theta_slices)])

    def nesting_order(self) -> list[int] | None:
        """Term indices from innermost to outermost if the factors form a nested
        chain (each nests in the next), else None. One term is a chain of one."""
        order = sorted(range(len(self.terms)),
                       key=lambda k: (-self.terms[k].n_levels, k))
        for a, b in zip(order[:-1], order[1:]):
            if not nests_in(self.terms[a], self.terms[b]):
                return None
        return order

    @property
    def kind(self) -> str:
        """``"single"`` (one term), ``"nested"`` or ``"crossed"``."""
        if len(self.terms) == 1:
            return "single"
        return "nested" if self.nesting_order() is not None else "crossed"
