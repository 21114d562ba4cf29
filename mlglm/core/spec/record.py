"""One fit record for every engine: :class:`CoreFit`, and how it is assembled.

Whatever engine fitted the model -- the one-term Laplace or AGHQ, the nested or
crossed engines, the exact LMM for one factor or several, in memory or on a
cluster -- the core hands the layers above one frozen :class:`CoreFit`. Its
parameters are in two coordinates:

* the optimiser's x = (beta, theta, [t]) (:class:`~mlglm.core.fit.objective.ParamLayout`:
  theta the free entries of every term's relative covariance factor Lambda_k in
  term order, t the log dispersion of a negative binomial or Gamma fit that
  estimates it), with the observed information ``hessian`` and its inverse
  ``cov_x`` where the fit computed them;
* the reported ones, psi = (beta, vech Sigma_1, ..., vech Sigma_T, [dispersion]),
  vech the row-major lower triangle (statsmodels' order), with ``cov_params`` on
  that scale.

For a GLMM Sigma_k = Lambda_k Lambda_k' and, by the delta method,
cov(psi) = J cov(x) J' with J = d psi / d x (:func:`vech_jacobian` per term,
d dispersion / dt = dispersion); entries that depend on a parameter held at the
boundary have no Wald SE and are NaN. For the Gaussian LMM (beta and sigma^2
profiled out, Sigma_k = sigma^2 Lambda_k Lambda_k') only the fixed-effect block
sigma^2 (R_X'R_X)^{-1} is reported (lme4's ``vcov``); the variance block is NaN.
An unavailable variance is NaN, never 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["OptimizationRecord", "CoreFit", "vech_jacobian", "reported_covariance",
           "SINGULAR_TOL"]

#: A diagonal element of Lambda below this (relative SD) is a singular fit (lme4's
#: ``isSingular`` default); the parameter is then held at the boundary.
SINGULAR_TOL = 1e-4


@dataclass(frozen=True)
class OptimizationRecord:
    """What the optimiser did: settings and outcome (immutable)."""

    optimizer: str
    n_evals: int
    n_iter: int
    message: str
    grad_norm: float          # max |projected gradient| of log L (LMM: of the criterion)
    newton_decrement: float   # g'H^{-1}g over the free parameters' identified directions
                              # (NaN where not computed)
    hessian_pd: bool
    converged: bool
    start: tuple = ()
    stages: tuple = ()
    #: AGHQ starts tried, as (description, log-likelihood reached) pairs, and the winner
    starts_tried: tuple = ()
    start_won: str = ""
    #: the fit-time quadrature check (mlglm.core.fit.adequacy.AdequacyCheck) or None
    quadrature_check: object = None
    #: the path of nagq="auto" (mlglm.core.fit.adequacy.AutoRecord) or None
    auto: object = None
    #: the observed information in words: "positive definite", "singular in k
    #: direction(s)", "k negative eigenvalue(s)" or "not computed (hessian=False)"
    information: str = ""
    #: eigenvalues of the information without information (~0) / with negative curvature
    n_null: int = 0
    n_negative: int = 0
    #: True when a variance at 0 could be improved by moving off it and the restarts
    #: from inside did not get away (the fit is then not converged)
    boundary_unresolved: bool = False


@dataclass(frozen=True, eq=False)
class CoreFit:
    """A fitted model as the core reports it, whatever engine fitted it.

    Attributes
    ----------
    method : ``"laplace"``, ``"aghq"``, ``"reml"`` or ``"ml"``.
    nagq : quadrature points per dimension (1 for Laplace; None for the LMM).
    layout : ParamLayout of x (p, n_theta, n_disp).
    x : the optimum in the optimiser's coordinates (beta, theta[, t]).
    beta, theta : fixed effects; every term's relative covariance parameters.
    patterns : per term, its CovPattern.
    Lambdas : per term, Lambda_k (relative to sigma for the LMM).
    Sigmas : per term, Var(b_k) on the response's scale.
    b, b_cov : per term, (J_k, q_k) conditional modes and (J_k, q_k, q_k) conditional
        covariances.
    dispersion : negative binomial theta or Gamma phi (estimated or held fixed),
        the beta's precision phi, the LMM's sigma^2; None for binomial and Poisson fits.
    zi : gamma, the coefficients of the zero part (zero-inflated and hurdle models;
        empty otherwise).
    llf : the log-likelihood with every constant (REML fits: -REMLcrit / 2).
    reml_criterion : lme4's REMLcrit (REML fits), else None.
    deviance_ml : the LMM's ML deviance at theta, beta and sigma^2 re-profiled; None
        for GLMMs.
    cov_params : covariance of psi = (beta, vech Sigma_k..., [gamma], [dispersion]) (module
        docstring); NaN where there is no Wald value.
    hessian, cov_x : observed information in x and its inverse over the directions of
        the free parameters the data determine (GLMMs; None for the LMM); NaN rows and
        columns for the parameters without a standard error.
    free : bool over x, False for parameters held at the boundary.
    no_se : bool over x, True for parameters without a standard error (held at the
        boundary, along a direction without information, or all when the information
        was not computed); None for the LMM.
    se_missing : bool over the reported parameters psi: no standard error because the
        observed information does not determine them (not for boundary reasons).
    singular : bool per theta: a diagonal entry estimated at ~0.
    record : :class:`OptimizationRecord`.
    n_params : parameters counted by AIC/BIC (beta, theta, the dispersion or sigma).
    """

    method: str
    nagq: int | None
    layout: object
    x: np.ndarray
    beta: np.ndarray
    theta: np.ndarray
    patterns: tuple
    Lambdas: tuple
    Sigmas: tuple
    b: tuple
    b_cov: tuple
    dispersion: float | None
    llf: float
    cov_params: np.ndarray
    free: np.ndarray
    singular: np.ndarray
    record: OptimizationRecord = field(repr=False)
    n_params: int = 0
    reml_criterion: float | None = None
    deviance_ml: float | None = None
    hessian: np.ndarray | None = field(default=None, repr=False)
    cov_x: np.ndarray | None = field(default=None, repr=False)
    no_se: np.ndarray | None = None
    se_missing: np.ndarray | None = None
    zi: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self):
        # a frozen record: its arrays are read-only too
        for name in ("x", "beta", "theta", "cov_params", "free", "singular", "hessian",
                     "cov_x", "no_se", "se_missing", "zi"):
            _freeze(getattr(self, name))
        for name in ("Lambdas", "Sigmas", "b", "b_cov"):
            for a in getattr(self, name):
                _freeze(a)

    @property
    def converged(self) -> bool:
        return bool(self.record.converged)

    @property
    def cov_beta(self) -> np.ndarray:
        """The fixed effects' block of ``cov_params`` (lme4's ``vcov``)."""
        p = self.layout.p
        return self.cov_params[:p, :p]

    @property
    def gaussian(self) -> bool:
        return self.method in ("reml", "ml")

    @property
    def log_dispersion(self) -> float | None:
        """t-hat, the optimiser's log dispersion, or None without that slot."""
        return self.layout.log_dispersion(self.x)


