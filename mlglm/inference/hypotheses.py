"""Linear hypotheses per model term: the contrasts of type I, II and III F tests.

``res.anova(type=...)`` tests, for every term of the fixed-effects formula, the
hypothesis L beta = 0 with L built here from patsy's term structure (which
columns of X belong to which term; which variables are numeric) as lmerTest 3.1
builds it (Kuznetsova, Brockhoff & Christensen 2017, J. Stat. Softw. 82(13),
section 4; the SAS definitions of Goodnight 1978, "Tests of hypotheses in
fixed-effects linear models", SAS technical report R-101):

* **type I** (sequential): with X'X = L D L' (the Doolittle decomposition, L unit
  lower triangular), the rows of L' belonging to a term's columns; each term
  adjusted for the terms before it, in the model's column order;
* **type II**: a term contained in no other term is tested by its own coefficients
  (the rows of I); a term contained in others by the rows of the type I contrasts
  with X's columns reordered as (other terms, this term, the terms containing it):
  adjusted for everything except the terms containing it;
* **type III**: from the over-parameterised design rdX (every term coded with an
  indicator for every level of its factors, times its numeric variables), the
  estimable functions M = X_t^+ rdX of the treatment-coded X_t; the functions of
  each term are replaced by their residuals after projection (in the coordinates
  of rdX) on those of the terms containing it, higher-order terms first, and
  read back on X_t's parameters (rdX's columns that X_t also has), then mapped
  to the model's own coding by X_t^+ X. For a factor crossed with a numeric
  variable this tests the numeric effect averaged over the factor's levels with
  equal weights (nitrogen over varieties in the Oats split plot), as SAS and
  lmerTest.

Term F1 is contained in F2 when F2 has every variable of F1 and more, and both have
the same numeric variables (lmerTest's ``containment``): x is contained in x:g
(g a factor), but not in x:z (z numeric).

Where this can differ from lmerTest: the order of the terms (patsy groups terms by
their numeric variables: ``y ~ a*x + b`` has columns a, b, x, a:x; R keeps the
formula's order within each degree), which only type I depends on; a categorical
variable that patsy codes by all its levels inside a term (an interaction whose
margin is absent, e.g. ``a + a:b`` codes b fully) counts here as one of the term's
variables, while R's ``factors`` attribute marks it 2 and lmerTest ignores it for
containment; lmerTest's Doolittle decomposition also zeroes entries below 1e-6,
which matters only for badly scaled columns. Models with at most one term or one
column use the type I contrasts for every type, as lmerTest does.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..design.data_checks import MixedGLMInputError

__all__ = ["term_hypotheses", "TermStructure", "term_structure"]

_ZAP = 1e-7          # relative size below which a contrast coefficient is 0 (R's zapsmall)


@dataclass(frozen=True)
class _Term:
    name: str
    factors: tuple          # patsy factors, in the term's order
    numeric: frozenset      # its numeric factors
    cols: slice             # its columns in the model's X

    @property
    def order(self) -> int:
        return len(self.factors)


@dataclass(frozen=True, eq=False)
class TermStructure:
    """The formula's terms (intercept excluded) and what the contrasts need."""

    terms: tuple
    intercept: bool
    X: np.ndarray
    design_info: object
    frame: object

    @property
    def names(self) -> list:
        return [t.name for t in self.terms]

    def containing(self, term: _Term) -> list:
        """The terms that contain ``term`` (module docstring)."""
        v1 = set(term.factors)
        out = []
        for other in self.terms:
            v2 = set(other.factors)
            if v1 < v2 and term.numeric == other.numeric:
                out.append(other)
        return out


