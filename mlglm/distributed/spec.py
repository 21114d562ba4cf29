"""The coding of a sharded fit, learned once from the whole data: :class:`DesignSpec`.

A design matrix built from one partition must have the columns, in the same
order and with the same coding, that the in-memory fit would build from all
rows. patsy decides both from the data it sees: the levels of a categorical
variable are those present. So before any matrix is built the levels of every
variable patsy treats as categorical (string, bool and categorical columns,
and numeric columns inside ``C(...)``) are learned from the whole data -- one
small summary per partition (:func:`_partition_facts`), never the rows on the
driver -- exactly as the in-memory fit of the collected frame would code them:

* a pandas categorical column keeps its categories' order (the union of the
  partitions' categories in order of first appearance, which is what
  ``ddf.compute()`` holds), less the categories no row uses (dropped at fit
  time in memory too, :func:`mlglm.design.data_checks.drop_unused_levels`);
* any other column (strings, objects, numbers in ``C(x)``) gets its levels
  sorted, as patsy sorts them; bool columns have the levels (False, True).

The frame's declared dtype is not trusted for the levels: a declared
categorical dtype that lacks a level present in the partitions (a ``meta``
that disagrees with the data) would otherwise turn those rows into missing
values. Each partition's columns are then cast to ``pd.Categorical`` with
exactly the learned levels (:meth:`DesignSpec.pin`), which patsy uses as the
levels; a value outside them is an error, never a silent NaN.

The same pass counts the rows with missing values in the model's columns
(the in-memory check, over all rows: refused with ``missing="none"``, counted
once for the warning with ``missing="drop"``) and chooses the *top-level
factor* the rows are sharded by: the grouping factor every other factor nests
in (checked here, on distinct level combinations; crossed factors are refused
with the reason, since they couple the shards). Everything else about the
model (response handling, offsets, trials, random-effects terms) is the
ordinary :meth:`MixedGLM.from_formula` applied to the pinned partition with
the whole-data checks switched off (:meth:`DesignSpec.local_model`): a
shard's design is, row for row, the in-memory design.

Names in formulas. The workers evaluate the formulas (patsy) with, in this
order: the partition's columns; the names of the *calling namespace* that the
formulas mention (statsmodels' ``eval_env``: captured on the driver by
:func:`formula_namespace` and shipped to the workers with the spec, pickled by
cloudpickle); numpy as ``np`` and ``numpy``; patsy's builtins (``C``, ``I``,
``Q``, contrasts); Python's builtins. Stateful transforms (``center``,
``standardize``, ``scale``) learn from the rows they see and are refused:
computed per partition they would differ between shards. The driver builds
its template model with exactly the workers' namespace, so a name that is
not available on the workers fails there, when the model is built.
"""
from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..design.data_checks import DataWarning, MixedGLMInputError, finite_mask
from ..api.models import MixedGLM
from .cluster import compute

__all__ = ["DesignSpec", "learn_spec", "formula_namespace", "TEMPLATE_ROWS"]

#: rows of the first partition kept on the driver as the template of the model
#: object (names, formula coding; see :mod:`mlglm.distributed.standin`)
TEMPLATE_ROWS = 200

_STATEFUL = ("center(", "standardize(", "scale(")

#: names every formula can use on the workers, after the data and the caller's names
_FALLBACK_NAMES = {"np": np, "numpy": np}


