"""Row kernels with auxiliary linear predictors: the zero part and the dispersion.

The kernels of :mod:`mlglm.core.spec.families` depend on the linear predictor eta
alone; those of :mod:`mlglm.core.families_dispersion` on eta and one scalar, the
log dispersion t. Zero-inflated, hurdle and beta models
(:mod:`mlglm.core.spec.families_zero`, :mod:`mlglm.core.spec.families_beta`) generalise
that scalar slot to *auxiliary linear predictors*:

* the zero part a_i = x_zi,i' gamma, one value per row (glmmTMB's ``ziformula``):
  a structural-zero probability pi_i = expit(a_i) (zero inflation) or the
  probability of a zero pi_i = Pr(y_i = 0) (hurdle);
* the log dispersion t (t = log theta for NB2, log phi for the beta), a
  predictor with a design of ones; a scalar here, or an array per row (a
  dispersion formula would give one).

Per row, and vectorised over rows (every argument broadcasts, so eta may be a
rows x nodes array of quadrature nodes with a and y given as rows x 1), a kernel
gives the log-density l(y | eta, a, t) without the normalising constants that
depend on neither eta nor a (``log_const``/``row_constants``, as for the other
kernels) and, in the engines' sign convention,

=========  =====================================  =================================
field      value                                  note
=========  =====================================  =================================
``K``      l - constants                          the kernel
``d1``     dl/deta
``d2``     -d2l/deta2                             the Newton weight (may be < 0 here)
``d3``     d(d2)/deta = -d3l/deta3                the mode's curvature moves with it
``K_a``    dl/da                                  zero part
``d1_a``   d(d1)/da = d2l/(deta da)
``d2_a``   d(d2)/da = -d3l/(deta2 da)
``K_t``    dl/dt (constants' part excluded)       log dispersion
``d1_t``   d(d1)/dt = d2l/(deta dt)
``d2_t``   d(d2)/dt = -d3l/(deta2 dt)
=========  =====================================  =================================

so that every engine's gradient in gamma is X_zi' times a per-row array, exactly
as the gradient in t is a row sum today. For the Laplace objective of DESIGN.md
section 4 (per row the scaled design w_i = Lambda' z_i, leverage s_i = w_i' P_j w_i,
c_i = d3_i s_i, v_j = P_j sum_i c_i w_i) the chain rule through the mode
(du_j/da_i = P_j w_i d1_a,i) gives

    d log L_j / d a_i = K_a,i - (d2_a,i s_i + d1_a,i (w_i' v_j)) / 2,

the formula of the fixed effects with (d1, d3, -d2) replaced by (K_a, d2_a, d1_a);
the same holds for t with (K_t, d1_t, d2_t), summed over rows.

Safe curvature. The conditional log-likelihood of a zero-inflated, hurdle or
beta row is not concave in eta (d2 can be negative), so the inner Newton
iteration for the conditional modes cannot trust the observed weights. Every
kernel also gives the expected (Fisher) information in eta, ``fisher(eta, a,
t)`` = E[(dl/deta)^2] >= 0 under the model at (eta, a, t): a positive
semi-definite weight, so Z'diag(fisher)Z + I is positive definite and the
Fisher-scoring step is an ascent direction of the penalised objective. The
engine takes the observed Newton step when the penalised Hessian is negative
definite and the Fisher step otherwise, each with a backtracking line search
on the penalised objective (``docs/zero_inflation_math.md``).

Weights. These kernels are not linear in y (the zero branch), so prior weights
cannot be folded into (y, m) as for the other families: a frequency weight w
multiplies the row's log-likelihood and every field above (w copies of the
row), which the caller applies.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["AuxDerivatives", "AuxiliaryKernel", "BoundAuxiliaryKernel", "softplus"]


def softplus(x):
    """log(1 + e^x) without overflow (= ``np.logaddexp(0, x)``)."""
    return np.logaddexp(0.0, x)


class AuxDerivatives(NamedTuple):
    """Per-row kernel and derivatives (module docstring for the signs); a field is None
    when it was not asked for or the kernel has no such coordinate."""

    K: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d3: np.ndarray | None = None
    K_a: np.ndarray | None = None
    d1_a: np.ndarray | None = None
    d2_a: np.ndarray | None = None
    K_t: np.ndarray | None = None
    d1_t: np.ndarray | None = None
    d2_t: np.ndarray | None = None


class AuxiliaryKernel:
    """Base class: a row kernel in (eta, a, t) (module docstring).

    Attributes
    ----------
    name : glmmTMB's name of the family (``"zipoisson"``, ``"truncated_nbinom2"``, ...).
    link_name : the link of the conditional mean (``"log"``, ``"logit"``).
    has_zero_part : the kernel takes a zero-part predictor a (zero inflation, hurdle).
    has_dispersion : the kernel takes a log dispersion t.
    counts : the response is a count with mean e^eta (else a proportion in (0, 1)).
    hurdle : the zero part gives Pr(y = 0) itself.
    """

    name = ""
    link_name = ""
    has_zero_part = False
    has_dispersion = False
    #: the response is a count (zero-inflated and hurdle kernels), else in (0, 1) (beta)
    counts = False
    #: the zero part is the probability of a zero (hurdle), not of a structural zero
    hurdle = False

    # ------------------------------------------------------------------ values
    def derivatives(self, eta, y, a=None, t=None, third=True,
                    auxiliary=True) -> AuxDerivatives:  # pragma: no cover - abstract
        """K, d1, d2 and, on request, d3 and the (a, t) derivatives, per row."""
        raise NotImplementedError

    def kernel(self, eta, y, a=None, t=None):
        """l(y | eta, a, t) minus the constants (:meth:`log_const`), per row."""
        return self.derivatives(eta, y, a, t, third=False, auxiliary=False).K

    def fisher(self, eta, a=None, t=None):  # pragma: no cover - abstract
        """The expected information in eta, E[(dl/deta)^2] >= 0, per row (the safe
        curvature of the inner Newton iteration)."""
        raise NotImplementedError

    def log_const(self, y, t=None):  # pragma: no cover - abstract
        """The part of log p(y | eta, a, t) without eta or a, per row."""
        raise NotImplementedError

    def loglik(self, eta, y, a=None, t=None):
        """The full per-row log-likelihood, constants included."""
        return self.kernel(eta, y, a, t) + self.log_const(y, t)

    # ----------------------------------------------------------- checking input
    def _check(self, a, t):
        if self.has_zero_part and a is None:
            raise ValueError(f"the {self.name} kernel needs the zero-part predictor a")
        if self.has_dispersion and t is None:
            raise ValueError(f"the {self.name} kernel needs the log dispersion t")

    def __repr__(self):
        return f"{type(self).__name__}({self.name}, {self.link_name})"


class BoundAuxiliaryKernel:
    """An auxiliary kernel bound to the zero-part predictor a (one value per row, in the
    engines' row order) and the log dispersion t, with the interface of the engines'
    row kernels (:class:`~mlglm.core.spec.families.Kernel`: functions of (eta, y, m), eta a
    row vector or rows x nodes).

    Not log-concave in eta: the conditional modes are found by the safeguarded Newton
    iteration (:mod:`mlglm.core.engines.blockdiag.modes_safeguarded`), which also asks for :meth:`fisher`. The
    gradient terms of the auxiliary coordinates come from :meth:`coordinates` (at the
    modes) and :meth:`kernel_aux_nodes` (at quadrature nodes), one entry per
    coordinate in the order of x: the zero part (design ``designs[0]``, n x n_zi) then
    t (design None: a column of ones). ``m`` is ignored (no trials; frequency weights are
    not taken by these families).

    Parameters
    ----------
    kernel : the :class:`AuxiliaryKernel`.
    a : (n,) zero-part predictor, or None without a zero part.
    t : the log dispersion, or None without one.
    X_zi : (n, n_zi) zero-part design in the same row order (None without a zero part).
    """

    has_dispersion = False      # the plain kernels' dispersion interface is not offered
    log_dispersion = None
    _at_modes = None            # (eta, AuxDerivatives) of the latest third()

    def __init__(self, kernel: AuxiliaryKernel, a=None, t=None, X_zi=None):
        self.aux, self.a, self.t, self.X_zi = kernel, a, t, X_zi

    def rows(self, sl) -> "BoundAuxiliaryKernel":
        return BoundAuxiliaryKernel(self.aux, None if self.a is None else self.a[sl], self.t,
                                    None if self.X_zi is None else self.X_zi[sl])

    @property
    def designs(self) -> list:
        """One design per auxiliary coordinate: X_zi (zero part), None (t)."""
        out = [self.X_zi] if self.aux.has_zero_part else []
        return out + ([None] if self.aux.has_dispersion else [])

    def _a(self, eta):
        if self.a is None:
            return None
        return self.a if np.ndim(eta) == 1 else self.a[:, None]

    def derivatives_at(self, eta, y, third=True, auxiliary=True) -> AuxDerivatives:
        return self.aux.derivatives(eta, y, self._a(eta), self.t, third=third,
                                    auxiliary=auxiliary)

    # ------------------------------------------- the engines' kernel interface
    def kernel(self, eta, y, m=None):
        return self.derivatives_at(eta, y, False, False).K

    def kernel_d1(self, eta, y, m=None):
        d = self.derivatives_at(eta, y, False, False)
        return d.K, d.d1

    def kernel_derivatives(self, eta, y, m=None):
        d = self.derivatives_at(eta, y, False, False)
        return d.K, d.d1, d.d2

    def third(self, eta, y, m, d1, d2):
        """d3 at the modes; every field there is computed in the same call and kept for
        :meth:`coordinates` at the same eta (the engines ask for both at the modes)."""
        self._at_modes = (eta, self.derivatives_at(eta, y, True, True))
        return self._at_modes[1].d3

    def fisher(self, eta):
        return self.aux.fisher(eta, self._a(eta), self.t)

    # ------------------------------------------- the auxiliary coordinates
    def coordinates(self, eta, y) -> list:
        """[(dK, d d1, d d2) per row] per auxiliary coordinate at the modes eta."""
        kept = self._at_modes
        d = kept[1] if kept is not None and kept[0] is eta else \
            self.derivatives_at(eta, y, False, True)
        out = [(d.K_a, d.d1_a, d.d2_a)] if self.aux.has_zero_part else []
        return out + ([(d.K_t, d.d1_t, d.d2_t)] if self.aux.has_dispersion else [])

    def kernel_aux_nodes(self, eta, y, m=None):
        """(K, d1, [dK per coordinate]) at the nodes eta (rows x nodes)."""
        d = self.derivatives_at(eta, y, False, True)
        direct = [d.K_a] if self.aux.has_zero_part else []
        return d.K, d.d1, direct + ([d.K_t] if self.aux.has_dispersion else [])

    def __repr__(self):
        return f"BoundAuxiliaryKernel({self.aux!r}, t={self.t!r})"
