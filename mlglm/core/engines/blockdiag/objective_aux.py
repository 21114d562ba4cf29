"""The one-term marginal log-likelihood of zero-inflated, hurdle and beta GLMMs.

x = (beta, theta, gamma, t) (:class:`~mlglm.core.spec.layouts.ParamLayout`): the fixed
effects of the conditional mean, the covariance parameters of the random-effects
term, the coefficients gamma of the zero-part predictor a = X_zi gamma (zero
inflation, hurdle; glmmTMB's ``ziformula``) and the log dispersion t (NB2 log theta,
beta log phi). The row kernels are :mod:`mlglm.core.spec.families_zero` and
:mod:`mlglm.core.spec.families_beta`; bound to (a, t) at x
(:class:`~mlglm.core.spec.families_auxiliary.BoundAuxiliaryKernel`) they have the plain
kernels' interface, so the Laplace value (:mod:`laplace`) and the AGHQ value and
gradient (:mod:`aghq`) are the one-term engine's own. What differs:

* the conditional modes: these kernels are not log-concave in eta, so the
  safeguarded Newton iteration (:mod:`mlglm.core.engines.blockdiag.modes_safeguarded`) finds them;
* the gradient in the auxiliary coordinates: per row, the Laplace term
  r_i = dK_i - (s_i d d2_i + (a_i'v_j) d d1_i) / 2 (:func:`~mlglm.core.engines.blockdiag.laplace.
  laplace_gradient`), so d/dgamma = X_zi' r and d/dt = sum_i r_i plus the constants'
  derivative (``docs/zero_inflation_math.md`` section 6);
* the start: the count GLM (Poisson on every row for zero inflation, on the
  positive rows for the hurdle) or least squares on logit(y) (beta); the zero part
  from the excess of zeros over that fit (zero inflation) or the logistic fit of
  y = 0 on X_zi (hurdle: its zero part is a separate likelihood, so this is its ML
  estimate without random effects); the log dispersion by the moments.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from ...fit.glm_fit import glm_newton, glm_start, solve_sym
from ...fit.objective import START_SD
from ...spec.covpattern import unstructured
from ...spec.families import PoissonLog
from ...spec.families_auxiliary import AuxiliaryKernel, BoundAuxiliaryKernel
from ...spec.layouts import ParamLayout
from ...spec.terms import ReTerm, ReTerms
from .grouping import GroupedData
from .laplace import laplace_gradient
from .modes_safeguarded import safeguarded_modes
from .objective import MarginalLoglik

__all__ = ["AuxiliaryLoglik", "auxiliary_start"]


class _Rows:
    """What :func:`~mlglm.core.optimize.glm_start` reads of a data set (a subset of rows)."""

    def __init__(self, y, X, offset):
        self.y, self.X, self.offset = y, np.asfortranarray(X), offset
        self.m_rows = 1.0


class AuxiliaryLoglik(MarginalLoglik):
    """log L(beta, theta, gamma, t) of one random-effects term (module docstring).

    Parameters
    ----------
    kernel : the :class:`~mlglm.core.spec.families_auxiliary.AuxiliaryKernel`.
    data : GroupedData (rows sorted by group; no prior weights).
    X_zi : (n, n_zi) zero-part design in the caller's row order (sorted here with
        ``data.order``); ignored (may be None) for a kernel without a zero part.
    nagq, pattern, chunk_elements : as :class:`~mlglm.core.engines.blockdiag.objective.MarginalLoglik`.
    """

    def __init__(self, kernel: AuxiliaryKernel, data: GroupedData, X_zi=None, nagq: int = 1,
                 pattern=None, chunk_elements: int | None = None):
        if data.weights is not None:
            raise ValueError("prior weights are not taken by zero-inflated, hurdle or beta "
                             "models")
        self.fl = self.aux = kernel
        self.data = data
        self.nagq = int(nagq)
        if pattern is None:
            pattern = unstructured(data.q)
        self.pattern = pattern
        self.diagonal = pattern.is_diagonal and data.q > 1
        self.theta_rc = (pattern.rows, pattern.cols)
        self.p, self.n_theta = data.p, pattern.n_theta
        if kernel.has_zero_part:
            X_zi = np.asarray(X_zi, dtype=float).reshape(data.n, -1)
            self.X_zi_input = X_zi
            self.X_zi = np.asfortranarray(X_zi[data.order])
        else:
            self.X_zi_input = self.X_zi = None
        self.n_zi = 0 if self.X_zi is None else self.X_zi.shape[1]
        self.n_disp = int(kernel.has_dispersion)
        codes = np.repeat(np.arange(data.n_groups), data.sizes)
        self.terms = ReTerms((ReTerm("group", codes, data.n_groups, data.Z, pattern),))
        self.y, self.m_rows, self.X, self.offset = data.y, data.m_rows, data.X, data.offset
        self.y_obs, self.m_obs, self.weights = data.y, data.m, None
        self.constants = kernel.row_constants(data.y)
        self.chunk_elements = chunk_elements
        self.u = None
        self.state = None
        self.n_evals = 0

    # ----------------------------------------------------------- layout
    @property
    def param_layout(self) -> ParamLayout:
        return ParamLayout(self.p, self.n_theta, self.n_disp, self.n_zi)

    def kernel_at(self, x) -> BoundAuxiliaryKernel:
        """The kernel bound to a = X_zi gamma and t at x."""
        lay = self.param_layout
        a = self.X_zi @ lay.zi(x) if self.n_zi else None
        return BoundAuxiliaryKernel(self.aux, a, lay.log_dispersion(x), self.X_zi)

    def with_nagq(self, nagq: int) -> "AuxiliaryLoglik":
        return AuxiliaryLoglik(self.aux, self.data, self.X_zi_input, nagq, pattern=self.pattern,
                               chunk_elements=self.chunk_elements)

    def _constants(self, x) -> float:
        return self.constants.value(self.param_layout.log_dispersion(x))

    def group_constants(self, x) -> np.ndarray:
        return self.data.gsum(self.constants.per_row(self.param_layout.log_dispersion(x)))

    # ----------------------------------------------------------- evaluation
    #: these kernels are not concave in eta (module docstring)
    find_modes = staticmethod(safeguarded_modes)

    def _laplace_gradient(self, state, Lambda, fl) -> np.ndarray:
        """The Laplace gradient in (beta, theta, gamma, t): per-row terms r of each
        auxiliary coordinate, X_zi' r for gamma and sum r for t (module docstring)."""
        g_beta, g_Lambda, rows = laplace_gradient(
            self.data, state, Lambda, aux=fl.coordinates(state.eta, self.data.y))
        parts = [g_beta, self.pattern.gradient(g_Lambda)]
        if self.n_zi:
            parts.append(self.X_zi.T @ rows[0])
        if self.n_disp:
            parts.append([rows[-1].sum()])
        return np.concatenate(parts)

    def _aghq_coordinates(self) -> dict:
        return {"aux": True}

    def beta_information(self, x) -> np.ndarray:
        """The GLM information X'FX in beta (F the rows' Fisher information at x with
        the random effects at 0): positive semi-definite, unlike the observed weights of
        these kernels, and all the preconditioner needs."""
        fl = self.kernel_at(x)
        eta = self.offset + self.X @ self.split(x)[0]
        F = fl.fisher(eta)
        return (self.X.T * F) @ self.X

    # ----------------------------------------------------------- start
    def start(self) -> np.ndarray:
        """GLM starts (:func:`auxiliary_start`) with theta = START_SD on the diagonals."""
        theta0 = np.where(self.theta_on_diagonal, START_SD, 0.0)
        return auxiliary_start(self.aux, self.y, self.X, self.offset, self.X_zi, theta0)