@dataclass
class DesignSpec:
    """What every shard needs to build its design exactly as the in-memory fit would.

    Attributes
    ----------
    formula, re_formula, vc_formula : the model's formulas (fixed part in patsy syntax).
    kwargs : the remaining :meth:`MixedGLM.from_formula` arguments (groups and
        offset/exposure/n_trials/freq_weights/var_weights as column names, family,
        cov_struct, lme4 terms).
    missing : ``"none"`` or ``"drop"``, applied per partition (rows are independent).
    columns : the data columns the model reads (each partition is cut to them).
    categories : column -> the levels learned from the whole data, pinned on every
        partition (module docstring).
    top : the columns of the top-level grouping factor (the shuffle key).
    namespace : the caller's names the formulas use (:func:`formula_namespace`).
    shuffle_method : Dask's shuffle for the rows (None: its default, the P2P shuffle,
        which goes through Arrow tables and refuses an object column whose values mix
        types, e.g. group labels 1, 2, "s3"; such data take Dask's task-based shuffle).
    """

    formula: str
    re_formula: str | None
    vc_formula: dict | None
    kwargs: dict
    missing: str
    columns: list
    categories: dict
    top: tuple
    random_terms: list = field(default_factory=list)
    namespace: dict = field(default_factory=dict)
    shuffle_method: str | None = None

    def pin(self, part: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``part`` with the whole data's levels.

        A value outside the learned levels is an error naming it (the data changed
        after the model was built): casting it would turn the row into a missing value,
        and the row would be dropped or refused as NaN. The one exception is a row
        that ``missing="drop"`` drops anyway (a missing value in another column): its
        levels were not learned, as the in-memory fit drops such rows first.
        """
        part = part[self.columns]
        if not self.categories:
            return part
        cast = {}
        complete = None
        for c, cats in self.categories.items():
            col = part[c]
            if isinstance(col.dtype, pd.CategoricalDtype) and list(col.cat.categories) == cats:
                continue
            outside = col.notna() & ~col.isin(cats)
            if outside.any():
                if complete is None:
                    complete = _complete_rows(part, self.columns, self.missing)
                kept = outside & complete
                if kept.any():
                    bad = pd.unique(col[kept].astype(object))[:5]
                    raise MixedGLMInputError(
                        f"column {c!r} holds the level(s) {', '.join(map(repr, bad))}, which "
                        f"the whole data did not have when the model was built (levels "
                        f"{_show(cats)}); the data changed since: build the model again")
                col = col.where(~outside)           # rows dropped for missing values
            if isinstance(col.dtype, pd.CategoricalDtype):
                cast[c] = col.cat.set_categories(cats)
            else:
                cast[c] = pd.Categorical(col, categories=cats)
        return part.assign(**cast) if cast else part

    def for_prediction(self, rows: pd.DataFrame) -> pd.DataFrame:
        """``rows`` with each pinned categorical column recoded to the fit's levels.

        patsy refuses a pandas categorical whose categories differ from the fit's
        levels (another order, or levels no row of the fit used) even when every
        value is one of them; such a column is recoded to exactly the fit's levels.
        A column holding a level the fit never saw is passed on as plain values, so
        that patsy names the unknown value, as in memory.
        """
        if not isinstance(rows, pd.DataFrame):
            return rows
        cast = {}
        for c, cats in self.categories.items():
            if c not in rows.columns or not isinstance(rows[c].dtype, pd.CategoricalDtype):
                continue
            col = rows[c]
            if list(col.cat.categories) == cats:
                continue
            if (col.isna() | col.isin(cats)).all():
                cast[c] = col.cat.set_categories(cats)
            else:
                cast[c] = col.astype(object)
        return rows.assign(**cast) if cast else rows

    def eval_env(self) -> dict:
        """The names formulas are evaluated with on the workers, after the data's columns
        (module docstring): the caller's names, then numpy."""
        return {**_FALLBACK_NAMES, **self.namespace}

    def local_model(self, part: pd.DataFrame, cls=None):
        """``cls.from_formula`` on the pinned rows of ``part``, whole-data checks off.

        Its warning about rows dropped for missing values is silenced: the driver
        warns once, with the whole data's count (:func:`learn_spec`)."""
        cls = MixedGLM if cls is None else cls
        kw = dict(self.kwargs)
        if self.random_terms:
            kw["_random_terms"] = list(self.random_terms)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="dropped .* rows with NaN",
                                    category=DataWarning)
            return cls.from_formula(self.formula, self.pin(part), re_formula=self.re_formula,
                                    vc_formula=self.vc_formula, missing=self.missing,
                                    eval_env=self.eval_env(), _global_checks=False, **kw)


def _complete_rows(part: pd.DataFrame, columns, missing: str) -> np.ndarray:
    """Rows ``missing="drop"`` keeps (no missing value in ``columns``: the in-memory
    check); every row with ``missing="none"``."""
    ok = np.ones(part.shape[0], dtype=bool)
    if missing != "drop":
        return ok
    for c in columns:
        m = finite_mask({c: part[c].to_numpy()})
        if m is not None:
            ok &= m
    return ok


def _show(levels, k: int = 6) -> str:
    levels = list(levels)
    return "[" + ", ".join(map(repr, levels[:k])) + (", ..." if len(levels) > k else "") + "]"


def _tokens(text: str) -> set:
    return set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", text or ""))


def _in_C(text: str) -> set:
    """Names used as the first argument of ``C(...)``."""
    return set(re.findall(r"\bC\(\s*([A-Za-z_.][A-Za-z0-9_.]*)", text or ""))


def _is_categorical_dtype(dtype) -> bool:
    return (isinstance(dtype, pd.CategoricalDtype) or dtype == object or dtype == bool
            or pd.api.types.is_string_dtype(dtype))


