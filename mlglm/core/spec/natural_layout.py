"""Natural parameters of several random-effects terms: SDs and correlations per block.

A model with terms k = 1..T has, per term, a covariance pattern
(:mod:`mlglm.core.spec.covpattern`): unstructured blocks of correlated effects and
tied blocks (c effects sharing one variance). What users read off a fit, and
what intervals and the bootstrap report, are the *natural parameters*:

* one SD per effect of an unstructured block, s_i = sqrt(Sigma_ii);
* one SD per tied block (its common s, Sigma_block = s^2 I_c);
* the correlations rho_kl = Sigma_kl / (s_k s_l), k > l, within every
  unstructured block (effects in different blocks are uncorrelated by
  construction and have no parameter).

:class:`NaturalLayout` maps, for every term and block at once,

    theta (Cholesky entries) <-> natural parameters <-> working coordinates w,

with w = (log s, atanh z) per block, z the canonical partial correlations of
the block's correlation matrix (:mod:`mlglm.core.spec.natural`): unconstrained, and
the first correlation of a block is itself a coordinate (z_10 = rho_10). An
unstructured block of size s has Lambda_block = diag(s) L_R(z) -- lower
triangular with a positive diagonal, i.e. the block's Cholesky factor -- so its
theta follows directly. A correlation that is not the first of its block is
made a coordinate by a layout whose block is *permuted* (:meth:`permuted_for`):
its effects are ordered (l, k, others), w describes the permuted block, and
theta is the Cholesky factor of P' Sigma_perm P (Sigma back in the term's own
column order).

Order of w (and of the reported parameters): term by term; within a term the
SDs of every block in column order (one per tied block), then the
correlations of every unstructured block, row by row (k > l) -- for one term
with one block exactly the one-factor layout of :mod:`mlglm.inference.profile`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .covpattern import _psd_cholesky
from .natural import Lambda_to_natural, natural_to_Lambda

__all__ = ["NaturalEntry", "NaturalLayout"]


@dataclass(frozen=True)
class NaturalEntry:
    """One natural parameter.

    kind : ``"sd"`` or ``"cor"``.   term : term index.   block : block index in
    the term.   effects : the term's columns it concerns -- an SD: the block's
    effect (unstructured) or all its effects (tied); a correlation: (k, l), k > l.
    """

    kind: str
    term: int
    block: int
    effects: tuple


class NaturalLayout:
    """theta <-> natural parameters <-> working coordinates for a list of patterns.

    Parameters
    ----------
    patterns : sequence of CovPattern, one per term (term order).
    perms : optional {(term, block): permutation of the block's effects}; the
        block's working coordinates then describe the permuted block
        (:meth:`permuted_for`).

    Attributes
    ----------
    entries : list of NaturalEntry in reporting order (independent of ``perms``).
    dim : number of working coordinates (= len(entries)).
    """

    def __init__(self, patterns, perms=None):
        self.patterns = tuple(patterns)
        self.perms = dict(perms or {})
        self.theta_sizes = [p.n_theta for p in self.patterns]
        entries = []
        self._blocks = []          # per term: [(block, column slice)]
        for k, pat in enumerate(self.patterns):
            blocks = [(b, cs) for b, cs, _ in pat.block_slices()]
            self._blocks.append(blocks)
            for i, (b, cs) in enumerate(blocks):
                cols = tuple(range(cs.start, cs.stop))
                if b.kind == "tied":
                    entries.append(NaturalEntry("sd", k, i, cols))
                else:
                    entries.extend(NaturalEntry("sd", k, i, (c,)) for c in cols)
            for i, (b, cs) in enumerate(blocks):
                if b.kind == "unstructured" and b.size > 1:
                    r, c = np.tril_indices(b.size, -1)
                    entries.extend(NaturalEntry("cor", k, i, (cs.start + int(a), cs.start + int(d)))
                                   for a, d in zip(r, c))
        self.entries = entries
        self.dim = len(entries)
        # working index of each (term, block): where its log s and atanh z start
        self._w_sd, self._w_cor = {}, {}
        for j, e in enumerate(entries):
            key = (e.term, e.block)
            if e.kind == "sd":
                self._w_sd.setdefault(key, j)
            else:
                self._w_cor.setdefault(key, j)
        # per term, per block: what :meth:`Lambdas` needs, worked out once (it runs per
        # likelihood evaluation of a profile): (columns, size, tied, first log s,
        # first atanh z, number of z, inverse permutation or None)
        self._q = [p.q for p in self.patterns]
        # where each term's theta sits in its Lambda (CovPattern.theta's entries)
        self._theta_entries = [(p.rows[p.first_entry], p.cols[p.first_entry])
                               for p in self.patterns]
        self._slots = []
        for k, blocks in enumerate(self._blocks):
            slots = []
            for i, (b, cs) in enumerate(blocks):
                j = self._w_sd[(k, i)]
                inv = np.argsort(self._perm(k, i, b.size)) if (k, i) in self.perms else None
                slots.append((cs, b.size, b.kind == "tied", j, self._w_cor.get((k, i), j),
                              b.size * (b.size - 1) // 2, inv))
            self._slots.append(slots)

    # ------------------------------------------------------------ permutations
    def _perm(self, k, i, size):
        p = self.perms.get((k, i))
        return np.arange(size) if p is None else np.asarray(p, dtype=np.intp)

    def index_of(self, j) -> int | None:
        """Working index of entry ``j`` in this layout: an SD of an unpermuted block
        or the first correlation of a block (None if the entry is not a coordinate here)."""
        e = self.entries[j]
        key = (e.term, e.block)
        if key in self.perms:
            if e.kind == "cor":
                p = self.perms[key]
                start = self._blocks[e.term][e.block][1].start
                if {start + int(p[0]), start + int(p[1])} == set(e.effects):
                    return self._w_cor[key]
            return None
        if e.kind == "sd":
            return j
        return j if j == self._w_cor[key] else None

    def permuted_for(self, j) -> tuple["NaturalLayout", int]:
        """(layout, working index) in which correlation entry ``j`` is a coordinate:
        the identity layout if it is the first of its block, else one whose block is
        ordered (l, k, the others) so that z_10 of the permuted block is rho_kl."""
        e = self.entries[j]
        idx = self.index_of(j)
        if idx is not None:
            return self, idx
        if e.kind != "cor":
            raise ValueError("only correlations need a permuted layout")
        b, cs = self._blocks[e.term][e.block]
        k, l = (c - cs.start for c in e.effects)
        perm = tuple([l, k] + [t for t in range(b.size) if t not in (k, l)])
        out = NaturalLayout(self.patterns, {**self.perms, (e.term, e.block): perm})
        return out, out._w_cor[(e.term, e.block)]

    # ---------------------------------------------------------------- mappings
    def natural(self, Sigmas) -> np.ndarray:
        """Natural parameters (reporting order) of the covariance matrices Sigma_k:
        s = sqrt(Sigma_ii) (tied: sqrt of the block's mean variance),
        rho_kl = Sigma_kl / (s_k s_l) (NaN where an s is 0)."""
        out = np.empty(self.dim)
        for j, e in enumerate(self.entries):
            S = np.asarray(Sigmas[e.term], dtype=float)
            if e.kind == "sd":
                out[j] = np.sqrt(max(float(np.mean(np.diag(S)[list(e.effects)])), 0.0))
            else:
                k, l = e.effects
                sk, sl = np.sqrt(max(S[k, k], 0.0)), np.sqrt(max(S[l, l], 0.0))
                out[j] = S[k, l] / (sk * sl) if sk > 0 and sl > 0 else np.nan
        return out

    def Sigmas_from_natural(self, values) -> list[np.ndarray]:
        """Sigma_k = diag(s) R diag(s) per term from natural parameters (NaN
        correlations, of a zero SD, are taken as 0)."""
        out = [np.zeros((p.q, p.q)) for p in self.patterns]
        s = [np.zeros(p.q) for p in self.patterns]
        values = np.asarray(values, dtype=float)
        for e, v in zip(self.entries, values):
            if e.kind == "sd":
                s[e.term][list(e.effects)] = v
        for k in range(len(out)):
            out[k][np.diag_indices(self.patterns[k].q)] = s[k] ** 2
        for e, v in zip(self.entries, values):
            if e.kind == "cor":
                k, l = e.effects
                c = 0.0 if not np.isfinite(v) else v * s[e.term][k] * s[e.term][l]
                out[e.term][k, l] = out[e.term][l, k] = c
        return out

    def to_working(self, Sigmas, min_sd: float = 1e-5, corr_limit: float = 0.9999) -> np.ndarray:
        """w of the covariance matrices Sigma_k: log s (floored at ``min_sd``: a zero SD
        has no log) and atanh z (z clipped to +-``corr_limit``), blocks permuted as
        this layout says."""
        w = np.empty(self.dim)
        for k, blocks in enumerate(self._blocks):
            S_k = np.asarray(Sigmas[k], dtype=float)
            for i, (b, cs) in enumerate(blocks):
                j = self._w_sd[(k, i)]
                S = S_k[cs, cs]
                if b.kind == "tied":
                    w[j] = np.log(max(np.sqrt(max(float(np.mean(np.diag(S))), 0.0)), min_sd))
                    continue
                p = self._perm(k, i, b.size)
                Sp = S[np.ix_(p, p)]
                try:
                    L = np.linalg.cholesky(Sp)
                except np.linalg.LinAlgError:
                    L = np.linalg.cholesky(Sp + 1e-12 * np.eye(b.size))
                s, z = Lambda_to_natural(L)
                w[j:j + b.size] = np.log(np.maximum(s, min_sd))
                if b.size > 1:
                    jc = self._w_cor[(k, i)]
                    w[jc:jc + z.size] = np.arctanh(np.clip(z, -corr_limit, corr_limit))
        return w

    def Lambdas(self, w, triangular: bool = True) -> list[np.ndarray]:
        """Lambda_k (lower triangular, pattern-shaped) per term from working coordinates:
        per unpermuted block diag(exp(log s)) L_R(tanh a); per permuted block the
        Cholesky factor of P' Sigma_perm P; per tied block exp(log s) I.

        ``triangular=False`` returns, for a permuted block, the factor L_perm with its
        rows put back in the term's order (F F' = P' Sigma_perm P = Sigma, F = P' L_perm)
        instead of refactorising: any factor of Sigma gives a Gaussian likelihood, and
        this one is exact up to the boundary (rho -> +-1), where a Cholesky of the
        back-permuted Sigma loses accuracy. theta needs the triangular one."""
        w = np.asarray(w, dtype=float)
        out = []
        for q, slots in zip(self._q, self._slots):
            if len(slots) == 1 and slots[0][1] == q and slots[0][6] is None:
                _, size, tied, j, jc, n_z, _ = slots[0]       # one unpermuted block
                out.append(np.exp(w[j]) * np.eye(q) if tied else
                           natural_to_Lambda(w[j:j + size], w[jc:jc + n_z], size))
                continue
            L = np.zeros((q, q))
            for cs, size, tied, j, jc, n_z, inv in slots:
                if tied:
                    L[cs, cs] = np.exp(w[j]) * np.eye(size)
                    continue
                Lp = natural_to_Lambda(w[j:j + size], w[jc:jc + n_z], size)
                if inv is not None:
                    if not triangular:
                        L[cs, cs] = Lp[inv]
                        continue
                    S = (Lp @ Lp.T)[np.ix_(inv, inv)]
                    try:
                        Lp = np.linalg.cholesky(S)
                    except np.linalg.LinAlgError:
                        Lp = _psd_cholesky(S)
                L[cs, cs] = Lp
            out.append(L)
        return out

    def theta(self, w) -> np.ndarray:
        """theta (all terms, concatenated) from working coordinates."""
        Ls = self.Lambdas(w)
        if len(Ls) == 1:
            r, c = self._theta_entries[0]
            return Ls[0][r, c]
        return np.concatenate([L[r, c] for L, (r, c) in zip(Ls, self._theta_entries)])

    def theta_jacobian(self, w, rel_step: float = 1e-6) -> np.ndarray:
        """d theta / d w by central differences of the closed form :meth:`theta`
        ((n_theta, dim); rounding error ~1e-10 relative)."""
        return _central_jacobian(self.theta, w, rel_step)

    def factor_jacobian(self, w, rel_step: float = 1e-6) -> np.ndarray:
        """d vec(F_k) / d w, F_k = ``Lambdas(w, triangular=False)[k]`` (row-major
        entries, term after term), by central differences of the closed form
        ((sum_k q_k^2, dim))."""
        def vec(v):
            return np.concatenate([F.ravel() for F in self.Lambdas(v, triangular=False)])
        return _central_jacobian(vec, w, rel_step)


def _central_jacobian(f, w, rel_step) -> np.ndarray:
    """d f / d w by central differences, step ``rel_step * max(1, |w_i|)``."""
    w = np.asarray(w, dtype=float)
    cols = []
    for i in range(w.size):
        h = rel_step * max(1.0, abs(w[i]))
        up, down = w.copy(), w.copy()
        up[i] += h
        down[i] -= h
        cols.append((f(up) - f(down)) / (2 * h))
    return np.column_stack(cols)
