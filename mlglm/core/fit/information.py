"""The observed information: differences of the exact gradient, and its inverse over the
directions the data determine.

:func:`numerical_hessian` differences the exact gradient: central differences (two
gradients per parameter, error O(h^2)) for the variance parameters and the log
dispersion, where the log-likelihood is far from quadratic, forward differences with a
step of a small fraction of a standard error (one gradient) for the fixed effects.
Forward differences everywhere (relative step 1e-5, taken before the final Newton steps)
left standard errors up to ~1e-5 off (SE of log theta of an NB2 fit 0.2254086 against
0.2254056, issue 21); this mixed scheme, taken at the reported estimates, is within
~1e-6 relative of an O(h^4) reference. Central differences everywhere would be within
~1e-9 but cost one more gradient per fixed effect: 28% more CPU on the 10^5-row Laplace
case of the speed guard and 52% on its AGHQ(11) random-slope case, against 13% and
none for this scheme (benchmarks/RESULTS.md).

:func:`information_inverse` inverts it over the directions with information and gives no
standard error (NaN) to the parameters along the others -- a coefficient running off to
infinity under separation, a near-collinear design -- while the rest keep theirs;
:func:`parameter_scales` makes the eigenvalues comparable across parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["numerical_hessian", "information_inverse", "parameter_scales", "Information",
           "HESSIAN_REL_STEP", "FORWARD_STEP_SE", "FORWARD_ASYM_RTOL", "NULL_RTOL",
           "NULL_COMPONENT"]

#: Relative step of the central differences (variance parameters, log dispersion):
#: h_i = HESSIAN_REL_STEP * max(|x_i|, 0.1). Truncation error O(h^2), rounding
#: O(eps / h): their standard errors to ~1e-9 relative on the reference fits, where
#: forward differences (error O(h)) left them ~1e-5 off.
HESSIAN_REL_STEP = 1e-5
#: Fixed-effect columns of the information are forward differences with steps of this
#: many standard errors (the optimiser's whitening gives the scale): error ~1e-7-1e-6
#: relative on the reference fits, at one gradient per coefficient.
FORWARD_STEP_SE = 1e-5
#: ... unless two forward columns disagree by more than this (relative to the diagonal
#: they share) with each other's mirror entries: noise in the gradient then dominates
#: such small steps (sharded several-factor fits: 3e-5; in memory <= 2e-6 on the
#: reference fits), and those columns are redone by central differences.
FORWARD_ASYM_RTOL = 1e-5
#: An eigenvalue of the observed information in design-scaled coordinates (each
#: parameter times the root mean square of the column it multiplies, so that every
#: parameter is an effect on the linear predictor) at or below NULL_RTOL times the
#: largest is no information: the likelihood is flat along that direction as far as
#: differences of the gradient can tell (separation, a coefficient running off to
#: infinity, a near-collinear design), or curves the wrong way (a saddle).
NULL_RTOL = 1e-10
#: A parameter whose scaled unit vector has a component above this along such a
#: direction has no standard error (NaN); the others keep theirs.
NULL_COMPONENT = 1e-6


def numerical_hessian(fun_grad, x, free, g0=None, rel_step=HESSIAN_REL_STEP, forward=None,
                      steps=None):
    """-d2 f/dx2 by differences of an exact gradient, symmetrised.

    Column i is by central differences, -(g(x + h_i e_i) - g(x - h_i e_i)) / (2 h_i) with
    h_i = rel_step * max(|x_i|, 0.1) (two gradients, truncation error O(h^2), ~1e-10
    relative), or, where ``forward[i]``, by forward differences -(g(x + s_i e_i) - g0) / s_i
    with the step ``steps[i]`` (one gradient, error O(s)); a forward column whose entries
    disagree with their mirror images beyond FORWARD_ASYM_RTOL is redone by central
    differences. An entry between a forward and a central column is taken from the
    central one. Only the ``free`` parameters are differenced (the others get NaN rows
    and columns).
    """
    return _difference_hessian(fun_grad, x, free, g0, rel_step, forward, steps)[0]


def _difference_hessian(fun_grad, x, free, g0=None, rel_step=HESSIAN_REL_STEP, forward=None,
                        steps=None):
    """(symmetrised -d2 f/dx2, |H_ij - H_ji| before symmetrising) by differences of the
    gradient (see :func:`numerical_hessian`); the asymmetry measures the error of the
    entries."""
    k = x.size
    fwd = np.zeros(k, dtype=bool) if forward is None else np.array(forward, dtype=bool)
    Hm = np.full((k, k), np.nan)
    idx = np.flatnonzero(free)

    def central(i):
        h = rel_step * max(abs(x[i]), 0.1)
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        Hm[idx, i] = (-(fun_grad(xp) - fun_grad(xm)) / (xp[i] - xm[i]))[idx]

    for i in idx:
        if fwd[i]:
            xp = x.copy()
            xp[i] += steps[i]
            Hm[idx, i] = (-(fun_grad(xp) - g0) / (xp[i] - x[i]))[idx]
        else:
            central(i)
    # forward columns whose entries disagree with their mirror images by more than
    # FORWARD_ASYM_RTOL (noise in the gradient, e.g. a warm start that differs between
    # evaluations): central differences there instead
    f_idx = idx[fwd[idx]]
    if f_idx.size > 1:
        B = Hm[np.ix_(f_idx, f_idx)]
        d = np.sqrt(np.abs(np.diag(B)))
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(B - B.T) / np.outer(d, d)
        for i in f_idx[np.nanmax(np.where(np.isfinite(rel), rel, np.inf), axis=0)
                       > FORWARD_ASYM_RTOL]:
            central(i)
            fwd[i] = False
    sub = Hm[np.ix_(idx, idx)]
    asym = np.full((k, k), np.nan)
    asym[np.ix_(idx, idx)] = np.abs(sub - sub.T)
    sym = 0.5 * (sub + sub.T)
    f = fwd[idx]
    # a forward column's entries carry its O(s) error; a central column's do not
    sym[np.ix_(f, ~f)] = sub[np.ix_(f, ~f)]
    sym[np.ix_(~f, f)] = sub[np.ix_(f, ~f)].T
    Hm[np.ix_(idx, idx)] = sym
    return Hm, asym


def parameter_scales(obj) -> np.ndarray | None:
    """Root mean square of the design column each parameter of x multiplies, or None.

    beta_j: column j of X; a theta entry Lambda_k[r, c]: column r of Z_k (it scales
    z_r u_c); the log dispersion: 1. Each parameter times its scale is an effect on
    the linear predictor's scale, whatever the units of the covariates (rescaling a
    covariate by a factor rescales its coefficient by the inverse), which makes the
    eigenvalues of the information comparable across parameters
    (:func:`information_inverse`). None when the objective holds no rows (a sharded
    objective); a zero column counts as 1.
    """
    X, terms = getattr(obj, "X", None), getattr(obj, "terms", None)
    if X is None or terms is None or np.shape(X)[0] == 0:
        return None
    layout = obj.param_layout
    s = np.ones(layout.size)
    s[:layout.p] = np.sqrt(np.einsum("ij,ij->j", X, X) / X.shape[0])
    for term, sl in zip(terms, terms.theta_slices):
        Z = term.Z
        zr = np.sqrt(np.einsum("ij,ij->j", Z, Z) / Z.shape[0])
        pat = term.pattern
        ts = np.zeros(pat.n_theta)
        np.maximum.at(ts, pat.idx, zr[pat.rows])
        s[layout.p + sl.start:layout.p + sl.stop] = ts
    return np.where(np.isfinite(s) & (s > 0), s, 1.0)


@dataclass(frozen=True, eq=False)
class Information:
    """The observed information over the free parameters, taken apart
    (:func:`information_inverse`).

    pinv : its inverse over the directions with information (a pseudo-inverse; no
        NaN), for Newton steps.  cov : the same with NaN rows and columns for the
        parameters in ``no_se``.  no_se : bool per parameter, a component along a
        direction without information.  n_null : eigenvalues without information
        (|lambda| <= NULL_RTOL lambda_max, or negative).  n_negative : of those, the
        ones with clearly negative curvature (lambda < -NULL_RTOL lambda_max): not a
        maximum.
    """

    pinv: np.ndarray
    cov: np.ndarray
    no_se: np.ndarray
    n_null: int
    n_negative: int

    @property
    def positive_definite(self) -> bool:
        return self.n_null == 0

    def describe(self) -> str:
        if self.n_negative:
            return f"{self.n_negative} negative eigenvalue(s)"
        if self.n_null:
            return f"singular in {self.n_null} direction(s)"
        return "positive definite"


def information_inverse(H, scales=None, asymmetry=None) -> Information:
    """Invert the observed information H over the directions the data determine.

    With D = diag(scales) (:func:`parameter_scales`; the parameters as effects on the
    linear predictor), the eigen-decomposition D^{-1} H D^{-1} = V diag(lambda) V'
    splits the parameter space: directions with lambda > NULL_RTOL lambda_max carry
    information; the others carry none (the likelihood is flat along them to the
    accuracy of the differenced gradient, e.g. a coefficient of a separated level
    running off to -infinity, whose curvature is ~e^-100) or curve the wrong way.
    The covariance is the inverse over the informative directions,

        cov = D^{-1} V_+ diag(1 / lambda_+) V_+' D^{-1},

    i.e. the covariance of the other parameters with the uninformative directions
    held where they are (for a separated coefficient: at its limit, as lme4's huge
    but finite SE effectively does); a parameter whose scaled unit vector has a
    component above NULL_COMPONENT along an uninformative direction has no standard
    error at all (NaN row and column). When H is positive definite this is H^{-1}.

    Without ``scales`` the parameters are scaled by their own curvature, sqrt(|H_ii| +
    delta_i) with delta_i the largest ``asymmetry`` |H_ij - H_ji| of row i (the error
    of the differenced entries): a curvature below the noise of its own row then
    counts as none.
    """
    H = np.asarray(H, dtype=float)
    k = H.shape[0]
    if k == 0:
        z = np.zeros((0, 0))
        return Information(z, z, np.zeros(0, dtype=bool), 0, 0)
    if not np.all(np.isfinite(H)):
        nan = np.full((k, k), np.nan)
        return Information(nan, nan, np.ones(k, dtype=bool), k, 0)
    if scales is None:
        noise = 0.0 if asymmetry is None else np.nanmax(np.asarray(asymmetry), axis=1)
        d = np.abs(np.diag(H)) + noise
        scales = np.sqrt(np.where(d > 0, d, 1.0))
    s = np.asarray(scales, dtype=float)
    Hs = H / np.outer(s, s)
    lam, V = np.linalg.eigh(0.5 * (Hs + Hs.T))
    top = max(float(lam.max()), 0.0)
    tol = NULL_RTOL * top
    informative = lam > tol
    n_negative = int(np.sum(lam < -tol)) if top > 0 else 0
    Vi = V[:, informative]
    pinv = ((Vi / lam[informative]) @ Vi.T) / np.outer(s, s)
    pinv = 0.5 * (pinv + pinv.T)
    no_se = np.sum(V[:, ~informative] ** 2, axis=1) > NULL_COMPONENT ** 2
    cov = pinv.copy()
    cov[no_se, :] = np.nan
    cov[:, no_se] = np.nan
    return Information(pinv, cov, no_se, int(np.sum(~informative)), n_negative)
