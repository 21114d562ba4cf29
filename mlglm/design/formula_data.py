"""Preparing a DataFrame for the formula machinery (patsy through statsmodels).

Helpers of :meth:`mlglm.api.models.MixedGLM.from_formula`: which columns the formulas
name (the missing-value check and the narrowed frame patsy sees), string
columns handed to patsy as sorted Categoricals (same design, far faster), the
response's name, consistent row selection across arrays, and the parameter
names of the variance part when there are several grouping factors.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import patsy

from .data_checks import MixedGLMInputError, response_label

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
    """Columns of data named in the formulas (used for the NaN check): names as
    Python spells them (Unicode letters included), R-style dotted names, and the
    quoted names of ``Q("...")``."""
    text = formula + " " + (re_formula or "")
    tokens = set(re.findall(r"[^\W\d][\w.]*|\.[^\W\d][\w.]*", text))
    tokens |= {m[1] for m in re.findall(r"Q\(\s*(['\"])(.+?)\1\s*\)", text)}
    return [c for c in data.columns if str(c) in tokens]


#: keywords of from_formula that give one value per row (a column name or an array)
_ROW_KEYWORDS = ("groups", "offset", "exposure", "n_trials", "freq_weights", "var_weights")


def check_frame(data: pd.DataFrame, what: str) -> None:
    """Refuse a frame without rows."""
    if data.shape[0] == 0:
        raise MixedGLMInputError(f"{what} has no rows: there is nothing to fit")


def check_duplicate_columns(data: pd.DataFrame, referenced) -> pd.DataFrame:
    """``data`` without the duplicated column names that nothing refers to; a duplicated
    name the model uses is refused (patsy could not tell the columns apart)."""
    if not data.columns.has_duplicates:
        return data
    dup = data.columns[data.columns.duplicated(keep=False)]
    used = sorted({str(c) for c in dup if str(c) in {str(r) for r in referenced}})
    if used:
        raise MixedGLMInputError(
            f"data has several columns named {', '.join(map(repr, used))}; rename or drop "
            "the duplicates (e.g. data.loc[:, ~data.columns.duplicated()])")
    return data.loc[:, ~data.columns.isin(dup)]


def refuse_r_dot(formula: str, data: pd.DataFrame, groups) -> None:
    """R's ``y ~ .`` (every other column) is not expanded: refuse, listing the columns
    to write instead."""
    if "~" not in formula:
        return
    lhs, rhs = formula.split("~", 1)
    stripped = re.sub(r"(['\"]).*?\1", "", rhs)           # outside string literals
    if not re.search(r"(?<![\w.])\.(?![\w.])", stripped):
        return
    skip = {s.strip() for s in re.split(r"[+,()]", lhs)} | {str(groups)}
    cols = [str(c) for c in data.columns if str(c) not in skip]
    shown = " + ".join(cols[:12]) + (" + ..." if len(cols) > 12 else "")
    raise MixedGLMInputError(
        "R's '.' (every other column) is not expanded in formulas (patsy has no such "
        f"term); list the columns instead, e.g. '{lhs.strip()} ~ {shown}'")


def column_values(col: pd.Series) -> np.ndarray:
    """A column's values as numpy; pandas' nullable numbers and booleans as floats with
    NaN for NA (so the missing-value policy sees them)."""
    if pd.api.types.is_extension_array_dtype(col.dtype) and (
            pd.api.types.is_numeric_dtype(col.dtype) or pd.api.types.is_bool_dtype(col.dtype)):
        return col.to_numpy(dtype=float, na_value=np.nan)
    return col.to_numpy()


def row_values(val, index: pd.Index, key: str) -> np.ndarray:
    """One value per row of ``data``: a pandas Series or one-column DataFrame aligned by
    its index (as pandas aligns; it must hold every row label), anything else by
    position."""
    if isinstance(val, pd.DataFrame) and val.shape[1] == 1:
        val = val.iloc[:, 0]
    if not isinstance(val, pd.Series):
        return np.asarray(val)
    if not val.index.equals(index):
        if not (val.index.is_unique and index.is_unique):
            raise MixedGLMInputError(
                f"{key} is a Series whose index does not match data's and has repeated "
                "labels, so it cannot be aligned by label; pass .to_numpy() to take it by "
                "position")
        missing = index.difference(val.index)
        if len(missing):
            raise MixedGLMInputError(
                f"{key} is a Series whose index lacks {len(missing)} of data's {len(index)} "
                f"row labels (e.g. {list(missing[:3])}); a Series is aligned with data by "
                f"its index, as in pandas: reindex it to data.index, or pass .to_numpy() "
                "to take its values by position")
        val = val.reindex(index)
    return column_values(val)


def subset_mask(subset, data: pd.DataFrame, names) -> np.ndarray:
    """Boolean keep-mask of ``subset=``: a boolean Series aligned by its index, a boolean
    array by position, a string evaluated by pandas' ``DataFrame.eval`` (``@name`` for
    the caller's names), or index labels."""
    if isinstance(subset, str):
        try:
            value = data.eval(subset, local_dict=dict(names), global_dict={})
        except Exception as exc:
            raise MixedGLMInputError(
                f"subset={subset!r} could not be evaluated by pandas' DataFrame.eval "
                f"({type(exc).__name__}: {exc}); it is a condition on the columns such as "
                "\"x > 0 and g != 'a'\", your variables written @name") from exc
        if not (isinstance(value, pd.Series) and pd.api.types.is_bool_dtype(value.dtype)):
            raise MixedGLMInputError(f"subset={subset!r} must be a condition, true or false "
                                     "for each row (like \"x > 0\")")
        return value.reindex(data.index).to_numpy(dtype=bool, na_value=False)
    if isinstance(subset, pd.Series) and pd.api.types.is_bool_dtype(subset.dtype):
        return row_values(subset, data.index, "subset").astype(bool)
    arr = np.asarray(subset)
    if arr.dtype == bool:
        if arr.shape != (len(data),):
            raise MixedGLMInputError(f"subset has {arr.size} values for {len(data)} rows")
        return arr
    try:
        return data.index.isin(data.loc[subset].index)
    except (KeyError, IndexError, TypeError) as exc:
        raise MixedGLMInputError(
            f"subset= must be a boolean mask, row labels of data's index or a condition "
            f"string; {type(exc).__name__}: {exc}") from exc


