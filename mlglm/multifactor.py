"""Per-factor views of a fit with several grouping factors.

A fit with terms k = 1..T carries, per term, Sigma_k (q_k x q_k), the
conditional modes b_k (J_k x q_k) and their conditional covariances. Results
expose them keyed by the factor's name (``res.cov_re["school"]``), as lme4's
``VarCorr`` and ``ranef`` do; one-factor fits keep statsmodels' shapes. This
module builds those views, the random part of the linear predictor
sum_k Z_k b_k for the fit's rows or for new data, and the rows of the
``VarCorr``-style table the summary prints.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["cov_re_dict", "random_effects_dict", "random_effects_cov_dict", "term_labels",
           "random_part", "varcorr_rows", "new_data_design"]


def term_labels(term) -> list:
    """Printable labels of a term's levels ("a:b" for interactions)."""
    levels = term.levels
    if isinstance(levels, pd.MultiIndex):
        return [":".join(map(str, t)) for t in levels]
    return list(levels) if levels is not None else list(range(term.n_levels))


def cov_re_dict(terms, Sigmas) -> dict:
    """{factor: DataFrame Sigma_k} labelled by the effects."""
    return {t.name: pd.DataFrame(S, index=list(t.column_names), columns=list(t.column_names))
            for t, S in zip(terms, Sigmas)}


def random_effects_dict(terms, bs) -> dict:
    """{factor: DataFrame (levels x effects)} of conditional modes."""
    return {t.name: pd.DataFrame(b, index=pd.Index(term_labels(t), name=t.name),
                                 columns=list(t.column_names)) for t, b in zip(terms, bs)}


def random_effects_cov_dict(terms, b_covs) -> dict:
    """{factor: {level: DataFrame}} of conditional covariances."""
    out = {}
    for t, C in zip(terms, b_covs):
        names = list(t.column_names)
        out[t.name] = {g: pd.DataFrame(C[j], index=names, columns=names)
                       for j, g in enumerate(term_labels(t))}
    return out


def random_part(terms, bs, Zs=None, codes=None) -> np.ndarray:
    """sum_k z_ik' b_k[level_k(i)] for every row (levels coded -1 contribute 0)."""
    n = terms.n if Zs is None else Zs[0].shape[0]
    out = np.zeros(n)
    for k, (t, b) in enumerate(zip(terms, bs)):
        Z = t.Z if Zs is None else Zs[k]
        c = t.codes if codes is None else codes[k]
        known = c >= 0
        out[known] += np.einsum("nq,nq->n", Z[known], b[c[known]])
    return out


def new_data_design(model, data: pd.DataFrame):
    """(Zs, codes, unseen) of every term for new data: the effects built with the
    fit's coding, level codes matched by value (-1 for unseen levels) and, per
    factor, the list of unseen labels."""
    from .design import level_codes
    Zs, codes, unseen = [], [], {}
    for t, specs in zip(model.re_terms, model.re_info):
        cols = []
        for s in specs:
            cols.append(s.effects_for(data, model))
        Zs.append(np.column_stack(cols))
        head = specs[0]
        c = head.codes_for(data, model)
        codes.append(c)
        if np.any(c < 0):
            unseen[t.name] = head.unseen_labels(data, c)
    return Zs, codes, unseen


def varcorr_rows(terms, Sigmas, singular_theta=None, scale=None) -> pd.DataFrame:
    """lme4's ``VarCorr`` print: one block per factor (Groups, Name, Variance,
    Std.Dev., correlations with the effects above), then the residual."""
    rows, index = [], []
    for t, S in zip(terms, Sigmas):
        names = list(t.column_names)
        sd = np.sqrt(np.clip(np.diag(S), 0, None))
        for i, nm in enumerate(names):
            row = {"Groups": t.name if i == 0 else "", "Name": nm,
                   "Variance": f"{S[i, i]:.4f}", "Std.Dev.": f"{sd[i]:.4f}"}
            cors = []
            for j in range(i):
                if S[i, j] != 0 or not _independent(t, i, j):
                    c = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    cors.append(f"{c:.3f}")
            row["Corr"] = " ".join(cors)
            rows.append(row)
            index.append(f"{t.name}:{nm}")
    if scale is not None:
        rows.append({"Groups": "Residual", "Name": "", "Variance": f"{scale:.4f}",
                     "Std.Dev.": f"{np.sqrt(scale):.4f}", "Corr": ""})
        index.append("Residual")
    return pd.DataFrame(rows, index=index)


def _independent(term, i, j) -> bool:
    """Whether effects i and j of a term are uncorrelated by construction."""
    start = 0
    for b in term.pattern.blocks:
        if start <= i < start + b.size and start <= j < start + b.size:
            return b.kind == "tied"
        start += b.size
    return True
