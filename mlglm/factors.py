"""Grouping factors of a fitted model, matching new data to their levels, per-factor views.

A mixed model has one random-effects term per grouping factor (lme4's
``(1 + x | g)``, or ``(1 | school) + (1 | school:class)`` with two); every
per-group output -- ``ranef``, ``coef``, ``VarCorr``, conditional predictions on
new data -- is computed factor by factor through :func:`grouping_factors`.

With several factors a fit carries, per term, Sigma_k, the conditional modes
b_k (J_k x q_k) and their conditional covariances; results expose them keyed by
the factor's name (``res.cov_re["school"]``), as lme4's ``VarCorr`` and
``ranef`` do, while one-factor fits keep statsmodels' shapes. The second half
of this module builds those views, the random part sum_k Z_k b_k of the linear
predictor, the rows of the ``VarCorr``-style table the summary prints, and
statsmodels' ``vcomp`` (the variances of ``vc_formula`` entries).

:func:`match_levels` is the one place where labels in new data are matched to
the levels of a fit. Labels are matched by value across dtypes (a factor fitted
with integer labels 1, 2, 3 is found by the strings "1", "2", "3" of a CSV read
as text, and the other way round), and a label the fit never saw is an error
naming it unless ``allow_new_levels=True`` (lme4's ``allow.new.levels``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["GroupingFactor", "grouping_factors", "match_levels", "re_term_names",
           "term_labels", "cov_re_dict", "random_effects_dict", "random_effects_cov_dict",
           "random_part", "varcorr_rows", "new_data_design", "random_terms_text"]


@dataclass(frozen=True, eq=False)
class GroupingFactor:
    """One grouping factor of a model.

    Attributes
    ----------
    name : the grouping column (``model.group_name``).
    labels : the levels, sorted, in the order of every per-group array.
    codes : (nobs,) position of each fitted row's level in ``labels``.
    columns : positions of this factor's random effects among the columns of
        ``exog_re`` (and of the conditional modes ``b``).
    terms : names of those random effects, with the intercept called
        ``"Intercept"`` as in the fixed part (statsmodels names it after the group).
    """

    name: str
    labels: list
    codes: np.ndarray
    columns: np.ndarray
    terms: list
    term: object = None        # the core ReTerm (models with several factors)
    specs: tuple = ()          # the design.TermSpecs merged into it (new data)


def re_term_names(model) -> list[str]:
    """Random-effect names with the intercept called "Intercept" (statsmodels calls it
    after the group column, or "Group"; the fixed part calls it "Intercept")."""
    names = getattr(model.data, "exog_re_names", None) or [f"re{k}" for k in range(model.q)]
    gname = getattr(model, "group_name", None)
    return ["Intercept" if n in (gname, "Group", "Group Var") else str(n) for n in names]


def grouping_factors(model) -> list[GroupingFactor]:
    """The grouping factors of ``model`` (one for a one-factor model)."""
    if getattr(model, "multi", False):
        return [GroupingFactor(name=t.name, labels=term_labels(t), codes=t.codes,
                               columns=np.arange(t.q), terms=list(t.column_names), term=t,
                               specs=tuple(specs))
                for t, specs in zip(model.re_terms, model.re_info)]
    return [GroupingFactor(name=str(getattr(model, "group_name", "Group")),
                           labels=list(model.group_labels),
                           codes=np.asarray(model.group_codes),
                           columns=np.arange(model.q), terms=re_term_names(model))]


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
    ({column: the fit's levels}, :func:`mlglm.data_checks.category_levels`, decided by
    :func:`mlglm.data_checks.drop_unused_levels`) gets exactly the fit's categories
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


def match_factor(factor: GroupingFactor, data: pd.DataFrame, model,
                 allow_new_levels=False) -> np.ndarray:
    """Level codes of new data's rows for one factor of a several-factor model
    (-1 for unseen levels, an error naming them unless ``allow_new_levels``)."""
    spec = factor.specs[0]
    if len(spec.factors) == 1 and not spec.indicator:
        if spec.factors[0] not in data.columns:
            raise ValueError(f"conditional predictions on new data need the column "
                             f"{spec.factors[0]!r} (factor {factor.name}); or pass "
                             "conditional=False")
        return match_levels(list(spec.levels), data[spec.factors[0]], factor.name,
                            allow_new_levels)
    codes = spec.codes_for(data, model)
    if np.any(codes < 0) and not allow_new_levels:
        unseen = spec.unseen_labels(data, codes)
        shown = ", ".join(repr(str(u)) for u in unseen[:10]) + (" ..." if len(unseen) > 10
                                                                 else "")
        raise ValueError(
            f"{len(unseen)} level(s) of {factor.name!r} not in the fit: {shown}; pass "
            "allow_new_levels=True to predict them at the population level (random "
            "effects 0), as lme4's allow.new.levels = TRUE")
    return codes


# ------------------------------------------------------ per-factor views (several factors)
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


def new_data_design(model, data: pd.DataFrame) -> list:
    """Every term's Z for new data, built with the fit's coding."""
    return [np.column_stack([s.effects_for(data, model) for s in specs])
            for specs in model.re_info]


def random_terms_text(model) -> str:
    """The random part in lme4's syntax, one ``(effects | factor)`` per term
    (``||`` for independent effects), e.g. ``(1 | batch) + (1 | batch:cask)``."""
    parts = []
    for t in model.re_terms:
        names = ["1" if n == "Intercept" else str(n) for n in t.column_names]
        if "1" not in names:
            names = ["0"] + names
        bar = "||" if t.q > 1 and t.pattern.is_diagonal else "|"
        parts.append(f"({' + '.join(names)} {bar} {t.name})")
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
