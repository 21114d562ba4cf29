r"""Complete, no and partial pooling of group-specific coefficients, side by side.

For a formula such as ``mAch ~ cses`` and groups j = 1..J:

* **complete pooling** -- one GLM (OLS for Gaussian data) on all rows,
  ignoring the groups: one coefficient vector :math:`\hat\beta^{c}`;
* **no pooling** -- the same GLM fitted separately in every group:
  :math:`\hat\beta^{n}_j`. A group whose fit does not exist or fails (too few
  rows, a singular design, separation, non-convergence) is listed in
  ``failed`` with the reason, never dropped silently;
* **partial pooling** -- the mixed model's group-specific coefficients
  :math:`\hat\beta^{p}_j = \hat\gamma + \hat b_j` (fixed effect plus the
  conditional mode, for terms with a random effect; the fixed effect alone
  for the others).

The shrinkage factor of group j for a coefficient is
:math:`s_j = 1 - (\hat\beta^{p}_j - \hat\gamma) / (\hat\beta^{n}_j - \hat\gamma)`:
0 when the partial-pooling estimate equals the group's own estimate, 1 when
it equals the population value :math:`\hat\gamma`.

The groups are the levels of the model's **lowest** grouping factor, the
innermost of a nested chain (class in ``(1 | school/class)``, school in
``(1 | lea) + (1 | school)``), the factor with the most levels when they are
crossed (subject in ``(1 | subject) + (1 | item)``), the one factor of a
one-factor model. For a level c of that factor the partial-pooling coefficients
are the ones the mixed model uses for the rows of c,

.. math:: \hat\beta^{p}_c = \hat\gamma + \hat b_c + \sum_{f \supset c} \hat b_{f(c)},

the fixed effects plus the conditional modes of c and of every factor c is
nested in (its school, its LEA). A crossed factor varies within c, so its
effects average out over c's rows and are left at 0. Shrinkage is measured
toward the population value :math:`\hat\gamma`, so for a nested fit it is the
combined shrinkage of the level's own effect and its parents' (a class in a
school far from the mean is pulled towards its school, and the school towards
:math:`\hat\gamma`).
"""
from __future__ import annotations

import html
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import patsy
import statsmodels.api as sm
from scipy import stats
from statsmodels.tools.sm_exceptions import (ConvergenceWarning, PerfectSeparationError,
                                             PerfectSeparationWarning)

from ..core.spec.family import GAUSSIAN, Family
from ..core.spec.terms import nests_in
from .icc import describe_model
from ..design.mixedlm_view import statsmodels_term, term_labels
from .plotting import pooling_lines, pooling_shrinkage
from ..design.sm_families import statsmodels_family

__all__ = ["PoolingComparison", "compare_pooling_from_results"]

_TABLE_COLUMNS = ["group", "n", "term", "complete_pooling", "no_pooling", "partial_pooling",
                  "shrinkage"]


