"""Laplace for zero-inflated, hurdle and beta GLMMs with several grouping factors.

:class:`AuxiliaryMultiLaplace` is :class:`~mlglm.core.engines.crossed.objective.MultiLaplace` (the
blocked factorisation of H = Lambda'Z'WZ Lambda + I, nested or crossed factors) for the
kernels of :mod:`mlglm.core.spec.families_auxiliary`, with x = (beta, theta, gamma, t):

* the joint conditional modes by the safeguarded Newton iteration of
  :mod:`mlglm.core.engines.blockdiag.modes_safeguarded`, on the whole u at once (the factors are coupled):
  the Newton direction where the observed H factorises (positive definite), else the
  Fisher-scoring direction (H with the rows' Fisher information, >= I), Armijo
  backtracking on h(u) = sum_i l_i - |u|^2/2;
* the gradient in the auxiliary coordinates from the per-row leverage s_i and a_i'v of
  the several-factor gradient (module docstring of :mod:`mlglm.core.engines.crossed.objective`):
  r_i = dK_i - (s_i d d2_i + (a_i'v) d d1_i) / 2, d/dgamma = X_zi' r, d/dt = sum_i r_i
  (plus the constants' derivative);
* the start of :func:`~mlglm.core.engines.blockdiag.objective_aux.auxiliary_start`.

Laplace only: crossed factors have no low-dimensional integral. Nested factors are
fitted by :class:`~mlglm.core.engines.nested.objective_aux.AuxiliaryNested` (tree
elimination, Laplace and AGHQ through every level); this engine gives the same Laplace
value on them (tested).
"""
from __future__ import annotations

import numpy as np

from ...fit.objective import START_SD
from ...spec.errors import ModeFailure
from ...spec.families_auxiliary import AuxiliaryKernel, BoundAuxiliaryKernel
from ...spec.layouts import ParamLayout
from ..blockdiag.modes_safeguarded import ARMIJO
from ..blockdiag.objective_aux import auxiliary_start
from .blocked import BlockedFactor
from .objective import (MultiLaplace, MultiModes, _from_blocked, _grad_u, _mode_criterion,
                        _to_blocked)

__all__ = ["AuxiliaryMultiLaplace", "safeguarded_multi_modes"]


def safeguarded_multi_modes(fl, plan, y, m, eta_fixed, Lams, u0=None, tol: float = 1e-10,
                            maxiter: int = 200) -> MultiModes:
    """Maximise h(u) jointly over every term's random effects by the safeguarded Newton
    iteration (module docstring); the state holds the factor of the observed H at the
    mode (a LinAlgError if it is not positive definite there: no Laplace value)."""
    terms = plan.terms
    u = tuple(np.zeros((t.n_levels, t.q)) for t in terms) if u0 is None else \
        tuple(np.array(a, dtype=float) for a in u0)

    at = _mode_criterion(fl, terms, Lams, y, m, eta_fixed)
    eta, d1, d2, ks, h = at(u)
    if not np.isfinite(h):
        raise ModeFailure("the conditional log-likelihood is not finite at the start of the "
                          "modes")
    step_size, newton_full = np.inf, False
    for it in range(maxiter + 1):
        cx = plan.cross(d2)
        try:
            with np.errstate(invalid="ignore"):     # a negative pivot: not positive definite
                f = BlockedFactor(plan.st, *cx.scaled(Lams))
            newton = True
        except np.linalg.LinAlgError:
            f, newton = None, False
        if step_size < tol or (step_size < np.sqrt(tol) and newton_full):
            if f is None:
                raise np.linalg.LinAlgError("the Hessian of h at the conditional modes is not "
                                            "positive definite: no Laplace approximation")
            return MultiModes(u, eta, d1, d2, ks, h, cx, f, it)
        grad = _grad_u(terms, Lams, u, d1)
        if not newton:
            f_dir = BlockedFactor(plan.st, *plan.cross(fl.fisher(eta)).scaled(Lams))
        else:
            f_dir = f
        g1, gD = _to_blocked(plan, grad)
        s1, sD = f_dir.solve(g1, gD)
        step = _from_blocked(plan, s1, sD)
        slope = sum(float(np.sum(g * s)) for g, s in zip(grad, step))
        t = 1.0
        for _ in range(60):
            u_try = tuple(a + t * s for a, s in zip(u, step))
            trial = at(u_try)
            if trial[4] >= h + ARMIJO * t * slope - 1e-12 * (1.0 + abs(h)):
                break
            t *= 0.5
        else:
            raise ModeFailure("the joint conditional modes did not improve along the "
                              "safeguarded Newton direction")
        u = u_try
        eta, d1, d2, ks, h = trial
        step_size = t * max(float(np.max(np.abs(s))) if s.size else 0.0 for s in step)
        newton_full = newton and t == 1.0
    raise ModeFailure(f"the joint conditional modes did not converge in {maxiter} safeguarded "
                      "Newton steps")