def _code_is_column(code: str, columns) -> bool:
    """Whether a patsy factor is a column as it stands: ``x``, ``Q("x")``, ``C(x)``."""
    code = code.strip()
    m = re.fullmatch(r"(?:C|factor)\((.+?)(?:,.*)?\)", code)
    if m:
        code = m.group(1).strip()
    q = re.fullmatch(r"Q\(\s*(['\"])(.+)\1\s*\)", code)
    if q:
        code = q.group(2)
    return code in columns


def computed_terms(data: pd.DataFrame, texts, names, columns) -> dict:
    """The values of the formulas' computed numeric factors -- ``np.log(x)``,
    ``I(x - 1)``, ``sq(z)``: not a column as it stands --, {factor: values}, so that
    the missing-value policy sees NaN and inf made by a transformation (``missing=
    "drop"`` drops those rows, ``"none"`` names the term). Categorical factors are
    left out; a factor that cannot be evaluated is left to patsy to report in context.
    """
    codes = []
    for text in texts:
        if not text:
            continue
        rhs = text.strip()
        try:
            desc = patsy.ModelDesc.from_formula(rhs if "~" in rhs else rhs.lstrip("~"))
        except Exception:       # a formula patsy cannot parse: reported where it is built
            continue
        for term in list(desc.lhs_termlist) + list(desc.rhs_termlist):
            for factor in term.factors:
                code = getattr(factor, "code", None)
                if code and code not in codes and not _code_is_column(code, columns):
                    codes.append(code)
    if not codes:
        return {}
    env = patsy.EvalEnvironment([names])
    frame = _nullable_as_numpy(data, [c for c in columns if c in data.columns], na=True)
    out = {}
    for code in codes:
        factor = patsy.EvalFactor(code)
        try:
            state = {}
            for i in range(factor.memorize_passes_needed(state, env)):
                factor.memorize_chunk(state, i, frame)
                factor.memorize_finish(state, i)
            value = factor.eval(state, frame)
        except Exception:
            continue
        if isinstance(value, pd.Series):
            value = column_values(value)
        value = np.asarray(value)
        if value.dtype.kind in "biuf" and value.shape[:1] == (len(data),):
            out[code] = value.astype(float)
    return out


def _nullable_as_numpy(data: pd.DataFrame, columns, na: bool = False) -> pd.DataFrame:
    """pandas' nullable columns (``boolean``, ``Int64``, ``Float64``, ...) among
    ``columns`` as numpy columns, which patsy reads (it cannot read a ``boolean``
    dtype): booleans as bool, numbers as int or float. With ``na`` (before the
    missing-value check) every such column becomes float, NA as NaN."""
    cast = {}
    for c in columns:
        dtype = data[c].dtype
        if not pd.api.types.is_extension_array_dtype(dtype) or isinstance(
                dtype, pd.CategoricalDtype):
            continue
        col = data[c]
        if na or col.isna().any():
            if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
                cast[c] = col.to_numpy(dtype=float, na_value=np.nan)
        elif pd.api.types.is_bool_dtype(dtype):
            cast[c] = col.to_numpy(dtype=bool)
        elif pd.api.types.is_integer_dtype(dtype):
            cast[c] = col.to_numpy(dtype=np.int64)
        elif pd.api.types.is_float_dtype(dtype):
            cast[c] = col.to_numpy(dtype=float)
    return data.assign(**cast) if cast else data


def formula_hint(exc, formula: str = "", columns=()) -> str:
    """Advice for a formula patsy could not evaluate: a column whose name is not a
    Python identifier (written bare in ``formula``), or a name that is neither a column
    nor defined by the caller."""
    text = str(exc)
    odd = [str(c) for c in columns if not str(c).isidentifier() and str(c) in formula
           and f'Q("{c}")' not in formula and f"Q('{c}')" not in formula]
    if odd:
        return (f"; a column whose name is not a Python identifier is written Q(\"name\"): "
                f"{', '.join(f'Q({c!r})' for c in odd[:3])}")
    if isinstance(exc, SyntaxError) or "SyntaxError" in text or "invalid syntax" in text:
        return ("; a column whose name is not a Python identifier (spaces, dashes, a "
                "leading digit) is written Q(\"name\")")
    if "NameError" in text:
        return ("; a name must be a column of the data or defined where the model is "
                "built (or passed with eval_env=); see mlglm.design.formula_env")
    if "is not callable" in text:
        return ("; a column with the name of a function shadows it (columns come first): "
                "rename the column or write np.log etc.")
    return ""