# ------------------------------------------------------------------ formula names
def _caller_frame(depth: int = 0):
    """The first frame outside mlglm (the user's call), ``depth`` frames further up."""
    frame = sys._getframe(1)
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == \
            "mlglm":
        frame = frame.f_back
    for _ in range(depth):
        if frame is None:
            break
        frame = frame.f_back
    return frame


def _resolve_env(eval_env):
    """``eval_env`` as a patsy EvalEnvironment: None (the caller's namespace), an int
    (statsmodels' meaning: 0 the caller, k frames above it, -1 none), a mapping of
    names, or an EvalEnvironment."""
    import patsy
    if isinstance(eval_env, patsy.EvalEnvironment):
        return eval_env
    if isinstance(eval_env, dict):
        return patsy.EvalEnvironment([dict(eval_env)])
    if eval_env is None:
        eval_env = 0
    if isinstance(eval_env, (int, np.integer)) and not isinstance(eval_env, bool):
        if eval_env < 0:
            return patsy.EvalEnvironment([])
        frame = _caller_frame(int(eval_env))
        if frame is None:
            return patsy.EvalEnvironment([])
        return patsy.EvalEnvironment([frame.f_locals, frame.f_globals])
    raise MixedGLMInputError("eval_env must be None (the calling namespace), an integer "
                             "depth, a dict of names or a patsy.EvalEnvironment")


def formula_namespace(eval_env, texts, columns) -> tuple[dict, dict]:
    """(names, refused): the names of ``eval_env`` that the formula ``texts`` mention and
    the workers can receive, and {name: why} for those that cannot be pickled.

    A name is a candidate when it appears in a formula (as ``f`` in ``f(x)`` or
    ``np`` in ``np.log(x)``) and is not a column of the data (patsy looks the data
    up first). Each value is pickled with cloudpickle on the driver, as Dask will
    ship it: functions and values defined in a script or notebook travel by value,
    functions of an importable module by reference (the module must be importable
    on the workers). A name that does not pickle is left out; if the formula needs
    it, building the template model fails on the driver and says why.
    """
    import cloudpickle
    env = _resolve_env(eval_env)
    cols = {str(c) for c in columns}
    wanted = sorted({t.split(".")[0] for t in _tokens(" ".join(t or "" for t in texts))}
                    - cols)
    names, refused = {}, {}
    lookup = env.namespace
    for name in wanted:
        try:
            value = lookup[name]
        except KeyError:
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as exc:         # noqa: BLE001 - any pickling failure is reported
            refused[name] = f"{type(exc).__name__}: {exc}"
            continue
        names[name] = value
    return names, refused


