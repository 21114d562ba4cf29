"""The marginal log-likelihood as a function of x = (beta, theta): the optimiser's seam.

:class:`Objective` is everything the fit driver (:mod:`optimize`) sees of a
model: ``value_and_gradient(x)``, the parameter layout (``p`` fixed effects,
then ``n_theta`` covariance parameters of the terms), a start, the sign
canonicalisation of Lambda's columns, a preconditioner, the Laplace version
of an AGHQ objective, the same objective with another number of points
(``with_nagq``: ``nagq="auto"`` and the fit-time quadrature check use it), and
the random effects at the last evaluation for packaging. A one-factor engine (:class:`MarginalLoglik`), the blocked
several-factor Laplace (:class:`~mlglm.core.laplace_multi.MultiLaplace`), and
any other engine (nested quadrature, a sharded one) implement it, and the same
driver fits them all.

:class:`MarginalLoglik` ties the one-factor pieces together for one data set,
family and approximation: theta -> Lambda (:mod:`covpattern`), conditional
modes (:mod:`modes`, warm-started from the previous evaluation), then the
Laplace (:mod:`laplace`) or AGHQ (:mod:`aghq`) value and exact gradient, plus
the response constants (log C(m, y), -log y!) computed once. It is also what a
user or a test calls to evaluate the log-likelihood at arbitrary parameters
(like lme4's ``devFunOnly``).
"""
from __future__ import annotations

import numpy as np

from .aghq import aghq_loglik
from .covpattern import diagonal as diagonal_pattern
from .covpattern import unstructured
from .families import FamilyLink
from .grouping import GroupedData
from .laplace import laplace_gradient, laplace_loglik
from .modes import ModeState, conditional_modes
from .smallmat import spd_inv
from .terms import ReTerm, ReTerms

__all__ = ["Objective", "MarginalLoglik"]


