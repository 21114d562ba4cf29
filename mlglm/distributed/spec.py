"""The coding of a sharded fit, learned once from the whole data: :class:`DesignSpec`.

A design matrix built from one partition must have the columns, in the same
order and with the same coding, that the in-memory fit would build from all
rows. patsy decides both from the data it sees: the levels of a categorical
variable are those present. So before any matrix is built the levels of every
variable patsy treats as categorical (string, bool and categorical columns,
and numeric columns inside ``C(...)``) are found over the whole data -- one
distributed ``unique`` per column, never the rows on the driver -- and each
partition's columns are cast to ``pd.Categorical`` with exactly those
categories (:meth:`DesignSpec.pin`), which patsy then uses as the levels.
Everything else about the model (response handling, offsets, trials, missing
values, random-effects terms) is the ordinary :meth:`MixedGLM.from_formula`
applied to the pinned partition with the whole-data checks switched off
(:meth:`DesignSpec.local_model`): a shard's design is, row for row, the
in-memory design.

The same pass chooses the *top-level factor* the rows are sharded by: the
grouping factor every other factor nests in (checked here, on distinct
level combinations; crossed factors are refused with the reason, since they
couple the shards). Stateful transforms (``center``, ``standardize``,
``scale``) learn from the rows they see and are refused: computed per
partition they would differ between shards. Formulas are evaluated on the
workers with numpy as their only namespace (``np.log(x)``); a function of the
caller's would have to be shipped to every worker, and is not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data_checks import MixedGLMInputError

__all__ = ["DesignSpec", "learn_spec", "TEMPLATE_ROWS"]

#: rows of the first partition kept on the driver as the template of the model
#: object (names, formula coding; see :mod:`mlglm.distributed.standin`)
TEMPLATE_ROWS = 200

_STATEFUL = ("center(", "standardize(", "scale(")


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
    categories : column -> categories pinned on every partition.
    top : the columns of the top-level grouping factor (the shuffle key).
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

    def pin(self, part: pd.DataFrame) -> pd.DataFrame:
        """The model's columns of ``part`` with the whole data's categories."""
        part = part[self.columns]
        if not self.categories:
            return part
        cast = {c: pd.Categorical(part[c], categories=cats)
                for c, cats in self.categories.items()}
        return part.assign(**cast)

    def local_model(self, part: pd.DataFrame, cls=None):
        """``cls.from_formula`` on the pinned rows of ``part``, whole-data checks off."""
        import patsy

        from ..model import MixedGLM
        cls = MixedGLM if cls is None else cls
        kw = dict(self.kwargs)
        if self.random_terms:
            kw["_random_terms"] = list(self.random_terms)
        env = patsy.EvalEnvironment([{"np": np, "numpy": np}])
        return cls.from_formula(self.formula, self.pin(part), re_formula=self.re_formula,
                                vc_formula=self.vc_formula, missing=self.missing,
                                eval_env=env, _global_checks=False, **kw)


def _tokens(text: str) -> set:
    return set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", text or ""))


def _in_C(text: str) -> set:
    """Names used as the first argument of ``C(...)``."""
    return set(re.findall(r"\bC\(\s*([A-Za-z_.][A-Za-z0-9_.]*)", text or ""))


def _is_categorical_dtype(dtype) -> bool:
    return (isinstance(dtype, pd.CategoricalDtype) or dtype == object or dtype == bool
            or pd.api.types.is_string_dtype(dtype))


def learn_spec(formula, ddf, re_formula=None, vc_formula=None, missing="none", kwargs=None,
               client=None):
    """(DesignSpec, facts) from one distributed pass over ``ddf``.

    ``facts`` holds what the driver needs about the whole data: the labels of
    the top-level groups and their row counts (``top_sizes``, a Series indexed
    by the labels) and the template rows.
    """
    import dask

    run = {} if client is None else {"scheduler": client}
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
    lazy = {}
    for c in cat_cols:
        col = ddf[c]
        if isinstance(dtypes[c], pd.CategoricalDtype) and getattr(col.cat, "known", False):
            continue
        lazy[("levels", c)] = col.dropna().unique()
    if len(cands) > 1:
        for cand in cands:
            lazy[("count", cand)] = ddf[list(cand)].drop_duplicates().shape[0]
        for a in cands:
            for b in cands:
                if a != b:
                    u = tuple(dict.fromkeys(a + b))
                    lazy[("count", u)] = ddf[list(u)].drop_duplicates().shape[0]
    values = dict(zip(lazy, dask.compute(*lazy.values(), **run))) if lazy else {}
    categories = {}
    for c in cat_cols:
        if ("levels", c) in values:
            lv = pd.unique(np.asarray(values[("levels", c)]))
            categories[c] = list(sorted(lv.tolist()))
        else:
            categories[c] = list(dtypes[c].categories)
    top = _choose_top(cands, values)
    spec = DesignSpec(formula, re_formula, vc_formula, kwargs, missing, columns, categories,
                      top, random_terms)
    sizes, template = dask.compute(ddf.groupby(list(top)).size(),
                                   ddf[columns].partitions[0].head(TEMPLATE_ROWS, compute=False),
                                   **run)
    sizes = sizes.sort_index()
    if template.shape[0] == 0:
        raise MixedGLMInputError("the first partition of the data is empty; repartition it")
    return spec, {"top_sizes": sizes, "template": template}


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
