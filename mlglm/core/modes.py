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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .families import FamilyLink
from .grouping import GroupedData, sym_from_pairs
from .smallmat import spd_solve

__all__ = ["ModeState", "conditional_modes", "ModeFailure"]


class ModeFailure(RuntimeError):
    """The inner Newton iteration did not converge."""


@dataclass(frozen=True, eq=False)
class ModeState:
    """Everything at the conditional modes that the objectives reuse.

    u : (G, q) modes.  eta : (n,) linear predictor at the modes.
    eta_fixed : (n,) o + X beta.  A : (n, q) rows a_i' = z_i' Lambda.
    d1, d2, d3 : (n,) derivatives of l in eta at the modes.
    M : (G, q, q) sum_i d2_i z_i z_i'.  H : (G, q, q) Lambda' M Lambda + I.
    h : (G,) sum_i kernel_i - u'u/2 at the modes.  iterations : Newton steps.
    """

    u: np.ndarray
    eta: np.ndarray
    eta_fixed: np.ndarray
    A: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d3: np.ndarray
    M: np.ndarray
    H: np.ndarray
    h: np.ndarray
    iterations: int


def _eta(data, eta_fixed, A, u):
    """eta_i = o_i + x_i'beta + a_i'u_j(i), one column of A at a time (faster
    than an einsum over a gathered (n, q) copy of u)."""
    eta = eta_fixed + A[:, 0] * data.expand(u[:, 0])
    for k in range(1, A.shape[1]):
        eta += A[:, k] * data.expand(u[:, k])
    return eta


def _penalty(u):
    return 0.5 * np.einsum("gq,gq->g", u, u)


def conditional_modes(fl: FamilyLink, data: GroupedData, beta, Lambda, u0=None,
                      tol: float = 1e-10, maxiter: int = 100) -> ModeState:
    """Maximise h_j(u) for every group; return the state at the modes.

    Parameters
    ----------
    u0 : (G, q) warm start (e.g. the modes at the previous outer evaluation);
        zeros when None. Any start is valid: the iteration is globally
        convergent for these concave problems. If Newton has not converged
        from it within WARM_MAXITER steps (a start far from the new mode after
        a long outer step can cost many halved steps, e.g. a Poisson mean
        overshooting by e^50), the iteration restarts from u = 0.

    Each iteration evaluates the kernel and its first two derivatives in one
    fused call at the trial point; when the full step is accepted (the usual
    case) those derivatives serve the next Newton step.
    """
    if u0 is not None:
        try:
            return _newton(fl, data, beta, Lambda, np.array(u0, dtype=float), tol, WARM_MAXITER)
        except ModeFailure:
            pass  # the start was far off (a long outer step): restart from u = 0
    return _newton(fl, data, beta, Lambda, np.zeros((data.n_groups, data.q)), tol, maxiter)


#: Newton steps allowed from a warm start before restarting from u = 0.
WARM_MAXITER = 12


def _newton(fl, data, beta, Lambda, u, tol, maxiter):
    G, q = data.n_groups, data.q
    y, m, Z, ZZ = data.y, data.m, data.Z, data.ZZ
    eta_fixed = data.offset + data.X @ beta
    A = data.Z @ Lambda
    n_pairs = ZZ.shape[1]
    # One work buffer and one segment sum per evaluation point: rows are the
    # kernel, z_k d1 (k < q) and the unique z_r z_c d2; reusing the buffer
    # avoids fresh (page-faulting) temporaries on long vectors.
    W = np.empty((1 + q + n_pairs, data.n))

    def group_sums(ker, d1, d2):
        np.copyto(W[0], ker)
        for k in range(q):
            np.multiply(Z[:, k], d1, out=W[1 + k])
        for k in range(n_pairs):
            np.multiply(ZZ[:, k], d2, out=W[1 + q + k])
        S = np.add.reduceat(W, data.starts, axis=1)
        return S[0], S[1:1 + q].T, sym_from_pairs(S[1 + q:].T, q)

    eta = _eta(data, eta_fixed, A, u)
    ker, d1, d2 = fl.kernel_derivatives(eta, y, m)
    h, Zd1, M = group_sums(ker, d1, d2)
    f = h - _penalty(u)
    eye = np.eye(q)
    for it in range(1, maxiter + 1):
        grad = Zd1 @ Lambda - u                  # sum_i a_i d1_i - u, a_i = Lambda'z_i
        H = (Lambda.T @ M @ Lambda) + eye
        step = spd_solve(H, grad)
        t = np.ones(G)
        for _ in range(40):
            u_try = u + t[:, None] * step
            eta_try = _eta(data, eta_fixed, A, u_try)
            ker, d1_try, d2_try = fl.kernel_derivatives(eta_try, y, m)
            h, Zd1_try, M_try = group_sums(ker, d1_try, d2_try)
            f_try = h - _penalty(u_try)
            worse = ~(f_try >= f - 1e-12 * (1.0 + np.abs(f)))
            if not worse.any():
                break
            t[worse] *= 0.5
        u, eta, f, d1, d2, Zd1, M = u_try, eta_try, f_try, d1_try, d2_try, Zd1_try, M_try
        # Full Newton steps converge quadratically: after a full step of size
        # s the error is O(s^2), so a full step below sqrt(tol) leaves the modes
        # within ~tol and certifying it with one more step would only repeat it.
        size = np.max(np.abs(t[:, None] * step))
        if size < tol or (size < np.sqrt(tol) and np.all(t == 1.0)):
            break
    else:
        raise ModeFailure(f"conditional modes did not converge in {maxiter} Newton steps "
                          f"(largest step {np.max(np.abs(step)):.3g})")
    d3 = fl.third(eta, y, m, d1, d2)
    H = (Lambda.T @ M @ Lambda) + eye
    return ModeState(u, eta, eta_fixed, A, d1, d2, d3, M, H, f, it)