def _freeze(a) -> None:
    if isinstance(a, np.ndarray):
        a.setflags(write=False)


def vech_jacobian(Lambda, pattern) -> np.ndarray:
    """d vech(Sigma) / d theta for Sigma = Lambda Lambda' (vech row-major lower) under a
    term's covariance pattern: for a free entry (r, c) of Lambda,
    dSigma = E_rc Lambda' + Lambda E_cr; a parameter filling several entries (a tied
    block) sums them."""
    q = Lambda.shape[0]
    tr = np.tril_indices(q)
    J = np.zeros((len(tr[0]), pattern.n_theta))
    for r, c, k in zip(pattern.rows, pattern.cols, pattern.idx):
        E = np.zeros((q, q))
        E[r, c] = 1.0
        dS = E @ Lambda.T + Lambda @ E.T
        J[:, k] += dS[tr]
    return J


def reported_covariance(p, Lambdas, patterns, cov_x, free, no_info, dispersion=None,
                        computed=True, n_zi=0):
    """(cov(psi), missing) for psi = (beta, vech Sigma_k..., [gamma], [dispersion]) of a
    GLMM (``n_zi`` zero-part coefficients gamma, reported as they are in x):
    cov(psi) = J cov(x) J' (module docstring), ``dispersion`` the estimated one
    (d/dt = dispersion) or None. Every entry of psi that depends on a parameter held at
    the boundary (not ``free``) or without information (``no_info``, bool over x) has NaN
    rows and columns -- never 0. ``missing`` (bool over psi) marks those that lack a
    standard error because the information does not determine them (all of them when
    the information was not ``computed``: then every SE is NaN, none "missing")."""
    blocks = [vech_jacobian(L, pat) for L, pat in zip(Lambdas, patterns)]
    n_vech = sum(B.shape[0] for B in blocks)
    has_t = dispersion is not None
    J = np.zeros((p + n_vech + n_zi + has_t, cov_x.shape[0]))
    J[:p, :p] = np.eye(p)
    r, c = p, p
    for B in blocks:
        J[r:r + B.shape[0], c:c + B.shape[1]] = B
        r, c = r + B.shape[0], c + B.shape[1]
    J[r:r + n_zi, c:c + n_zi] = np.eye(n_zi)
    if has_t:
        J[-1, -1] = dispersion
    no_info = np.zeros(cov_x.shape[0], dtype=bool) if no_info is None else no_info
    bad = ~np.asarray(free, dtype=bool) | no_info | np.all(np.isnan(cov_x), axis=0)
    cov = J @ np.where(bad[:, None] | bad[None, :], 0.0, cov_x) @ J.T
    affected = np.any(np.abs(J[:, bad]) > 0, axis=1)
    cov[affected, :] = np.nan
    cov[:, affected] = np.nan
    missing = np.any(np.abs(J[:, no_info]) > 0, axis=1) if computed else \
        np.zeros(J.shape[0], dtype=bool)
    return cov, missing
