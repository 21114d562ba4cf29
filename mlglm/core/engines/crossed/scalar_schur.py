"""Crossed scalar terms of a linear mixed model: the Schur update as a fixed linear map.

When every random-effects term is scalar (q_k = 1: random intercepts, or one
column per factor) the blocks of H = Lambda'Z'Z Lambda + I in the layout of
:mod:`mlglm.core.engines.crossed.blocked` are, with a_j = A11[j] (= n_j for an intercept),
b_j the column j of the unscaled cross block B = Z_D'Z_1, lam1 the first
term's scale and Lambda_D = diag(lam_D) the dense terms' scales,

    H_jj = 1 + lam1^2 a_j,           H_D1[:, j] = lam1 Lambda_D b_j.

The Schur update of the factorisation and the second moment the gradient needs
are then

    L_D1 L_D1' = lam1^2 Lambda_D (sum_j b_j b_j' / H_jj)   Lambda_D,
    M2         = lam1^2 Lambda_D (sum_j b_j b_j' / H_jj^2) Lambda_D,

both of the form sum_j f(a_j) b_j b_j' for a function f of a_j alone. Grouping
the levels j by the value of a_j (classes m with value c_m; InstEval: 2,972
students, a few dozen distinct numbers of ratings)

    sum_j f(a_j) b_j b_j' = sum_m f(c_m) K_m,     K_m = sum_{j: a_j = c_m} b_j b_j',

and K = [vec K_1, ..., vec K_M] (lower triangles only) is fixed: one sparse
product builds it, and each evaluation costs one sparse matrix times an (M, 2)
matrix instead of a sparse-sparse product (whose symbolic pass alone costs as
much as the numeric one) plus an elementwise product with Sigma_DD.

Gradient by a trace identity. With Lambda diagonal and Sigma = H^{-1},
Lambda (A Lambda Sigma) = (H - I) Sigma = I - Sigma, so for a term k with
J_k levels and lam_k > 0 the gradient's sum of diagonal entries is

    G_k = sum_l [A Lambda Sigma]_{(k,l),(k,l)} = (J_k - tr_k Sigma) / lam_k,

and tr_k Sigma needs only diag(S^{-1}) for the dense terms (S the Schur
complement) and, for the first term, Sigma_jj = 1/H_jj + h_j'S^{-1}h_j / H_jj^2:

    tr_1 Sigma = sum_j 1/H_jj + <S^{-1}, M2>.

(The division by lam_k is why :func:`scalar_gradient` declines near zero
scales; :func:`~mlglm.core.engines.crossed.crossprod.diag_blocks_scalar` takes over there.)
"""
from __future__ import annotations

import numpy as np
from scipy import sparse

__all__ = ["ScalarSchur", "scalar_schur", "LAM_MIN"]

#: Smallest scale lam_k for which the trace identity is used (relative error of G_k
#: about J_k eps / lam_k).
LAM_MIN = 1e-4
#: Largest number of rows (N_D x classes) of the class-expanded cross block.
MAX_EXPANDED = 50_000_000
#: Largest number of entries of the map K (the general path takes over beyond).
MAX_MAP_ENTRIES = 20_000_000


