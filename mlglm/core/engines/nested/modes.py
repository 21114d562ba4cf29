"""Joint conditional modes of nested random effects, all top-level groups at once.

For nested factors (levels and paths as in :mod:`mlglm.core.engines.nested.tree`) the
log-integrand h(u) = sum_i l(y_i | eta_i) - |u|^2/2, eta_i = o_i + x_i'beta +
a_i'u_path(i), separates over top-level groups j: h = sum_j h_j. Newton's
method u <- u + H^{-1} g, with

    g_c = sum over rows i below c of Lambda_l'z_il d1_i - u_c   (node c at level l),
    H   = Lambda'Z'WZ Lambda + I,   W = diag(d2),

solves all top-level groups together: the per-row work is one kernel call and
one segment sum of (kernel, a_i d1_i, d2_i a_i a_i') over the level-0 nodes;
the step comes from the tree elimination of H (:func:`tree_factor`,
:func:`tree_solve`), O(n) per step. A top-level group whose step does not
increase h_j has its step halved (only that group), so the iteration is
monotone; it stops when max |step| < tol (1e-10, as the one-factor
:mod:`mlglm.core.engines.blockdiag.modes`: a loosely converged inner problem makes the outer
objective jagged).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...spec.families import Kernel
from ...spec.errors import ModeFailure
from .tree import NestedLayout, TreeFactor, expand, reduce, tree_factor, tree_solve
from ...numerics.smallmat import pair_index, pairs_to_full

__all__ = ["NestedData", "NestedModes", "nested_modes", "mode_criterion", "path_design",
           "predicted_modes"]

#: Newton steps allowed from a warm start before restarting from u = 0.
WARM_MAXITER = 12


@dataclass(frozen=True, eq=False)
class NestedData:
    """Model arrays with rows in the layout's order.

    y, m : (n,) response and trials (``m_rows``: scalar 1.0 for unit trials).
    X : (n, p) column-major.  offset : (n,).  Z : per level (n, q_l).
    ZT : (D, n) the levels' Z columns stacked, transposed.
    """

    layout: NestedLayout
    y: np.ndarray
    m_rows: object
    X: np.ndarray
    offset: np.ndarray
    Z: tuple
    ZT: np.ndarray

    @classmethod
    def build(cls, layout: NestedLayout, terms, y, m, X, offset) -> "NestedData":
        perm = layout.perm
        m = np.asarray(m, dtype=float)
        m_rows = 1.0 if bool(np.all(m == 1.0)) else np.ascontiguousarray(m[perm])
        Z = tuple(np.ascontiguousarray(terms[k].Z[perm]) for k in layout.order)
        return cls(layout, np.ascontiguousarray(np.asarray(y, dtype=float)[perm]), m_rows,
                   np.asfortranarray(np.asarray(X, dtype=float)[perm]),
                   np.ascontiguousarray(np.asarray(offset, dtype=float)[perm]), Z,
                   np.ascontiguousarray(np.concatenate(Z, axis=1).T))

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]


def path_design(data: NestedData, Lams) -> np.ndarray:
    """(D, n) rows a_i' = (z_i0'Lambda_0, ..., z_i,T-1'Lambda_{T-1}), transposed."""
    return np.concatenate([L.T @ Z.T for L, Z in zip(Lams, data.Z)], axis=0)


def random_part(data: NestedData, AT, u) -> np.ndarray:
    """sum_l a_il'u_l[node of i]: the random part of eta for every row."""
    lay = data.layout
    blk = lay.whole
    out = np.zeros(data.n)
    for l in range(lay.T):
        R = expand(blk, np.ascontiguousarray(u[l].T), -1, l, axis=1)   # (q_l, n)
        R *= AT[lay.off[l]:lay.off[l] + lay.q[l]]
        out += R.sum(axis=0)
    return out


@dataclass(frozen=True, eq=False)
class NestedModes:
    """State at the joint conditional modes.

    u : per level (J_l, q_l) modes (spherical).  eta, d1, d2 : (n,) at the modes.
    AT : (D, n) path design.  h : (J_top,) sum of kernels minus |u|^2/2 per
    top-level group.  F0 : (J_0, D, D) level-0 sums of d2 a a'.  factor :
    TreeFactor of H there.  iterations : Newton steps.
    """

    u: tuple
    eta: np.ndarray
    eta_fixed: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    AT: np.ndarray
    h: np.ndarray
    F0: np.ndarray
    factor: TreeFactor
    iterations: int


def nested_modes(fl: Kernel, data: NestedData, beta, Lams, u0=None,
                 tol: float = 1e-10, maxiter: int = 100) -> NestedModes:
    """Maximise h_j(u) for every top-level group (module docstring).

    ``u0`` (per-level modes, e.g. the previous evaluation's) warm-starts the
    iteration; if it has not converged within WARM_MAXITER steps from there, it
    restarts from u = 0.
    """
    lay = data.layout
    eta_fixed = data.offset + data.X @ beta
    AT = path_design(data, Lams)
    if u0 is not None:
        try:
            return _newton(fl, data, eta_fixed, AT, [np.array(a, dtype=float) for a in u0],
                           tol, WARM_MAXITER)
        except ModeFailure:
            pass
    u = [np.zeros((J, q)) for J, q in zip(lay.J, lay.q)]
    return _newton(fl, data, eta_fixed, AT, u, tol, maxiter)


