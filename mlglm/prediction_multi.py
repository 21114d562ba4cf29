r"""Standard errors of conditional predictions with several grouping factors.

The prediction error of :math:`\hat\eta = o + x'\hat\beta + \zeta'\hat b` (ζ: the row's
random-effects design spread over the levels of every factor, b all factors' effects
stacked) is, as with one factor (:mod:`mlglm.prediction`),

.. math:: (x + D'\zeta)' V_\beta (x + D'\zeta) + \zeta' P \zeta,
          \qquad P = \mathrm{Var}(b \mid y, \beta), \quad D = -P Z'WX,

but P is no longer block diagonal: crossed (or nested) factors couple the levels of
different factors, so a row's variance needs the covariances between its levels. With
F block diagonal, :math:`F_k F_k' = \Sigma_k` (any square root: P does not depend on
which), A = ZF and the sparse :math:`H = I + A'WA`,

.. math:: P = F H^{-1} F', \qquad \zeta'P\zeta = v' H^{-1} v, \qquad
          D'\zeta = -(A'WX)' H^{-1} v, \qquad v = F'\zeta,

so one sparse factorisation of H and one solve per prediction row (in blocks of
columns) give every row's terms; F never needs inverting, so a singular
:math:`\Sigma_k` is fine. For a linear mixed model this is Henderson's prediction
error variance (tests/test_prediction_multi.py checks it against the dense inverse of
the mixed-model equations); for GLMMs its Laplace counterpart with the working weights
W at the conditional modes.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import splu

__all__ = ["conditional_error_terms"]

#: prediction rows solved for at once (a dense n_b x BLOCK right-hand side)
BLOCK = 256


def _root(Sigma) -> np.ndarray:
    """F with F F' = Sigma (symmetric square root; Sigma may be singular)."""
    lam, V = np.linalg.eigh(np.asarray(Sigma, float))
    return V * np.sqrt(np.clip(lam, 0.0, None))


def _spread(Zs, codes, Fs, offsets, n_b):
    """The sparse (rows x n_b) matrix Z F: row i holds z_ik' F_k at the columns of level
    codes[k][i] of every term k (levels coded -1 contribute nothing). For the fit's rows
    it is A; for prediction rows its rows are the v' = zeta' F of the module notes."""
    n = Zs[0].shape[0]
    rows, cols, vals = [], [], []
    for Z, c, F, off in zip(Zs, codes, Fs, offsets):
        q = F.shape[0]
        c = np.asarray(c)
        known = np.flatnonzero(c >= 0)
        rows.append(np.repeat(known, q))
        cols.append((off + c[known, None] * q + np.arange(q)).ravel())
        vals.append((np.asarray(Z, float)[known] @ F).ravel())
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                     np.concatenate(cols))), shape=(n, n_b))


def conditional_error_terms(results, X, Zs, codes):
    """(grad, var_re) for prediction rows with designs X (n, p), Zs (per term, n x q_k)
    and level codes (per term, -1: a level the fit never saw): grad = x + D'zeta and
    var_re = zeta' P zeta (module docstring)."""
    from .prediction import working_weights
    model = results.model
    terms = model.re_terms
    Fs = [_root(S) for S in results.outcome.Sigmas]
    sizes = [t.n_levels * t.q for t in terms]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    n_b = int(sum(sizes))
    A = _spread([t.Z for t in terms], [t.codes for t in terms], Fs, offsets, n_b)
    w = working_weights(results)
    H = sparse.identity(n_b, format="csc") + (A.T @ A.multiply(w[:, None])).tocsc()
    lu = splu(H.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
              options={"SymmetricMode": True})      # H is SPD: symmetric ordering, no pivoting
    AWX = np.asarray(A.T @ (np.asarray(model.exog, float) * w[:, None]))       # (n_b, p)
    Vt = _spread(Zs, codes, Fs, offsets, n_b)                                 # (rows, n_b)
    X = np.asarray(X, float)
    grad = X.copy()
    var_re = np.zeros(X.shape[0])
    for lo in range(0, X.shape[0], BLOCK):
        Vb = Vt[lo:lo + BLOCK].toarray().T                                    # (n_b, block)
        S = lu.solve(Vb)
        var_re[lo:lo + BLOCK] = np.einsum("ij,ij->j", Vb, S)
        grad[lo:lo + BLOCK] -= S.T @ AWX
    return grad, var_re