@dataclass(frozen=True, eq=False)
class PoolingComparison:
    """Complete / no / partial pooling estimates per group (see module docstring).

    Attributes
    ----------
    table : pandas.DataFrame
        Long by group and coefficient, the three estimates side by side: one
        row per (group, term) with columns ``group``, ``n`` (rows in the
        group), ``term``, ``complete_pooling``, ``no_pooling`` (NaN for failed
        groups), ``partial_pooling`` and ``shrinkage`` (:math:`s_j`). All on
        the linear-predictor scale.
    failed : pandas.DataFrame
        Groups whose no-pooling fit failed: ``group``, ``n``, ``reason``.
    shrinkage : pandas.DataFrame
        Per term: ``complete_pooling``, ``fixed_effect`` (the mixed model's
        :math:`\\hat\\gamma`), ``random`` (has a random effect),
        ``sd_no_pooling`` and ``sd_partial_pooling`` (SD across the groups
        with a no-pooling fit), ``sd_ratio`` (partial / no), ``mean_shrinkage``
        (:math:`1 - \\sum_j d^p_j d^n_j / \\sum_j (d^n_j)^2` with
        :math:`d_j = \\hat\\beta_j - \\hat\\gamma`, the mean of the :math:`s_j`
        weighted by :math:`(d^n_j)^2`), ``corr_shrinkage_n`` (Spearman
        correlation of :math:`s_j` with group size; negative: large groups
        are shrunk less), ``n_groups``.
    complete : statsmodels results of the complete-pooling fit.
    mixed : the mixed-model results (partial pooling).
    formula, group_name, family_name : what was compared.
    family : the statsmodels family of the complete- and no-pooling GLMs (None: OLS).
    fam : the mixed model's :class:`~mlglm.core.spec.family.Family`.
    """

    table: pd.DataFrame
    failed: pd.DataFrame
    shrinkage: pd.DataFrame
    complete: object
    mixed: object
    formula: str
    group_name: str
    family_name: str
    frame: pd.DataFrame
    groups: np.ndarray
    design_info: object
    family: object
    fam: object = None

    @property
    def terms(self) -> list[str]:
        return list(self.shrinkage.index)

    def wide(self) -> pd.DataFrame:
        """The table wide: one row per group, columns (term, pooling)."""
        t = self.table.set_index(["group", "term"])
        w = t[["complete_pooling", "no_pooling", "partial_pooling"]].unstack("term")
        w = w.swaplevel(0, 1, axis=1).reindex(columns=self.terms, level=0)
        w.insert(0, ("n", ""), t["n"].groupby(level=0).first())
        return w

    def summary(self) -> str:
        """Text: the model, the complete-pooling fit, shrinkage per term, failures."""
        n_groups = self.table["group"].nunique()
        lines = [f"Pooling comparison: {self.formula}  (groups: {self.group_name}, "
                 f"{n_groups} groups, family: {self.family_name})",
                 "complete pooling = one GLM ignoring groups; no pooling = one GLM per group; "
                 "partial pooling = mixed model (fixed effect + conditional mode)",
                 f"mixed model: {_describe(self.mixed)}", ""]
        sh = self.shrinkage.copy()
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            lines.append(sh.to_string(float_format=lambda v: f"{v:.4g}"))
        lines.append("")
        if len(self.failed):
            lines.append(f"No-pooling fits that failed: {len(self.failed)} of {n_groups} groups")
            show = self.failed.head(20)
            for _, row in show.iterrows():
                lines.append(f"  {self.group_name} {row['group']} (n={row['n']}): {row['reason']}")
            if len(self.failed) > len(show):
                lines.append(f"  ... and {len(self.failed) - len(show)} more (see .failed)")
        else:
            lines.append(f"No-pooling fits: all {n_groups} groups succeeded.")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return (f"<PoolingComparison {self.formula!r} by {self.group_name}: "
                f"{self.table['group'].nunique()} groups, {len(self.failed)} failed>")

    def _repr_html_(self) -> str:
        """In a notebook: the shrinkage table per term, the first groups' three
        estimates side by side, and the failed no-pooling fits."""
        n_groups = self.table["group"].nunique()
        fmt = lambda v: f"{v:.4g}"  # noqa: E731
        parts = [f"<p><b>Pooling comparison</b>: <code>{html.escape(self.formula)}</code>, "
                 f"groups: {html.escape(str(self.group_name))} ({n_groups}), family: "
                 f"{html.escape(self.family_name)}<br>mixed model: "
                 f"{html.escape(_describe(self.mixed))}</p>",
                 "<p>Shrinkage per term (complete / no / partial pooling):</p>",
                 self.shrinkage.to_html(float_format=fmt)]
        wide = self.wide()
        shown = wide.head(10)
        parts += [f"<p>Estimates per group ({len(shown)} of {len(wide)} shown; all in "
                  "<code>.table</code> and <code>.wide()</code>):</p>",
                  shown.to_html(float_format=fmt)]
        if len(self.failed):
            parts += [f"<p>No-pooling fits that failed: {len(self.failed)} of {n_groups} "
                      "groups</p>", self.failed.head(20).to_html()]
        else:
            parts.append(f"<p>No-pooling fits: all {n_groups} groups succeeded.</p>")
        return "\n".join(parts)

    def plot(self, groups=None, kind="lines", ax=None, x=None, term=None, ncols=3):
        """Plot the comparison; returns the matplotlib Figure.

        Parameters
        ----------
        groups : labels of the groups to draw (``kind="lines"``; default six
            groups with a no-pooling fit, spread over the group sizes).
        kind : ``"lines"`` -- per-group scatter of the response against the
            covariate ``x`` with the complete-, no- and partial-pooling fitted
            mean curves (other covariates at the group's mean / most frequent
            level), one panel per group; ``"shrinkage"`` -- for each term with a
            random effect (or ``term``), arrows from the no-pooling to the
            partial-pooling estimate against group size, the complete-pooling
            value as a horizontal line.
        ax : an Axes (one panel) or a sequence of Axes (one per panel).
        """
        if kind == "lines":
            return pooling_lines(self, groups=groups, x=x, ax=ax, ncols=ncols)
        if kind == "shrinkage":
            return pooling_shrinkage(self, term=term, ax=ax)
        raise ValueError("kind must be 'lines' or 'shrinkage'")

    # -------------------------------------------------------------- helpers
    def default_groups(self, k=6) -> list:
        """k groups with a successful no-pooling fit, spread over the group sizes."""
        ok = self.table.dropna(subset=["no_pooling"]).drop_duplicates("group")
        ok = ok.sort_values(["n", "group"], kind="stable")
        if len(ok) == 0:
            ok = self.table.drop_duplicates("group").sort_values(["n", "group"], kind="stable")
        idx = np.unique(np.round(np.linspace(0, len(ok) - 1, min(k, len(ok)))).astype(int))
        return ok["group"].iloc[idx].tolist()

    def inverse_link(self, eta):
        """Mean from the linear predictor (identity for Gaussian)."""
        if self.family is None:
            return np.asarray(eta)
        return self.family.link.inverse(np.asarray(eta))


