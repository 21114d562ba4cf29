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
(:class:`~mlglm.core.engines.blockdiag.objective.MarginalLoglik`), the blocked several-factor Laplace
(:class:`~mlglm.core.engines.crossed.objective.MultiLaplace`), and any other engine (nested
quadrature, a sharded one) implement it, and the same driver fits them all.
"""
from __future__ import annotations

import numpy as np

from .glm_fit import glm_start
from ..spec.layouts import ParamLayout

__all__ = ["Objective", "START_SD"]

#: The default start of every diagonal element of every Lambda_k (an SD of 0.5 on the
#: linear-predictor scale); the fit driver also restarts a variance it finds stuck at 0
#: from here (:func:`mlglm.core.fit.optimize.fit_glmm`).
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
        ``nagq="auto"`` and the fit-time quadrature check (:mod:`mlglm.core.fit.adequacy`)
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
        """beta of the GLM without random effects (:func:`~mlglm.core.fit.glm_fit.glm_start`),
        the kernel at ``log_dispersion`` when given."""
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
