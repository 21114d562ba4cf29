"""Random-effects terms from the data: bar terms, ``vc_formula`` entries, grouping factors.

This is the only place that turns a user's random-effects specification into
the core's :class:`~mlglm.core.spec.terms.ReTerms`:

* lme4 bar terms (:class:`~mlglm.design.formula.RandomTerm`): the effects formula is
  evaluated with patsy (``"1"``, ``"~x"``, ``"~0 + x"``), the grouping factor is
  one column or the combination of several (``a:b``; ``a/b`` arrives already
  expanded into ``a`` and ``a:b``);
* statsmodels' ``vc_formula`` (variance components within ``groups``): each
  entry's columns are independent random coefficients with one common
  variance. When every row has at most one non-zero column (indicators such
  as ``"0 + C(class)"``: the usual nested or, with a constant ``groups``,
  crossed factor) the entry is a random intercept (or slope) for the factor
  (group, column); otherwise it is a *tied* block of effects on ``groups``
  (``"0 + v1 + v2"``). Both are exactly statsmodels' model.

Terms whose grouping factors make the same partition of the rows are merged
into one term (one factor, several covariance blocks), so different terms are
always different factors. Level labels are kept for reporting and for
predictions on new data (:func:`level_codes`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..core.spec.covpattern import CovBlock, CovPattern
from ..core.spec.terms import ReTerm, ReTerms
from .data_checks import MixedGLMInputError

__all__ = ["TermSpec", "factor_codes", "level_codes", "bar_term_specs", "vc_term_specs",
           "build_terms", "blocks_for", "quote_keywords"]


@dataclass
class TermSpec:
    """One random-effects term before merging: factor, effects, covariance blocks."""

    name: str                 # factor name ("school", "school:class", a vc key)
    codes: np.ndarray         # (n,) level codes
    levels: pd.Index          # labels of the levels (a MultiIndex for interactions)
    Z: np.ndarray             # (n, q)
    column_names: list
    blocks: tuple             # CovBlock per run of columns
    factors: tuple = ()       # the data columns that define the factor
    source: str = "bar"       # "bar", "groups" (statsmodels re_formula) or "vc"
    formula: str | None = None    # effects formula rhs ("1", "x", "0 + x") or the vc formula
    design_info: object = None    # patsy DesignInfo of that formula on the fit's data
    indicator: bool = False       # a vc entry with one non-zero column per row
    vc_key: str | None = None     # the vc_formula key of a vc entry (statsmodels' vcomp name)

    # ------------------------------------------------------------ new data
    def _matrix(self, data, model):
        if self.formula is None or self.formula.strip().lstrip("~").strip() == "1":
            return np.ones((data.shape[0], 1))
        import patsy
        if self.design_info is None:
            frame = getattr(model.data, "frame", None)
            self.design_info = patsy.dmatrix(self.formula.strip().lstrip("~"), frame,
                                             return_type="dataframe").design_info
        return np.asarray(patsy.build_design_matrices([self.design_info], data)[0], float)

    def effects_for(self, data: pd.DataFrame, model) -> np.ndarray:
        """This term's Z for new data, with the fit's coding of every variable."""
        M = self._matrix(data, model)
        if self.indicator:
            nz = M != 0
            col = np.where(nz.any(axis=1), np.argmax(nz, axis=1), 0)
            return M[np.arange(M.shape[0]), col][:, None]
        return M

    def codes_for(self, data: pd.DataFrame, model) -> np.ndarray:
        """Level codes of new data's rows (-1 for levels the fit has not seen)."""
        if self.indicator:
            M = self._matrix(data, model)
            nz = M != 0
            col = np.where(nz.any(axis=1), np.argmax(nz, axis=1), 0)
            names = np.asarray(self.column_names_all, dtype=object)[col]
            if not isinstance(self.levels, pd.MultiIndex):
                return level_codes(self.levels, names)
            self._need(data, self.factors[:1])
            return level_codes(self.levels, [data[self.factors[0]].to_numpy(), names])
        self._need(data, self.factors)
        if len(self.factors) == 1:
            return level_codes(self.levels, data[self.factors[0]].to_numpy())
        return level_codes(self.levels, [data[f].to_numpy() for f in self.factors])

    def _need(self, data, cols):
        missing = [f for f in cols if f not in data.columns]
        if missing:
            raise MixedGLMInputError(
                f"predictions with the random effects of {self.name} need the column(s) "
                f"{', '.join(map(repr, missing))} in the new data; or pass conditional=False")

    def unseen_labels(self, data: pd.DataFrame, codes) -> list:
        """The distinct labels of rows coded -1."""
        bad = codes < 0
        if self.indicator or len(self.factors) == 1:
            col = self.factors[0]
            vals = data[col].to_numpy()[bad] if col in data.columns else np.arange(bad.sum())
            return list(pd.unique(vals))
        vals = zip(*[data[f].to_numpy()[bad] for f in self.factors])
        return list(dict.fromkeys(":".join(map(str, v)) for v in vals))


