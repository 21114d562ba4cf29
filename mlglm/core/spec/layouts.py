"""Where each parameter sits: the optimiser's x = (beta, theta, gamma, t).

:class:`ParamLayout` is the only source of parameter positions in the core: the
p fixed effects first, then the n_theta covariance parameters of every term in
term order (the free entries of each Lambda_k, :mod:`mlglm.core.spec.covpattern`),
then the n_zi coefficients gamma of the zero part of a zero-inflated or hurdle
model (the auxiliary linear predictor a = X_zi gamma,
:mod:`mlglm.core.spec.families_auxiliary`; none for the other families), then n_disp
(0 or 1) log dispersion. Engines, the fit driver and the fit record
(:mod:`mlglm.core.spec.record`) read positions from it and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParamLayout"]


@dataclass(frozen=True)
class ParamLayout:
    """Where each kind of parameter sits in x = (beta, theta, gamma, t).

    beta: p fixed effects; theta: n_theta covariance parameters (the entries of
    the Lambda_k, :mod:`covpattern`); gamma: n_zi zero-part coefficients (0
    unless the family has a zero part); t: n_disp (0 or 1) log dispersion -- log
    theta of the negative binomial, log phi of the Gamma or the beta -- on the log
    scale so the search is unconstrained and the curvature near-constant.
    """

    p: int
    n_theta: int
    n_disp: int = 0
    n_zi: int = 0

    @property
    def size(self) -> int:
        return self.p + self.n_theta + self.n_zi + self.n_disp

    @property
    def zi_slice(self) -> slice:
        k = self.p + self.n_theta
        return slice(k, k + self.n_zi)

    def zi(self, x) -> np.ndarray:
        """gamma, the zero-part coefficients (empty without a zero part)."""
        return np.asarray(x, dtype=float)[self.zi_slice]

    @property
    def theta_slice(self) -> slice:
        return slice(self.p, self.p + self.n_theta)

    def beta(self, x) -> np.ndarray:
        return np.asarray(x, dtype=float)[:self.p]

    def theta(self, x) -> np.ndarray:
        return np.asarray(x, dtype=float)[self.theta_slice]

    def log_dispersion(self, x):
        """t, or None when the layout has no dispersion slot."""
        return float(x[self.p + self.n_theta + self.n_zi]) if self.n_disp else None

    def pad_theta(self, mask_theta, fill=False) -> np.ndarray:
        """A mask over theta extended to the whole of x (``fill`` elsewhere)."""
        out = np.full(self.size, fill, dtype=bool)
        out[self.theta_slice] = mask_theta
        return out
