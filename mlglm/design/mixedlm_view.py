"""statsmodels' MixedLM vocabulary, in one place: names and shapes of a fit's random part.

mlglm works on a list of random-effects terms (:class:`~mlglm.core.spec.terms.ReTerms`)
from the formula to the results. statsmodels' ``MixedLM`` has one grouping factor
and names its parameters and attributes after it: ``cov_re`` a q x q array,
``random_effects`` a dict {group label: Series}, variance parameters ``"g Var"``,
``"g x x Cov"`` and ``"x Var"`` (the intercept named after the group), ``k_re``,
``exog_re``, ``group_labels``. A model with ONE term, however it was spelled
(``groups=``/``re_formula=``, lme4's ``(1 + x | g)``, ``(1 | g) + (0 + x | g)``,
``(1 | g:h)``, ``vc_formula`` within ``groups``), is reported in that vocabulary;
a model with several terms has one entry per grouping factor (``cov_re`` and
``random_effects`` are dicts keyed by the factor, parameters ``"g x Var"``,
``"g a x b Cov"``, intervals ``sd(x | g)``). Every name and shape that depends on
the number of terms is decided here, by :func:`single_term`, and nowhere else.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.spec.covpattern import CovBlock, CovPattern
from ..core.spec.terms import ReTerm, ReTerms

__all__ = ["single_term", "effect_names", "effect_labels", "variance_param_names",
           "natural_label", "term_prefix", "adopt_single_term", "term_labels", "cov_re",
           "random_effects", "random_effects_cov", "n_groups", "statsmodels_term"]


def single_term(model) -> bool:
    """Whether the model has one random-effects term (statsmodels' shape; a statsmodels
    ``MixedLM`` always has one)."""
    terms = getattr(model, "re_terms", None)
    return terms is None or len(terms) == 1


def effect_names(term) -> list[str]:
    """statsmodels' ``exog_re_names`` of a single term: its effects, the intercept named
    after the grouping factor (MixedLM names it ``"Group"`` without a name)."""
    return [term.name if n == "Intercept" else str(n) for n in term.column_names]


def effect_labels(model, term) -> list[str]:
    """Names of a term's effects in per-group outputs (``random_effects_frame``'s
    ``term``): statsmodels' :func:`effect_names` for one term, the effects' own names
    (``"Intercept"``, ``"x"``) next to the factor's name with several."""
    return effect_names(term) if single_term(model) else [str(n) for n in term.column_names]


def term_prefix(model, term) -> str:
    """What a sentence about one term starts with: nothing for one term,
    ``"school: "`` with several."""
    return "" if single_term(model) else f"{term.name}: "


def variance_param_names(terms) -> list[str]:
    """Names of the vech(Sigma_k) entries of ``params`` (row-major lower triangle).

    One term: statsmodels' ``"a Var"`` and ``"a x b Cov"`` over :func:`effect_names`.
    Several: ``"{factor} Var"`` for an intercept, ``"{factor} {x} Var"`` for another
    effect, ``"{factor} {x_r} x {x_c} Cov"`` for a covariance.
    """
    if len(terms) == 1:
        names = effect_names(terms[0])
        return [f"{names[r]} Var" if r == c else f"{names[c]} x {names[r]} Cov"
                for r, c in zip(*np.tril_indices(terms[0].q))]
    out = []
    for t in terms:
        cols = list(t.column_names)
        for r, c in zip(*np.tril_indices(t.q)):
            if r == c:
                out.append(f"{t.name} Var" if cols[r] == "Intercept" else
                           f"{t.name} {cols[r]} Var")
            else:
                out.append(f"{t.name} {cols[r]} x {cols[c]} Cov")
    return out


def _block_label(term, entry) -> str:
    names = [str(term.column_names[c]) for c in entry.effects]
    if len(names) == 1:
        return names[0]
    heads = {n.split("[", 1)[0] for n in names}     # vc's "key[col]" columns
    return heads.pop() if len(heads) == 1 and all("[" in n for n in names) else " + ".join(names)


def natural_label(terms, entry) -> str:
    """Label of a natural parameter (:class:`~mlglm.core.spec.natural_layout.NaturalEntry`):
    ``sd(x)`` and ``cor(a, b)`` for one term, ``sd(x | factor)`` and ``cor(a, b | factor)``
    with several; a tied block's SD is named after the block."""
    t = terms[entry.term]
    where = "" if len(terms) == 1 else f" | {t.name}"
    if entry.kind == "sd":
        return f"sd({_block_label(t, entry)}{where})"
    k, l = entry.effects
    return f"cor({t.column_names[l]}, {t.column_names[k]}{where})"