# ------------------------------------------------------------------ one pass over the data
def _partition_facts(part: pd.DataFrame, cat_cols, check_cols) -> dict:
    """What the driver learns from one partition (a Dask task): per categorical-like
    column its declared categories (None if not categorical) and the values present;
    per model column the rows with missing values (``finite_mask``, the in-memory
    check); the rows with any missing value; per column the kind of its values
    (``pandas.api.types.infer_dtype``: "integer", "string", "mixed-integer", ...; from
    the dtype alone except for object columns).

    The values present are those of the rows without missing values: with
    ``missing="drop"`` the in-memory fit drops those rows before it drops the unused
    categories (with ``missing="none"`` such rows are refused anyway)."""
    ok = np.ones(part.shape[0], dtype=bool)
    bad = {}
    for c in check_cols:
        m = finite_mask({c: part[c].to_numpy()})
        if m is not None and not m.all():
            bad[c] = int((~m).sum())
            ok &= m
    kept = part if ok.all() else part.loc[ok]
    levels = {}
    for c in cat_cols:
        col = kept[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = np.asarray(col.cat.codes)
            cats = col.cat.categories
            levels[c] = (list(cats), list(cats[np.unique(codes[codes >= 0])]))
        else:
            levels[c] = (None, list(pd.unique(col.dropna().to_numpy())))
    kinds = {c: pd.api.types.infer_dtype(part[c], skipna=True) for c in check_cols}
    return {"levels": levels, "bad": bad, "bad_rows": int((~ok).sum()), "kinds": kinds}


def _facts_series(part: pd.DataFrame, cat_cols, check_cols) -> pd.Series:
    """:func:`_partition_facts` as a one-element Series (a Dask frame's partition)."""
    return pd.Series([_partition_facts(part, cat_cols, check_cols)], dtype=object)


def _sorted_levels(values) -> list:
    """Distinct values sorted as the in-memory fit sorts a column's levels (pandas'
    sort, which puts numbers before strings, as ``_strings_as_categories``; patsy's
    order for what pandas will not sort)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    try:
        return list(pd.factorize(arr, sort=True)[1])
    except TypeError:
        from patsy.util import SortAnythingKey
        return sorted(set(values), key=SortAnythingKey)


def _learn_levels(c, parts, dtype, known):
    """(levels, unused, undeclared) of column ``c`` from its partitions' facts.

    levels : what the in-memory fit of the collected frame codes (module docstring).
    unused : declared categories no row has (dropped, as in memory).
    undeclared : present values missing from the frame's declared (known) categories.
    """
    present = []
    seen = set()
    for _, vals in parts:
        for v in vals:
            if v not in seen:
                seen.add(v)
                present.append(v)
    declared = None
    if all(d is not None for d, _ in parts) and parts:
        declared, dseen = [], set()
        for d, _ in parts:
            for v in d:
                if v not in dseen:
                    dseen.add(v)
                    declared.append(v)
    if pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        levels = [False, True]             # patsy: a bool column has both levels
        unused = []
    elif declared is not None:
        levels = [v for v in declared if v in seen]
        unused = [v for v in declared if v not in seen]
    else:
        levels = _sorted_levels(present)
        unused = []
    undeclared = []
    if known and isinstance(dtype, pd.CategoricalDtype):
        meta = set(dtype.categories)
        undeclared = [v for v in present if v not in meta]
    return levels, unused, undeclared


def learn_spec(formula, ddf, re_formula=None, vc_formula=None, missing="none", kwargs=None,
               client=None, namespace=None, timeout=None):
    """(DesignSpec, facts) from one distributed pass over ``ddf``.

    ``facts`` holds what the driver needs about the whole data: the labels of
    the top-level groups and their row counts (``top_sizes``, a Series indexed
    by the labels), the template rows, the rows with missing values
    (``n_missing``, by column ``missing_by_column``; refused here with
    ``missing="none"``), and per column the unused categories dropped
    (``dropped_levels``) and the levels present but not declared by the frame's
    dtype (``undeclared_levels``).
    """
    kwargs = dict(kwargs or {})
    random_terms = list(kwargs.pop("_random_terms", None) or [])
    for key in ("groups", "offset", "exposure", "n_trials", "freq_weights", "var_weights"):
        val = kwargs.get(key)
        if val is not None and not isinstance(val, str):
            raise MixedGLMInputError(
                f"with a Dask DataFrame, {key}= must name a column (arrays would have to be "
                "aligned with rows the driver never holds)")
        if isinstance(val, str) and val not in ddf.columns:
            raise MixedGLMInputError(f"{key}={val!r} is not a column of data")
    groups = kwargs.get("groups")
    if groups is None and not random_terms:
        raise MixedGLMInputError("groups= is required: the column name of the grouping factor")
    texts = [formula, re_formula or ""] + list((vc_formula or {}).values()) + \
        [t.re_formula for t in random_terms]
    patsy_text = " ".join(texts)
    if any(s in patsy_text for s in _STATEFUL):
        raise MixedGLMInputError(
            "stateful transforms (center, standardize, scale) learn from the rows they see, "
            "so each shard would code them differently; add the transformed column to the "
            "Dask DataFrame first (ddf.assign(x_c=ddf.x - ddf.x.mean()))")
    group_cols = ([groups] if isinstance(groups, str) else []) + \
        [f for t in random_terms for f in t.factors]
    value_cols = [kwargs[k] for k in ("offset", "exposure", "n_trials", "freq_weights",
                                      "var_weights") if isinstance(kwargs.get(k), str)]
    toks = _tokens(patsy_text)
    columns = [c for c in ddf.columns
               if str(c) in toks or c in group_cols or c in value_cols]
    for f in group_cols:
        if f not in ddf.columns:
            raise MixedGLMInputError(f"grouping factor {f!r} is not a column of data")
    dtypes = ddf.dtypes
    in_C = _in_C(patsy_text)
    cat_cols = [c for c in columns if str(c) in toks
                and (_is_categorical_dtype(dtypes[c]) or str(c) in in_C)]

    # candidates for the top-level factor: the groups column and every bar term's factor
    cands = list(dict.fromkeys(([(groups,)] if isinstance(groups, str) else [])
                               + [tuple(t.factors) for t in random_terms]))
    lazy = {"facts": ddf[columns].map_partitions(_facts_series, cat_cols, columns,
                                                 meta=pd.Series(dtype=object),
                                                 enforce_metadata=False)}
    def group_pass(top):
        return {"sizes": ddf.groupby(list(top)).size(),
                "template": ddf[columns].partitions[0].head(TEMPLATE_ROWS, compute=False)}
    if len(cands) == 1:         # the top-level factor is known: one pass over the data
        lazy.update(group_pass(cands[0]))
    else:
        for cand in cands:
            lazy[("count", cand)] = ddf[list(cand)].drop_duplicates().shape[0]
        for a in cands:
            for b in cands:
                if a != b:
                    u = tuple(dict.fromkeys(a + b))
                    lazy[("count", u)] = ddf[list(u)].drop_duplicates().shape[0]
    values = dict(zip(lazy, compute(client, list(lazy.values()), timeout,
                                    "reading the data (levels, missing values, groups)")))
    facts = list(values["facts"])
    n_missing = sum(f["bad_rows"] for f in facts)
    by_column = {}
    for f in facts:
        for c, k in f["bad"].items():
            by_column[c] = by_column.get(c, 0) + k
    if n_missing and missing != "drop":
        raise MixedGLMInputError(
            f"{n_missing} rows contain NaN or inf (in {', '.join(map(str, by_column))}); "
            "pass missing='drop' to drop them or fill them in first")
    categories, dropped_levels, undeclared = {}, {}, {}
    for c in cat_cols:
        known = isinstance(dtypes[c], pd.CategoricalDtype) and bool(
            getattr(ddf[c].cat, "known", False))
        levels, unused, extra = _learn_levels(c, [f["levels"][c] for f in facts], dtypes[c],
                                              known)
        categories[c] = levels
        if unused:
            dropped_levels[c] = unused
        if extra:
            undeclared[c] = extra
    top = _choose_top(cands, values)
    spec = DesignSpec(formula, re_formula, vc_formula, kwargs, missing, columns, categories,
                      top, random_terms, dict(namespace or {}),
                      "tasks" if _mixed_types(facts) else None)
    if "sizes" not in values:
        second = group_pass(top)
        values.update(zip(second, compute(client, list(second.values()), timeout,
                                          "reading the data (group sizes)")))
    sizes, template = values["sizes"], values["template"]
    sizes = sizes.loc[_sorted_index(sizes.index)]
    if template.shape[0] == 0:
        raise MixedGLMInputError("the first partition of the data is empty; repartition it")
    return spec, {"top_sizes": sizes, "template": template, "n_missing": n_missing,
                  "missing_by_column": by_column, "dropped_levels": dropped_levels,
                  "undeclared_levels": undeclared}


def _mixed_types(facts) -> list:
    """Columns whose values mix types within a partition (an object column of numbers
    and strings) or differ in kind across partitions (numbers in one, strings in
    another)."""
    kinds = {}
    for f in facts:
        for c, k in f.get("kinds", {}).items():
            if k != "empty":
                kinds.setdefault(c, set()).add(k)
    return [c for c, ks in kinds.items() if len(ks) > 1 or any(k.startswith("mixed")
                                                               for k in ks)]


def _sorted_index(index: pd.Index) -> pd.Index:
    """``index`` sorted as the in-memory fit sorts group labels (pandas' sort, numbers
    before strings when a column mixes them; ``mixedlm_setup._factorize_groups``)."""
    try:
        return index.sort_values()
    except TypeError:
        if isinstance(index, pd.MultiIndex):
            raise MixedGLMInputError(
                "the labels of a grouping factor mix types that do not sort together "
                "(e.g. numbers and strings); convert the column to one type "
                "(ddf[col].astype(str))") from None
        return pd.Index(_sorted_levels(list(index)), dtype=object)


def _choose_top(cands, counts) -> tuple:
    """The factor with the fewest levels, checked to contain every other factor."""
    if len(cands) == 1:
        return cands[0]
    n = {c: counts[("count", c)] for c in cands}
    top = min(cands, key=lambda c: (n[c], len(c)))
    for f in cands:
        if f == top:
            continue
        joint = counts[("count", tuple(dict.fromkeys(top + f)))]
        if joint != n[f]:
            raise MixedGLMInputError(
                f"the grouping factors {':'.join(top)} and {':'.join(f)} are crossed (some "
                f"level of {':'.join(f)} occurs in several levels of {':'.join(top)}): the "
                "likelihood does not split into independent pieces by the groups of any one "
                "factor, so the shards would be coupled through shared random effects. "
                "Sharded fits need one grouping factor or factors nested in one; fit crossed "
                "models in memory (df = ddf.compute())")
    return top