def term_structure(model) -> TermStructure:
    """The patsy term structure of a formula-built model."""
    import patsy
    data = model.data
    di = getattr(data, "model_spec", None) or getattr(data, "design_info", None)
    if not isinstance(di, patsy.DesignInfo):
        raise MixedGLMInputError(
            "anova() needs the model's patsy design (a model built from a formula with "
            "patsy, e.g. mlglm.lmer(...) or MixedGLM.from_formula(...)); test linear "
            "hypotheses of an array-built model with res.f_test(L, ddf=...)")
    terms, intercept = [], False
    for term, cols in di.term_slices.items():
        if not term.factors:
            intercept = True
            continue
        numeric = frozenset(f for f in term.factors
                            if di.factor_infos[f].type == "numerical")
        terms.append(_Term(term.name(), tuple(term.factors), numeric, cols))
    return TermStructure(tuple(terms), intercept, np.asarray(model.exog, dtype=float), di,
                         getattr(data, "frame", None))


def _unit_upper(S):
    """L' of S = L D L' (L unit lower triangular): the Doolittle factor lmerTest uses,
    from the Cholesky factor R (S = R'R): L' = diag(R)^{-1} R."""
    R = np.linalg.cholesky(S).T
    return R / np.diag(R)[:, None]


def _zap(L):
    L = np.array(L, dtype=float)
    big = np.max(np.abs(L)) if L.size else 0.0
    L[np.abs(L) <= _ZAP * big] = 0.0
    return L


def _drop_zero_rows(L):
    return L[np.abs(L).sum(axis=1) > 1e-8]


def _col_index(ts: TermStructure, term: _Term):
    return np.arange(ts.X.shape[1])[term.cols]


def _type1(ts: TermStructure) -> dict:
    Lt = _unit_upper(ts.X.T @ ts.X)
    return {t.name: Lt[_col_index(ts, t)] for t in ts.terms}


def _type2(ts: TermStructure) -> dict:
    p = ts.X.shape[1]
    out = {}
    for t in ts.terms:
        cont = ts.containing(t)
        if not cont:
            out[t.name] = np.eye(p)[_col_index(ts, t)]
            continue
        mine = list(_col_index(ts, t))
        for c in cont:
            mine += list(_col_index(ts, c))
        others = [j for j in range(p) if j not in set(mine)]
        perm = np.array(others + mine)
        Xn = ts.X[:, perm]
        Lc = _unit_upper(Xn.T @ Xn)
        back = np.empty(p, dtype=int)
        back[perm] = np.arange(p)
        rows = [perm.tolist().index(j) for j in _col_index(ts, t)]
        out[t.name] = Lc[rows][:, back]
    return out


# ------------------------------------------------------------------ type III
def _factor_values(ts: TermStructure) -> dict:
    """Every factor evaluated on the fit's rows: categorical -> (n, K) indicators of
    all its levels (patsy's categories, in order), numerical -> its (n, k) columns."""
    import patsy
    from patsy.design_info import SubtermInfo
    from patsy.desc import Term
    di = ts.design_info
    if ts.frame is None:
        raise MixedGLMInputError("type III hypotheses need the data of the fit "
                                 "(the model no longer holds it)")
    n = ts.X.shape[0]
    out = {}
    for f, info in di.factor_infos.items():
        if info.type == "categorical":
            K = len(info.categories)
            cm = patsy.ContrastMatrix(np.eye(K), [f"[{c}]" for c in info.categories])
            sub = SubtermInfo([f], {f: cm}, K)
            names = [f"{f.name()}{s}" for s in cm.column_suffixes]
        else:
            K = info.num_columns
            sub = SubtermInfo([f], {}, K)
            names = [f"{f.name()}[{j}]" for j in range(K)]
        one = patsy.DesignInfo(names, factor_infos={f: info},
                               term_codings=OrderedDict([(Term([f]), [sub])]))
        M = np.asarray(patsy.build_design_matrices([one], ts.frame, NA_action="raise")[0],
                       dtype=float)
        if M.shape[0] != n:
            raise MixedGLMInputError("type III hypotheses: the data of the fit no longer "
                                     f"match its {n} rows")
        out[f] = M
    return out


