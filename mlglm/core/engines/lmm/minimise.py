"""Minimising the profiled (RE)ML criterion of :mod:`mlglm.core.engines.lmm.blockdiag` over theta.

The criterion d(theta) comes with its exact gradient (``fg(theta) -> (d, grad)``)
and has few parameters (q(q+1)/2), so the search is BFGS started from a
difference Hessian, a Newton polish with one Hessian, and a second-order check
that moves off saddle points: the optimum is polished to the rounding level of
the gradient, which lme4's derivative-free optimiser does not reach.
The search is unconstrained: flipping the sign of a column of Lambda leaves
the criterion unchanged (``lmm._rectify``), so the bounded problem has the same
minima.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize

from ...fit.optimize import BFGS_TAKES_HESS0

__all__ = ["POLISH_GTOL"]


def _hessian(theta, fg) -> np.ndarray:
    """Symmetrised central differences of the exact gradient (2 n_theta evaluations)."""
    k = theta.size
    Hs = np.empty((k, k))
    for i in range(k):
        h = 1e-5 * max(1.0, abs(theta[i]))
        tp, tm = theta.copy(), theta.copy()
        tp[i] += h
        tm[i] -= h
        Hs[:, i] = (fg(tp)[1] - fg(tm)[1]) / (2 * h)
    return (Hs + Hs.T) / 2


def _newton_polish(theta, fg, max_steps=8):
    """Newton steps with one Hessian (from :func:`_hessian`); returns theta and that Hessian.

    From where BFGS stops, steps theta <- theta - H^{-1} g with H fixed (a
    chord iteration, contracting by ||I - H^{-1} H(theta)||, tiny near the
    optimum) take the gradient to its rounding level in two or three
    evaluations.  A step is kept when it lowers the criterion, or leaves it
    unchanged to within rounding while shrinking the gradient.  If H is not
    positive definite nothing is done and the caller examines H.
    """
    Hs = _hessian(theta, fg)
    if not np.all(np.isfinite(Hs)) or np.linalg.eigvalsh(Hs)[0] <= 0:
        return theta, Hs
    f, g = fg(theta)
    for _ in range(max_steps):
        new = theta - np.linalg.solve(Hs, g)
        f_new, g_new = fg(new)
        gn, gn_new = np.max(np.abs(g)), np.max(np.abs(g_new))
        if not (f_new < f or (f_new <= f + 1e-13 * abs(f) and gn_new < gn)):
            break
        theta, f, g = new, f_new, g_new
        if gn_new > 0.5 * gn:  # no longer contracting: the gradient is at its rounding level
            break
        if gn_new <= POLISH_GTOL * (1.0 + abs(f_new)):
            break  # already at the rounding level: one more step would only confirm it
    return theta, Hs


#: :func:`_newton_polish` stops once max |gradient| <= POLISH_GTOL (1 + |criterion|),
#: the size of the rounding errors in a criterion summed over the data.
POLISH_GTOL = 1e-13


def _escape_saddle(theta, Hs, fg):
    """A point below theta along the most negative-curvature direction of Hs, or None.

    theta_kk = 0 is a stationary point in theta_kk when the rest of column k of
    Lambda is zero (the criterion is even in that column, see :func:`mlglm.core.engines.lmm.blockdiag._rectify`),
    and a line search can land on it exactly (with q = 1, L-BFGS-B's first
    step from theta = 1 has length 1).  If it is a saddle or maximum, move off.
    """
    w, V = np.linalg.eigh(Hs)
    if not w[0] < -1e-6 * max(1.0, np.abs(w).max()):
        return None
    f0 = fg(theta)[0]
    trials = [theta + sgn * a * V[:, 0] for a in (1.0, 0.3, 0.1, 0.03, 0.01) for sgn in (1, -1)]
    values = [fg(t)[0] for t in trials]
    best = int(np.argmin(values))
    return trials[best] if values[best] < f0 else None


def _pd_inverse(Hs) -> np.ndarray:
    """Inverse of Hs with its eigenvalues made positive and at least 1e-3 of the largest."""
    w, V = np.linalg.eigh(Hs)
    w = np.maximum(np.abs(w), 1e-3 * np.abs(w).max() + 1e-8)
    Hinv = (V / w) @ V.T
    return (Hinv + Hinv.T) / 2


def _minimise(theta0, fg, gtol, max_rounds=6, max_restarts=3):
    """Minimise over unbounded theta: BFGS, Newton polish, second-order check.

    Returns theta and a message.  The bounds theta_kk >= 0 are not imposed
    during the search: by :func:`mlglm.core.engines.lmm.blockdiag._rectify` the unconstrained problem has the
    same minima, and a bounded method would face a trap, since the gradient
    in theta_kk is exactly 0 at theta_kk = 0, so a projected gradient vanishes
    there even when that point is a maximum.

    A round is BFGS started from the inverse of a difference Hessian (not the
    identity: 12 iterations instead of 30-50 on the HSB random-slope models),
    stopped at a gradient of 1e-2, then :func:`_newton_polish`, which usually
    ends at the gradient's rounding level.  Near a singular optimum the
    criterion can be very flat (Hessian eigenvalues 1e-5 of the largest), the
    polish stalls, and BFGS is rerun with a tight tolerance.  (scipy's BFGS is
    plain numpy; its L-BFGS-B calls scipy's own BLAS, which fought numpy's BLAS
    threads on a busy 2-core machine: 2 ms per iteration for 3 parameters.)
    """
    theta, Hs = theta0, _hessian(theta0, fg)
    restarts, bfgs_gtol, best_gn = 0, 1e-2, np.inf
    for _ in range(max_rounds):
        opt = scipy.optimize.minimize(fg, theta, jac=True, method="BFGS",
                                      options={"maxiter": 1000, "gtol": bfgs_gtol,
                                               "hess_inv0": _pd_inverse(Hs)})
        theta, Hs = _newton_polish(opt.x, fg)
        escape = _escape_saddle(theta, Hs, fg) if restarts < max_restarts else None
        if escape is not None:
            theta, restarts, bfgs_gtol = escape, restarts + 1, 1e-2
            Hs, best_gn = _hessian(theta, fg), np.inf
            continue
        f, g = fg(theta)
        gn = np.max(np.abs(g))
        if gn <= gtol * (1.0 + abs(f)) or gn >= best_gn:
            break
        best_gn, bfgs_gtol = gn, 1e-3 * gtol * (1.0 + abs(f))
    message = f"BFGS: {opt.message}"
    if restarts:
        message += f" (after {restarts} restart(s) off a saddle point)"
    return theta, message


def _minimise_scalar(theta0, fg, rtol=1e-13):
    """Minimise over one theta (q = 1): bracket the root of the derivative, then Brent.

    The criterion is even in theta (see :func:`mlglm.core.engines.lmm.blockdiag._rectify`) and
    stationary at 0, so the search runs over t = |theta| > 0: from t0, step
    by factors of 4 towards the side the derivative points to until it changes
    sign (a minimum lies in between), then ``scipy.optimize.brentq`` on the
    derivative, to a relative precision of ``rtol`` in theta (the gradient at
    its rounding level). If it stays positive down to t = SCALAR_FLOOR, the
    criterion increases away from 0 and theta = 0 (a singular fit) is returned.
    Against BFGS with two difference Hessians and a Newton polish, a bracket
    of one or two points and a few Brent steps need fewer evaluations and
    little interpreter overhead (the HSB random-intercept fits: 12 -> 9 evaluations,
    2.5 -> 0.8 ms).

    Returns (theta, message), or None when something is off (a non-finite
    derivative, no sign change within 4^40): the caller then uses :func:`_minimise`.
    """
    t0 = abs(float(np.ravel(theta0)[0]))
    if not (t0 > 0.0 and np.isfinite(t0)):
        return None

    def deriv(t):
        f, g = fg(np.array([t]))
        g = float(g[0])
        if abs(g) <= POLISH_GTOL * (1.0 + abs(f)):
            raise _Stationary(t)        # at the gradient's rounding level: done
        return g

    try:
        return _bracket_and_solve(t0, deriv, rtol)
    except _Stationary as found:
        return np.array([found.t]), _SCALAR_MESSAGE


class _Stationary(Exception):
    """Raised by the derivative when it is zero to rounding at t."""

    def __init__(self, t):
        super().__init__(t)
        self.t = t


def _bracket_and_solve(t0, deriv, rtol):
    g0 = deriv(t0)
    if not np.isfinite(g0):
        return None
    lo = hi = t0
    for _ in range(40):
        if g0 < 0.0:
            lo, hi = hi, hi * 4.0
            g = deriv(hi)
            if g > 0.0:
                break
        else:
            hi, lo = lo, lo / 4.0
            if lo < SCALAR_FLOOR:
                return np.array([0.0]), _SCALAR_MESSAGE + " (minimum at theta = 0)"
            g = deriv(lo)
            if g < 0.0:
                break
        if not np.isfinite(g):
            return None
    else:
        return None
    # Brent in s = log t: the derivative is far from linear in t over a bracket
    # spanning a factor of 4 (it falls steeply towards 0), much less so in log t,
    # so the interpolation steps take over sooner; xtol in s is relative in t.
    try:
        s = scipy.optimize.brentq(lambda s: deriv(np.exp(s)), np.log(lo), np.log(hi),
                                  xtol=rtol, rtol=4 * np.finfo(float).eps, maxiter=200)
    except (ValueError, RuntimeError):     # a NaN derivative inside the bracket
        return None
    return np.array([np.exp(s)]), _SCALAR_MESSAGE


#: :func:`_minimise_scalar` treats a derivative still positive below this t as a
#: minimum at theta = 0.
SCALAR_FLOOR = 1e-10
_SCALAR_MESSAGE = "Brent's method on the derivative (one parameter)"


def _minimise_log(theta0, fg, gtol, on_diag, max_polish=4, hess0=None):
    """Minimise over theta for expensive criteria: BFGS in log coordinates, then Newton.

    Phase 1 runs BFGS on phi with theta_k = exp(phi_k) for the diagonal entries of
    Lambda (off-diagonal entries stay as they are): variance components span
    orders of magnitude and the profiled criterion is far closer to quadratic
    in their logarithm (InstEval's three crossed factors from Lambda = I: 13
    evaluations instead of the 30-odd of :func:`_minimise`, whose start needs a
    central-difference Hessian). It stops at a moderate gradient in phi.
    Phase 2 takes Newton steps in theta with one forward-difference Hessian of
    the exact gradient (n_theta evaluations) to the gradient's rounding level.
    A diagonal entry heading to 0 (a possible boundary optimum, where log
    coordinates stall) or a Hessian that is not positive definite hands over
    to :func:`_minimise`, which handles boundaries and saddles. ``hess0`` (the
    diagonal of a Hessian guess in phi) starts BFGS's inverse Hessian where SciPy
    allows it; else BFGS starts from the identity.

    Returns (theta, message).
    """
    theta0 = np.asarray(theta0, dtype=float)
    sign = np.where(on_diag & (theta0 < 0), -1.0, 1.0)
    start = np.where(on_diag, np.log(np.maximum(np.abs(theta0), 1e-8)), theta0)

    def to_theta(phi):
        return np.where(on_diag, np.exp(np.minimum(phi, 50.0)), phi) * sign

    def f_phi(phi):
        th = to_theta(phi)
        f, g = fg(th)
        return f, np.where(on_diag, g * th, g)

    options = {"maxiter": 500, "gtol": 1e-3}
    if hess0 is not None and BFGS_TAKES_HESS0:
        options["hess_inv0"] = np.diag(1.0 / np.asarray(hess0, dtype=float))
    opt = scipy.optimize.minimize(f_phi, start, jac=True, method="BFGS", options=options)
    theta = to_theta(opt.x)
    if np.any(on_diag & (np.abs(theta) < 1e-3)):
        return _minimise(theta, fg, gtol)
    # Newton steps in phi with BFGS's own inverse Hessian: near the optimum it is good
    # enough to reach the gradient's rounding level in a step or two, with no extra
    # evaluations for a difference Hessian
    phi, (f, g_phi) = opt.x, f_phi(opt.x)
    for _ in range(3):
        g = np.where(on_diag, g_phi / to_theta(phi), g_phi)
        if np.max(np.abs(g)) <= gtol * (1.0 + abs(f)):
            return to_theta(phi), f"BFGS in log SDs ({opt.nfev} evaluations), Newton polish"
        new = phi - opt.hess_inv @ g_phi
        f_new, g_new = f_phi(new)
        if not f_new <= f + 1e-13 * abs(f):
            break
        phi, f, g_phi = new, f_new, g_new
    theta = to_theta(phi)
    f, g = fg(theta)
    k = theta.size
    Hs = np.empty((k, k))
    for i in range(k):
        h = 1e-6 * max(1.0, abs(theta[i]))
        tp = theta.copy()
        tp[i] += h
        Hs[:, i] = (fg(tp)[1] - g) / h
    Hs = (Hs + Hs.T) / 2
    if not np.all(np.isfinite(Hs)) or np.linalg.eigvalsh(Hs)[0] <= 0:
        return _minimise(theta, fg, gtol)
    for _ in range(max_polish):
        if np.max(np.abs(g)) <= POLISH_GTOL * (1.0 + abs(f)):
            break
        new = theta - np.linalg.solve(Hs, g)
        f_new, g_new = fg(new)
        if not (f_new < f or (f_new <= f + 1e-13 * abs(f)
                              and np.max(np.abs(g_new)) < np.max(np.abs(g)))):
            break
        shrink = np.max(np.abs(g_new)) / max(np.max(np.abs(g)), 1e-300)
        theta, f, g = new, f_new, g_new
        if shrink > 0.5:
            break
    if np.max(np.abs(g)) > gtol * (1.0 + abs(f)):
        return _minimise(theta, fg, gtol)
    return theta, f"BFGS in log SDs ({opt.nfev} evaluations), Newton polish"