class ScalarSchur:
    """The fixed map K of the module docstring for a linear model's Z'Z (fixed: no IRLS weights).

    Parameters
    ----------
    cx : :class:`~mlglm.core.engines.crossed.crossprod.Cross` of an all-scalar structure with a
        dense part (N_D > 0).

    Attributes
    ----------
    c : (M,) the distinct values of a_j.   count : (M,) levels j per class.
    cls : (J1,) class of each level j.   K : (N_D^2, M) CSC, rows b N_D + a (a >= b).
    spans : per dense term, its rows [start, stop) in D.
    """

    def __init__(self, cx):
        st = cx.plan.st
        N, J1 = st.N_D, st.J1
        self.st, self.terms, self.ADD = st, cx.plan.terms, cx.ADD
        self.spans = [(off, off + cx.plan.terms[k].n_levels)
                      for k, off in zip(st.dense, st.offsets)]
        self.c, self.cls = np.unique(cx.A11[:, 0, 0], return_inverse=True)
        self.cls = self.cls.astype(np.intp)
        M = self.c.size
        self.count = np.bincount(self.cls, minlength=M).astype(float)
        B = st.scatter_D1(cx.cross)[:, 0]
        # rows (class m of j, a) of the class-expanded B, times B': row m N + a of the
        # product holds row a of K_m, so its CSR arrays are those of K' (M, N^2) with
        # column b N + a -- no sort; only the entries a >= b are kept, at the upper
        # triangle's position (b, a) of an (N, N) C-ordered array (see schur_upper)
        Bx = sparse.csr_matrix((B, (self.cls[st.pat_j] * N + st.pat_a, st.pat_j)),
                               shape=(M * N, J1))
        Bs = sparse.csr_matrix((B, (st.pat_a, st.pat_j)), shape=(N, J1))
        P = Bx @ Bs.T.tocsc()
        row = np.repeat(np.arange(M * N, dtype=np.intp), np.diff(P.indptr))
        a = row % N
        keep = a >= P.indices
        per_m = np.bincount(row[keep] // N, minlength=M)
        indptr = np.concatenate([[0], np.cumsum(per_m)])
        KT = sparse.csr_matrix((P.data[keep], P.indices[keep] * N + a[keep], indptr),
                               shape=(M, N * N))
        self.K = KT.T                                         # CSC (N^2, M): no copy
        self.Bt = Bs.T.tocsr()                                # B' (J1, N_D)

    def _scale_blocks(self, X, lam_D):
        """X[a, b] *= lam_a lam_b in place (lam_D is constant on each dense term)."""
        for (a0, a1), la in zip(self.spans, lam_D):
            for (b0, b1), lb in zip(self.spans, lam_D):
                X[a0:a1, b0:b1] *= la * lb
        return X

    def schur_upper(self, lam1: float, lam_D) -> tuple:
        """(S, V2, sum_j 1/H_jj) at the scales lam1 and lam_D (one per dense term).

        S is the upper triangle, in a C-ordered (N_D, N_D) array, of the Schur
        complement S = H_DD - L_D1 L_D1' = Lambda_D (A_DD - lam1^2 V1) Lambda_D + I
        with V_i = sum_m K_m / h_m^i, h_m = 1 + lam1^2 c_m (its transpose, a Fortran
        array, holds S's lower triangle: what LAPACK reads, without a copy). V2's
        upper triangle is returned unscaled: M2 = lam1^2 Lambda_D V2 Lambda_D.
        """
        N = self.st.N_D
        h = 1.0 + lam1 * lam1 * self.c                        # H_jj per class
        F = np.empty((self.c.size, 2))
        F[:, 0] = 1.0 / h
        F[:, 1] = F[:, 0] / h
        V = self.K @ F                                        # (N^2, 2)
        S = self.ADD - (lam1 * lam1) * V[:, 0].reshape(N, N)
        self._scale_blocks(S, lam_D)
        S[np.arange(N), np.arange(N)] += 1.0
        return S, V[:, 1].reshape(N, N), float(self.count @ F[:, 0])

    def first_term_sigma(self, lam1: float, lam_D: np.ndarray, SDD: np.ndarray) -> np.ndarray:
        """Sigma_jj = 1/H_jj + lam1^2 (Lambda_D b_j)' S^{-1} (Lambda_D b_j) / H_jj^2, (J1,);
        ``SDD`` is the full symmetric S^{-1}, ``lam_D`` per dense term. One
        sparse-times-dense product (the conditional variances of a fit, once)."""
        X = self._scale_blocks(SDD.copy(), lam_D)
        quad = np.asarray(self.Bt.multiply(self.Bt @ X).sum(axis=1)).ravel()
        h = 1.0 + lam1 * lam1 * self.c[self.cls]
        return 1.0 / h + (lam1 * lam1) * quad / (h * h)

    def gradient_G(self, lam1: float, lam_D, SDL: np.ndarray, V2: np.ndarray,
                   sum_inv_h: float):
        """G_k of the module docstring per term (term order), or None when a scale is
        below :data:`LAM_MIN`.

        ``SDL`` is LAPACK's lower triangle of S^{-1} (a Fortran array: SDL' is C-ordered
        and upper, like ``V2``), so <S^{-1}, M2> = lam1^2 sum_{a, b} c_ab W[b, a] with
        W = Lambda_D (SDL' * V2) Lambda_D and c_ab = 2 off the diagonal, 1 on it.
        """
        st = self.st
        if min(lam1, *lam_D) < LAM_MIN:
            return None
        W = self._scale_blocks(SDL.T * V2, lam_D)
        inner = 2.0 * float(W.sum()) - float(np.trace(W))
        d = np.diagonal(SDL)
        out = [None] * len(self.terms)
        out[st.first] = (st.J1 - (sum_inv_h + lam1 * lam1 * inner)) / lam1
        for k, (a0, a1), la in zip(st.dense, self.spans, lam_D):
            out[k] = (a1 - a0 - float(d[a0:a1].sum())) / la
        return [np.array([[g]]) for g in out]


def scalar_schur(cx):
    """The cached :class:`ScalarSchur` of ``cx``, or None where it does not apply (a vector
    term, no dense part, the small-problem dense update, or too many classes)."""
    if hasattr(cx, "_schur"):
        return cx._schur
    st = cx.plan.st
    ok = (st.N_D > 0 and st.mode == "sparse" and st.q1 == 1
          and all(cx.plan.terms[k].q == 1 for k in st.dense))
    out = None
    # the map holds at most (n_pairs + P) / 2 entries (12 bytes each)
    if (ok and st.N_D * np.unique(cx.A11[:, 0, 0]).size <= MAX_EXPANDED
            and st.n_pairs + st.P <= 2 * MAX_MAP_ENTRIES):
        out = ScalarSchur(cx)
    object.__setattr__(cx, "_schur", out)
    return out
