"""Zero-inflated, hurdle and beta GLMMs with nested grouping factors: Laplace and AGHQ.

:class:`AuxiliaryNested` is :class:`~mlglm.core.engines.nested.objective.NestedObjective`
(tree elimination of H, adaptive quadrature through every level, the exact gradient in
forward mode) for the kernels of :mod:`mlglm.core.spec.families_auxiliary`, with
x = (beta, theta, gamma, t) (:class:`~mlglm.core.spec.layouts.ParamLayout`). As the
one-term :mod:`mlglm.core.engines.blockdiag.objective_aux` generalises the one-term engine:

* the kernel is bound to the zero-part predictor a_i = x_zi,i' gamma (rows in the tree's
  order) and the log dispersion t (:class:`~mlglm.core.spec.families_auxiliary.
  BoundAuxiliaryKernel`), so the Laplace value and the nested quadrature are shared;
* the conditional modes come from the safeguarded Newton iteration
  (:mod:`mlglm.core.engines.nested.modes_safeguarded`): these kernels are not log-concave
  in eta;
* the gradient in the auxiliary coordinates: every zero-part coefficient gamma_k and t
  is one more forward-mode column that moves no eta directly but the kernel: explicit
  part sum_i x_zi,ik dK_i/da (sum_i dK_i/dt; averaged over the nodes with the path
  weights for AGHQ), the mode through dg = Lambda'Z'(x_zi,k d d1/da) and the pivot
  blocks through dF0_c += sum_i x_zi,ik (d d2_i/da) a_i a_i'
  (``docs/zero_inflation_math.md`` section 6), then the nested chain rule of
  :mod:`mlglm.core.engines.nested.objective` unchanged;
* the start of :func:`~mlglm.core.engines.blockdiag.objective_aux.auxiliary_start`, and
  the Fisher information X'FX as the preconditioner's scale in beta.

The plain families keep :class:`NestedObjective` and its modes untouched (the hooks
``auxiliary``, ``n_extra``, ``_block_kernel``, ``_kernel_columns`` are overridden here).
"""
from __future__ import annotations

import numpy as np

from ...fit.objective import START_SD
from ...spec.families_auxiliary import AuxiliaryKernel, BoundAuxiliaryKernel
from ...spec.layouts import ParamLayout
from ..blockdiag.objective_aux import auxiliary_start
from .aghq import DEFAULT_CHUNK_ELEMENTS
from .modes import NestedModes
from .modes_safeguarded import safeguarded_nested_modes
from .objective import NestedObjective

__all__ = ["AuxiliaryNested"]


class AuxiliaryNested(NestedObjective):
    """log L(beta, theta, gamma, t) for nested grouping factors, Laplace (nagq = 1) or
    AGHQ (module docstring).

    Parameters
    ----------
    kernel : the :class:`~mlglm.core.spec.families_auxiliary.AuxiliaryKernel`.
    y, X, offset : response, design, offset (rows in any order; no prior weights).
    terms : ReTerms forming a nested chain.  nagq : points per dimension at every level.
    X_zi : (n, n_zi) zero-part design in the same row order (None without a zero part).
    layout, chunk_elements, data : as :class:`NestedObjective`.
    """

    auxiliary = True

    def __init__(self, kernel: AuxiliaryKernel, y, X, offset, terms, nagq: int = 1,
                 X_zi=None, layout=None, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                 data=None):
        y = np.asarray(y, dtype=float)
        super().__init__(_Unweighted(kernel), y, np.ones_like(y), X, offset, terms, nagq,
                         layout, chunk_elements, data)
        self.fl = self.aux = kernel
        self.n_disp = int(kernel.has_dispersion)
        if kernel.has_zero_part:
            self.X_zi_input = np.asarray(X_zi, dtype=float).reshape(y.size, -1)
            self.X_zi = np.asfortranarray(self.X_zi_input[self.layout.perm])
        else:
            self.X_zi_input = self.X_zi = None
        self.n_zi = 0 if self.X_zi is None else self.X_zi.shape[1]
        self.constants = kernel.row_constants(y)

    # ----------------------------------------------------------- layout
    @property
    def param_layout(self) -> ParamLayout:
        return ParamLayout(self.p, self.n_theta, self.n_disp, self.n_zi)

    @property
    def n_extra(self) -> int:
        return self.n_zi + self.n_disp

    def kernel_at(self, x) -> BoundAuxiliaryKernel:
        """The kernel bound to a = X_zi gamma (the tree's row order) and t at x."""
        lay = self.param_layout
        a = self.X_zi @ lay.zi(x) if self.n_zi else None
        return BoundAuxiliaryKernel(self.aux, a, lay.log_dispersion(x), self.X_zi)

    def _block_kernel(self, fl, blk):
        return fl.rows(blk.rows)

    def with_nagq(self, nagq: int) -> "AuxiliaryNested":
        return AuxiliaryNested(self.aux, self.y_obs, self.X, self.offset, self.terms, nagq,
                               self.X_zi_input, self.layout, self.chunk_elements, self.data)

    # ----------------------------------------------------------- evaluation
    #: these kernels are not concave in eta (module docstring)
    find_modes = staticmethod(safeguarded_nested_modes)

    def _with_constants(self, x, value, grad):
        """The constants of these kernels depend on t when there is one (always through
        ``self.constants``)."""
        t = self.param_layout.log_dispersion(x)
        if grad is not None and self.n_disp:
            grad[-1] += self.constants.derivative(t)
        return value + self.constants.value(t), grad

    def _kernel_columns(self, st: NestedModes, fl, d3):
        """One column per zero-part coefficient (design x_zi,k) and one for t (module
        docstring), from the rows' (dK, d d1, d d2) at the modes."""
        coords = fl.coordinates(st.eta, self.data.y)
        cols, explicit = [], []
        k = 0
        if self.n_zi:
            dK, dd1, dd2 = coords[0]
            for j in range(self.n_zi):
                cols.append((self.X_zi[:, j], dd1, dd2))
            explicit.append(self.X_zi.T @ dK)
            k = 1
        if self.n_disp:
            dK, dd1, dd2 = coords[k]
            cols.append((None, dd1, dd2))
            explicit.append([dK.sum()])
        return cols, (np.concatenate(explicit) if cols else None)

    # ----------------------------------------------------------- packaging
    def theta_curvature(self, x0):
        return None         # the one-way guess assumes concave rows

    def beta_information(self, x) -> np.ndarray:
        """X'FX, F the rows' Fisher information at x with the random effects at 0 (the
        preconditioner's scale; the observed weights can be negative here)."""
        fl = self.kernel_at(x)
        F = fl.fisher(self.data.offset + self.data.X @ self.split(x)[0])
        return (self.data.X.T * F) @ self.data.X

    def start(self) -> np.ndarray:
        theta0 = np.where(self.theta_on_diagonal, START_SD, 0.0)
        return auxiliary_start(self.aux, self.y_obs, self.X, self.offset, self.X_zi_input,
                               theta0)


class _Unweighted:
    """What NestedObjective's constructor reads of a kernel, for an auxiliary kernel (whose
    constants and dispersion the subclass sets itself)."""

    has_dispersion = False
    log_dispersion = 0.0        # (the base's constant at t = 0, never used: _evaluate)

    def __init__(self, kernel):
        self.kernel = kernel

    def row_constants(self, y, m, freq=None, var=None):
        return self.kernel.row_constants(y)