# ------------------------------------------------------------------- fitting
def compare_pooling_from_results(results) -> PoolingComparison:
    """The pooling comparison for an existing mixed-model fit (mlglm or statsmodels
    ``MixedLMResults``): its fixed formula, data, groups and family, with the
    fit itself as the partial-pooling estimates.

    The groups are the levels of the lowest grouping factor (the one factor of a
    one-factor fit; class in ``(1 | school/class)``; the factor with the most levels
    when they are crossed): no pooling fits one GLM per level, partial pooling is
    the fixed effects plus the conditional modes of the level and of every factor
    it is nested in -- the coefficients the mixed model uses for that level's rows
    (crossed factors, which vary within a level, at 0) -- and shrinkage is measured
    towards the fixed effects (module notes)."""
    model = results.model
    formula = getattr(model, "formula", None)
    if not isinstance(formula, str):
        raise ValueError("the pooling comparison needs a model built from a formula")
    spec = getattr(model, "fam", None) or Family(GAUSSIAN)    # statsmodels' MixedLM: Gaussian
    # the GLMs' family: the mixed model's, with its dispersion (NB theta) held at the estimate
    fam = None if spec.is_gaussian else \
        statsmodels_family(spec, getattr(results, "dispersion", None))
    frame = model.data.frame.reset_index(drop=True)
    env = patsy.EvalEnvironment([getattr(model, "formula_env", None) or {}])  # the fit's names
    y, X = patsy.dmatrices(formula, frame, eval_env=env, return_type="dataframe",
                           NA_action="raise")
    if len(X) != _fitted_terms(results)[0].n:
        raise ValueError("the formula drops rows of the model's data; remove missing values "
                         "first")
    design_info = X.design_info
    yv = np.asarray(y, dtype=float)
    yv = yv[:, 0] if yv.shape[1] == 1 else yv
    Xv = np.asarray(X, dtype=float)
    names = list(X.columns)
    extra = _glm_extras(model, fam, len(Xv))
    complete = _fit_glm(yv, Xv, fam, spec, extra, slice(None))
    if isinstance(complete, str):
        raise RuntimeError(f"the complete-pooling fit failed: {complete}")
    beta_c = np.asarray(complete.params)

    gamma, partial, re_terms, groups, group_name = _partial(results, names)
    labels = list(partial)
    codes = pd.Series(groups).astype(str)
    rows_of = {}
    for i, g in enumerate(codes.to_numpy()):
        rows_of.setdefault(g, []).append(i)
    recs, failed = [], []
    for g in labels:
        idx = np.asarray(rows_of.get(str(g), []), dtype=np.intp)
        n = int(idx.size)
        out = _fit_glm(yv, Xv, fam, spec, extra, idx, check=True, names=names)
        if isinstance(out, str):
            failed.append({"group": g, "n": n, "reason": out})
            bn = np.full(len(names), np.nan)
        else:
            bn = np.asarray(out.params, dtype=float)
        bp = partial[g]
        for k, term in enumerate(names):
            dn, dp = bn[k] - gamma[k], bp[k] - gamma[k]
            s = 1.0 - dp / dn if np.isfinite(dn) and abs(dn) > 1e-12 else np.nan
            recs.append((g, n, term, beta_c[k], bn[k], bp[k], s))
    table = pd.DataFrame.from_records(recs, columns=_TABLE_COLUMNS)
    failed = pd.DataFrame(failed, columns=["group", "n", "reason"])
    shrink = _shrinkage_table(table, names, beta_c, gamma, re_terms)
    if len(failed) == len(labels):
        lvl2 = _level2_columns(Xv, groups, names)
        msg = "every no-pooling fit failed"
        if lvl2:
            msg += (f"; {', '.join(lvl2)} is constant within groups (a level-2 covariate), "
                    "which no pooling cannot estimate: leave it out of the comparison")
        warnings.warn(msg, stacklevel=2)
    return PoolingComparison(table=table, failed=failed, shrinkage=shrink, complete=complete,
                             mixed=results, formula=formula, group_name=group_name,
                             family_name=spec.name, frame=frame, groups=groups,
                             design_info=design_info, family=fam, fam=spec)


