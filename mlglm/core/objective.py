"""The marginal log-likelihood as a function of x = (beta, theta[, t]): the optimiser's seam.

:class:`Objective` is everything the fit driver (:mod:`optimize`) sees of a
model: ``value_and_gradient(x)``, the parameter layout (:class:`ParamLayout`:
``p`` fixed effects, then ``n_theta`` covariance parameters of the terms, then
``n_disp`` = 1 slot for the log dispersion t of a negative binomial or Gamma
family whose dispersion is estimated, else none), a start, the sign
canonicalisation of Lambda's columns, a preconditioner, the Laplace version
of an AGHQ objective, the same objective with another number of points
(``with_nagq``: ``nagq="auto"`` and the fit-time quadrature check use it), and
the random effects at the last evaluation for packaging. A one-factor engine
(:class:`MarginalLoglik`), the blocked several-factor Laplace
(:class:`~mlglm.core.laplace_multi.MultiLaplace`), and any other engine (nested
quadrature, a sharded one) implement it, and the same driver fits them all.

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
from .families import Kernel
from .grouping import GroupedData
from .layouts import ParamLayout
from .laplace import laplace_gradient, laplace_loglik
from .modes import ModeState, conditional_modes
from .smallmat import spd_inv
from .terms import ReTerm, ReTerms

__all__ = ["Objective", "MarginalLoglik", "START_SD"]

#: The default start of every diagonal element of every Lambda_k (an SD of 0.5 on the
#: linear-predictor scale); the fit driver also restarts a variance it finds stuck at 0
#: from here (:func:`mlglm.core.optimize.fit_glmm`).
START_SD = 0.5


class Objective:
    """The optimiser's view of a model (see the module docstring).

    Subclasses set ``fl`` (family kernel), ``y``, ``m_rows``, ``X``, ``offset``
    (for the GLM start; with prior weights also ``y_obs``, ``m_obs``, ``weights``),
    ``terms`` (ReTerms: theta layout), ``p``, ``n_theta``, ``n_disp`` (1 when
    ``fl`` has a dispersion the fit estimates), ``nagq``, ``n_evals``, ``u`` (warm
    start of the modes: any object the subclass understands; the driver only
    saves and restores it) and implement :meth:`value_and_gradient`,
    :meth:`laplace`, :meth:`beta_information` and :meth:`random_effects`.
    """

    n_disp = 0
    weights = None

    def value_and_gradient(self, x):  # pragma: no cover - abstract
        raise NotImplementedError

    _last = None     # (x bytes, value, gradient, anchor) of the latest value_and_gradient

    def _repeated(self, x):
        """(value, gradient) again if x is the point of the latest :meth:`value_and_gradient`,
        with the state after it restored (the optimiser's stages hand over points: the
        preconditioner's start is BFGS's first point, BFGS's last is where the Hessian is
        taken); else None."""
        last = self._last
        if last is None or last[0] != x.tobytes():
            return None
        self.restore(last[3])
        return last[1], last[2].copy()

    def _remember(self, x, value, grad) -> None:
        """Keep this evaluation for :meth:`_repeated`."""
        self._last = (x.tobytes(), value, grad.copy(), self.anchor())

    def anchor(self):
        """What the warm start of the next evaluation depends on, to hand back to
        :meth:`restore` (the driver restarts finite differences from a fixed point
        with it). Here the modes ``u``; an engine that also predicts the modes from
        the last evaluation keeps that evaluation too."""
        return self.u

    def restore(self, token) -> None:
        """Make the next evaluation start where it did after :meth:`anchor`."""
        self.u = token

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
    @property
    def param_layout(self) -> ParamLayout:
        return ParamLayout(self.p, self.n_theta, self.n_disp)

    def split(self, x):
        """(beta, theta) of x (the dispersion slot, if any, is :meth:`kernel_at`'s)."""
        x = np.asarray(x, dtype=float)
        return x[:self.p], x[self.p:self.p + self.n_theta]

    def kernel_at(self, x):
        """The family kernel at x's dispersion (``fl`` itself when there is none)."""
        return self.fl.at(x[self.p + self.n_theta]) if self.n_disp else self.fl

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
        sl = self.param_layout.theta_slice
        x[sl] = self.terms.canonical(x[sl])
        return x

    def start(self) -> np.ndarray:
        """beta of the GLM without random effects; START_SD (0.5) on Lambda's diagonals; the
        log dispersion by the moments of that GLM fit (``fl.dispersion_moments``, then
        ``fl.dispersion_from_moments``), with beta refitted at it. The two row sums
        (:meth:`glm_beta`, :meth:`dispersion_moments`) are what an objective whose rows
        are held in pieces overrides."""
        theta0 = np.where(self.theta_on_diagonal, START_SD, 0.0)
        if not self.n_disp:
            return np.concatenate([self.glm_beta(), theta0])
        beta = self.glm_beta(0.0)
        t = self.fl.dispersion_from_moments(self.dispersion_moments(beta), self.p)
        return np.concatenate([self.glm_beta(t), theta0, [t]])

    def glm_beta(self, log_dispersion=None) -> np.ndarray:
        """beta of the GLM without random effects (:func:`~mlglm.core.optimize.glm_start`),
        the kernel at ``log_dispersion`` when given."""
        from .optimize import glm_start
        return glm_start(self.fl if log_dispersion is None else self.fl.at(log_dispersion),
                         self)

    def dispersion_moments(self, beta) -> np.ndarray:
        """The family's row sums behind the dispersion start at the GLM fit beta."""
        mu = self.fl.inverse_link(self.offset + self.X @ beta)
        w = np.ones_like(mu) if self.weights is None else self.weights
        return self.fl.dispersion_moments(getattr(self, "y_obs", self.y), mu, w)

    def theta_curvature(self, x0):
        """A guess of -d^2 log L / d theta_i^2 at x0 (after :meth:`beta_information`
        there) that spares :meth:`preconditioner` its finite differences, or None."""
        return None

    def preconditioner(self, x0) -> np.ndarray:
        """T with x = x0 + T z so that the curvature in z is close to the identity.

        beta block: the inverse Cholesky factor of :meth:`beta_information`;
        theta block: :meth:`theta_curvature` where an objective has a guess, else
        forward differences of the exact gradient along each theta direction
        (1 + n_theta gradients). Cross terms are left to BFGS.
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
        guess = self.theta_curvature(x0)
        if guess is not None:
            T[p:, p:] = np.diag(1.0 / np.sqrt(guess))
            return T
        ref = self.anchor()
        g_plus = {}
        for i in range(p, n_x):
            h = 1e-3 * max(abs(x0[i]), 0.1)
            xp = x0.copy()
            xp[i] += h
            self.restore(ref)
            g_plus[i] = (h, self.value_and_gradient(xp)[1][i])
        # x0 last: it is also BFGS's first point, which the objective then answers
        # from this evaluation
        self.restore(ref)
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
    fl : Kernel (the family's row kernel).  data : GroupedData (rows sorted by group).
    nagq : points per dimension; 1 is the Laplace approximation.
    diagonal : uncorrelated random effects (theta = diagonal of Lambda).
    pattern : CovPattern of Lambda (overrides ``diagonal``; e.g. tied blocks).
    estimate_dispersion : for a kernel with a dispersion, whether x carries its
        log t (the last slot; default) or the kernel's own value is held fixed.

    ``n_evals`` counts evaluations; ``state`` is the mode state of the latest
    :meth:`value_and_gradient` (the optimiser packages it at the optimum
    instead of recomputing it); ``u`` keeps the latest modes as the warm
    start of the next evaluation (any start is valid; a close one saves
    Newton steps). :meth:`value_and_gradient` at exactly the point of its
    previous call returns that result again (the optimiser's stages hand over
    points: the preconditioner's start is BFGS's first point, BFGS's last is
    where the Hessian is taken) instead of recomputing it from another warm start.
    """

    def __init__(self, fl: Kernel, data: GroupedData, nagq: int = 1, diagonal: bool = False,
                 chunk_elements: int | None = None, pattern=None, estimate_dispersion=True):
        self.fl = fl
        self.n_disp = int(bool(fl.has_dispersion and estimate_dispersion))
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
        self.y_obs, self.m_obs, self.weights = data.y_obs, data.m_obs, data.weights
        # the part of the log-likelihood without eta: a number, or a function of t
        self.constants = fl.row_constants(data.y_obs, data.m_obs, data.freq, data.var)
        self.log_const = self.constants.value(fl.log_dispersion)
        self.chunk_elements = chunk_elements
        self.u = None
        self.state = None
        self.n_evals = 0

    def Lambda(self, theta) -> np.ndarray:
        return self.pattern.Lambda(theta)

    def laplace(self) -> "MarginalLoglik":
        if self.nagq == 1:
            return self
        return self.with_nagq(1)

    def with_nagq(self, nagq: int) -> "MarginalLoglik":
        return MarginalLoglik(self.fl, self.data, nagq, pattern=self.pattern,
                              chunk_elements=self.chunk_elements,
                              estimate_dispersion=bool(self.n_disp))

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

    def anchor(self):
        """The modes, their state and Lambda at the latest evaluation."""
        return (self.u, self.state, getattr(self, "_last_Lambda", None))

    def restore(self, token) -> None:
        self.u, self.state, self._last_Lambda = token

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
        return conditional_modes(self.kernel_at(x), self.data, beta, Lambda, start)

    def _constants(self, x) -> float:
        return self.constants.value(self.param_layout.log_dispersion(x)) if self.n_disp \
            else self.log_const

    def group_constants(self, x) -> np.ndarray:
        """The eta-free part of the log-likelihood per group (normalising constants and,
        with a dispersion, its terms without eta): per_group(x) + group_constants(x)
        are the groups' log-likelihoods."""
        t = self.param_layout.log_dispersion(x) if self.n_disp else self.fl.log_dispersion
        return self.data.gsum(self.constants.per_row(t))

    def per_group(self, x) -> np.ndarray:
        """log L_j for every group, the eta-free constants excluded."""
        state = self.modes(x)
        self.u = state.u
        if self.nagq == 1:
            return laplace_loglik(state)
        Lambda = self.pattern.Lambda(self.split(x)[1])
        kw = {} if self.chunk_elements is None else {"chunk_elements": self.chunk_elements}
        return aghq_loglik(self.kernel_at(x), self.data, state, Lambda, self.nagq, **kw)

    def __call__(self, x) -> float:
        """The marginal log-likelihood at x, every constant included."""
        self.n_evals += 1
        return float(self.per_group(x).sum()) + self._constants(x)

    def value_and_gradient(self, x):
        """(log L, d log L / dx) with the exact gradient."""
        x = np.asarray(x, dtype=float)
        again = self._repeated(x)
        if again is not None:
            return again
        self.n_evals += 1
        beta, theta = self.split(x)
        Lambda = self.pattern.Lambda(theta)
        fl = self.kernel_at(x)
        state = conditional_modes(fl, self.data, beta, Lambda, self.u)
        self.u, self.state, self._last_Lambda = state.u, state, Lambda
        if self.nagq == 1:
            value = laplace_loglik(state).sum()
            if self.n_disp:
                g_beta, g_Lambda, g_t = laplace_gradient(self.data, state, Lambda, fl)
                grad = np.concatenate([g_beta, self.pattern.gradient(g_Lambda), [g_t]])
            else:
                g_beta, g_Lambda = laplace_gradient(self.data, state, Lambda)
                grad = np.concatenate([g_beta, self.pattern.gradient(g_Lambda)])
        else:
            kw = {} if self.chunk_elements is None else {"chunk_elements": self.chunk_elements}
            vals, grad = aghq_loglik(fl, self.data, state, Lambda, self.nagq,
                                     theta_rc=self.theta_rc, gradient=True,
                                     dispersion=bool(self.n_disp), **kw)
            value = vals.sum()
            if self.pattern.idx.size != self.n_theta:       # tied entries share a parameter
                p, k = self.p, self.p + self.pattern.idx.size
                grad = np.concatenate([grad[:p], np.bincount(
                    self.pattern.idx, weights=grad[p:k], minlength=self.n_theta), grad[k:]])
        if self.n_disp:
            grad[-1] += self.constants.derivative(self.param_layout.log_dispersion(x))
        value = float(value) + self._constants(x)
        self._remember(x, value, grad)
        return value, grad
