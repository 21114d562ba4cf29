"""Joint conditional modes of nested random effects for kernels that are not log-concave.

The zero-inflated, hurdle and beta kernels (:mod:`mlglm.core.spec.families_auxiliary`) can
have d2 = -l'' < 0 on some rows, so H = Lambda'Z'WZ Lambda + I (W = diag(d2)) can be
indefinite away from the mode and the plain Newton step of
:mod:`mlglm.core.engines.nested.modes` need not increase h. This is the safeguard of the
one-term :mod:`mlglm.core.engines.blockdiag.modes_safeguarded` on the nested tree: each
iteration

1. takes the Newton direction H^{-1} g where the tree elimination of the observed H
   succeeds (every pivot block positive definite, i.e. H positive definite), else the
   Fisher-scoring direction F^{-1} g with F = Lambda'Z' diag(fisher) Z Lambda + I
   (the rows' expected information, >= 0, so F >= I); both are ascent directions of
   h(u) = sum_i l_i - |u|^2/2 (g'd > 0). The elimination is one call for all top-level
   groups, so when one of them is indefinite every group takes the Fisher direction in
   that step (a slower but still ascending step; near the modes H is positive definite
   and every step is Newton's again);
2. backtracks per top-level group (h separates over them): s_j = 1, 1/2, ... until
   h_j(u + s_j d) >= h_j(u) + c s_j g_j'd_j (c = :data:`~mlglm.core.engines.blockdiag.
   modes_safeguarded.ARMIJO`);
3. stops when the largest step is below ``tol``, or below sqrt(tol) after a full
   Newton step in every group.

Convergence as in the one-term module (Bertsekas, Nonlinear Programming, 2nd ed.,
Prop. 1.2.1): h_j is coercive, the matrices used have eigenvalues bounded below (H
positive definite, F >= I) and above on its upper level sets, so the directions are
gradient related and Armijo backtracking makes every limit point stationary; near a
strict local maximum the unit Newton step is accepted. The state returned is the plain
iteration's :class:`~mlglm.core.engines.nested.modes.NestedModes` (observed d2 and the
factor of the observed H at the modes), so the Laplace and AGHQ code is shared; if the
observed H is not positive definite at the converged point there is no Laplace
approximation and ``np.linalg.LinAlgError`` is raised.
"""
from __future__ import annotations

import numpy as np

from ...numerics.smallmat import pair_index, pairs_to_full
from ...spec.errors import ModeFailure
from ..blockdiag.modes_safeguarded import ARMIJO
from .modes import WARM_MAXITER, NestedData, NestedModes, mode_criterion, path_design
from .tree import expand, reduce, tree_factor, tree_solve

__all__ = ["safeguarded_nested_modes"]


def safeguarded_nested_modes(fl, data: NestedData, beta, Lams, u0=None, tol: float = 1e-10,
                             maxiter: int = 200) -> NestedModes:
    """Maximise h_j(u) for every top-level group by the safeguarded Newton iteration
    (module docstring), from the warm start ``u0`` (per-level modes) when it converges
    from there within 3 * WARM_MAXITER steps, else from u = 0."""
    lay = data.layout
    eta_fixed = data.offset + data.X @ beta
    AT = path_design(data, Lams)
    if u0 is not None:
        try:
            return _iterate(fl, data, eta_fixed, AT, [np.array(a, dtype=float) for a in u0],
                            tol, 3 * WARM_MAXITER)
        except (ModeFailure, np.linalg.LinAlgError):
            pass
    u = [np.zeros((J, q)) for J, q in zip(lay.J, lay.q)]
    return _iterate(fl, data, eta_fixed, AT, u, tol, maxiter)


def _iterate(fl, data, eta_fixed, AT, u, tol, maxiter):
    lay = data.layout
    blk = lay.whole
    D, top = lay.D, lay.T - 1
    at, gradient = mode_criterion(fl, data, eta_fixed, AT)

    def to_top(x, l):
        return x if l == top else reduce(blk, x, l, top)

    def to_level(x, l):
        return x if l == top else expand(blk, x, l, top)

    eta, d1, d2, S, f = at(u)
    if not np.all(np.isfinite(f)):
        raise ModeFailure("the conditional log-likelihood is not finite at the start of the "
                          "nested modes")
    for it in range(1, maxiter + 1):
        g = gradient(S, u)
        try:
            with np.errstate(invalid="ignore"):
                fac = tree_factor(blk, lay.q, pairs_to_full(S[1 + D:]))
            newton = True
        except np.linalg.LinAlgError:   # H not positive definite: the Fisher direction
            r, c = pair_index(D)
            F0 = pairs_to_full(reduce(blk, AT[r] * AT[c] * fl.fisher(eta), -1, 0, axis=1))
            try:
                fac = tree_factor(blk, lay.q, F0)
            except np.linalg.LinAlgError:
                raise ModeFailure("the nested conditional modes failed: the Fisher "
                                  "information is not finite (linear predictor out of "
                                  "range)") from None
            newton = False
        step = [s[..., 0] for s in tree_solve(blk, lay.q, fac, [gl[..., None] for gl in g])]
        slope = sum(to_top(np.einsum("jq,jq->j", a, s), l)
                    for l, (a, s) in enumerate(zip(g, step)))           # g_j'd_j >= 0
        s_top = np.ones(lay.J[top])
        for _ in range(60):
            u_try = [a + to_level(s_top, l)[:, None] * st for l, (a, st) in
                     enumerate(zip(u, step))]
            trial = at(u_try)
            bad = ~(trial[4] >= f + ARMIJO * s_top * slope - 1e-12 * (1.0 + np.abs(f)))
            if not bad.any():
                break
            s_top[bad] *= 0.5
        else:
            raise ModeFailure("the line search of the nested conditional modes found no "
                              "ascent")
        u = u_try
        eta, d1, d2, S, f = trial
        size = max(float(np.max(np.abs(to_level(s_top, l)[:, None] * st))) if st.size else 0.0
                   for l, st in enumerate(step))
        if size < tol or (size < np.sqrt(tol) and newton and bool(np.all(s_top == 1.0))):
            break
    else:
        raise ModeFailure(f"the nested conditional modes did not converge in {maxiter} "
                          "safeguarded Newton steps")
    F0 = pairs_to_full(S[1 + D:])
    with np.errstate(invalid="ignore"):
        fac = tree_factor(blk, lay.q, F0)       # LinAlgError: no Laplace approximation
    return NestedModes(tuple(u), eta, eta_fixed, d1, d2, AT, f, F0, fac, it)
