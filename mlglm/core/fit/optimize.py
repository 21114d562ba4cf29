"""Fit driver: start values, quasi-Newton with the exact gradient, Hessian, record.

Stages (as lme4 separates them): a GLM fit for beta (Newton on the concave
GLM log-likelihood) gives the start; BFGS maximises the Laplace or AGHQ
log-likelihood over x = (beta, theta) with the exact gradient, in coordinates
whitened by an approximate information (``obj.preconditioner``) and
unconstrained (the sign of a column of Lambda does not matter, see
:func:`_quasi_newton`), to a gradient of ``BFGS_GTOL`` (about standard-error units);
AGHQ fits start from the Laplace optimum with the Laplace stage's whitening and
inverse-Hessian estimate, and on hard data also from a start with smaller
variances (:func:`_second_start`). A
variance that ends at 0 is probed from just inside (:func:`_leave_boundary`):
the gradient in a diagonal theta is exactly 0 there by symmetry, so a gradient
method started at 0 never leaves it, and a fit there is an optimum only if
moving off does not raise the log-likelihood. The observed information is the
Jacobian of the exact gradient by differences
(:func:`~mlglm.core.fit.information.numerical_hessian`);
Newton steps with it finish the optimisation, and its inverse over the
directions the data determine gives the
covariance of x (:func:`~mlglm.core.fit.information.information_inverse`: a direction with no
information -- separation, a parameter running off to infinity -- has no
standard error, NaN, while the others keep theirs). Convergence is judged on
our own terms, not the optimiser's message: the projected gradient must be
small, the Newton decrement g'H^{-1}g (the predicted gain of another step, in
log-likelihood units) tiny, the information free of negative curvature, and
no variance at 0 that moving off would improve.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import optimize

from .adequacy import check_at_optimum, fit_auto
from .information import (FORWARD_STEP_SE, HESSIAN_REL_STEP,  # noqa: F401
                          _difference_hessian, information_inverse, numerical_hessian,
                          parameter_scales)
from ..spec.errors import ModeFailure
from .objective import START_SD, Objective
from ..spec.record import SINGULAR_TOL, CoreFit, OptimizationRecord, reported_covariance

__all__ = ["fit_glmm", "fit_glmm_auto",
           "numerical_hessian", "GRAD_TOL", "DECREMENT_TOL", "SINGULAR_TOL",
           "SECOND_START_LLF", "SECOND_START_SD", "BOUNDARY_PROBE"]

#: Whether SciPy's BFGS takes a start for its inverse Hessian (``hess_inv0``, SciPy >= 1.15).
BFGS_TAKES_HESS0 = "hess_inv0" in optimize.fmin_bfgs.__code__.co_varnames

#: Converged needs max |projected gradient| of log L below this ...
GRAD_TOL = 1e-3
#: ... and the Newton decrement g'H^{-1}g (2 x the predicted gain) below this.
DECREMENT_TOL = 1e-6
#: An AGHQ fit also starts from smaller variances when its optimum (reached from
#: the Laplace optimum) differs from the Laplace optimum by more than this in
#: log-likelihood ...
SECOND_START_LLF = 1.0
#: ... or moves a random-effect SD by more than this fraction (see _second_start).
SECOND_START_SD = 0.2
#: ... and keeps the second optimum only if it is higher by more than this.
SECOND_START_GAIN = 1e-6
#: A diagonal theta at 0 is probed at this value (the SD scale, 10 x SINGULAR_TOL) ...
BOUNDARY_PROBE = 1e-3
#: ... and counts as improvable when the log-likelihood there, or the first-order
#: gain of moving on by as much again, beats the boundary by more than this
#: (relative to max(1, |log L|)): a flat direction is not worth a restart.
BOUNDARY_GAIN_RTOL = 1e-9
#: Restarts from inside the boundary (each a BFGS run) before giving up.
BOUNDARY_ROUNDS = 2


class _Gradient:
    """Exact gradient at x, restarting the modes from a fixed point each time
    (so finite differences are not polluted by a wandering warm start):
    ``ref`` is the objective's :meth:`~mlglm.core.fit.objective.Objective.anchor`."""

    def __init__(self, obj: Objective, ref):
        self.obj, self.ref = obj, ref

    def __call__(self, x):
        self.obj.restore(self.ref)
        return self.obj.value_and_gradient(x)[1]


