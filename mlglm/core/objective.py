"""The marginal log-likelihood as a function of x = (beta, theta).

:class:`MarginalLoglik` ties the pieces together for one data set, family and
approximation: theta -> Lambda (:mod:`covariance`), conditional modes
(:mod:`modes`, warm-started from the previous evaluation), then the Laplace
(:mod:`laplace`) or AGHQ (:mod:`aghq`) value and exact gradient, plus the
response constants (log C(m, y), -log y!) computed once. It is the only object
the optimiser (:mod:`optimize`) talks to, and it is also what a user or a test
calls to evaluate the log-likelihood at arbitrary parameters (like lme4's
``devFunOnly``).
"""
from __future__ import annotations

import numpy as np

from .aghq import aghq_loglik
from .covariance import theta_index, theta_to_Lambda, n_theta
from .families import FamilyLink
from .grouping import GroupedData
from .laplace import laplace_gradient, laplace_loglik
from .modes import ModeState, conditional_modes

__all__ = ["MarginalLoglik"]


class MarginalLoglik:
    """log L(beta, theta) = sum_j log L_j + sum_i log_const_i.

    Parameters
    ----------
    fl : FamilyLink kernel.  data : GroupedData (rows sorted by group).
    nagq : points per dimension; 1 is the Laplace approximation.
    diagonal : uncorrelated random effects (theta = diagonal of Lambda).

    ``n_evals`` counts evaluations; ``state`` is the mode state of the latest
    :meth:`value_and_gradient` (the optimiser packages it at the optimum
    instead of recomputing it); ``u`` keeps the latest modes as the warm
    start of the next evaluation (any start is valid; a close one saves
    Newton steps). :meth:`value_and_gradient` at exactly the point of its
    previous call returns that result again (the optimiser's stages hand over
    points: the preconditioner's start is BFGS's first point, BFGS's last is
    where the Hessian is taken) instead of recomputing it from another warm start.
    """

    def __init__(self, fl: FamilyLink, data: GroupedData, nagq: int = 1, diagonal: bool = False,
                 chunk_elements: int | None = None):
        self.fl = fl
        self.data = data
        self.nagq = int(nagq)
        self.diagonal = diagonal
        self.theta_rc = theta_index(data.q, diagonal)
        self.p = data.p
        self.n_theta = n_theta(data.q, diagonal)
        self.log_const = float(np.sum(fl.log_const(data.y, data.m_rows)))
        self.chunk_elements = chunk_elements
        self.u = None
        self.state = None
        self.n_evals = 0
        self._last = None   # (x bytes, value, gradient, state) of the latest value_and_gradient

    def with_nagq(self, nagq: int) -> "MarginalLoglik":
        """The same model and data with ``nagq`` points per dimension (a new objective:
        its own evaluation count and warm start)."""
        return MarginalLoglik(self.fl, self.data, nagq, self.diagonal, self.chunk_elements)

    def random_sds(self, x) -> np.ndarray:
        """Standard deviations of the random effects, sqrt(diag(Lambda Lambda')), at x."""
        Lambda = theta_to_Lambda(self.split(x)[1], self.data.q, self.diagonal)
        return np.sqrt(np.einsum("ij,ij->i", Lambda, Lambda))

    def split(self, x):
        x = np.asarray(x, dtype=float)
        return x[:self.p], x[self.p:]

    def modes(self, x, u0=None) -> ModeState:
        """Conditional modes at x (warm-started from the last evaluation)."""
        beta, theta = self.split(x)
        Lambda = theta_to_Lambda(theta, self.data.q, self.diagonal)
        start = self.u if u0 is None else u0
        return conditional_modes(self.fl, self.data, beta, Lambda, start)

    def per_group(self, x) -> np.ndarray:
        """log L_j for every group (response constants excluded)."""
        state = self.modes(x)
        self.u = state.u
        if self.nagq == 1:
            return laplace_loglik(state)
        Lambda = theta_to_Lambda(self.split(x)[1], self.data.q, self.diagonal)
        kw = {} if self.chunk_elements is None else {"chunk_elements": self.chunk_elements}
        return aghq_loglik(self.fl, self.data, state, Lambda, self.nagq, **kw)

    def __call__(self, x) -> float:
        """The marginal log-likelihood at x, every constant included."""
        self.n_evals += 1
        return float(self.per_group(x).sum()) + self.log_const

    def value_and_gradient(self, x):
        """(log L, d log L / dx) with the exact gradient."""
        x = np.asarray(x, dtype=float)
        key = x.tobytes()
        if self._last is not None and self._last[0] == key:
            _, value, grad, state = self._last
            self.u, self.state = state.u, state
            return value, grad.copy()
        self.n_evals += 1
        beta, theta = self.split(x)
        Lambda = theta_to_Lambda(theta, self.data.q, self.diagonal)
        state = conditional_modes(self.fl, self.data, beta, Lambda, self.u)
        self.u, self.state = state.u, state
        if self.nagq == 1:
            value = laplace_loglik(state).sum()
            g_beta, g_Lambda = laplace_gradient(self.data, state, Lambda)
            grad = np.concatenate([g_beta, g_Lambda[self.theta_rc]])
        else:
            kw = {} if self.chunk_elements is None else {"chunk_elements": self.chunk_elements}
            vals, grad = aghq_loglik(self.fl, self.data, state, Lambda, self.nagq,
                                     theta_rc=self.theta_rc, gradient=True, **kw)
            value = vals.sum()
        value = float(value) + self.log_const
        self._last = (key, value, grad.copy(), state)
        return value, grad