class AuxiliaryMultiLaplace(MultiLaplace):
    """The Laplace log-likelihood of x = (beta, theta, gamma, t) for several grouping
    factors (module docstring).

    Parameters
    ----------
    kernel : the :class:`~mlglm.core.spec.families_auxiliary.AuxiliaryKernel`.
    y, X, offset, terms, plan : as :class:`~mlglm.core.engines.crossed.objective.MultiLaplace`
        (rows in any order; no prior weights).
    X_zi : (n, n_zi) zero-part design in the same row order (None without a zero part).
    """

    _find_modes = staticmethod(safeguarded_multi_modes)

    def __init__(self, kernel: AuxiliaryKernel, y, X, offset, terms, plan=None, X_zi=None):
        super().__init__(_Unweighted(kernel), y, np.ones_like(np.asarray(y, dtype=float)),
                         X, offset, terms, plan)
        self.fl = self.aux = kernel
        self.n_disp = int(kernel.has_dispersion)
        if kernel.has_zero_part:
            self.X_zi = np.asfortranarray(np.asarray(X_zi, dtype=float).reshape(self.y.size, -1))
        else:
            self.X_zi = None
        self.n_zi = 0 if self.X_zi is None else self.X_zi.shape[1]
        self.constants = kernel.row_constants(self.y)

    @property
    def param_layout(self) -> ParamLayout:
        return ParamLayout(self.p, self.n_theta, self.n_disp, self.n_zi)

    def kernel_at(self, x) -> BoundAuxiliaryKernel:
        lay = self.param_layout
        a = self.X_zi @ lay.zi(x) if self.n_zi else None
        return BoundAuxiliaryKernel(self.aux, a, lay.log_dispersion(x), self.X_zi)

    def _constants(self, x) -> float:
        return self.constants.value(self.param_layout.log_dispersion(x))

    def theta_curvature(self, x0):
        return None         # the one-way guess assumes concave rows

    def beta_information(self, x) -> np.ndarray:
        """X'FX, F the rows' Fisher information at x with the random effects at 0 (the
        preconditioner's scale; the observed weights can be negative here)."""
        fl = self.kernel_at(x)
        F = fl.fisher(self.offset + self.X @ self.split(x)[0])
        return (self.X.T * F) @ self.X

    def start(self) -> np.ndarray:
        theta0 = np.where(self.theta_on_diagonal, START_SD, 0.0)
        return auxiliary_start(self.aux, self.y, self.X, self.offset, self.X_zi, theta0)

    def _gradient(self, st: MultiModes, Lams, fl):
        g_beta, g_theta, s, av, _ = self._gradient_parts(st, Lams, fl)
        parts = [g_beta] + g_theta
        rows = [dK - 0.5 * (s * dd2 + av * dd1) for dK, dd1, dd2 in fl.coordinates(st.eta,
                                                                                  self.y)]
        k = 0
        if self.n_zi:
            parts.append(self.X_zi.T @ rows[0])
            k = 1
        if self.n_disp:
            parts.append([float(rows[k].sum())])
        return np.concatenate(parts)


class _Unweighted:
    """What MultiLaplace's constructor reads of a kernel, for an auxiliary kernel (whose
    constants and dispersion the subclass sets itself)."""

    has_dispersion = False
    log_dispersion = 0.0        # (the base's constant at t = 0, never used: _constants)

    def __init__(self, kernel):
        self.kernel = kernel

    def row_constants(self, y, m, freq=None, var=None):
        return self.kernel.row_constants(y)