def fit_glmm(obj: Objective, x0=None, maxiter: int = 1000, laplace_first: bool = True,
             hessian: bool = True, information=None, second_start: bool = True,
             check: bool = False) -> CoreFit:
    """Maximise obj over x = (beta, theta) and package a :class:`CoreFit`.

    Parameters
    ----------
    obj : any :class:`~mlglm.core.fit.objective.Objective` (one factor, several,
        Laplace or AGHQ).
    x0 : start; default ``obj.start()`` (GLM beta, theta = 0.5 on the diagonals).
        A diagonal theta of 0 is a legal start: the fit leaves it if that raises
        the log-likelihood (:func:`_leave_boundary`).
    hessian : compute the observed information (central differences of the exact
        gradient, 2 gradients per parameter), which gives the covariance of x, the
        Newton polish and the second-order half of the convergence check. Without
        it ``cov_x`` is NaN and ``converged`` is False (only the first-order
        condition was checked; ``record.information`` says so).
    laplace_first : for AGHQ objectives, optimise the Laplace approximation
        first and start AGHQ there (cheap, and close).
    information : a previous :class:`CoreFit` of the same model (e.g. with
        fewer quadrature points) whose observed information whitens the
        problem instead of ``obj.preconditioner``; no Laplace stage then.
    second_start : on hard data also start AGHQ from smaller variances
        (:func:`_second_start`) and keep the better optimum.
    check : run the fit-time quadrature check (:func:`mlglm.core.fit.adequacy.
        check_at_optimum`) and keep it in ``record.quadrature_check``.
    """
    x0 = obj.start() if x0 is None else np.asarray(x0, dtype=float)
    start = tuple(x0)
    stages = []
    starts_tried, start_won = (), ""
    n_evals0 = obj.n_evals
    T0 = _information_whitening(information) if information is not None else None
    if T0 is not None:
        res = _quasi_newton(obj, x0, maxiter, T=T0)
    elif laplace_first and obj.nagq > 1:
        lap = obj.laplace()
        res0 = _quasi_newton(lap, x0, maxiter, gtol=LAPLACE_STAGE_GTOL)
        stages.append(f"laplace: {res0.nfev} evaluations")
        res0, _ = _leave_boundary(lap, res0, maxiter, stages, gtol=LAPLACE_STAGE_GTOL)
        x0 = res0.x
        obj.u = lap.u
        # the curvature barely changes: the same whitening, and BFGS's inverse Hessian
        # of the Laplace stage as the start of this one's
        res = _quasi_newton(obj, x0, maxiter, T=res0.T, hess_inv0=_hess_inv(res0))
        if second_start and _needs_second_start(obj, res0, res):
            res, starts_tried, start_won = _second_start(obj, res, maxiter, stages)
    else:
        res = _quasi_newton(obj, x0, maxiter)
    if not starts_tried:
        stages.append(f"{'laplace' if obj.nagq == 1 else f'aghq({obj.nagq})'}: "
                      f"{res.nfev} evaluations")
    res, boundary_unresolved = _leave_boundary(obj, res, maxiter, stages)
    x = res.x
    llf, grad = obj.value_and_gradient(x)
    # a diagonal element of Lambda at ~0 is a singular fit: held at the boundary
    layout = obj.param_layout
    is_diag = layout.pad_theta(obj.theta_on_diagonal)
    at_bound = is_diag & (np.abs(x) < SINGULAR_TOL)
    free = ~at_bound
    ref = obj.anchor()
    re_state = obj.random_effects()
    Hm = np.full((x.size, x.size), np.nan)
    cov_x = np.full((x.size, x.size), np.nan)
    no_se = np.ones(x.size, dtype=bool)
    decrement, hess_pd, n_null, n_negative = np.nan, False, 0, 0
    described = "not computed (hessian=False)"
    if hessian:
        gfun = _Gradient(obj, ref)
        # beta columns (and a zero part's gamma, fixed effects too) by forward
        # differences with steps of FORWARD_STEP_SE standard errors (the whitening's
        # scale); theta and the log dispersion, where the likelihood is far from
        # quadratic, by central differences
        forward = np.arange(x.size) < layout.p
        forward[layout.zi_slice] = True
        sigma = np.sqrt(np.einsum("ij,ij->i", res.T, res.T))
        steps = np.where(np.isfinite(sigma) & (sigma > 0), FORWARD_STEP_SE * sigma,
                         HESSIAN_REL_STEP * np.maximum(np.abs(x), 0.1))
        Hm, asym = _difference_hessian(gfun, x, free, grad, forward=forward, steps=steps)
        idx = np.flatnonzero(free)
        scales = parameter_scales(obj)
        info = information_inverse(Hm[np.ix_(idx, idx)],
                                   None if scales is None else scales[idx],
                                   asym[np.ix_(idx, idx)])
        hess_pd, n_null, n_negative = info.positive_definite, info.n_null, info.n_negative
        described = info.describe()
        P = info.pinv
        decrement = float(grad[idx] @ P @ grad[idx])
        if n_negative == 0 and np.isfinite(decrement):
            # Newton polish with the observed information (kept only while each step
            # improves log L; over the directions with information): BFGS stops a
            # little short, this finishes it.
            n_polish = 0
            while decrement > 1e-12 and n_polish < 3:
                x_new = x.copy()
                x_new[idx] += P @ grad[idx]
                x_new = obj.canonical(x_new)
                obj.restore(ref)
                llf_new, grad_new = obj.value_and_gradient(x_new)
                if not llf_new >= llf:
                    break
                x, llf, grad, ref = x_new, llf_new, grad_new, obj.anchor()
                re_state = obj.random_effects()
                decrement = float(grad[idx] @ P @ grad[idx])
                n_polish += 1
            if n_polish:
                stages.append(f"newton polish: {n_polish} step{'s' if n_polish > 1 else ''}")
        cov_x[np.ix_(idx, idx)] = info.cov
        no_se[idx] = info.no_se
    proj = np.where(at_bound, 0.0, grad)
    grad_norm = float(np.max(np.abs(proj))) if proj.size else 0.0
    # converged: first order (gradient), second order (no negative curvature, the
    # predicted gain of a Newton step negligible) and no improvable variance at 0; a
    # direction without information (separation) does not stop convergence -- its
    # parameters have no standard error instead
    converged = bool(hessian and grad_norm < GRAD_TOL and n_negative == 0
                     and decrement < DECREMENT_TOL and not boundary_unresolved)
    obj.restore(ref)
    beta, theta = layout.beta(x), layout.theta(x)
    Lambdas, b, b_cov = re_state
    singular = obj.theta_on_diagonal & (np.abs(theta) < SINGULAR_TOL)
    record = OptimizationRecord(
        optimizer="BFGS (exact gradient)", n_evals=obj.n_evals - n_evals0,
        n_iter=int(res.nit), message=str(res.message), grad_norm=grad_norm,
        newton_decrement=float(decrement), hessian_pd=hess_pd, converged=converged,
        start=start, stages=tuple(stages), starts_tried=starts_tried, start_won=start_won,
        information=described, n_null=n_null, n_negative=n_negative,
        boundary_unresolved=boundary_unresolved)
    patterns = tuple(t.pattern for t in obj.terms)
    t_hat = layout.log_dispersion(x)
    cov_params, se_missing = reported_covariance(
        obj.p, Lambdas, patterns, cov_x, free, no_se & free,
        np.exp(t_hat) if obj.n_disp else None, computed=hessian, n_zi=layout.n_zi)
    fitted = CoreFit(
        method="aghq" if obj.nagq > 1 else "laplace", nagq=obj.nagq, layout=layout, x=x,
        beta=beta.copy(), theta=theta.copy(), patterns=patterns, Lambdas=tuple(Lambdas),
        Sigmas=tuple(L @ L.T for L in Lambdas), b=tuple(b), b_cov=tuple(b_cov),
        dispersion=_dispersion(obj, t_hat), llf=llf, cov_params=cov_params, free=free,
        singular=singular, record=record, n_params=x.size, hessian=Hm, cov_x=cov_x,
        no_se=no_se, se_missing=se_missing, zi=layout.zi(x).copy())
    if check and obj.nagq > 1 and hessian:
        chk = check_at_optimum(obj, fitted)
        fitted = replace(fitted, record=replace(record, quadrature_check=chk))
    return fitted