def _glm_extras(model, fam, n):
    """Offset and binomial trials (as variance weights for proportions), per row."""
    extra = {}
    off = getattr(model, "offset", None)
    if off is not None and np.shape(off) == (n,) and np.any(np.asarray(off) != 0):
        extra["offset"] = np.asarray(off, dtype=float)
    m = getattr(model, "n_trials", None)
    if fam is not None and m is not None and np.shape(m) == (n,) and np.any(np.asarray(m) != 1):
        extra["var_weights"] = np.asarray(m, dtype=float)
    return extra


def _fit_glm(y, X, fam, spec, extra, idx, check=False, names=None):
    """A fitted GLM/OLS on rows ``idx`` or a string saying why there is none (``fam``:
    the statsmodels family, None for OLS; ``spec``: the mixed model's Family)."""
    Xg, yg = X[idx], y[idx]
    n, p = Xg.shape
    kw = {k: v[idx] for k, v in extra.items()}
    if check:
        if n < p:
            return f"too few rows: {n} for {p} coefficients"
        rank = np.linalg.matrix_rank(Xg)
        if rank < p:
            return (f"singular design: rank {rank} < {p} coefficients"
                    f"{_why_singular(Xg, names)}")
        degenerate = _degenerate_response(yg, spec)
        if degenerate:
            return degenerate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if fam is None:
                res = sm.OLS(yg, Xg).fit()
            else:
                res = sm.GLM(yg, Xg, family=fam, **kw).fit()
        except PerfectSeparationError as exc:
            return f"separation: {exc}"
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            return f"fit error: {type(exc).__name__}: {exc}"
    if not check:
        return res
    # statsmodels also raises PerfectSeparationWarning for an exact Poisson fit (y == mu,
    # e.g. every count equal): only a binomial perfect prediction is separation.
    for w in caught:
        if spec.is_binomial and issubclass(w.category, PerfectSeparationWarning):
            return f"separation ({_short(w.message)}){_separation_detail(res, spec, yg)}"
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            return f"did not converge ({_short(w.message)})"
    params = np.asarray(res.params, dtype=float)
    if not np.all(np.isfinite(params)):
        return "non-finite estimates"
    if fam is not None and not getattr(res, "converged", True):
        return "did not converge (IRLS)"
    detail = _separation_detail(res, spec, yg)
    if detail:
        return "separation" + detail
    return res


