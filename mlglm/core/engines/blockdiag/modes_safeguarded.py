"""Conditional modes for kernels that are not log-concave in eta: the safeguarded Newton step.

The zero-inflated, hurdle and beta kernels (:mod:`mlglm.core.spec.families_auxiliary`)
have d2 = -l'' < 0 on some rows, so the penalised Hessian of a group,
H_j = Lambda' (sum_i d2_i z_i z_i') Lambda + I, can be indefinite and the plain
Newton step of :mod:`mlglm.core.engines.blockdiag.modes` need not be an ascent direction (on the
regression data of ``docs/zero_inflation_math.md`` section 5 it wanders between
u = -16 and 27). Per group, vectorised over groups, each iteration here

1. takes the Newton direction H_j^{-1} g_j where H_j is positive definite (its
   smallest eigenvalue above :data:`PD_FLOOR`), else the Fisher-scoring direction
   F_j^{-1} g_j with F_j = Lambda' (sum_i fisher_i z_i z_i') Lambda + I (the expected
   information, positive semi-definite per row, so F_j >= I): both are ascent
   directions of the penalised objective phi_j(u) = sum_i l_i - u'u/2 (g'd > 0);
2. backtracks s = 1, 1/2, 1/4, ... until the Armijo condition
   phi_j(u + s d) >= phi_j(u) + c s g'd (c = :data:`ARMIJO`) holds;
3. stops when the largest step is below ``tol`` (or below sqrt(tol) after a full
   Newton step in every group: quadratic convergence leaves the error at its square).

Convergence: phi_j is bounded above and coercive (-u'u/2), so its upper level sets are
compact; the matrices used have eigenvalues bounded below (PD_FLOOR, or 1 for F) and
above on them, so the directions are gradient related and Armijo backtracking makes
every limit point stationary (Bertsekas, Nonlinear Programming, 2nd ed., Prop. 1.2.1);
phi_j increases at every step, and near a strict local maximum H_j is positive
definite and the unit Newton step is accepted (quadratic convergence). Where H_j is
not positive definite at the converged point the Laplace term is undefined and the
engines' log-determinant gives NaN (never a Fisher substitute).

The state returned is the :class:`~mlglm.core.engines.blockdiag.modes.ModeState` of the plain
iteration (observed d2 and H at the modes), so the Laplace and AGHQ code is shared.
"""
from __future__ import annotations

import numpy as np

from ...numerics.smallmat import congruence, pair_index, pairs_to_full
from ...spec.errors import ModeFailure
from .grouping import GroupedData
from .modes import WARM_MAXITER, ModeState

__all__ = ["safeguarded_modes", "PD_FLOOR", "ARMIJO"]

#: H_j counts as positive definite (the Newton step is taken) when its smallest
#: eigenvalue exceeds this (H_j = I at Lambda = 0; the penalty keeps it near 1 or above
#: wherever the rows are concave).
PD_FLOOR = 1e-8
#: The Armijo constant of the backtracking line search.
ARMIJO = 1e-4


def safeguarded_modes(fl, data: GroupedData, beta, Lambda, u0=None, tol: float = 1e-10,
                      maxiter: int = 200) -> ModeState:
    """Maximise phi_j(u) for every group by the safeguarded Newton iteration (module
    docstring), from the warm start ``u0`` (G, q) when it converges from there within
    a few more steps than the plain iteration allows, else from u = 0."""
    if u0 is not None:
        try:
            u = np.ascontiguousarray(np.asarray(u0, dtype=float).T)
            return _iterate(fl, data, beta, Lambda, u, tol, 3 * WARM_MAXITER)
        except ModeFailure:
            pass
    return _iterate(fl, data, beta, Lambda, np.zeros((data.q, data.n_groups)), tol, maxiter)


def _iterate(fl, data, beta, Lambda, u, tol, maxiter):
    q, G = data.q, data.n_groups
    y, sizes, starts = data.y, data.sizes, data.starts
    ZT, ZZT = data.ZT, data.ZZT
    eta_fixed = data.offset + data.X @ beta
    AT = Lambda.T @ ZT                                   # w_i = Lambda' z_i, (q, n)
    Kc = congruence(Lambda)
    r, c = pair_index(q)
    diag = np.flatnonzero(r == c)

    def eta_at(u):
        R = np.repeat(u, sizes, axis=1)
        R *= AT
        eta = np.add(R[0], eta_fixed)
        for k in range(1, q):
            eta += R[k]
        return eta

    def objective(u):
        eta = eta_at(u)
        ker, d1, d2 = fl.kernel_derivatives(eta, y)
        f = np.add.reduceat(ker, starts) - 0.5 * np.einsum("kg,kg->g", u, u)
        return eta, d1, d2, f

    def hess(weights):
        Hp = Kc @ np.add.reduceat(ZZT * weights, starts, axis=1)
        Hp[diag] += 1.0
        return Hp

    eta, d1, d2, f = objective(u)
    if not np.all(np.isfinite(f)):
        raise ModeFailure("the conditional log-likelihood is not finite at the start of "
                          "the modes")
    for it in range(1, maxiter + 1):
        Zd1 = np.add.reduceat(ZT * d1, starts, axis=1)
        grad = Lambda.T @ Zd1 - u                        # (q, G)
        Hp = hess(d2)                                    # observed, unique entries
        if q == 1:
            newton = Hp[0] > PD_FLOOR
            if not newton.all():
                Hp = np.where(newton, Hp, hess(fl.fisher(eta)))
            step = grad / Hp
        else:
            H = pairs_to_full(Hp)                        # (G, q, q)
            newton = np.linalg.eigvalsh(H)[:, 0] > PD_FLOOR
            if not newton.all():
                F = pairs_to_full(hess(fl.fisher(eta)))
                H = np.where(newton[:, None, None], H, F)
            step = np.linalg.solve(H, grad.T[:, :, None])[:, :, 0].T      # (q, G)
        slope = np.einsum("kg,kg->g", grad, step)                      # g'd >= 0
        s = np.ones(G)
        for _ in range(60):
            u_try = u + s * step
            eta_try, d1_try, d2_try, f_try = objective(u_try)
            bad = ~(f_try >= f + ARMIJO * s * slope - 1e-12 * (1.0 + np.abs(f)))
            if not bad.any():
                break
            s[bad] *= 0.5
        else:
            raise ModeFailure("the line search of the conditional modes found no ascent")
        u, eta, d1, d2, f = u_try, eta_try, d1_try, d2_try, f_try
        size = float(np.max(np.abs(s * step)))
        if size < tol or (size < np.sqrt(tol) and newton.all() and np.all(s == 1.0)):
            break
    else:
        raise ModeFailure(f"conditional modes did not converge in {maxiter} safeguarded "
                          f"Newton steps (largest step {size:.3g})")
    d3 = fl.third(eta, y, None, d1, d2)
    Zd1 = np.add.reduceat(ZT * d1, starts, axis=1)
    Mp = np.add.reduceat(ZZT * d2, starts, axis=1)
    Hp = Kc @ Mp
    Hp[diag] += 1.0
    return ModeState(u.T, eta, eta_fixed, AT, d1, d2, d3, Zd1, Mp, Hp, f, it)