def blocks_for(q: int, diagonal: bool) -> tuple:
    """Covariance blocks of q effects: one unstructured block, or q of size 1."""
    if diagonal:
        return tuple(CovBlock("unstructured", 1) for _ in range(q))
    return (CovBlock("unstructured", q),)


def factor_codes(data: pd.DataFrame, factors) -> tuple[np.ndarray, pd.Index]:
    """Level codes (sorted levels, as MixedLM sorts groups) of one column or of the
    combinations of several (an interaction a:b)."""
    factors = list(factors)
    missing = [f for f in factors if f not in data.columns]
    if missing:
        raise MixedGLMInputError(
            f"grouping factor {', '.join(map(repr, missing))} is not a column of data; "
            f"columns are {', '.join(map(str, data.columns[:20]))}")
    if len(factors) == 1:
        codes, levels = pd.factorize(data[factors[0]].to_numpy(), sort=True)
        levels = pd.Index(levels, name=factors[0])
    else:
        # combine the columns' own (sorted) codes into one integer per row: sorting those
        # sorts the combinations lexicographically, as a MultiIndex would, far faster
        parts = [pd.factorize(data[f].to_numpy(), sort=True) for f in factors]
        if any(np.any(c < 0) for c, _ in parts):
            codes = np.full(len(data), -1)
        else:
            key = np.zeros(len(data), dtype=np.int64)
            for c, lev in parts:
                key = key * len(lev) + c
            codes, uniq = pd.factorize(key, sort=True)
            arrays, rest = [], np.asarray(uniq, dtype=np.int64)
            for c, lev in reversed(parts):
                arrays.append(np.asarray(lev, dtype=object)[rest % len(lev)])
                rest = rest // len(lev)
            levels = pd.MultiIndex.from_arrays(arrays[::-1], names=factors)
    if np.any(codes < 0):
        raise MixedGLMInputError(f"grouping factor {':'.join(factors)} has missing values; "
                                 "drop those rows or pass missing='drop'")
    return np.asarray(codes, dtype=np.intp), levels


def level_codes(levels: pd.Index, values) -> np.ndarray:
    """Codes of ``values`` among ``levels`` (-1 where unseen), matching labels by value
    across dtypes (int 3 == "3" == 3.0): exact first, then as strings."""
    if isinstance(levels, pd.MultiIndex):
        values = pd.MultiIndex.from_arrays([np.asarray(v) for v in values])
        codes = levels.get_indexer(values)
        if np.any(codes < 0):
            as_str = pd.MultiIndex.from_arrays(
                [pd.Index(levels.get_level_values(i)).astype(str) for i in range(levels.nlevels)])
            vs = pd.MultiIndex.from_arrays(
                [pd.Index(values.get_level_values(i)).astype(str) for i in range(values.nlevels)])
            codes = np.where(codes < 0, as_str.get_indexer(vs), codes)
        return np.asarray(codes, dtype=np.intp)
    values = pd.Index(np.asarray(values))
    codes = pd.Index(levels).get_indexer(values)
    if np.any(codes < 0):
        codes = np.where(codes < 0, pd.Index(_canon(levels)).get_indexer(_canon(values)), codes)
    return np.asarray(codes, dtype=np.intp)


