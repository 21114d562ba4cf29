"""Nested grouping factors: Laplace and adaptive quadrature with the exact gradient.

:class:`NestedObjective` is the :class:`~mlglm.core.fit.objective.Objective` of a
binomial or Poisson GLMM whose grouping factors form a nested chain
(``(1 | community/family)``, ``(1 + x | school) + (1 | school:class)``, any
depth, any q per level). Per evaluation at x = (beta, theta):

1. joint conditional modes of all levels, per top-level group, by Newton's
   method on the tree elimination of H (:mod:`mlglm.core.engines.nested.modes`);
2. nagq = 1: the Laplace value h(u_hat) - (1/2) log|H| (the same number as the
   several-factor :class:`~mlglm.core.engines.crossed.objective.MultiLaplace`, without its
   sparse/dense blocked factorisation); nagq > 1: adaptive quadrature through
   every level (:mod:`mlglm.core.engines.nested.aghq`), in chunks of top-level groups;
3. the exact gradient.

Gradient. The value depends on psi = (beta, free entries of every Lambda_l)
directly (at fixed nodes) and through the mode u_hat, the pivot blocks A_c and
the couplings C_c. Their derivatives are computed in forward mode, one column
per parameter (p + n_theta is small):

    dg/dpsi (explicit)  = -Lambda'Z' diag(d2) Xi + [e_s (Z_l'd1)_r for psi = Lambda_l,rs],
    du_hat              = H^{-1} dg/dpsi                    (one tree solve, P columns),
    deta                = Xi + A du_hat,    Xi = [X, z_il,r u_l,s (one column per entry)],
    dF0_c               = sum_{i in c} d3_i deta_i a_i a_i' + d2_i (da_i a_i' + a_i da_i'),

then through the elimination (:func:`~mlglm.core.engines.nested.tree.tree_dfactor`) to
dA_c and dC_c. The quadrature supplies the adjoints (nu, Sbar, Cbar) of
(u_hat, S = R^{-T}, C); with dS = -S dR' S and dR = R Phi(R^{-1} dA R^{-T})
(Phi: lower triangle, halved diagonal), <Sbar, dS> = <Abar, dA> with
Abar = R^{-T} Phi(R'K) R^{-1}, K = -S Sbar' S, and log|R_c| contributes
-(1/2) A_c^{-1}. So

    d log L = explicit + sum_c [ nu_c'du_hat_c + <Abar_c - A_c^{-1}/2, dA_c> + <Cbar_c, dC_c> ].

For the Laplace approximation the adjoints vanish at the mode and this is
Xi'd1 - (1/2) sum_c tr(A_c^{-1} dA_c) = the usual dh/dpsi - (1/2) tr(H^{-1} dH/dpsi).

The log dispersion t of a negative binomial or Gamma kernel is one more column:
it moves no eta directly (Xi_t = 0) but the kernel (explicit part sum_i dK_i/dt,
averaged over the nodes for AGHQ), the mode through dg/dt = Lambda'Z'(d d1/dt)
and the pivot blocks through dF0_c += sum_i (d d2_i/dt) a_i a_i'. Prior weights
enter as (w y, w m) in the kernels (:mod:`mlglm.core.spec.families`). Such columns
of the kernel's own coordinates come from :meth:`NestedObjective._kernel_columns`
(here t alone); the zero-inflated, hurdle and beta subclass
(:mod:`mlglm.core.engines.nested.objective_aux`) adds one per zero-part coefficient,
with the AGHQ's explicit part from :func:`~mlglm.core.engines.nested.aghq.aghq_block`
(``aux=True``).

Which Laplace engine. For nested factors the model uses this one at nagq = 1 too:
it is O(n) whatever the number of top-level groups, while MultiLaplace factorises
the outer factors' block densely (O(J_top^3) per Newton step). Measured on binary
data with 10^4 rows (benchmarks/nested_speed.py): about equal with 10 or 100
communities (9-11 ms per value and gradient each), 14x faster with 1,000
communities (12 vs 158 ms; fit 0.3 vs 5 s), 100x with 3,000 (43 ms vs 4.5 s).
"""
from __future__ import annotations

import numpy as np

from ...spec.families import Kernel
from .aghq import DEFAULT_CHUNK_ELEMENTS, aghq_block, grid_sizes
from .modes import NestedData, NestedModes, nested_modes, predicted_modes
from .tree import NestedLayout, expand, reduce, tree_dfactor, tree_diag_inverse, tree_solve
from ...fit.objective import Objective
from ...numerics.smallmat import pair_index, pairs_to_full
from ...spec.terms import ReTerms

