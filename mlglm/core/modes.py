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


def _eta(eta_fixed, A, u, gidx):
    if A.shape[1] == 1:
        return eta_fixed + A[:, 0] * u[gidx, 0]
    return eta_fixed + np.einsum("nq,nq->n", A, u[gidx])


def _objective(fl, data, eta, u):
    return data.gsum(fl.kernel(eta, data.y, data.m)) - 0.5 * np.einsum("gq,gq->g", u, u)


def conditional_modes(fl: FamilyLink, data: GroupedData, beta, Lambda, u0=None,
                      tol: float = 1e-10, maxiter: int = 100) -> ModeState:
    """Maximise h_j(u) for every group; return the state at the modes.

    Parameters
    ----------
    u0 : (G, q) warm start (e.g. the modes at the previous outer evaluation);
        zeros when None. Any start is valid: the iteration is globally
        convergent for these concave problems.
    """
    G, q = data.n_groups, data.q
    eta_fixed = data.offset + data.X @ beta
    A = data.Z @ Lambda
    u = np.zeros((G, q))
    eta = _eta(eta_fixed, A, u, data.gidx)
    f = _objective(fl, data, eta, u)
    if u0 is not None:
        # a warm start far from the new mode (the outer search jumped) can cost
        # Newton many halved steps, e.g. exp(eta) overshooting by e^50 for a
        # Poisson group: keep it only for the groups where it beats u = 0
        u_w = np.array(u0, dtype=float, copy=True)
        eta_w = _eta(eta_fixed, A, u_w, data.gidx)
        f_w = _objective(fl, data, eta_w, u_w)
        better = f_w > f
        u[better] = u_w[better]
        f = np.where(better, f_w, f)
        eta = _eta(eta_fixed, A, u, data.gidx)
    eye = np.eye(q)
    for it in range(1, maxiter + 1):
        d1, d2 = fl.derivatives(eta, data.y, data.m)
        grad = data.gsum(A * d1[:, None]) - u
        M = sym_from_pairs(data.gsum(d2[:, None] * data.ZZ), q)
        H = np.einsum("ki,gkl,lj->gij", Lambda, M, Lambda) + eye
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        t = np.ones(G)
        for _ in range(40):
            u_try = u + t[:, None] * step
            eta_try = _eta(eta_fixed, A, u_try, data.gidx)
            f_try = _objective(fl, data, eta_try, u_try)
            worse = ~(f_try >= f - 1e-12 * (1.0 + np.abs(f)))
            if not worse.any():
                break
            t[worse] *= 0.5
        u, eta, f = u_try, eta_try, f_try
        if np.max(np.abs(t[:, None] * step)) < tol:
            break
    else:
        raise ModeFailure(f"conditional modes did not converge in {maxiter} Newton steps "
                          f"(largest step {np.max(np.abs(step)):.3g})")
    d1, d2, d3 = fl.derivatives(eta, data.y, data.m, third=True)
    M = sym_from_pairs(data.gsum(d2[:, None] * data.ZZ), q)
    H = np.einsum("ki,gkl,lj->gij", Lambda, M, Lambda) + eye
    return ModeState(u, eta, eta_fixed, A, d1, d2, d3, M, H, f, it)