def _leave_boundary(obj, res, maxiter, stages, gtol=None):
    """Make sure a variance the optimiser left at 0 belongs there; returns (result,
    unresolved).

    The log-likelihood is even in every column of Lambda (Sigma = Lambda Lambda'), so
    its gradient in a diagonal theta is exactly 0 where that column is 0: a gradient
    method started there (``start_params`` with a variance of 0) never moves, and the
    first-order conditions hold whether 0 is the maximum or the minimum along it.
    Whether it is an optimum is a second-order question, answered one-sidedly: each
    diagonal theta below SINGULAR_TOL is set to BOUNDARY_PROBE and the log-likelihood
    and its gradient are taken there. If log L is higher there, or grows on outward
    (the first-order gain of another step of the probe's size beats
    BOUNDARY_GAIN_RTOL), the optimum is not at 0: BFGS restarts with those entries
    at START_SD (the default start) and the better optimum is kept. Up to
    BOUNDARY_ROUNDS restarts; ``unresolved`` is True when the last optimum still has
    an improvable variance at 0. Costs one gradient per variance at 0, none when no
    variance is there.
    """
    diag = obj.param_layout.pad_theta(obj.theta_on_diagonal)
    for round_ in range(BOUNDARY_ROUNDS + 1):
        x = res.x
        zero = np.flatnonzero(diag & (np.abs(x) < SINGULAR_TOL))
        if zero.size == 0 or not np.isfinite(res.fun):
            return res, False
        llf0 = -float(res.fun)
        tol = BOUNDARY_GAIN_RTOL * max(1.0, abs(llf0))
        improvable = []
        for i in zero:
            xp = x.copy()
            xp[i] = BOUNDARY_PROBE
            try:
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    v, g = obj.value_and_gradient(xp)
            except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
                continue
            if np.isfinite(v) and max(v - llf0, g[i] * BOUNDARY_PROBE) > tol:
                improvable.append(i)
        if not improvable:
            stages.append(f"boundary: {zero.size} variance parameter(s) at 0, log L does "
                          "not rise off it")
            return res, False
        if round_ == BOUNDARY_ROUNDS:
            stages.append(f"boundary: {len(improvable)} variance parameter(s) at 0 where "
                          "log L rises off it, after every restart")
            return res, True
        x_in = x.copy()
        x_in[improvable] = START_SD
        res_in = _quasi_newton(obj, x_in, maxiter, gtol=gtol)
        stages.append(f"boundary: log L rises off 0 in {len(improvable)} variance "
                      f"parameter(s); restarted from SD {START_SD}: {res_in.nfev} evaluations, "
                      f"log L {-res_in.fun:.6f} (was {llf0:.6f})")
        if np.isfinite(res_in.fun) and res_in.fun < res.fun:
            res_in.nfev += res.nfev
            res = res_in
        else:
            res.nfev += res_in.nfev
            return res, True
    return res, True