def _degenerate_response(y, spec):
    """'' or the reason a group's response alone makes the ML estimate infinite."""
    if spec.is_binomial:
        succ, fail = (y[:, 0], y[:, 1]) if y.ndim == 2 else (y, 1.0 - y)
        if np.all(succ == 0) or np.all(fail == 0):
            what = "0" if np.all(succ == 0) else "1"
            return (f"separation: every outcome is {what} in this group, so the maximum-"
                    "likelihood estimate is infinite")
    if spec.is_count and np.all(y == 0):
        return ("all counts are zero: fitted mean 0, the maximum-likelihood intercept is "
                "-infinite")
    return ""


def _separation_detail(res, spec, y):
    """'' or ': ...' when fitted means sit at the boundary (quasi-complete separation)."""
    mu = np.asarray(res.fittedvalues, dtype=float)
    if spec.is_binomial:
        edge = (mu < 1e-6) | (mu > 1 - 1e-6)
        what = "fitted probability 0 or 1"
    elif spec.is_count:
        edge = mu < 1e-8
        what = "fitted mean 0"
    else:
        return ""
    k = int(edge.sum())
    if k == 0:
        return ""
    big = float(np.max(np.abs(np.asarray(res.params))))
    return (f": {what} for {k} of {mu.size} rows (max |coef| {big:.3g}); the maximum-"
            "likelihood estimate is infinite")


def _why_singular(Xg, names):
    """Which columns make the group's design singular, in words."""
    names = names or [f"x{k}" for k in range(Xg.shape[1])]
    zero = np.all(Xg == 0, axis=0)
    const = np.all(Xg == Xg[0], axis=0) & ~zero
    bits = []
    if zero.any():
        cols = ", ".join(n for n, z in zip(names, zero) if z)
        bits.append(f"{cols} all zero in this group")
    if const.sum() > 1:
        cols = ", ".join(n for n, c in zip(names, const) if c)
        bits.append(f"{cols} constant in this group")
    return f": {'; '.join(bits)}" if bits else ": collinear columns"


def _short(msg, k=70):
    s = str(msg).replace("\n", " ")
    return s if len(s) <= k else s[:k - 3] + "..."


def _level2_columns(X, groups, names):
    out = []
    g = pd.Series(groups).astype(str).to_numpy()
    for k, nm in enumerate(names):
        col = X[:, k]
        if np.all(col == col[0]):
            continue
        if pd.Series(col).groupby(g).nunique().max() == 1:
            out.append(nm)
    return out


def lowest_term(terms) -> int:
    """Index of the lowest-level factor: the innermost of a nested chain (the one term
    of a one-term model), else the factor with the most levels (the first such in term
    order)."""
    order = terms.nesting_order()
    if order is not None:
        return order[0]
    return int(np.argmax([t.n_levels for t in terms]))