def predicted_modes(data: NestedData, st: NestedModes, beta, Lams) -> list:
    """The modes at (beta, Lambdas) to first order from the converged state ``st``
    (a warm start that usually saves a Newton step or two).

    At the mode g(u; x) = 0; moving x with u held, g changes by
    dg_c = sum over rows i below c of [da_ic d1_i - a_ic d2_i deta_i] (d d1/d eta =
    -d2), with deta_i the change of eta_i at the old u and da_i that of the path
    design; then du = H^{-1} dg with the factor of H already at hand (the implicit
    function theorem), one tree solve.
    """
    lay = data.layout
    blk = lay.whole
    AT = path_design(data, Lams)
    dAT = AT - st.AT
    deta = data.offset + data.X @ beta + random_part(data, AT, st.u) - st.eta
    V = dAT * st.d1 - st.AT * (st.d2 * deta)
    S0 = reduce(blk, V, -1, 0, axis=1)                             # (D, J_0)
    dg = []
    for l in range(lay.T):
        part = S0[lay.off[l]:lay.off[l] + lay.q[l]]
        dg.append(((part if l == 0 else reduce(blk, part, 0, l, axis=1)).T)[..., None])
    du = tree_solve(blk, lay.q, st.factor, dg)
    return [u + d[..., 0] for u, d in zip(st.u, du)]


def mode_criterion(fl, data: NestedData, eta_fixed, AT):
    """(at, gradient) of the penalised criterion h(u) = sum_i l_i(eta_i) - |u|^2 / 2 per
    top-level group, for the mode iterations (plain and safeguarded).

    ``at(u)`` -> (eta, d1, d2, S, h): S stacks the level-0 sums of the kernel, of a_i d1_i
    (the gradient's data part) and of the pairs a_i a_i' d2_i (H's), formed in one
    reduction over a work array allocated once; ``gradient(S, u)`` -> per level
    Lambda_l'Z_l'd1 - u_l from S.
    """
    lay = data.layout
    blk = lay.whole
    T, D, top = lay.T, lay.D, lay.T - 1
    y, m = data.y, data.m_rows
    r, c = pair_index(D)
    AA = AT[r] * AT[c]
    W = np.empty((1 + D + r.size, data.n))

    def at(u):
        eta = eta_fixed + random_part(data, AT, u)
        ker, d1, d2 = fl.kernel_derivatives(eta, y, m)
        W[0] = ker
        np.multiply(AT, d1, out=W[1:1 + D])
        np.multiply(AA, d2, out=W[1 + D:])
        S = reduce(blk, W, -1, 0, axis=1)                 # level-0 sums
        ks = S[0] if T == 1 else reduce(blk, S[0], 0, top)
        uu = sum(_to_top(blk, np.einsum("jq,jq->j", a, a), l, top) for l, a in enumerate(u))
        return eta, d1, d2, S, ks - 0.5 * uu

    def gradient(S, u):
        g = []
        for l in range(T):
            part = S[1 + lay.off[l]:1 + lay.off[l] + lay.q[l]]
            g.append((part if l == 0 else reduce(blk, part, 0, l, axis=1)).T - u[l])
        return g

    return at, gradient


def _newton(fl, data, eta_fixed, AT, u, tol, maxiter):
    lay = data.layout
    blk = lay.whole
    D, top = lay.D, lay.T - 1
    at, gradient = mode_criterion(fl, data, eta_fixed, AT)
    eta, d1, d2, S, f = at(u)
    for it in range(1, maxiter + 1):
        F0 = pairs_to_full(S[1 + D:])
        try:
            fac = tree_factor(blk, lay.q, F0)
        except np.linalg.LinAlgError:       # weights overflowed: eta far out of range
            raise ModeFailure("the nested conditional modes failed: H lost positive "
                              "definiteness (linear predictor out of range)") from None
        g = gradient(S, u)
        if it == 1 and np.sqrt(sum(float(np.sum(a * a)) for a in g)) < tol:
            # a (predicted) start already at the mode: H >= I, so the Newton step
            # would be shorter than |g| < tol, the stopping rule's threshold
            return NestedModes(tuple(u), eta, eta_fixed, d1, d2, AT, f, F0, fac, 0)
        step = [s[..., 0] for s in tree_solve(blk, lay.q, fac, [gl[..., None] for gl in g])]
        t = None
        for _ in range(40):
            if t is None:
                u_try = [a + s for a, s in zip(u, step)]
            else:
                u_try = [a + _to_level(blk, t, top, l)[:, None] * s
                         for l, (a, s) in enumerate(zip(u, step))]
            trial = at(u_try)
            worse = ~(trial[4] >= f - 1e-12 * (1.0 + np.abs(f)))
            if not worse.any():
                break
            if t is None:
                t = np.ones(lay.J[top])
            t[worse] *= 0.5
        u = u_try
        eta, d1, d2, S, f = trial
        size = max(float(np.max(np.abs(s))) if t is None else
                   float(np.max(np.abs(_to_level(blk, t, top, l)[:, None] * s)))
                   for l, s in enumerate(step))
        full = t is None or bool(np.all(t == 1.0))
        if size < tol or (size < np.sqrt(tol) and full):
            break
    else:
        raise ModeFailure(f"the nested conditional modes did not converge in {maxiter} "
                          "Newton steps")
    F0 = pairs_to_full(S[1 + D:])
    fac = tree_factor(blk, lay.q, F0)
    return NestedModes(tuple(u), eta, eta_fixed, d1, d2, AT, f, F0, fac, it)


def _to_top(blk, x, l, top):
    return x if l == top else reduce(blk, x, l, top)


def _to_level(blk, x, top, l):
    return x if l == top else expand(blk, x, l, top)