def _dispersion(obj, t_hat):
    """The dispersion the fit reports: e^t when x carries t = its log, the kernel's own
    (a negative binomial theta held fixed) when it does not, None without one."""
    if obj.n_disp:
        return float(np.exp(t_hat))
    if getattr(obj.fl, "has_dispersion", False):
        return float(np.exp(obj.fl.log_dispersion))
    return None


def fit_glmm_auto(obj: Objective, schedule, x0=None, maxiter: int = 1000) -> CoreFit:
    """nagq="auto": :func:`fit_glmm` with each number of points of ``schedule`` in turn
    (:func:`mlglm.core.fit.adequacy.fit_auto`, through ``obj.with_nagq``) until two
    consecutive fits agree; the last fit, with the path in ``record.auto`` and its
    fit-time check in ``record.quadrature_check``. Needs the observed information
    (always computed here)."""
    def fit(o, x0=None, information=None):
        return fit_glmm(o, x0=x0, maxiter=maxiter, information=information)
    return fit_auto(obj, fit, schedule, x0=x0)


def _needs_second_start(obj, res_laplace, res_aghq) -> bool:
    """The rule for a second AGHQ start: the AGHQ optimum reached from the Laplace
    optimum is far from it, by more than SECOND_START_LLF in log-likelihood or
    SECOND_START_SD (relative) in a random-effect SD.

    Where Laplace is accurate (large groups, moderate variances: the easy data of
    the benchmarks) the AGHQ surface is a small perturbation of the Laplace one
    and its optimum is found from there; where the two optima are far apart the
    posteriors of the random effects are far from normal, and there the AGHQ
    surface can have a second optimum at smaller variances.
    """
    if not (np.isfinite(res_laplace.fun) and np.isfinite(res_aghq.fun)):
        return True
    if abs(res_aghq.fun - res_laplace.fun) > SECOND_START_LLF:
        return True
    sd_l, sd_a = obj.random_sds(res_laplace.x), obj.random_sds(res_aghq.x)
    rel = np.abs(sd_a - sd_l) / np.maximum(np.maximum(sd_l, sd_a), 1e-8)
    return bool(np.any(rel > SECOND_START_SD))


