"""Grouping factors of a fitted model: matching new data to their levels, per-term helpers.

A mixed model has one random-effects term per grouping factor (lme4's
``(1 + x | g)``, or ``(1 | school) + (1 | school:class)`` with two), listed in
``model.re_terms``; every per-group output -- ``ranef``, ``coef``, ``VarCorr``,
conditional predictions on new data -- is computed term by term. Names and
shapes that depend on the number of terms (statsmodels' one-factor vocabulary)
are decided in :mod:`mlglm.design.mixedlm_view`, not here.

This module holds what is common to every term: :func:`match_factor` /
:func:`match_levels` (new data's level codes), :func:`random_part` (sum_k
Z_k b_k of the linear predictor), :func:`random_terms_text` (the random part in
lme4's syntax), :func:`varcorr_rows` (lme4's ``VarCorr`` rows the summary
prints) and statsmodels' ``vcomp`` (:func:`variance_components`).

:func:`match_levels` is the one place where labels in new data are matched to
the levels of a fit. Labels are matched by value across dtypes (a factor fitted
with integer labels 1, 2, 3 is found by the strings "1", "2", "3" of a CSV read
as text, and the other way round), and a label the fit never saw is an error
naming it unless ``allow_new_levels=True`` (lme4's ``allow.new.levels``).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["match_levels", "match_factor", "variance_components", "random_part",
           "random_terms_text", "varcorr_rows"]


def _level_key(value):
    """A dtype-free key for a level: numbers (and strings that spell a number) by
    numeric value, other strings stripped, so 3, 3.0, np.int64(3) and "3" agree."""
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, np.integer)):
        return ("num", int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return ("nan", None)
        return ("num", int(f) if f.is_integer() else f)
    text = str(value).strip()
    try:
        f = float(text)
    except ValueError:
        return ("str", text)
    if math.isfinite(f):
        return ("num", int(f) if f.is_integer() else f)
    return ("str", text)


def match_categories(data: pd.DataFrame, levels: dict) -> pd.DataFrame:
    """New rows coded as the fit coded them: every categorical column of ``levels``
    ({column: the fit's levels}, :func:`mlglm.design.data_checks.category_levels`, decided by
    :func:`mlglm.design.data_checks.drop_unused_levels`) gets exactly the fit's categories
    (patsy refuses a categorical whose categories differ, such as the fit's own frame
    before its unused categories were dropped). A row with a level the fit never saw is
    refused (``ValueError`` naming it): the model has no coefficient for it.
    """
    cast = {}
    for c, fit_levels in (levels or {}).items():
        if c not in data.columns:
            continue
        col = data[c]
        known = set(fit_levels)
        unseen = [v for v in pd.unique(col.dropna()) if v not in known]
        if unseen:
            shown = ", ".join(map(repr, unseen[:5])) + (" ..." if len(unseen) > 5 else "")
            fitted = ", ".join(map(repr, fit_levels[:10])) + (" ..." if len(fit_levels) > 10
                                                               else "")
            raise ValueError(
                f"column {c!r} has level(s) {shown} that no row of the fit had (its levels: "
                f"{fitted}); the model has no coefficient for them: drop those rows or map "
                "them to a fitted level")
        if isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) != fit_levels:
            cast[c] = col.cat.set_categories(fit_levels)
    return data.assign(**cast) if cast else data


def match_levels(labels, values, name, allow_new_levels=False) -> np.ndarray:
    """Position of each of ``values`` among the fitted levels ``labels`` (-1: new level).

    Parameters
    ----------
    labels : the factor's levels as fitted (sorted).
    values : one label per row of new data (any dtype).
    name : the factor's name, for the error message.
    allow_new_levels : False (default): a label not among ``labels`` (after
        matching by value, see the module notes) raises ``ValueError`` naming
        it. True: such rows get -1, which callers treat as the population level
        (random effects 0), as lme4's ``allow.new.levels = TRUE``.

    Returns
    -------
    (n,) intp array of level positions.
    """
    vals = pd.Index(np.asarray(values, dtype=object).reshape(-1))
    index = pd.Index(list(labels), dtype=object)
    codes = np.asarray(index.get_indexer(vals), dtype=np.intp)
    unmatched = codes < 0
    if unmatched.any():
        keys = [_level_key(v) for v in labels]
        if len(set(keys)) == len(keys):       # only when the keys are unambiguous
            position = {k: i for i, k in enumerate(keys)}
            codes[unmatched] = [position.get(_level_key(v), -1) for v in vals[unmatched]]
    new = codes < 0
    if new.any() and not allow_new_levels:
        unseen = list(dict.fromkeys(map(str, vals[new])))
        shown = ", ".join(repr(u) for u in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
        raise ValueError(
            f"{len(unseen)} level(s) of {name!r} not in the fit: {shown}; pass "
            "allow_new_levels=True to predict them at the population level (random "
            "effects 0), as lme4's allow.new.levels = TRUE")
    return codes


def match_factor(term, specs, data, model, allow_new_levels=False) -> np.ndarray:
    """Level codes of new data's rows for one random-effects term (-1 for levels the fit
    never saw, an error naming them unless ``allow_new_levels``): by label on the
    grouping column of a one-column factor, else through the term's first
    :class:`~mlglm.design.terms.TermSpec` (interactions ``a:b``, ``vc_formula`` indicators).

    ``specs``: the TermSpecs merged into ``term`` (``model.re_info``)."""
    spec = specs[0]
    simple = len(spec.factors) == 1 and not spec.indicator
    if not isinstance(data, pd.DataFrame) or (simple and spec.factors[0] not in data.columns):
        if not simple:
            raise ValueError("conditional predictions on new data need a DataFrame with the "
                             "grouping columns; or pass conditional=False")
        column = spec.factors[0]
        named = "" if column == term.name else f" (factor {term.name})"
        raise ValueError(f"conditional predictions on new data need the group column "
                         f"{column!r} in the DataFrame{named}; or pass conditional=False")
    if simple:
        return match_levels(list(spec.levels), data[spec.factors[0]], term.name,
                            allow_new_levels)
    codes = spec.codes_for(data, model)
    if np.any(codes < 0) and not allow_new_levels:
        unseen = spec.unseen_labels(data, codes)
        shown = ", ".join(repr(str(u)) for u in unseen[:10]) + (" ..." if len(unseen) > 10
                                                                 else "")
        raise ValueError(
            f"{len(unseen)} level(s) of {term.name!r} not in the fit: {shown}; pass "
            "allow_new_levels=True to predict them at the population level (random "
            "effects 0), as lme4's allow.new.levels = TRUE")
    return codes


# ---------------------------------------------------------------- per-term helpers
def variance_components(model, Sigmas) -> np.ndarray:
    """statsmodels' ``vcomp``: the variance of every ``vc_formula`` entry, in sorted key
    order (statsmodels' order, its ``data.vcomp_names``). An entry is a random effect
    of its own factor (indicator columns) or a tied block of one variance on
    ``groups``' factor; its variance is the diagonal of its block of Sigma_k (on the
    variance scale, not divided by the residual variance)."""
    found = {}
    for Sigma, specs in zip(Sigmas, getattr(model, "re_info", ())):
        col = 0
        for spec in specs:
            if spec.source == "vc":
                found[spec.vc_key] = float(np.asarray(Sigma)[col, col])
            col += spec.Z.shape[1]
    return np.array([found[k] for k in sorted(found)], dtype=float)


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


def random_terms_text(model) -> str:
    """The random part in lme4's syntax, one ``(effects | factor)`` per term and
    correlated block (``||`` for independent effects), e.g. ``(1 | batch) +
    (1 | batch:cask)`` or ``(1 + x | g) + (0 + z | g)``."""
    parts = []
    for t in model.re_terms:
        names = ["1" if n == "Intercept" else str(n) for n in t.column_names]
        if t.q > 1 and t.pattern.is_diagonal:
            groups, bar = [names], "||"
        else:
            sizes = [b.size for b in t.pattern.blocks]
            starts = np.cumsum([0] + sizes)
            groups, bar = [names[a:a + n] for a, n in zip(starts, sizes)], "|"
        for g in groups:
            g = g if "1" in g else ["0"] + g
            parts.append(f"({' + '.join(g)} {bar} {t.name})")
    return " + ".join(parts)


def varcorr_rows(terms, Sigmas, scale=None) -> pd.DataFrame:
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
