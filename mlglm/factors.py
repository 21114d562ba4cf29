"""Grouping factors of a fitted model, and matching new data to their levels.

A mixed model has one random-effects term per grouping factor (lme4's
``(1 + x | g)``); every per-group output -- ``ranef``, ``coef``, ``VarCorr``,
conditional predictions on new data -- is computed factor by factor through
:func:`grouping_factors`. mlglm fits one grouping factor for now, so the list
has one entry; code written against it needs no change when there are more.

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

__all__ = ["GroupingFactor", "grouping_factors", "match_levels", "re_term_names"]


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


def re_term_names(model) -> list[str]:
    """Random-effect names with the intercept called "Intercept" (statsmodels calls it
    after the group column, or "Group"; the fixed part calls it "Intercept")."""
    names = getattr(model.data, "exog_re_names", None) or [f"re{k}" for k in range(model.q)]
    gname = getattr(model, "group_name", None)
    return ["Intercept" if n in (gname, "Group", "Group Var") else str(n) for n in names]


def grouping_factors(model) -> list[GroupingFactor]:
    """The grouping factors of ``model`` (one for a one-factor model)."""
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