def _second_start(obj, res, maxiter, stages):
    """BFGS again from the AGHQ optimum with every random-effect SD halved (Lambda / 2;
    beta and a dispersion parameter kept); keep the better optimum (the second only if
    it is higher by more than SECOND_START_GAIN: two runs to the same optimum differ by
    ~1e-9, a tie).
    Returns (result, starts tried, winner)."""
    p = obj.p
    x_half = res.x.copy()
    x_half[p:p + obj.n_theta] *= 0.5
    res2 = _quasi_newton(obj, x_half, maxiter, T=res.T)
    stages.append(f"aghq({obj.nagq}) from the Laplace optimum: {res.nfev} evaluations, "
                  f"from SDs halved: {res2.nfev}")
    tried = (("Laplace optimum", float(-res.fun)), ("SDs halved", float(-res2.fun)))
    if np.isfinite(res2.fun) and res2.fun < res.fun - SECOND_START_GAIN:
        res2.nfev += res.nfev
        return res2, tried, "SDs halved"
    res.nfev += res2.nfev
    return res, tried, "Laplace optimum"


def _information_whitening(previous):
    """T = C^{-T} (C C' the observed information of a previous fit over its free
    parameters; identity elsewhere), or None if that information is not usable."""
    H = getattr(previous, "hessian", None)
    if H is None:
        return None
    idx = np.flatnonzero(previous.free)
    T = np.eye(H.shape[0])
    try:
        C = np.linalg.cholesky(H[np.ix_(idx, idx)])
    except np.linalg.LinAlgError:
        return None
    T[np.ix_(idx, idx)] = np.linalg.inv(C).T
    return T


def _hess_inv(res):
    """BFGS's final inverse Hessian (in its whitened coordinates) if it is usable as the
    start of another BFGS run in the same coordinates (symmetric positive definite)."""
    H = getattr(res, "hess_inv", None)
    if H is None or not np.all(np.isfinite(H)):
        return None
    H = 0.5 * (H + H.T)
    try:
        np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    return H


#: BFGS stops at this gradient norm in the whitened coordinates (about standard-error
#: units), and the observed information is taken there: where it stopped at 1e-4 the
#: Newton polish that follows moved the estimates by up to ~5e-5 SE, which moved the
#: standard errors (an information taken at the pre-polish point) by up to 6e-6
#: relative; at 1e-6 the move is ~1e-6 SE and the standard errors are those of the
#: reported estimates to ~1e-7, for one to three more evaluations (BFGS converges
#: superlinearly there). The polish still takes the optimum to rounding level.
BFGS_GTOL = 1e-6
#: The Laplace stage of an AGHQ fit (only a start for the AGHQ stage) stops earlier.
LAPLACE_STAGE_GTOL = 1e-4


def _quasi_newton(obj, x0, maxiter, T=None, gtol=None, hess_inv0=None):
    """Unconstrained BFGS in the preconditioned coordinates z (x = x0 + T z).

    No box is needed: the likelihood depends on Lambda only through
    Sigma = Lambda Lambda', which is unchanged when a column of Lambda flips
    sign, so a negative diagonal element is as good as its absolute value and
    0 (a singular fit) is an interior point of the search space. The caller
    flips the signs back (``obj.canonical``). Avoiding L-BFGS-B also
    avoids its many tiny BLAS calls, which a multi-threaded OpenBLAS turns
    into milliseconds each.
    """
    if T is None:
        T = obj.preconditioner(x0)

    def f(z):
        # A trial point where the inner problem breaks down (exp overflow for
        # a wildly scaled covariate) is rejected, not fatal: an infinite value
        # makes the line search step back.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                v, g = obj.value_and_gradient(x0 + T @ z)
        except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
            return np.inf, np.zeros_like(z)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(z)
        return -v, -(T.T @ g)
    options = {"maxiter": maxiter, "gtol": BFGS_GTOL if gtol is None else gtol, "xrtol": 1e-12}
    if hess_inv0 is not None and BFGS_TAKES_HESS0:
        options["hess_inv0"] = hess_inv0
    res = optimize.minimize(f, np.zeros_like(x0), jac=True, method="BFGS", options=options)
    res.x = obj.canonical(x0 + T @ res.x)
    res.T = T
    return res
