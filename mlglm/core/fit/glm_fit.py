"""The GLM fit without random effects: the start of every mixed-model fit.

beta maximising sum_i w_i log p(y_i | eta_i = o_i + x_i' beta) by Newton's method with
step halving (the log-likelihood is concave in beta for the canonical links and, from a
least-squares start on the transformed response, in practice for the others). It is a
concept of its own because two callers form the sums differently: rows in memory
(:func:`glm_start`, the :class:`~mlglm.core.fit.objective.Objective` start) and sums added
up over shards (:mod:`mlglm.distributed`, through :func:`glm_newton`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["glm_start", "glm_newton", "solve_sym"]


def glm_start(fl, data, maxiter: int = 100, tol: float = 1e-10) -> np.ndarray:
    # ``data``: anything with y, m_rows, X (column-major) and offset (GroupedData, an
    # Objective), and with prior weights y_obs, m_obs and weights
    """beta maximising the GLM log-likelihood (random effects set to zero).

    Newton's method on a concave function with step halving, started from a
    (weighted) least-squares fit to a transformed response (``fl.start_response``:
    logit, log, 1/y). As in the mode
    iteration, the kernel and its two derivatives are computed in one fused
    call at each trial point, and an accepted trial's derivatives give the
    next step; the p x p Newton systems are solved directly (X has full rank,
    the model checks it), with least squares as the fallback. A start outside
    the family's domain (Gamma with the inverse link: a negative mean) is
    replaced by the constant fit.
    """
    y, m, X, o = data.y, data.m_rows, data.X, data.offset
    w = getattr(data, "weights", None)
    z = fl.start_response(getattr(data, "y_obs", y), getattr(data, "m_obs", data.m_rows))
    XW = X.T if w is None else X.T * w
    beta = solve_sym(XW @ X, XW @ (z - o), X, z - o)
    if not np.isfinite(np.sum(fl.kernel(o + X @ beta, y, m))):
        centre = np.full_like(z, np.average(z, weights=w)) - o
        beta = np.linalg.lstsq(X, centre, rcond=None)[0]

    def at(beta):
        ker, d1, d2 = fl.kernel_derivatives(o + X @ beta, y, m)
        # X is column-major: X.T's rows are contiguous
        return np.sum(ker), lambda: (X.T @ d1, (X.T * d2) @ X)

    return glm_newton(at, beta, maxiter, tol)


def glm_newton(at, beta, maxiter: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Maximise a concave GLM log-likelihood by Newton's method with step halving.

    ``at(beta) -> (log L, derivatives)``, ``derivatives()`` giving the score X'd1 and
    the information X'D2X at beta (d1, -D2 the kernel's first and second derivatives
    in eta): how the sums are formed is the caller's -- from rows in memory
    (:func:`glm_start`, which asks for them only at accepted points, as they cost
    n p^2) or added up over shards (:mod:`mlglm.distributed`). A step is halved until
    log L does not fall (to 1e-12 relative); iterations stop when a step moves every
    coefficient by less than ``tol``.
    """
    ll, derivatives = at(beta)
    for _ in range(maxiter):
        score, info = derivatives()
        step = solve_sym(info, score)
        t = 1.0
        for _ in range(50):
            new = beta + t * step
            ll_new, derivatives_new = at(new)
            if ll_new >= ll - 1e-12 * abs(ll):
                break
            t *= 0.5
        beta, ll, derivatives = new, ll_new, derivatives_new
        if np.max(np.abs(t * step)) < tol:
            break
    return beta


def solve_sym(A, b, X=None, r=None):
    """A^{-1} b for a small symmetric positive-definite A; least squares if it is
    singular (then, with X and r given, the least-squares fit of r on X)."""
    try:
        out = np.linalg.solve(A, b)
        if np.all(np.isfinite(out)):
            return out
    except np.linalg.LinAlgError:
        pass
    if X is not None:
        return np.linalg.lstsq(X, r, rcond=None)[0]
    return np.linalg.lstsq(A, b, rcond=None)[0]