def quote_keywords(formula: str, columns) -> str:
    """Write the columns patsy cannot read as bare names as ``Q("name")``: columns named
    like Python keywords (``class``, ``in``, ``lambda``; patsy evaluates formula terms
    as Python, where a bare keyword is a syntax error, so statsmodels' own
    ``{"class": "0 + C(class)"}`` fails) and R-style names with dots (``x.1``,
    ``age.c``: Python would read an attribute). A dotted name is quoted only when it
    is exactly a column and not called (``np.log(x)`` stays as written)."""
    import keyword
    cols = {str(c) for c in columns}

    def repl(m):
        name = m.group(0)
        return f'Q("{name}")' if keyword.iskeyword(name) and name in cols else name

    def repl_dotted(m):
        name = m.group(0)
        return f'Q("{name}")' if name in cols else name
    formula = re.sub(r"(?<![\w.\"'])[A-Za-z_][A-Za-z0-9_]*(?![\w\"'(])", repl, formula)
    if any("." in c for c in cols):
        formula = re.sub(r"(?<![\w.\"'])[^\W\d]\w*(?:\.\w+)+(?![\w.\"'(])", repl_dotted,
                         formula)
    return formula


def _canon(index) -> list:
    """Labels as strings, with integral floats written as integers (3.0 -> "3")."""
    out = []
    for v in index:
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            v = int(v)
        out.append(str(v))
    return out


def _effects_matrix(re_formula: str, data: pd.DataFrame, eval_env):
    """(Z, column names) of an effects formula ``"1"``, ``"~x"``, ``"~0 + x"``."""
    rhs = quote_keywords(re_formula.strip().lstrip("~").strip(), data.columns)
    if rhs == "1":
        return np.ones((data.shape[0], 1)), ["Intercept"], None
    import patsy
    try:
        Z = patsy.dmatrix(rhs, data, eval_env=eval_env, return_type="dataframe")
    except Exception as exc:  # patsy errors name the formula
        raise MixedGLMInputError(f"could not build the random effects {re_formula!r}: {exc}") \
            from exc
    return Z.to_numpy(dtype=float), [str(c) for c in Z.columns], Z.design_info


def bar_term_specs(random_terms, data: pd.DataFrame, eval_env=0) -> list[TermSpec]:
    """TermSpecs of lme4 bar terms (already expanded, see :mod:`mlglm.design.formula`)."""
    out = []
    for rt in random_terms:
        codes, levels = factor_codes(data, rt.factors)
        Z, names, info = _effects_matrix(rt.re_formula, data, eval_env)
        out.append(TermSpec(rt.group, codes, levels, Z, names, blocks_for(Z.shape[1], rt.diagonal),
                            tuple(rt.factors), "bar", rt.re_formula, info))
    return out