def _fe_columns(term, fe_names) -> list[str]:
    """The fixed effect each of the term's random effects varies (intercept -> 'Intercept')."""
    out = []
    for k, nm in enumerate(term.column_names):
        if nm == "Intercept" or (np.all(term.Z[:, k] == 1.0) and "Intercept" in fe_names):
            if "Intercept" not in fe_names:
                raise ValueError("the random intercept has no fixed intercept to pool with")
            out.append("Intercept")
        elif nm in fe_names:
            out.append(str(nm))
        else:
            raise ValueError(f"random effect {nm!r} has no matching fixed effect; the "
                             "pooling comparison needs every random term in the fixed part")
    return out


def _fitted_terms(results):
    """(ReTerms, conditional modes per term) of the fit (statsmodels' ``MixedLM``: its one
    factor as a term)."""
    if getattr(results.model, "re_terms", None) is None:
        terms, _, bs, _ = statsmodels_term(results)
        return terms, bs
    return results.model.re_terms, results.outcome.b


def _partial(results, names):
    """(gamma, {level: partial-pooling coefficients}, fixed effects with random effects,
    level label of every row, factor name) for the lowest factor (module notes)."""
    terms, bs = _fitted_terms(results)
    k = lowest_term(terms)
    inner = terms[k]
    fe = pd.Series(np.asarray(results.fe_params, dtype=float),
                   index=list(getattr(results.fe_params, "index", names)))
    gamma = fe.reindex(names).to_numpy()
    if np.any(np.isnan(gamma)):
        raise ValueError("the mixed model's fixed effects do not match the formula's columns")
    included = [k] + [j for j, t in enumerate(terms) if j != k and nests_in(inner, t)]
    _, first_row = np.unique(inner.codes, return_index=True)     # a row of every level
    coefs = np.tile(gamma, (inner.n_levels, 1))
    with_re = []
    for j in included:
        t = terms[j]
        cols = _fe_columns(t, names)
        with_re += cols
        b = np.asarray(bs[j], dtype=float)[t.codes[first_row]]
        for c, name in enumerate(cols):
            coefs[:, names.index(name)] += b[:, c]
    labels = term_labels(inner)
    partial = {g: coefs[i] for i, g in enumerate(labels)}
    groups = np.asarray(labels, dtype=object)[inner.codes]
    return gamma, partial, list(dict.fromkeys(with_re)), groups, inner.name


def _shrinkage_table(table, names, beta_c, gamma, re_terms):
    rows = []
    for k, term in enumerate(names):
        t = table[(table["term"] == term)].dropna(subset=["no_pooling"])
        dn = t["no_pooling"].to_numpy() - gamma[k]
        dp = t["partial_pooling"].to_numpy() - gamma[k]
        denom = float(np.sum(dn ** 2))
        mean_s = 1.0 - float(np.sum(dp * dn)) / denom if denom > 0 else np.nan
        s = t["shrinkage"].to_numpy()
        ok = np.isfinite(s)
        corr = np.nan
        if term in re_terms and ok.sum() > 2 and np.ptp(t["n"].to_numpy()[ok]) > 0:
            corr = float(stats.spearmanr(s[ok], t["n"].to_numpy()[ok]).statistic)
        sd_n = float(np.std(t["no_pooling"], ddof=1)) if len(t) > 1 else np.nan
        sd_p = float(np.std(t["partial_pooling"], ddof=1)) if len(t) > 1 else np.nan
        rows.append({"complete_pooling": beta_c[k], "fixed_effect": gamma[k],
                     "random": term in re_terms, "sd_no_pooling": sd_n,
                     "sd_partial_pooling": sd_p,
                     "sd_ratio": sd_p / sd_n if sd_n and np.isfinite(sd_n) else np.nan,
                     "mean_shrinkage": mean_s, "corr_shrinkage_n": corr, "n_groups": len(t)})
    return pd.DataFrame(rows, index=pd.Index(names, name="term"))


def _describe(results):
    try:
        return describe_model(results)
    except Exception:  # pragma: no cover - description is cosmetic
        return type(results).__name__