def term_labels(term) -> list:
    """Printable labels of a term's levels ("a:b" for interactions)."""
    levels = term.levels
    if isinstance(levels, pd.MultiIndex):
        return [":".join(map(str, t)) for t in levels]
    return list(levels) if levels is not None else list(range(term.n_levels))


def adopt_single_term(model) -> None:
    """Make MixedLM's one-factor attributes describe the model's single term, however it
    was spelled (a bar term arrives with a constant stand-in ``groups``): ``group_labels``,
    ``group_codes``, ``n_groups``, ``group_name``, ``exog_re``, ``k_re``, ``k_re2`` and the
    names ``exog_re_names`` / ``exog_re_names_full`` / the variance part of
    ``param_names``. Several terms keep what ``MixedLM`` set up from ``groups``."""
    if not single_term(model):
        return
    t = model.re_terms[0]
    model.group_labels = term_labels(t)
    model.group_codes = t.codes
    model.n_groups = t.n_levels
    model.group_name = t.name
    model.exog_re = t.Z
    model.k_re = t.q
    model.k_re2 = t.q * (t.q + 1) // 2
    names = effect_names(t)
    model.data.exog_re_names = names


def cov_re(model, Sigmas):
    """``results.cov_re``: Sigma (q x q array, labelled by the results wrapper) for one
    term; {factor: DataFrame} for several."""
    if single_term(model):
        return np.asarray(Sigmas[0])
    return {t.name: pd.DataFrame(S, index=list(t.column_names), columns=list(t.column_names))
            for t, S in zip(model.re_terms, Sigmas)}


def random_effects(model, bs) -> dict:
    """``results.random_effects``: {group label: Series of the effects} for one term
    (MixedLM's shape); {factor: DataFrame (levels x effects)} for several."""
    if single_term(model):
        t = model.re_terms[0]
        names = effect_names(t)
        return {g: pd.Series(bs[0][j], index=names) for j, g in enumerate(term_labels(t))}
    return {t.name: pd.DataFrame(b, index=pd.Index(term_labels(t), name=t.name),
                                 columns=list(t.column_names))
            for t, b in zip(model.re_terms, bs)}


def random_effects_cov(model, b_covs) -> dict:
    """``results.random_effects_cov``: {group label: DataFrame} for one term;
    {factor: {level: DataFrame}} for several."""
    out = {}
    for t, C in zip(model.re_terms, b_covs):
        names = effect_names(t) if single_term(model) else list(t.column_names)
        out[t.name] = {g: pd.DataFrame(C[j], index=names, columns=names)
                       for j, g in enumerate(term_labels(t))}
    return out[model.re_terms[0].name] if single_term(model) else out


def n_groups(model):
    """``results.n_groups``: the number of groups (one term); {factor: levels} (several)."""
    if single_term(model):
        return model.re_terms[0].n_levels
    return {t.name: t.n_levels for t in model.re_terms}


def statsmodels_term(results):
    """A statsmodels ``MixedLM`` fit read as mlglm's one term: (ReTerms, Sigmas, b,
    b_cov) with the term named after the group (statsmodels names the random
    intercept so; ``"group"`` without one) and its effects under statsmodels'
    ``exog_re_names``, so that code written over ``model.re_terms`` serves such fits
    too (``icc``, ``random_effects_frame``, ``compare_pooling``)."""
    model = results.model
    Z = np.asarray(model.exog_re, dtype=float)
    q = Z.shape[1]
    names = list(getattr(model.data, "exog_re_names", None) or [f"re{k}" for k in range(q)])
    labels = list(model.group_labels)
    ones = [k for k in range(q) if np.all(Z[:, k] == 1.0)]
    term = ReTerm(str(names[ones[0]]) if ones else "group",
                  pd.Index(labels).get_indexer(np.asarray(model.groups)), len(labels), Z,
                  CovPattern((CovBlock("unstructured", q),)), tuple(names), pd.Index(labels))
    b = np.array([pd.Series(results.random_effects[g]).reindex(names).to_numpy(dtype=float)
                  for g in labels])
    covs = [results.random_effects_cov[g] for g in labels]
    b_cov = np.array([c.reindex(index=names, columns=names).to_numpy(dtype=float)
                      if isinstance(c, pd.DataFrame) else np.atleast_2d(np.asarray(c, float))
                      for c in covs])
    return ReTerms((term,)), (np.atleast_2d(np.asarray(results.cov_re, dtype=float)),), \
        (b,), (b_cov,)
