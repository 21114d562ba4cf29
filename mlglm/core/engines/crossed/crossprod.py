"""Weighted cross products Z'WZ in the blocked layout, and products with them.

:class:`~mlglm.core.engines.crossed.blocked.BlockedStructure` orders the terms (the largest,
block diagonal, first; the rest dense). Z'WZ (W = diag(w), w = 1 for a linear
model, the IRLS weights d2 for a GLMM) then consists of

* ``A11``: (J1, q1, q1) per-level blocks of the first term;
* ``cross``: per dense term d, (P_d, q_d, q1) blocks on the pairs (level of d,
  level of the first term) that share rows;
* ``ADD``: the dense (N_D, N_D) matrix of the dense terms (per-level blocks on
  the diagonal, pair blocks between two dense terms).

Each is a sum over rows of w_i z_i z_i' pieces, i.e. ``np.bincount`` by level
(or by pair) of the row-wise outer products: one pass over the rows, no
sparse matrix to build. :class:`CrossPlan` precomputes the row -> pair maps
once per model. The same layout serves products with the (unscaled) matrix
(:meth:`Cross.matvec`) and the diagonal blocks of M Lambda Sigma
(:func:`diag_blocks_M_Lambda_Sigma`), which exact gradients need.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocked import BlockedStructure
from ...spec.terms import ReTerms

__all__ = ["CrossPlan", "Cross", "level_sums", "outer_rows", "diag_blocks_M_Lambda_Sigma",
           "lam_D_left", "split_by_term"]


def level_sums(codes, J, rows, w=None):
    """Per-level sums of the rows of an (n, k) array, optionally weighted by w (n,)."""
    out = np.empty((J, rows.shape[1]))
    for c in range(rows.shape[1]):
        col = rows[:, c] if w is None else rows[:, c] * w
        out[:, c] = np.bincount(codes, weights=col, minlength=J)
    return out


def outer_rows(Za, Zb):
    """(n, qa * qb) row-wise outer products z_a z_b'."""
    return (Za[:, :, None] * Zb[:, None, :]).reshape(Za.shape[0], -1)