def auxiliary_start(aux, y, X, offset, X_zi, theta0) -> np.ndarray:
    """x0 = (beta, theta0, gamma, t) of a zero-inflated, hurdle or beta model (module
    docstring): the count GLM (Poisson on every row for zero inflation, on the positive
    rows for a hurdle) or least squares on logit(y) (beta); gamma from the excess of zeros
    over that fit (zero inflation: the intercept of X_zi, if it has one) or the logistic
    fit of y = 0 on X_zi (hurdle); the log dispersion by the moments."""
    o = offset
    if not aux.counts:          # beta: least squares on logit(y), moments for phi
        z = special.logit(y) - o
        beta = solve_sym(X.T @ X, X.T @ z, X, z)
        mu = special.expit(o + X @ beta)
        phi = np.sum(mu * (1 - mu)) / max(np.sum((y - mu) ** 2), 1e-12) - 1.0
        t = float(np.log(np.clip(phi, 1e-2, 1e4)))
        return np.concatenate([beta, theta0, [t]])
    zero = y == 0
    rows = ~zero if aux.hurdle else np.ones_like(zero)
    beta = glm_start(_PoissonStart(PoissonLog(None, None)), _Rows(y[rows], X[rows], o[rows]))
    mu = np.exp(np.clip(o + X @ beta, -700, 700))
    n_zi = 0 if X_zi is None or not aux.has_zero_part else X_zi.shape[1]
    gamma = np.zeros(n_zi)
    if n_zi:
        if aux.hurdle:
            gamma = _logistic_fit(zero.astype(float), X_zi)
        else:
            ones = np.flatnonzero(np.all(X_zi == 1.0, axis=0))
            p0 = np.exp(-mu)
            excess = (zero.mean() - p0.mean()) / max(1.0 - p0.mean(), 1e-12)
            if ones.size:
                gamma[ones[0]] = special.logit(np.clip(excess, 0.05, 0.95))
    parts = [beta, theta0, gamma]
    if aux.has_dispersion:
        ypos, mpos = y[rows], mu[rows]
        excess = np.sum((ypos - mpos) ** 2 - ypos)
        theta = np.sum(mpos ** 2) / excess if excess > 0 else 1e4
        parts.append([float(np.log(np.clip(theta, 1e-2, 1e4)))])
    return np.concatenate(parts)


class _PoissonStart:
    """The Poisson kernel with the start response log(y + 0.5), for the count start."""

    def __init__(self, kernel):
        self.k = kernel

    def start_response(self, y, m):
        return np.log(y + 0.5)

    def kernel(self, eta, y, m):
        return self.k.kernel(eta, y, m)

    def kernel_derivatives(self, eta, y, m):
        return self.k.kernel_derivatives(eta, y, m)


def _logistic_fit(z, X) -> np.ndarray:
    """The logistic regression of 0/1 z on X by Newton (a concave likelihood)."""
    def at(g):
        eta = X @ g
        ll = float(np.sum(z * eta - np.logaddexp(0.0, eta)))
        def derivatives():
            mu = special.expit(eta)
            return X.T @ (z - mu), (X.T * (mu * (1 - mu))) @ X
        return ll, derivatives
    return glm_newton(at, np.zeros(X.shape[1]), maxiter=50, tol=1e-8)
