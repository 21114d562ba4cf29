"""Preparing a DataFrame for the formula machinery (patsy through statsmodels).

Helpers of :meth:`mlglm.model.MixedGLM.from_formula`: which columns the formulas
name (the missing-value check and the narrowed frame patsy sees), string
columns handed to patsy as sorted Categoricals (same design, far faster), the
response's name, consistent row selection across arrays, and the parameter
names of the variance part when there are several grouping factors.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .data_checks import response_label

__all__ = []


def _num(a):
    if a is None:
        return None
    a = np.asarray(a)
    return a.astype(float) if a.dtype.kind in "biuf" else a


def _take(a, mask):
    if a is None:
        return None
    if isinstance(a, (pd.Series, pd.DataFrame)):
        return a.loc[mask]
    return np.asarray(a)[mask]


def _endog_name(endog, names):
    if isinstance(endog, pd.Series) and endog.name is not None:
        return endog.name
    label = response_label(names)     # a two-level categorical: the level modelled
    if label is not None:
        return label
    if names:
        return names[0]
    if isinstance(endog, pd.DataFrame):
        return str(endog.columns[0])
    return "y"


def _strings_as_categories(data, exclude=None):
    """String columns as pandas Categoricals with sorted categories.

    patsy codes a string column as a categorical with its sorted levels; given a
    pandas Categorical with the same (sorted) categories it produces the same
    design, but from the integer codes instead of a per-element missing-value
    check in Python (VerbAgg's four string columns: 0.16 s -> 0.016 s). Columns
    whose values do not sort, and ``exclude`` (the grouping column), are left alone.
    """
    out = None
    for c in data.columns:
        if c == exclude:
            continue
        col = data[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
            if isinstance(col.dtype, pd.CategoricalDtype):
                continue
            try:        # one hash pass: sorted codes (-1 for missing) and their levels
                codes, cats = pd.factorize(col, sort=True)
            except TypeError:
                continue
            if out is None:
                out = data.copy()
            out[c] = pd.Categorical.from_codes(codes, categories=cats)
    return data if out is None else out


def _formula_columns(data, formula, re_formula):
    """Columns of data named in the formulas (used for the NaN check)."""
    text = formula + " " + (re_formula or "")
    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", text))
    return [c for c in data.columns if str(c) in tokens]