class Objective:
    """The optimiser's view of a model (see the module docstring).

    Subclasses set ``fl`` (family kernel), ``y``, ``m_rows``, ``X``, ``offset``
    (for the GLM start), ``terms`` (ReTerms: theta layout), ``p``,
    ``n_theta``, ``nagq``, ``n_evals``, ``u`` (warm start of the modes: any
    object the subclass understands; the driver only saves and restores it)
    and implement :meth:`value_and_gradient`, :meth:`laplace`,
    :meth:`beta_information` and :meth:`random_effects`.
    """

    def value_and_gradient(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    def laplace(self) -> "Objective":  # pragma: no cover - abstract
        """The same problem by the Laplace approximation (self if nagq == 1)."""
        raise NotImplementedError

    def beta_information(self, x) -> np.ndarray:  # pragma: no cover - abstract
        """The Laplace ("RX") information for beta at x with theta fixed (p x p)."""
        raise NotImplementedError

    def with_nagq(self, nagq: int) -> "Objective":  # pragma: no cover - abstract
        """The same problem with ``nagq`` points per dimension (a new objective: its
        own evaluation count and warm start; the same class, so ``u`` carries over).
        ``nagq="auto"`` and the fit-time quadrature check (:mod:`mlglm.core.adequacy`)
        need it; an engine without quadrature (Laplace only) does not implement it."""
        raise NotImplementedError

    def random_effects(self):  # pragma: no cover - abstract
        """(Lambdas, b, b_cov) per term at the last evaluation: the covariance
        factors, conditional modes b_k = Lambda_k u_k (J_k x q_k) and conditional
        covariances Lambda_k [H^{-1}]_kk Lambda_k' (J_k x q_k x q_k)."""
        raise NotImplementedError

    # ------------------------------------------------------------- shared
    def split(self, x):
        x = np.asarray(x, dtype=float)
        return x[:self.p], x[self.p:]

    def random_sds(self, x) -> np.ndarray:
        """Standard deviations of all random effects, sqrt(diag(Lambda_k Lambda_k')) for
        every term k in turn, at x."""
        Lams = self.terms.Lambdas(self.split(x)[1])
        return np.concatenate([np.sqrt(np.einsum("ij,ij->i", L, L)) for L in Lams])

    @property
    def theta_on_diagonal(self) -> np.ndarray:
        """Boolean (n_theta,): the parameters on a diagonal of some Lambda_k."""
        return self.terms.theta_on_diagonal()

    def canonical(self, x) -> np.ndarray:
        """x with every Lambda_k's columns flipped to non-negative diagonals
        (Sigma = Lambda Lambda' and the likelihood are unchanged)."""
        x = np.array(x, dtype=float)
        x[self.p:] = self.terms.canonical(x[self.p:])
        return x

    def start(self) -> np.ndarray:
        """beta of the GLM without random effects; 0.5 on Lambda's diagonals."""
        from .optimize import glm_start
        return np.concatenate([glm_start(self.fl, self),
                               np.where(self.theta_on_diagonal, 0.5, 0.0)])

    def preconditioner(self, x0) -> np.ndarray:
        """T with x = x0 + T z so that the curvature in z is close to the identity.

        beta block: the inverse Cholesky factor of :meth:`beta_information`;
        theta block: forward differences of the exact gradient along each theta
        direction (1 + n_theta gradients). Cross terms are left to BFGS.
        Covariates on wildly different scales (age and age^2) and group-level
        covariates (whose information the random effects absorb) make the raw
        problem ill-conditioned; in z the quasi-Newton iteration needs a
        fraction of the evaluations.
        """
        p, n_x = self.p, x0.size
        self.u = None
        info = self.beta_information(x0)
        T = np.eye(n_x)
        try:
            Lc = np.linalg.cholesky(info + 1e-10 * np.trace(info) / max(p, 1) * np.eye(p))
            T[:p, :p] = np.linalg.inv(Lc).T
        except np.linalg.LinAlgError:
            pass
        u_ref = self.u
        g_plus = {}
        for i in range(p, n_x):
            h = 1e-3 * max(abs(x0[i]), 0.1)
            xp = x0.copy()
            xp[i] += h
            self.u = u_ref
            g_plus[i] = (h, self.value_and_gradient(xp)[1][i])
        # x0 last: it is also BFGS's first point, which the objective then answers
        # from this evaluation
        self.u = u_ref
        g0 = self.value_and_gradient(x0)[1]
        for i, (h, gi) in g_plus.items():
            curv = -(gi - g0[i]) / h
            if np.isfinite(curv) and curv > 0:
                T[i, i] = 1.0 / np.sqrt(curv)
        return T


class MarginalLoglik(Objective):
    """log L(beta, theta) = sum_j log L_j + sum_i log_const_i.

    Parameters
    ----------
    fl : FamilyLink kernel.  data : GroupedData (rows sorted by group).
    nagq : points per dimension; 1 is the Laplace approximation.
    diagonal : uncorrelated random effects (theta = diagonal of Lambda).
    pattern : CovPattern of Lambda (overrides ``diagonal``; e.g. tied blocks).

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
                 chunk_elements: int | None = None, pattern=None):
        self.fl = fl
        self.data = data
        self.nagq = int(nagq)
        q = data.q
        if pattern is None:
            pattern = diagonal_pattern(q) if diagonal else unstructured(q)
        self.pattern = pattern
        self.diagonal = pattern.is_diagonal and q > 1 or (diagonal and q == 1)
        self.theta_rc = (pattern.rows, pattern.cols)      # the free entries of Lambda
        self.p = data.p
        self.n_theta = pattern.n_theta
        codes = np.repeat(np.arange(data.n_groups), data.sizes)
        self.terms = ReTerms((ReTerm("group", codes, data.n_groups, data.Z, pattern),))
        self.y, self.m_rows, self.X, self.offset = data.y, data.m_rows, data.X, data.offset
        self.log_const = float(np.sum(fl.log_const(data.y, data.m_rows)))
        self.chunk_elements = chunk_elements
        self.u = None
        self.state = None
        self.n_evals = 0
        self._last = None   # (x bytes, value, gradient, state) of the latest value_and_gradient

    def Lambda(self, theta) -> np.ndarray:
        return self.pattern.Lambda(theta)

    def laplace(self) -> "MarginalLoglik":
        if self.nagq == 1:
            return self
        return self.with_nagq(1)

    def with_nagq(self, nagq: int) -> "MarginalLoglik":
        return MarginalLoglik(self.fl, self.data, nagq, pattern=self.pattern,
                              chunk_elements=self.chunk_elements)

    def beta_information(self, x) -> np.ndarray:
        """X'D2X - sum_j X_j'D2 Z_j Lambda H_j^{-1} Lambda'Z_j'D2 X_j at x (the GLM
        information minus what the random effects absorb), from the modes at x."""
        data, p = self.data, self.p
        state = self.modes(x)
        self.u = state.u
        XD = data.X * state.d2[:, None]
        info = data.X.T @ XD
        # B_j = sum_i d2_i x_i a_i' (p x q), as p q contiguous rows x_ik d2_i a_ir
        # summed by segment: the (n, p, q) product's layout, transposed for speed
        XDT = np.ascontiguousarray(XD.T)
        rows = (XDT[:, None, :] * state.AT[None, :, :]).reshape(p * data.q, data.n)
        B = np.add.reduceat(rows, data.starts, axis=1).T.reshape(-1, p, data.q)   # (G, p, q)
        info -= (B @ spd_inv(state.H) @ np.swapaxes(B, 1, 2)).sum(axis=0)
        return info

    def random_effects(self):
        """(Lambdas, b, b_cov) at the last evaluation (one term; Laplace covariances)."""
        st = self.state
        L = self._last_Lambda
        P = np.linalg.inv(st.H)
        return ((L,), (st.u @ L.T,), (np.einsum("ij,gjk,lk->gil", L, P, L),))

    def modes(self, x, u0=None) -> ModeState:
        """Conditional modes at x (warm-started from the last evaluation)."""
        beta, theta = self.split(x)
        Lambda = self.pattern.Lambda(theta)
        start = self.u if u0 is None else u0
        return conditional_modes(self.fl, self.data, beta, Lambda, start)

    def per_group(self, x) -> np.ndarray:
        """log L_j for every group (response constants excluded)."""
        state = self.modes(x)
        self.u = state.u
        if self.nagq == 1:
            return laplace_loglik(state)
        Lambda = self.pattern.Lambda(self.split(x)[1])
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
            _, value, grad, state, Lambda = self._last
            self.u, self.state, self._last_Lambda = state.u, state, Lambda
            return value, grad.copy()
        self.n_evals += 1
        beta, theta = self.split(x)
        Lambda = self.pattern.Lambda(theta)
        state = conditional_modes(self.fl, self.data, beta, Lambda, self.u)
        self.u, self.state, self._last_Lambda = state.u, state, Lambda
        if self.nagq == 1:
            value = laplace_loglik(state).sum()
            g_beta, g_Lambda = laplace_gradient(self.data, state, Lambda)
            grad = np.concatenate([g_beta, self.pattern.gradient(g_Lambda)])
        else:
            kw = {} if self.chunk_elements is None else {"chunk_elements": self.chunk_elements}
            vals, grad = aghq_loglik(self.fl, self.data, state, Lambda, self.nagq,
                                     theta_rc=self.theta_rc, gradient=True, **kw)
            value = vals.sum()
            if self.pattern.idx.size != self.n_theta:       # tied entries share a parameter
                grad = np.concatenate([grad[:self.p], np.bincount(
                    self.pattern.idx, weights=grad[self.p:], minlength=self.n_theta)])
        value = float(value) + self.log_const
        self._last = (key, value, grad.copy(), state, Lambda)
        return value, grad