def _product_columns(parts):
    """All products of one column from each part: list of (key, column) with key the
    tuple of chosen (factor, column) pairs."""
    cols = [((), None)]
    for f, M, choose in parts:
        cols = [(key + ((f, j),), M[:, j] if col is None else col * M[:, j])
                for key, col in cols for j in choose]
    return cols


def _coded_designs(ts: TermStructure, values: dict):
    """(X_t, keys_t, cols_t) the treatment-coded design (patsy's choice of full or
    reduced coding kept per factor, the first level as reference) and
    (rdX, keys_rd) the over-parameterised one; keys identify a column by its term and
    the (factor, column) it multiplies."""
    di = ts.design_info
    n = ts.X.shape[0]
    Xt, keys_t, cols_t = [], [], {}
    rd, keys_rd = [], []
    if ts.intercept:
        Xt.append(np.ones(n))
        keys_t.append(("(Intercept)",))
        rd.append(np.ones(n))
        keys_rd.append(("(Intercept)",))
    term_of = {t.name: t for t in ts.terms}
    for term, _ in di.term_slices.items():
        if not term.factors:
            continue
        name = term.name()
        start = len(Xt)
        for sub in di.term_codings[term]:
            parts = []
            for f in sub.factors:
                M = values[f]
                if f in sub.contrast_matrices:
                    K = M.shape[1]
                    full = sub.contrast_matrices[f].matrix.shape[1] == K
                    parts.append((f, M, range(K) if full else range(1, K)))
                else:
                    parts.append((f, M, range(M.shape[1])))
            for key, col in _product_columns(parts):
                Xt.append(col)
                keys_t.append((name, frozenset(key)))
        cols_t[name] = np.arange(start, len(Xt))
        parts = [(f, values[f], range(values[f].shape[1])) for f in term_of[name].factors]
        for key, col in _product_columns(parts):
            rd.append(col)
            keys_rd.append((name, frozenset(key)))
    return (np.column_stack(Xt), keys_t, cols_t, np.column_stack(rd), keys_rd)


def _type3(ts: TermStructure) -> dict:
    values = _factor_values(ts)
    Xt, keys_t, cols_t, rdX, keys_rd = _coded_designs(ts, values)
    if np.linalg.matrix_rank(Xt) < Xt.shape[1]:
        raise MixedGLMInputError("type III hypotheses: the treatment-coded design is rank "
                                 "deficient (empty cells?); use type=1 or type=2")
    # estimable functions of the over-parameterised model, one per column of X_t
    L = _zap(np.linalg.lstsq(Xt, rdX, rcond=None)[0].T)          # (P, p)
    for t in sorted(ts.terms, key=lambda t: -t.order):           # stable: formula order
        cont = ts.containing(t)
        if not cont:
            continue
        Y = L[:, cols_t[t.name]]
        B = L[:, np.concatenate([cols_t[c.name] for c in cont])]
        L[:, cols_t[t.name]] = _zap(Y - B @ np.linalg.lstsq(B, Y, rcond=None)[0])
    row_of = {k: i for i, k in enumerate(keys_rd)}
    Lsq = L[[row_of[k] for k in keys_t]]                         # on X_t's parameters
    to_model = _zap(np.linalg.lstsq(Xt, ts.X, rcond=None)[0])     # beta_t = to_model beta
    return {t.name: _drop_zero_rows(Lsq[:, cols_t[t.name]].T) @ to_model for t in ts.terms}


def term_hypotheses(model, type=3) -> dict:
    """{term name: L} with L (rows x fixed effects) the type ``type`` hypothesis of every
    term of the model's fixed-effects formula (module docstring)."""
    if type not in (1, 2, 3):
        raise MixedGLMInputError(f"type must be 1, 2 or 3 (got {type!r})")
    ts = term_structure(model)
    if not ts.terms:
        return {}
    if type == 1 or ts.X.shape[1] <= 1 or len(ts.terms) <= 1:
        return _type1(ts)
    return _type2(ts) if type == 2 else _type3(ts)
