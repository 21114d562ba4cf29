"""The level space of a linear mixed model: the Woodbury quantities that Satterthwaite's
and Kenward-Roger's methods (:mod:`mlglm.core.engines.lmm.ddf`) need, per connected block of
random-effect levels.

The model is y = X beta + Z b + e, V = Var(y) = sigma^2 (I + Z Lambda Lambda' Z') =
sigma^2 V_theta, Lambda = blockdiag_t (I_{J_t} (x) Lambda_t) over the random-effects
terms t (one grouping factor or several, nested or crossed).

Both methods need, for derivatives V_i of V in the variance parameters and with
E = [X r] (r = y - X beta), the bilinear forms E'V^{-1}V_i V^{-1}E and
E'V^{-1}V_i V^{-1}V_j V^{-1}E and the traces tr(V^{-1}V_i), tr(V^{-1}V_i V^{-1}V_j):
n x n matrices for n rows. Every derivative used has the form V_i = c_i I + Z D_i Z'
with D_i block diagonal over the levels, I_{J_t} (x) d_i for the terms it touches (a
:class:`VDeriv`). With T = Z Lambda, H = I + Lambda'Z'Z Lambda, Sigma = H^{-1} and
A = Z'Z, Woodbury (V_theta^{-1} = I - T Sigma T') gives them in the random-effects
coordinates:

    E'V_theta^{-k}E = E'E - sum_{m=1..k} (Lambda'Z'E)' Sigma^m (Lambda'Z'E)
    Z'V_theta^{-1}Z = A - A Lambda Sigma Lambda'A = K,    Z'V_theta^{-2}Z = K - (A Lambda Sigma)(A Lambda Sigma)'
    Z'V_theta^{-1}E = Z'E - A Lambda Sigma Lambda'Z'E = W1,   Z'V_theta^{-2}E = W1 - A Lambda Sigma^2 Lambda'Z'E = W2
    tr V_theta^{-k} = n - dim(u) + tr Sigma^k,

so that (bilinear in E, traces over n rows done in level space)

    E'V_th^{-1} V_i V_th^{-1}E = c_i E'V_th^{-2}E + W1'D_i W1
    E'V_th^{-1} V_i V_th^{-1} V_j V_th^{-1}E = c_i c_j E'V_th^{-3}E + c_i W2'D_j W1 + c_j W1'D_i W2 + W1'D_i K D_j W1
    tr(V_th^{-1}V_i) = c_i tr V_th^{-1} + tr(K D_i)
    tr(V_th^{-1}V_i V_th^{-1}V_j) = c_i c_j tr V_th^{-2} + c_i tr(K_2 D_j) + c_j tr(K_2 D_i) + tr(K D_i K D_j)

(V_th = V_theta; the powers of sigma are put back at the end). H, Sigma and K are
block diagonal over the connected components of the random-effects levels (levels
sharing a row are connected): one group with one factor, one top-level group
with nested factors, usually a single component with crossed factors. The
components are processed in batches of equal shape as stacked dense arrays.

Cost: one pass over the rows (Z'Z, Z'E, E'E: O(n (sum q_t)^2 + n p^2)), then
O(sum_c s_c^3 + n_par^2 sum_c s_c^2 q) for components of s_c random effects: linear
in the number of groups for one factor (s_c = q) and nested factors (s_c = the
effects inside one top-level group), cubic in the number of levels for crossed
factors (one component). Memory: a few s_c^2 arrays per component. The exact
derivatives replace lmerTest's numerical ones (numDeriv's Richardson
differences, one deviance evaluation -- a sparse factorisation -- per stencil point)
and pbkrtest's dense n x n matrices, which cannot hold 10^5 rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ...spec.terms import ReTerms

__all__ = ["VDeriv", "LevelSpace", "dense_component_size"]


# ------------------------------------------------------------------ derivatives of V
@dataclass(frozen=True, eq=False)
class VDeriv:
    """A symmetric n x n matrix c I + Z D Z' with D = blockdiag over the levels of each
    term t in ``d`` of I_{J_t} (x) d[t] (``d``: dict term index -> (q_t, q_t) array)."""

    c: float = 0.0
    d: dict = field(default_factory=dict)


# ------------------------------------------------------------------ level space
@dataclass(eq=False)
class _Batch:
    """Components of one shape: m components of s effects, term t occupying the
    contiguous columns ``spans[t] = (start, n_t, q_t)`` of each (n_t levels)."""

    idx: np.ndarray            # (m, s) global random-effect columns
    spans: dict                # t -> (start, n_t, q_t)
    K: np.ndarray = None       # (m, s, s) Z'V_theta^{-1}Z
    ALS: np.ndarray = None     # (m, s, s) A Lambda Sigma
    W1: np.ndarray = None      # (m, s, k) Z'V_theta^{-1}E
    W2: np.ndarray = None      # (m, s, k) Z'V_theta^{-2}E

    @property
    def m(self) -> int:
        return self.idx.shape[0]

    @property
    def s(self) -> int:
        return self.idx.shape[1]


def _rmul(batch: _Batch, X, mats: dict):
    """X @ blockdiag(mats) over the last axis of X (..., s): term t's columns times
    I (x) mats[t]; columns of terms not in ``mats`` become 0."""
    out = np.empty_like(X) if set(mats) >= set(batch.spans) else np.zeros_like(X)
    for t, M in mats.items():
        start, nt, qt = batch.spans[t]
        sl = slice(start, start + nt * qt)
        out[..., sl] = _rmul_block(X[..., sl], nt, qt, M)
    return out


def _rmul_block(seg, nt, qt, M):
    """seg (..., nt q) @ (I_nt (x) M)."""
    if qt == 1:
        return seg * M[0, 0]
    return (seg.reshape(seg.shape[:-1] + (nt, qt)) @ M).reshape(seg.shape)


def _lmul_block(seg, nt, qt, M):
    """(I_nt (x) M) @ seg for seg (m, nt q, k)."""
    if qt == 1:
        return seg * M[0, 0]
    m, _, k = seg.shape
    return np.einsum("ab,mlbk->mlak", M, seg.reshape(m, nt, qt, k)).reshape(seg.shape)


def _lmul(batch: _Batch, mats: dict, X):
    """blockdiag(mats) @ X over axis 1 of X (m, s, k)."""
    return np.swapaxes(_rmul(batch, np.swapaxes(X, 1, 2), {t: M.T for t, M in mats.items()}),
                       1, 2)


def _global_layout(terms: ReTerms):
    """Column offset of every term in u, and level offset in the list of all levels."""
    col_off = np.cumsum([0] + [t.size for t in terms])
    lev_off = np.cumsum([0] + [t.n_levels for t in terms])
    return col_off, lev_off


def _level_components(terms: ReTerms, lev_off):
    """Component of every level (levels sharing a row are connected)."""
    if len(terms) == 1:
        return np.arange(terms[0].n_levels)
    n = terms.n
    rows = np.tile(np.arange(n), len(terms))
    cols = np.concatenate([lev_off[k] + t.codes for k, t in enumerate(terms)])
    R = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, lev_off[-1]))
    _, comp = connected_components(R.T @ R, directed=False)
    return comp


def dense_component_size(terms: ReTerms) -> int:
    """The largest number of random effects in one connected component (what the
    level-space work grows with as s^3; see the module docstring)."""
    col_off, lev_off = _global_layout(terms)
    comp = _level_components(terms, lev_off)
    q_of_level = np.concatenate([np.full(t.n_levels, t.q) for t in terms])
    return int(np.bincount(comp, weights=q_of_level).max())


class LevelSpace:
    """The Woodbury quantities of the module docstring at (theta, sigma^2).

    Parameters
    ----------
    X : (n, p) fixed-effects design.    r : (n,) residual y - offset - X beta.
    terms : ReTerms (Z and level codes per term).    Lambdas : Lambda_t per term.
    sigma2 : residual variance.    n : the number of observations (the sum of the
        frequency weights when there are weights).
    sqrt_w : optional (n,) square roots of the prior weights f v: the rows of X, r
        and Z are scaled by them (the model of :mod:`mlglm.core.engines.lmm.blockdiag`, "Prior weights").

    Attributes
    ----------
    N1, N2, N3 : (p+1, p+1) E'V_theta^{-k}E for E = [X r].
    tr1, tr2 : tr V_theta^{-1}, tr V_theta^{-2}.
    Phi : (p, p) the covariance of beta-hat, sigma^2 N1[X, X]^{-1}.
    """

    def __init__(self, X, r, terms: ReTerms, Lambdas, sigma2: float, n: float,
                 sqrt_w=None):
        X = np.asarray(X, dtype=float)
        r = np.asarray(r, dtype=float).reshape(-1)
        E = np.column_stack([X, r])
        self.p = X.shape[1]
        self.sigma2 = float(sigma2)
        self.n = float(n)
        self.terms = terms
        self.Lambdas = [np.asarray(L, dtype=float) for L in Lambdas]
        Zcols = [t.Z for t in terms]
        if sqrt_w is not None:
            w = np.asarray(sqrt_w, dtype=float)
            E = E * w[:, None]
            Zcols = [Z * w[:, None] for Z in Zcols]
        col_off, lev_off = _global_layout(terms)
        Qtot = int(col_off[-1])
        self.dim_u = Qtot
        # sparse Z (n x Q), its cross products
        nrow = E.shape[0]
        rr, cc, vv = [], [], []
        for k, (t, Z) in enumerate(zip(terms, Zcols)):
            for j in range(t.q):
                rr.append(np.arange(nrow))
                cc.append(col_off[k] + t.codes * t.q + j)
                vv.append(Z[:, j])
        Zs = sp.csr_matrix((np.concatenate(vv), (np.concatenate(rr), np.concatenate(cc))),
                           shape=(nrow, Qtot))
        A = (Zs.T @ Zs).tocoo()
        ZE = np.asarray(Zs.T @ E)
        EE = E.T @ E
        self.batches = self._batches(terms, col_off, lev_off)
        # scatter A into the batches' dense blocks
        batch_of = np.empty(Qtot, dtype=np.intp)
        slot_of = np.empty(Qtot, dtype=np.intp)
        pos_of = np.empty(Qtot, dtype=np.intp)
        for b, batch in enumerate(self.batches):
            batch_of[batch.idx] = b
            slot_of[batch.idx] = np.arange(batch.m)[:, None]
            pos_of[batch.idx] = np.arange(batch.s)[None, :]
        ab = batch_of[A.row]
        N1, N2, N3 = EE.copy(), EE.copy(), EE.copy()
        tr1 = tr2 = 0.0
        for b, batch in enumerate(self.batches):
            sel = ab == b
            Ab = np.zeros((batch.m, batch.s, batch.s))
            np.add.at(Ab, (slot_of[A.row[sel]], pos_of[A.row[sel]], pos_of[A.col[sel]]),
                      A.data[sel])
            ZEb = ZE[batch.idx]                                   # (m, s, k)
            Lam = {t: self.Lambdas[t] for t in batch.spans}
            AL = _rmul(batch, Ab, Lam)                            # A Lambda
            H = _lmul(batch, {t: M.T for t, M in Lam.items()}, AL)
            H[:, np.arange(batch.s), np.arange(batch.s)] += 1.0   # I + Lambda'A Lambda
            Sig = np.linalg.inv(H)
            Sig = 0.5 * (Sig + np.swapaxes(Sig, 1, 2))
            ALS = AL @ Sig
            batch.K = Ab - ALS @ np.swapaxes(AL, 1, 2)
            GE = _lmul(batch, {t: M.T for t, M in Lam.items()}, ZEb)     # Lambda'Z'E
            SG = Sig @ GE
            S2G = Sig @ SG
            batch.W1 = ZEb - AL @ SG
            batch.W2 = batch.W1 - AL @ S2G
            batch.ALS = ALS
            g1 = np.einsum("msk,msj->kj", GE, SG)
            g2 = np.einsum("msk,msj->kj", SG, SG)
            g3 = np.einsum("msk,msj->kj", SG, S2G)
            N1 -= g1
            N2 -= g1 + g2
            N3 -= g1 + g2 + g3
            tr1 += float(np.trace(Sig, axis1=1, axis2=2).sum())
            tr2 += float((Sig * Sig).sum())
        sym = lambda M: 0.5 * (M + M.T)        # noqa: E731
        self.N1, self.N2, self.N3 = sym(N1), sym(N2), sym(N3)
        self.tr1 = self.n - Qtot + tr1
        self.tr2 = self.n - Qtot + tr2
        p = self.p
        self.Phi_rel = np.linalg.inv(self.N1[:p, :p])
        self.Phi_rel = 0.5 * (self.Phi_rel + self.Phi_rel.T)
        self.Phi = self.sigma2 * self.Phi_rel
        self._dw = {}

    @property
    def nbytes(self) -> int:
        """Memory held by the per-component arrays."""
        return int(sum(b.K.nbytes + b.ALS.nbytes + b.W1.nbytes + b.W2.nbytes
                       for b in self.batches))

    @staticmethod
    def _batches(terms: ReTerms, col_off, lev_off) -> list:
        comp = _level_components(terms, lev_off)
        n_comp = int(comp.max()) + 1 if comp.size else 0
        term_of_level = np.concatenate([np.full(t.n_levels, k) for k, t in enumerate(terms)])
        counts = np.zeros((n_comp, len(terms)), dtype=np.intp)
        np.add.at(counts, (comp, term_of_level), 1)
        # levels sorted by (component, global level): each component's levels are
        # contiguous and term-major
        order = np.lexsort((np.arange(comp.size), comp))
        start_of_comp = np.concatenate([[0], np.cumsum(counts.sum(axis=1))[:-1]])
        shapes, shape_of_comp = np.unique(counts, axis=0, return_inverse=True)
        shape_of_comp = np.asarray(shape_of_comp).reshape(-1)
        batches = []
        for b, shape in enumerate(shapes):
            comps = np.flatnonzero(shape_of_comp == b)
            n_lev = int(shape.sum())
            levels = order[start_of_comp[comps][:, None] + np.arange(n_lev)[None, :]]
            cols, spans, pos, k_lev = [], {}, 0, 0
            for t, nt in enumerate(shape):
                nt = int(nt)
                if nt == 0:
                    continue
                q = terms[t].q
                local = levels[:, k_lev:k_lev + nt] - lev_off[t]          # (m, nt)
                c = col_off[t] + local[:, :, None] * q + np.arange(q)[None, None, :]
                cols.append(c.reshape(len(comps), nt * q))
                spans[t] = (pos, nt, q)
                pos += nt * q
                k_lev += nt
            batches.append(_Batch(np.concatenate(cols, axis=1), spans))
        return batches

    # -------------------------------------------------------------- building blocks
    def _DW1(self, dv: VDeriv):
        """Per batch D W1 and K D W1 (cached per derivative object)."""
        key = id(dv)
        hit = self._dw.get(key)
        if hit is None or hit[0] is not dv:
            parts = []
            for batch in self.batches:
                mats = {t: M for t, M in dv.d.items() if t in batch.spans}
                DW = _lmul(batch, mats, batch.W1)
                parts.append((DW, batch.K @ DW))
            hit = (dv, parts)
            self._dw[key] = hit
        return hit[1]

    def B(self, dv: VDeriv) -> np.ndarray:
        """E'V_theta^{-1} V_i V_theta^{-1} E (relative V_theta; V_i in absolute units)."""
        out = dv.c * self.N2
        for batch, (DW, _) in zip(self.batches, self._DW1(dv)):
            out = out + np.einsum("msk,msj->kj", batch.W1, DW)
        return out

    def C(self, di: VDeriv, dj: VDeriv) -> np.ndarray:
        """E'V_th^{-1} V_i V_th^{-1} V_j V_th^{-1} E."""
        out = di.c * dj.c * self.N3
        for batch, (DWi, _), (DWj, KDWj) in zip(self.batches, self._DW1(di), self._DW1(dj)):
            if di.c:
                out = out + di.c * np.einsum("msk,msj->kj", batch.W2, DWj)
            if dj.c:
                out = out + dj.c * np.einsum("msk,msj->kj", DWi, batch.W2)
            out = out + np.einsum("msk,msj->kj", DWi, KDWj)
        return out

    def T(self, dv: VDeriv) -> float:
        """tr(V_theta^{-1} V_i)."""
        out = dv.c * self.tr1
        for batch in self.batches:
            for t, M in dv.d.items():
                if t in batch.spans:
                    out += float(np.einsum("mab,ba->", self._diag_blocks(batch, batch.K, t), M))
        return out

    def _trK2(self, dv: VDeriv) -> float:
        """tr(Z'V_theta^{-2}Z D) = tr(K D) - tr((A Lambda Sigma)' D (A Lambda Sigma))."""
        out = 0.0
        for batch in self.batches:
            for t, M in dv.d.items():
                if t not in batch.spans:
                    continue
                start, nt, q = batch.spans[t]
                out += float(np.einsum("mab,ba->", self._diag_blocks(batch, batch.K, t), M))
                rows = batch.ALS[:, start:start + nt * q, :]
                out -= float((rows * _lmul_block(rows, nt, q, M)).sum())
        return out

    @staticmethod
    def _diag_blocks(batch, K, t):
        """sum over components and levels of term t of the diagonal q_t x q_t blocks of K."""
        start, nt, q = batch.spans[t]
        seg = K[:, start:start + nt * q, start:start + nt * q].reshape(batch.m, nt, q, nt, q)
        return np.einsum("mlalb->mab", seg)

    def T2(self, di: VDeriv, dj: VDeriv) -> float:
        """tr(V_th^{-1} V_i V_th^{-1} V_j)."""
        out = di.c * dj.c * self.tr2
        if di.c:
            out += di.c * self._trK2(dj)
        if dj.c:
            out += dj.c * self._trK2(di)
        # tr(K D_i K D_j) = sum over the terms t of D_i and u of D_j of
        # sum((D_j X D_i) * X), X = K[u's effects, t's effects] (K symmetric)
        for batch in self.batches:
            for t, Mi in di.d.items():
                if t not in batch.spans:
                    continue
                st, nt, qt = batch.spans[t]
                for u, Mj in dj.d.items():
                    if u not in batch.spans:
                        continue
                    su, nu, qu = batch.spans[u]
                    X = batch.K[:, su:su + nu * qu, st:st + nt * qt]
                    Y = _lmul_block(_rmul_block(X, nt, qt, Mi), nu, qu, Mj)
                    out += float((Y * X).sum())
        return out