def vc_term_specs(vc_formula: dict, group_codes, group_labels, group_name, data,
                  eval_env=0) -> list[TermSpec]:
    """TermSpecs of statsmodels' variance components (see the module docstring).

    Entries are taken in sorted key order, as statsmodels does.
    """
    import patsy
    out = []
    gl = pd.Index(group_labels)
    for key in sorted(vc_formula):
        text = vc_formula[key]
        rhs = quote_keywords(text.strip().lstrip("~"), data.columns)
        try:
            V = patsy.dmatrix(rhs, data, eval_env=eval_env, return_type="dataframe")
        except Exception as exc:
            raise MixedGLMInputError(f"could not build vc_formula[{key!r}] = {text!r}: {exc}") \
                from exc
        names = [str(c) for c in V.columns]
        info = V.design_info
        V = V.to_numpy(dtype=float)
        nz = V != 0
        if np.all(nz.sum(axis=1) <= 1):
            col = np.where(nz.any(axis=1), np.argmax(nz, axis=1), 0)
            key_codes = np.asarray(group_codes, dtype=np.int64) * V.shape[1] + col
            codes, uniq = pd.factorize(key_codes, sort=True)
            if len(gl) == 1:
                levels = pd.Index([names[c] for c in uniq % V.shape[1]], name=key)
            else:
                levels = pd.MultiIndex.from_arrays(
                    [gl[uniq // V.shape[1]], [names[c] for c in uniq % V.shape[1]]],
                    names=[group_name, key])
            z = V[np.arange(V.shape[0]), col][:, None]
            spec = TermSpec(key, np.asarray(codes, np.intp), levels, z, ["Intercept"]
                            if np.all(z[nz.any(axis=1)] == 1.0) else [key],
                            (CovBlock("unstructured", 1),), (group_name, key), "vc", rhs, info,
                            indicator=True, vc_key=key)
            spec.column_names_all = names
            out.append(spec)
        else:
            out.append(TermSpec(group_name, np.asarray(group_codes, np.intp),
                                pd.Index(group_labels, name=group_name), V,
                                [f"{key}[{c}]" for c in names], (CovBlock("tied", V.shape[1]),),
                                (group_name,), "vc", rhs, info, vc_key=key))
    return out


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    return (pd.factorize(a)[0] == pd.factorize(b)[0]).all()


def build_terms(specs: list[TermSpec], gaussian: bool, n: int,
                checks: bool = True) -> tuple[ReTerms, list]:
    """Merge specs on the same partition into one term each; check identifiability.

    Returns the ReTerms and, per term, its (levels, factors, specs merged).
    ``checks=False`` (one shard of a sharded fit) skips the identifiability
    checks, which concern the whole data and are made on it.
    """
    merged: list[list[TermSpec]] = []
    for s in specs:
        for group in merged:
            if _same_partition(group[0].codes, s.codes):
                group.append(s)
                break
        else:
            merged.append([s])
    terms, info = [], []
    for group in merged:
        head = group[0]
        Z = np.column_stack([s.Z for s in group])
        names = [n_ for s in group for n_ in s.column_names]
        if len(group) > 1:
            names = _unique_names(group)
        blocks = tuple(b for s in group for b in s.blocks)
        J = len(head.levels)
        if J < 2 and checks:
            raise MixedGLMInputError(
                f"the grouping factor {head.name} has a single level: its random effects "
                "cannot be told apart from the fixed intercept; drop the term")
        rank = np.linalg.matrix_rank(Z) if Z.shape[1] > 1 and checks else Z.shape[1]
        if rank < Z.shape[1]:
            raise MixedGLMInputError(
                f"the random effects on {head.name} ({', '.join(names)}) are linearly dependent"
                + (" (two terms give the same grouping: "
                   f"{' and '.join(s.name for s in group)})" if len(group) > 1 else "")
                + "; they cannot be identified: drop one")
        if gaussian and J * Z.shape[1] >= n and checks:
            raise MixedGLMInputError(
                f"the grouping factor {head.name} has {J} levels x {Z.shape[1]} effects for "
                f"{n} observations: its random effects and the residual variance are "
                "unidentifiable (as lme4 says); drop the term or use a GLMM")
        terms.append(ReTerm(head.name, head.codes, J, Z, CovPattern(blocks), tuple(names),
                            head.levels))
        info.append(group)
    return ReTerms(tuple(terms)), info


def _unique_names(group) -> list[str]:
    seen, out = set(), []
    for s in group:
        for nm in s.column_names:
            label = nm if nm not in seen else f"{s.name}.{nm}"
            seen.add(label)
            out.append(label)
    return out
