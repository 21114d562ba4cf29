"""Conditional modes of the spherical random effects, all groups at once.

For group j, with a_i = Lambda' z_i and eta_i = o_i + x_i'beta + a_i'u_j,

    h_j(u) = sum_i l(y_i | eta_i) - u'u/2            (constants left out here)

is strictly concave in u for every family/link we offer. Newton's method
u <- u + H_j^{-1} g_j with g_j = sum_i d1_i a_i - u and
H_j = Lambda' M_j Lambda + I, M_j = sum_i d2_i z_i z_i', is run for every group
in the same vectorised pass (segment sums over rows sorted by group). A group
whose step does not increase h_j has its step halved (only that group), so the
iteration is monotone. It stops when max |step| < tol over all groups:
a loosely converged inner problem makes the outer objective jagged and its
finite-difference Hessian (the standard errors) meaningless.

Layout. With 10^4 groups of a few rows the per-group arithmetic, not the
per-row arithmetic, dominated when it was written as batched (G, q, q) matrix
products. So groups run along the last axis: u, the gradient and Z'd1 are
(q, G); the symmetric M_j and H_j are kept as their q(q+1)/2 unique entries,
(n_pairs, G) (:mod:`mlglm.core.numerics.smallmat`), with H_j = K M_j + I for the fixed
n_pairs x n_pairs matrix K of Lambda (one small BLAS product per step) and the
Newton step in closed form for q <= 2. Per row, eta and the segment sums work
on contiguous rows of Z' and of the products z_r z_c (``data.ZT``,
``data.ZZT``): one np.repeat of u onto the rows, one fused kernel call, one
``np.add.reduceat`` over a preallocated (1 + q + n_pairs, n) buffer.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ...spec.errors import ModeFailure
from ...spec.families import Kernel
from .grouping import GroupedData
from ...numerics.smallmat import congruence, pair_index, pairs_solve, pairs_to_full

__all__ = ["ModeState", "conditional_modes"]


@dataclass(frozen=True, eq=False)
class ModeState:
    """Everything at the conditional modes that the objectives reuse.

    u : (G, q) modes (a transposed view of the (q, G) array the iteration uses).
    eta : (n,) linear predictor at the modes.  eta_fixed : (n,) o + X beta.
    AT : (q, n) rows a_i' = z_i' Lambda, transposed (``A`` is the (n, q) view).
    d1, d2, d3 : (n,) derivatives of l in eta at the modes.
    Zd1 : (q, G) sum_i z_i d1_i per group at the modes.
    Mp, Hp : (n_pairs, G) unique entries of M_j = sum_i d2_i z_i z_i' and of
    H_j = Lambda' M_j Lambda + I (``M`` and ``H`` give the (G, q, q) stacks).
    h : (G,) sum_i kernel_i - u'u/2 at the modes.  iterations : Newton steps.
    """

    u: np.ndarray
    eta: np.ndarray
    eta_fixed: np.ndarray
    AT: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d3: np.ndarray
    Zd1: np.ndarray
    Mp: np.ndarray
    Hp: np.ndarray
    h: np.ndarray
    iterations: int

    @property
    def A(self) -> np.ndarray:
        return self.AT.T

    @cached_property
    def M(self) -> np.ndarray:
        return pairs_to_full(self.Mp)

    @cached_property
    def H(self) -> np.ndarray:
        return pairs_to_full(self.Hp)


def conditional_modes(fl: Kernel, data: GroupedData, beta, Lambda, u0=None,
                      tol: float = 1e-10, maxiter: int = 100) -> ModeState:
    """Maximise h_j(u) for every group; return the state at the modes.

    Parameters
    ----------
    u0 : (G, q) warm start (e.g. the modes at the previous outer evaluation);
        zeros when None. Any start inside the family's domain is valid: the
        iteration is globally convergent for these concave problems. If Newton
        has not converged from it within WARM_MAXITER steps (a start far from the
        new mode after a long outer step can cost many halved steps, e.g. a
        Poisson mean overshooting by e^50), or the start is outside the domain (a
        Gamma mean 1 / eta <= 0 on some row: h_j = -inf, where no step could be
        judged), the iteration restarts from u = 0.

    Each iteration evaluates the kernel and its first two derivatives in one
    fused call at the trial point; when the full step is accepted (the usual
    case) those derivatives serve the next Newton step.
    """
    if u0 is not None:
        try:
            u = np.ascontiguousarray(np.asarray(u0, dtype=float).T)
            return _newton(fl, data, beta, Lambda, u, tol, WARM_MAXITER, warm=True)
        except ModeFailure:
            pass  # the start was far off (a long outer step), or outside the family's
            # domain (Gamma, inverse link: a mean <= 0): restart from u = 0
    return _newton(fl, data, beta, Lambda, np.zeros((data.q, data.n_groups)), tol, maxiter)


#: Newton steps allowed from a warm start before restarting from u = 0.
WARM_MAXITER = 12


def _newton(fl, data, beta, Lambda, u, tol, maxiter, warm=False):
    """Newton's method on (q, G) modes ``u``; see the module docstring. A ``warm`` start
    outside the family's domain (h_j = -inf) raises ModeFailure."""
    q, G = data.q, data.n_groups
    y, m, sizes, starts = data.y, data.m_rows, data.sizes, data.starts
    ZT, ZZT = data.ZT, data.ZZT
    n_pairs = ZZT.shape[0]
    eta_fixed = data.offset + data.X @ beta
    AT = Lambda.T @ ZT                                   # a_i = Lambda' z_i, (q, n)
    K = congruence(Lambda)                               # pairs(Lambda'M Lambda) = K pairs(M)
    r, c = pair_index(q)
    diag = np.flatnonzero(r == c)
    # One work buffer and one segment sum per evaluation point: rows are the
    # kernel, z_k d1 (k < q) and the unique z_r z_c d2; reusing the buffer
    # avoids fresh (page-faulting) temporaries on long vectors.
    W = np.empty((1 + q + n_pairs, data.n))

    def eta_at(u):
        R = np.repeat(u, sizes, axis=1)                  # u_j(i) on every row, (q, n)
        R *= AT
        eta = np.add(R[0], eta_fixed)
        for k in range(1, q):
            eta += R[k]
        return eta

    def group_sums(ker, d1, d2):
        np.copyto(W[0], ker)
        np.multiply(ZT, d1, out=W[1:1 + q])
        np.multiply(ZZT, d2, out=W[1 + q:])
        S = np.add.reduceat(W, starts, axis=1)
        return S[0], S[1:1 + q], S[1 + q:]

    def hess(Mp):
        Hp = K @ Mp
        Hp[diag] += 1.0
        return Hp

    eta = eta_at(u)
    ker, d1, d2 = fl.kernel_derivatives(eta, y, m)
    h, Zd1, Mp = group_sums(ker, d1, d2)
    f = h - 0.5 * np.einsum("kg,kg->g", u, u)
    if warm and np.isneginf(f).any():
        raise ModeFailure("the warm start of the modes is outside the family's domain")
    for it in range(1, maxiter + 1):
        grad = Lambda.T @ Zd1 - u                        # sum_i a_i d1_i - u
        step = pairs_solve(hess(Mp), grad)
        t = None                                          # per-group step lengths; None: all 1
        for _ in range(40):
            u_try = u + step if t is None else u + t * step
            eta_try = eta_at(u_try)
            ker, d1_try, d2_try = fl.kernel_derivatives(eta_try, y, m)
            h, Zd1_try, Mp_try = group_sums(ker, d1_try, d2_try)
            f_try = h - 0.5 * np.einsum("kg,kg->g", u_try, u_try)
            worse = ~(f_try >= f - 1e-12 * (1.0 + np.abs(f)))
            if not worse.any():
                break
            if t is None:
                t = np.ones(G)
            t[worse] *= 0.5
        u, eta, f, d1, d2, Zd1, Mp = u_try, eta_try, f_try, d1_try, d2_try, Zd1_try, Mp_try
        # Full Newton steps converge quadratically: after a full step of size
        # s the error is O(s^2), so a full step below sqrt(tol) leaves the modes
        # within ~tol and certifying it with one more step would only repeat it.
        full = t is None or bool(np.all(t == 1.0))
        size = np.max(np.abs(step)) if t is None else np.max(np.abs(t * step))
        if size < tol or (size < np.sqrt(tol) and full):
            break
    else:
        raise ModeFailure(f"conditional modes did not converge in {maxiter} Newton steps "
                          f"(largest step {np.max(np.abs(step)):.3g})")
    d3 = fl.third(eta, y, m, d1, d2)
    return ModeState(u.T, eta, eta_fixed, AT, d1, d2, d3, Zd1, Mp, hess(Mp), f, it)