class CrossPlan:
    """Row -> block maps of Z'WZ for a structure (built once per model).

    Attributes
    ----------
    st : BlockedStructure.
    dd_pairs : list of (i, i2, pair codes per row, level of term i, level of term i2)
        for every two dense terms i < i2 (indices into ``st.dense``).
    ZZ1 : (n, q1 q1) products z_1 z_1'.   ZZc : per cross pair, (n, q_d q1).
    ZZd : per dense term, (n, q_d q_d).   ZZdd : per dense pair, (n, q_d q_e).
    """

    def __init__(self, terms: ReTerms, st: BlockedStructure | None = None):
        self.terms = terms
        self.st = st = BlockedStructure(terms) if st is None else st
        t1 = terms[st.first]
        self.ZZ1 = outer_rows(t1.Z, t1.Z)
        self.ZZc = [outer_rows(terms[cp.term].Z, t1.Z) for cp in st.pairs]
        self.ZZd = [outer_rows(terms[k].Z, terms[k].Z) for k in st.dense]
        self.dd_pairs, self.ZZdd = [], []
        for i, k in enumerate(st.dense):
            for i2 in range(i + 1, len(st.dense)):
                k2 = st.dense[i2]
                tk, t2 = terms[k], terms[k2]
                key = tk.codes.astype(np.int64) * t2.n_levels + t2.codes
                uniq, inv = np.unique(key, return_inverse=True)
                self.dd_pairs.append((i, i2, inv.astype(np.intp),
                                      (uniq // t2.n_levels).astype(np.intp),
                                      (uniq % t2.n_levels).astype(np.intp)))
                self.ZZdd.append(outer_rows(tk.Z, t2.Z))
        # index arrays scattering each dense term's level blocks into ADD
        self._dd_index = []
        for k, off in zip(st.dense, st.offsets):
            t = terms[k]
            self._dd_index.append(off + np.arange(t.n_levels)[:, None] * t.q
                                  + np.arange(t.q)[None, :])
        # every block family above is a per-level sum of products over the rows; one
        # bincount over all of them at once (bins: family offset + level * k + column)
        fams = [(t1.codes, st.J1, self.ZZ1)]
        fams += [(cp.row_pair, cp.lev.size, Z) for cp, Z in zip(st.pairs, self.ZZc)]
        fams += [(terms[k].codes, terms[k].n_levels, Z) for k, Z in zip(st.dense, self.ZZd)]
        fams += [(inv, la.size, Z) for (_, _, inv, la, _), Z in zip(self.dd_pairs, self.ZZdd)]
        idx, vals, self._bins = [], [], [0]
        for codes, J, Z in fams:
            k = Z.shape[1]
            idx.append(self._bins[-1] + codes[:, None] * k + np.arange(k)[None, :])
            vals.append(Z)
            self._bins.append(self._bins[-1] + J * k)
        self._all_idx = np.concatenate(idx, axis=1).ravel()
        self._all_zz = np.concatenate(vals, axis=1)

    def lam_row(self, Lams):
        """Per D row, the scalar Lambda_k of its term when every dense term is scalar
        (then Lambda_D is diag(lam_row)); None otherwise."""
        st = self.st
        if not all(self.terms[k].q == 1 for k in st.dense):
            return None
        out = np.empty(st.N_D)
        for k, off in zip(st.dense, st.offsets):
            out[off:off + self.terms[k].size] = Lams[k][0, 0]
        return out

    def cross(self, w=None) -> "Cross":
        """Z'WZ in blocks (w None: unweighted), from one bincount over every block family."""
        st, terms = self.st, self.terms
        vals = self._all_zz if w is None else self._all_zz * w[:, None]
        sums = np.bincount(self._all_idx, weights=vals.ravel(), minlength=self._bins[-1])
        part = iter(sums[a:b] for a, b in zip(self._bins[:-1], self._bins[1:]))
        A11 = next(part).reshape(st.J1, st.q1, st.q1)
        cross = [next(part).reshape(-1, cp.q, st.q1) for cp in st.pairs]
        N = st.N_D
        ADD = np.zeros((N, N))
        for i, (k, idx) in enumerate(zip(st.dense, self._dd_index)):
            t = terms[k]
            blk = next(part).reshape(t.n_levels, t.q, t.q)
            ADD[idx[:, :, None], idx[:, None, :]] = blk
        for (i, i2, inv, la, lb), Z in zip(self.dd_pairs, self.ZZdd):
            ta, tb = terms[st.dense[i]], terms[st.dense[i2]]
            blk = next(part).reshape(-1, ta.q, tb.q)
            ra = self._dd_index[i][la]
            cb = self._dd_index[i2][lb]
            ADD[ra[:, :, None], cb[:, None, :]] = blk
            ADD[cb[:, None, :], ra[:, :, None]] = blk
        return Cross(self, A11, cross, ADD)


@dataclass(frozen=True, eq=False)
class Cross:
    """Z'WZ in the blocked layout (see the module docstring)."""

    plan: CrossPlan
    A11: np.ndarray
    cross: list
    ADD: np.ndarray

    def scaled(self, Lams, dense: bool = True):
        """(H11, HD1, HDD): the blocks of Lambda'Z'WZ Lambda + I for the factorisation
        (HDD None with ``dense=False``)."""
        st = self.plan.st
        L1 = Lams[st.first]
        q1 = st.q1
        H11 = np.einsum("ra,jrs,sb->jab", L1, self.A11, L1) if q1 > 1 else \
            self.A11 * (L1[0, 0] ** 2)
        H11[:, np.arange(q1), np.arange(q1)] += 1.0
        N = st.N_D
        lam = self.plan.lam_row(Lams) if q1 == 1 else None
        if lam is not None:                   # every term scalar: Lambda is a scaling
            HD1 = st.scatter_D1(self.cross) * (lam[st.pat_a] * L1[0, 0])[:, None]
            if not dense:
                return H11, HD1, None
            HDD = self.ADD * np.outer(lam, lam) if N else np.zeros((0, 0))
        else:
            HD1 = st.scatter_D1([np.einsum("ra,prs,sb->pab", Lams[cp.term], B, L1)
                                 for cp, B in zip(st.pairs, self.cross)])
            if N:
                HDD = lam_D_left(self.plan, Lams, lam_D_left(self.plan, Lams, self.ADD).T)
            else:
                HDD = np.zeros((0, 0))
        HDD[np.arange(N), np.arange(N)] += 1.0
        return H11, HD1, HDD

    def matvec(self, x1, xD):
        """(M x) for x = (x1 (J1, q1[, k]), xD (N_D[, k])) with M = Z'WZ (unscaled)."""
        st, terms = self.plan.st, self.plan.terms
        multi = x1.ndim == 3
        if not multi:
            x1, xD = x1[:, :, None], xD[:, None]
        y1 = self.A11 @ x1
        yD = self.ADD @ xD
        for cp, B in zip(st.pairs, self.cross):
            t = terms[cp.term]
            xd = xD[cp.offset:cp.offset + t.size].reshape(t.n_levels, t.q, -1)
            c1 = np.einsum("prs,prk->psk", B, xd[cp.lev])
            for s in range(st.q1):
                for kk in range(c1.shape[2]):
                    y1[:, s, kk] += np.bincount(cp.col, weights=c1[:, s, kk], minlength=st.J1)
            cd = B @ x1[cp.col]
            ydv = yD[cp.offset:cp.offset + t.size].reshape(t.n_levels, t.q, -1)
            for r in range(t.q):
                for kk in range(cd.shape[2]):
                    ydv[:, r, kk] += np.bincount(cp.lev, weights=cd[:, r, kk],
                                                 minlength=t.n_levels)
        if not multi:
            return y1[:, :, 0], yD[:, 0]
        return y1, yD

    def nonzeros(self):
        """(row, col, value, dense-term index, row within its level block, block start)
        of ADD's non-zeros (cached)."""
        nz = getattr(self, "_nz", None)
        if nz is None:
            st, terms = self.plan.st, self.plan.terms
            N = st.N_D
            ra, ca = np.nonzero(self.ADD)
            term_of = np.zeros(N, dtype=np.intp)
            r_in = np.zeros(N, dtype=np.intp)
            bstart = np.zeros(N, dtype=np.intp)
            for i, (k, off) in enumerate(zip(st.dense, st.offsets)):
                t = terms[k]
                rows = np.arange(t.size)
                term_of[off:off + t.size] = i
                r_in[off:off + t.size] = rows % t.q
                bstart[off:off + t.size] = off + (rows // t.q) * t.q
            nz = (ra, ca, self.ADD[ra, ca], term_of[ra], r_in[ra], bstart[ra])
            object.__setattr__(self, "_nz", nz)
        return nz


def lam_D_left(plan, Lams, M, transpose=True):
    """Lambda_D' M (transpose=True) or Lambda_D M for an (N_D, k) array."""
    st, out = plan.st, np.empty_like(M)
    for k, off in zip(st.dense, st.offsets):
        t = plan.terms[k]
        seg = M[off:off + t.size].reshape(t.n_levels, t.q, -1)
        L = Lams[k].T if transpose else Lams[k]
        out[off:off + t.size] = np.einsum("rc,jck->jrk", L, seg).reshape(t.size, -1)
    return out


def split_by_term(plan, x1, xD):
    """Per-term arrays (J_k, q_k, ...) from the blocked pair (x1, xD)."""
    st = plan.st
    out = [None] * len(plan.terms)
    out[st.first] = x1
    for k, off in zip(st.dense, st.offsets):
        t = plan.terms[k]
        out[k] = xD[off:off + t.size].reshape((t.n_levels, t.q) + xD.shape[1:])
    return out


def diag_blocks_scalar(cx: Cross, Lams, factor):
    """:func:`diag_blocks_M_Lambda_Sigma` when every term is scalar (q = 1), from
    Frobenius products with S^{-1} (:meth:`BlockedFactor.pattern_sums`) instead of
    Sigma_D1 on the pattern. With R_j^2 = H_j, L_p = H_D1,p / R_j and
    (S^{-1}L)_p = sum_b S^{-1}[a_p, b] L[b, j_p]:

        Sigma_jj   = R_j^{-2} (1 + sum_{p in j} L_p (S^{-1}L)_p),
        Sigma_D1,p = -(S^{-1}L)_p / R_j,

    so first term:  sum_j A_jj l1 Sigma_jj + sum_p B_p l_d Sigma_D1,p
                  = sum_j A_jj l1 / R_j^2 + sum_p [A_jj l1 L_p / R_j^2 - B_p l_d / R_j] (S^{-1}L)_p,
    dense term d:   sum_{p in d} B_p l1 Sigma_D1,p (+ its dense-dense part, from S^{-1}).
    """
    plan = cx.plan
    st, terms = plan.st, plan.terms
    first = st.first
    l1 = Lams[first][0, 0]
    R2 = factor.R[:, 0, 0] ** 2
    A1 = cx.A11[:, 0, 0]
    out = [np.zeros((1, 1)) for _ in terms]
    out[first][0, 0] = np.sum(A1 * l1 / R2)
    if not st.N_D:
        return out
    jp = st.pat_j
    B = st.scatter_D1(cx.cross)[:, 0]                       # B_p, the unscaled cross blocks
    lam_row = np.empty(st.N_D)
    for k, off in zip(st.dense, st.offsets):
        lam_row[off:off + terms[k].size] = Lams[k][0, 0]
    Lp = factor.Lval[:, 0]
    w1 = A1[jp] * l1 * Lp / R2[jp] - B * lam_row[st.pat_a] / np.sqrt(R2[jp])
    wD = -B * l1 / np.sqrt(R2[jp])
    r1, rD = factor.pattern_sums([w1, wD])
    out[first][0, 0] += r1.sum()
    SDD = factor.inverse_DD()
    ra, ca, val, term_of, r_in, bstart = cx.nonzeros()
    dd = np.bincount(ra, weights=val * SDD[ca, ra] * lam_row[ca], minlength=st.N_D)
    for i, (k, off) in enumerate(zip(st.dense, st.offsets)):
        seg = slice(off, off + terms[k].size)
        out[k][0, 0] = rD[seg].sum() + dd[seg].sum()
    return out


def diag_blocks_M_Lambda_Sigma(cx: Cross, Lams, sel):
    """Per term k: sum over its levels l of the diagonal block [M Lambda Sigma]_{(k,l),(k,l)}
    (q_k x q_k), with ``sel`` = (Sigma_jj, Sigma_D1 on the pattern, Sigma_DD) from
    :meth:`~mlglm.core.engines.crossed.blocked.BlockedFactor.selected_inverse`.

    d log|H| / d Lambda_k = 2 of these (M = Z'WZ held fixed).
    """
    plan = cx.plan
    st, terms = plan.st, plan.terms
    S11, Y, SDD = sel
    first = st.first
    L1 = Lams[first]
    out = [np.zeros((t.q, t.q)) for t in terms]
    out[first] += np.einsum("jrs,sa,jab->rb", cx.A11, L1, S11)
    if st.N_D:
        Yb = st.gather_D1(Y)                    # Sigma_{(d,l),(1,j)} blocks (P_d, q_d, q1)
        for cp, B, Yd in zip(st.pairs, cx.cross, Yb):
            Ld = Lams[cp.term]
            out[first] += np.einsum("prs,ra,pab->sb", B, Ld, Yd)
            out[cp.term] += np.einsum("prs,sa,pba->rb", B, L1, Yd)
        LS = lam_D_left(plan, Lams, SDD, transpose=False)           # Lambda_D Sigma_DD
        ra, ca, val, term_of, r_in, bstart = cx.nonzeros()
        for i, k in enumerate(st.dense):
            sel_ = term_of == i
            q = terms[k].q
            G = val[sel_, None] * LS[ca[sel_, None], bstart[sel_, None] + np.arange(q)[None, :]]
            for c in range(q):
                out[k][:, c] += np.bincount(r_in[sel_], weights=G[:, c], minlength=q)
    return out