__all__ = ["NestedObjective", "quadrature_dimension"]


def quadrature_dimension(terms: ReTerms) -> int:
    """Dimensions of the quadrature grid per row: sum of q over a nested chain
    (every level is integrated), the largest q otherwise (one factor; crossed
    factors have no quadrature)."""
    if terms.kind == "nested":
        return int(sum(t.q for t in terms))
    return int(max(t.q for t in terms))


class NestedObjective(Objective):
    """log L(beta, theta) for nested grouping factors, Laplace (nagq = 1) or AGHQ.

    Parameters
    ----------
    fl : Kernel.  y, m, X, offset : response, trials, design, offset (rows in
    any order).  terms : ReTerms forming a nested chain.  nagq : points per
    dimension at every level.  layout : optional prebuilt NestedLayout.
    chunk_elements : rows x quadrature combinations per chunk of top-level groups.

    ``u`` holds the per-level modes of the last evaluation (the warm start of the
    next), ``state`` the :class:`~mlglm.core.engines.nested.modes.NestedModes` there;
    :meth:`value_and_gradient` at exactly the point of its previous call returns
    that result again.
    """

    def __init__(self, fl: Kernel, y, m, X, offset, terms: ReTerms, nagq: int = 1,
                 layout: NestedLayout | None = None,
                 chunk_elements: int = DEFAULT_CHUNK_ELEMENTS, data: NestedData | None = None,
                 freq=None, var=None, estimate_dispersion=True):
        self.fl = fl
        self.n_disp = int(bool(fl.has_dispersion and estimate_dispersion))
        self.freq, self.var = freq, var
        self.terms = terms
        # the optimiser's view (GLM start): original arrays; the kernels' (w y, w m)
        self.y_obs = np.asarray(y, dtype=float)
        self.m_obs = np.asarray(m, dtype=float) * np.ones_like(self.y_obs)
        w = None if freq is None and var is None else (
            (1.0 if freq is None else np.asarray(freq, float))
            * (1.0 if var is None else np.asarray(var, float)))
        self.weights = w
        self.y = self.y_obs if w is None else w * self.y_obs
        self.m = m = self.m_obs if w is None else w * self.m_obs
        self.layout = NestedLayout(terms) if layout is None else layout
        self.data = NestedData.build(self.layout, terms, self.y, m, X, offset) if data is None \
            else data
        self.nagq = int(nagq)
        self.chunk_elements = int(chunk_elements)
        self.m_rows = 1.0 if bool(np.all(m == 1.0)) else m
        self.X = np.asfortranarray(np.asarray(X, dtype=float))
        self.offset = np.asarray(offset, dtype=float)
        self.p = self.X.shape[1]
        self.n_theta = terms.n_theta
        self.constants = fl.row_constants(self.y_obs, self.m_obs, freq, var)
        self.log_const = self.constants.value(fl.log_dispersion)
        self.patterns = tuple(terms[k].pattern for k in self.layout.order)
        self.u = None
        self.state = None
        self._pred = None
        self.n_evals = 0

    #: the kernel is a BoundAuxiliaryKernel (zero part, :mod:`.objective_aux`)
    auxiliary = False

    @property
    def n_extra(self) -> int:
        """Parameters after theta: the kernel's own coordinates (here the log dispersion)."""
        return self.n_disp

    def _block_kernel(self, fl, blk):
        """The kernel for the rows of a chunk of top-level groups (plain kernels take
        the rows' arrays as arguments)."""
        return fl

    # ------------------------------------------------------------- plumbing
    def laplace(self) -> "NestedObjective":
        if self.nagq == 1:
            return self
        return self.with_nagq(1)

    def with_nagq(self, nagq: int) -> "NestedObjective":
        """The same problem with ``nagq`` points per dimension at every level (layout
        and arrays shared)."""
        return NestedObjective(self.fl, self.y_obs, self.m_obs, self.X,
                               self.offset, self.terms, nagq, self.layout, self.chunk_elements,
                               self.data, self.freq, self.var, bool(self.n_disp))

    def _Lambdas(self, theta):
        """Lambda_l in level order."""
        Lams = self.terms.Lambdas(theta)
        return [Lams[k] for k in self.layout.order]

    #: The conditional-mode iteration: plain Newton on the concave kernels; a subclass
    #: whose kernel is not concave in eta sets the safeguarded one.
    find_modes = staticmethod(nested_modes)

    def modes(self, x, u0=None) -> NestedModes:
        beta, theta = self.split(x)
        start = self.u if u0 is None else u0
        return self.find_modes(self.kernel_at(x), self.data, beta, self._Lambdas(theta), start)

    def _evaluate(self, x, gradient):
        beta, theta = self.split(x)
        Lams = self._Lambdas(theta)
        fl = self.kernel_at(x)
        st = self.find_modes(fl, self.data, beta, Lams, self._start(beta, Lams))
        self._set_state(st, beta, Lams, theta)
        if self.nagq == 1:
            value = float(st.h.sum() - 0.5 * st.factor.logdet.sum())
            grad = self._laplace_gradient(st, Lams, fl) if gradient else None
        else:
            value, grad = self._aghq(st, Lams, gradient, fl)
        return self._with_constants(x, value, grad)

    def _with_constants(self, x, value, grad):
        """(log L, gradient) with the eta-free constants (and their derivative in the log
        dispersion) added to the engine's value."""
        if not self.n_disp:
            return value + self.log_const, grad
        t = self.param_layout.log_dispersion(x)
        if grad is not None:
            grad[-1] += self.constants.derivative(t)
        return value + self.constants.value(t), grad

    def __call__(self, x) -> float:
        """The log-likelihood at x, every constant included."""
        self.n_evals += 1
        return self._evaluate(np.asarray(x, dtype=float), False)[0]

    def value_and_gradient(self, x):
        """(log L, d log L / dx) with the exact gradient."""
        x = np.asarray(x, dtype=float)
        again = self._repeated(x)
        if again is not None:
            return again
        self.n_evals += 1
        value, grad = self._evaluate(x, True)
        self._remember(x, value, grad)
        return value, grad

    def _set_state(self, st: NestedModes, beta, Lams, theta) -> None:
        """The modes at (beta, theta; Lams: the Lambdas in level order): the next
        warm start and the base of its first-order prediction."""
        self.u, self.state = st.u, st
        self._pred = (st, beta, Lams, theta)

    def _start(self, beta, Lams):
        """The warm start at (beta, Lams): the last modes moved to first order
        (:func:`~mlglm.core.engines.nested.modes.predicted_modes`) when they are this
        object's own last modes (not ones the driver set, e.g. None for a cold start)."""
        pred = self._pred
        if pred is None or self.u is not pred[0].u:
            return self.u
        try:
            return predicted_modes(self.data, pred[0], beta, Lams)
        except np.linalg.LinAlgError:
            return self.u

    def anchor(self):
        return (self.u, self.state, self._pred)

    def restore(self, token) -> None:
        self.u, self.state, self._pred = token

    # ---------------------------------------------------------- quadrature
    def _aghq(self, st, Lams, gradient, fl):
        lay = self.layout
        T = lay.T
        _, N = grid_sizes(lay.q, self.nagq)
        value = 0.0
        acc = None
        if gradient:
            acc = {"g_beta": np.zeros(self.p), "g_extra": np.zeros(self.n_extra),
                   "YU": [np.zeros((q, q)) for q in lay.q],
                   "nu": [np.empty((J, q)) for J, q in zip(lay.J, lay.q)],
                   "Sbar": [np.empty((J, q, q)) for J, q in zip(lay.J, lay.q)],
                   "Cbar": [np.empty((lay.J[l], lay.q[l], lay.Q[l + 1])) for l in range(T - 1)]}
        for lo, hi in lay.chunks(N[0], self.chunk_elements):
            blk = lay.whole if (lo, hi) == (0, lay.J[T - 1]) else lay.block(lo, hi)
            val, pieces = aghq_block(self._block_kernel(fl, blk), self.data, st, Lams,
                                     self.nagq, blk, gradient, dispersion=bool(self.n_disp) and not self.auxiliary,
                                     aux=self.auxiliary)
            value += float(val.sum())
            if gradient:
                acc["g_beta"] += pieces["g_beta"]
                if self.n_extra:
                    acc["g_extra"] += pieces["g_extra"]
                for l in range(T):
                    acc["YU"][l] += pieces["YU"][l]
                    for key in ("nu", "Sbar") + (("Cbar",) if l < T - 1 else ()):
                        acc[key][l][blk.nodes[l]] = pieces[key][l]
        if not gradient:
            return value, None
        return value, self._gradient(st, Lams, acc, fl)

    # ------------------------------------------------------------ gradients
    def _entries(self):
        """(level, r, s) of every free entry of the Lambdas, in level order."""
        return [(l, r, s) for l, pat in enumerate(self.patterns)
                for r, s in zip(pat.rows, pat.cols)]

    def _kernel_columns(self, st: NestedModes, fl, d3):
        """The columns after the Lambda entries: coordinates of the kernel itself, which
        move no eta directly. ([(design, dd1, dd2)] per column, explicit): ``design`` the
        column's per-row multiplier (None: ones), (dd1, dd2) the rows' derivatives of
        (d1, d2) in the coordinate, ``explicit`` (n_extra,) the derivatives of sum_i K_i at
        fixed eta. Here the log dispersion of an NB2 or Gamma kernel (or nothing)."""
        if not self.n_disp:
            return [], None
        data = self.data
        dK, dd1, dd2 = fl.dispersion_derivatives(st.eta, data.y, data.m_rows, st.d1, st.d2, d3)
        return [(None, dd1, dd2)], np.array([dK.sum()])

    def _derivatives(self, st: NestedModes, Lams, fl):
        """Forward-mode derivatives at the mode (module docstring): (XiT, du, dA, dC,
        explicit) with the columns (beta, entries of the Lambdas, the kernel's own
        coordinates of :meth:`_kernel_columns`); explicit: their dK sums (or None)."""
        lay, data = self.layout, self.data
        blk = lay.whole
        T, D, p, n = lay.T, lay.D, self.p, data.n
        entries = self._entries()
        d3 = fl.third(st.eta, data.y, data.m_rows, st.d1, st.d2)
        extra, explicit = self._kernel_columns(st, fl, d3)
        k0 = p + len(entries)
        P = k0 + len(extra)
        XiT = np.zeros((P, n))
        XiT[:p] = data.X.T
        for e, (l, r, s) in enumerate(entries):
            XiT[p + e] = data.Z[l][:, r] * expand(blk, st.u[l][:, s], -1, l)
        d2Xi = XiT * st.d2
        dg = []
        for l in range(T):
            ZlT = data.Z[l].T
            sums = reduce(blk, (ZlT[:, None, :] * d2Xi[None]).reshape(-1, n), -1, l, axis=1)
            g = -np.einsum("ra,rpj->jap", Lams[l], sums.reshape(lay.q[l], P, -1))
            dg.append(g)
        for e, (l, r, s) in enumerate(entries):
            dg[l][:, s, p + e] += reduce(blk, data.Z[l][:, r] * st.d1, -1, l)
        for k, (col, dd1, dd2) in enumerate(extra):     # the kernel's own coordinates:
            v = dd1 if col is None else col * dd1        # the mode and the curvature move
            for l in range(T):
                ZlT = data.Z[l].T
                sums = reduce(blk, ZlT * v, -1, l, axis=1)                # (q_l, J_l)
                dg[l][:, :, k0 + k] += (Lams[l].T @ sums).T
        du = tree_solve(blk, lay.q, st.factor, dg)
        detaT = XiT.copy()
        for l in range(T):
            for k in range(lay.q[l]):
                detaT += st.AT[lay.off[l] + k] * expand(blk, du[l][:, k, :].T, -1, l, axis=1)
        r_, c_ = pair_index(D)
        AA = st.AT[r_] * st.AT[c_]
        curv = d3 * detaT
        for k, (col, dd1, dd2) in enumerate(extra):
            curv[k0 + k] += dd2 if col is None else col * dd2
        sums = reduce(blk, (AA[:, None, :] * curv[None]).reshape(-1, n), -1, 0, axis=1)
        sums = sums.reshape(r_.size, P, -1)
        dF0 = np.stack([pairs_to_full(sums[:, k]) for k in range(P)], axis=3)
        if entries:
            ZT = data.ZT
            V = reduce(blk, (ZT[:, None, :] * (st.AT * st.d2)[None]).reshape(D * D, n),
                       -1, 0, axis=1)
            V = V.T.reshape(-1, D, D)                       # sum_i d2_i z_i a_i'
            for e, (l, r, s) in enumerate(entries):
                i_s, i_r = lay.off[l] + s, lay.off[l] + r
                dF0[:, i_s, :, p + e] += V[:, i_r, :]
                dF0[:, :, i_s, p + e] += V[:, i_r, :]
        dA, dC = tree_dfactor(blk, lay.q, st.factor, dF0)
        return XiT, du, dA, dC, explicit

    def _to_theta(self, g_entries):
        """Gradient over Lambda entries (level order) -> theta in term order."""
        lay = self.layout
        out = [None] * len(self.terms)
        i = 0
        for l, pat in enumerate(self.patterns):
            ne = pat.idx.size
            out[lay.order[l]] = np.bincount(pat.idx, weights=g_entries[i:i + ne],
                                            minlength=pat.n_theta)
            i += ne
        return np.concatenate(out)

    def _assemble(self, g):
        """(beta, theta in term order[, t]) from the columns (beta, entries[, t])."""
        k = g.size - self.n_extra
        return np.concatenate([g[:self.p], self._to_theta(g[self.p:k]), g[k:]])

    def _laplace_gradient(self, st, Lams, fl):
        XiT, du, dA, dC, explicit = self._derivatives(st, Lams, fl)
        g = XiT @ st.d1
        if explicit is not None:
            g[-explicit.size:] = explicit
        for l in range(self.layout.T):
            Ainv = np.linalg.inv(st.factor.A[l])
            g -= 0.5 * np.einsum("jab,jbap->p", Ainv, dA[l])
        return self._assemble(g)

    def _gradient(self, st, Lams, acc, fl):
        lay = self.layout
        T, p = lay.T, self.p
        XiT, du, dA, dC, _ = self._derivatives(st, Lams, fl)
        g = np.zeros(XiT.shape[0])
        g[:p] = acc["g_beta"]
        if self.n_extra:
            g[-self.n_extra:] = acc["g_extra"]
        for e, (l, r, s) in enumerate(self._entries()):
            g[p + e] = acc["YU"][l][r, s]
        for l in range(T):
            R = st.factor.R[l]
            Rinv = np.linalg.inv(R)
            Sm = np.swapaxes(Rinv, 1, 2)
            K = -(Sm @ np.swapaxes(acc["Sbar"][l], 1, 2) @ Sm)
            Phi = np.tril(np.swapaxes(R, 1, 2) @ K)
            d = np.arange(lay.q[l])
            Phi[:, d, d] *= 0.5
            Abar = Sm @ Phi @ Rinv - 0.5 * np.linalg.inv(st.factor.A[l])
            g += np.einsum("jab,jabp->p", Abar, dA[l])
            g += np.einsum("ja,jap->p", acc["nu"][l], du[l])
            if l < T - 1:
                g += np.einsum("jab,jabp->p", acc["Cbar"][l], dC[l])
        return self._assemble(g)

    # ------------------------------------------------------------ packaging
    def beta_information(self, x) -> np.ndarray:
        """X'WX - B'H^{-1}B with B = Lambda'Z'WX at the modes at x (the Laplace
        information for beta with theta fixed)."""
        st = self.modes(x)
        lay, data = self.layout, self.data
        blk = lay.whole
        beta, theta = self.split(x)
        Lams = self._Lambdas(theta)
        self._set_state(st, beta, Lams, theta)
        XW = data.X * st.d2[:, None]
        info = data.X.T @ XW
        XWT = np.ascontiguousarray(XW.T)
        B = []
        for l in range(lay.T):
            ZlT = data.Z[l].T
            sums = reduce(blk, (ZlT[:, None, :] * XWT[None]).reshape(-1, data.n), -1, l, axis=1)
            B.append(np.einsum("ra,rpj->jap", Lams[l], sums.reshape(lay.q[l], self.p, -1)))
        sol = tree_solve(blk, lay.q, st.factor, B)
        for Bl, sl in zip(B, sol):
            info -= np.einsum("jap,jak->pk", Bl, sl)
        return info

    def random_effects(self):
        """(Lambdas, b, b_cov) per term (term order, the term's level codes) at the last
        evaluation: b = Lambda u_hat from the joint mode, b_cov = Lambda [H^{-1}]_cc Lambda'."""
        st, lay = self.state, self.layout
        Lams = self.terms.Lambdas(self._pred[3])
        Sig = tree_diag_inverse(lay.whole, lay.q, st.factor)
        b, b_cov = [None] * len(self.terms), [None] * len(self.terms)
        for l, k in enumerate(lay.order):
            L = Lams[k]
            bk = np.empty((lay.J[l], lay.q[l]))
            ck = np.empty((lay.J[l], lay.q[l], lay.q[l]))
            bk[lay.level_codes[l]] = st.u[l] @ L.T
            ck[lay.level_codes[l]] = np.einsum("ra,jab,cb->jrc", L, Sig[l], L)
            b[k], b_cov[k] = bk, ck
        return tuple(Lams), tuple(b), tuple(b_cov)
