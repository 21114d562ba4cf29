r"""Plots for mixed-model fits: caterpillar, effect and pooling plots.

matplotlib is optional (``pip install 'mlglm[plot]'``) and imported inside
each function. Every function returns the matplotlib ``Figure`` (as
statsmodels' graphics do); pass ``ax=`` to draw into existing axes.

In a Jupyter notebook (matplotlib's inline backend) a figure the function made
itself is closed before it is returned: the inline backend would otherwise draw
it at the end of the cell *and* the notebook would draw the returned Figure,
showing it twice. It is drawn once, as the cell's output (end the cell with the
call, or with the variable holding the figure); ``fig.savefig`` works as usual.
Elsewhere (scripts, other backends) the figure stays open, so ``plt.show()``
and ``plt.savefig()`` find it. A figure of axes passed with ``ax=`` is the
caller's and is never closed.

* :func:`caterpillar` -- conditional modes :math:`\hat b_{jk}` sorted, with
  intervals :math:`\hat b_{jk} \pm z\,\mathrm{se}_{jk}` (see :mod:`mlglm.ranef`).
* :func:`effect_plot` -- the population-level mean :math:`g^{-1}(x'\hat\beta)`
  (random effects at 0) against one covariate, with the pointwise Wald band
  :math:`g^{-1}(x'\hat\beta \pm z \sqrt{x' V x})`, V the fixed-effect block of
  ``cov_params()`` (the delta method on the linear predictor, mapped through
  the inverse link so it stays inside the response's range).
* :func:`pooling_lines`, :func:`pooling_shrinkage` -- the two views of a
  :class:`~mlglm.results.pooling.PoolingComparison` (its ``plot`` method calls them).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy import stats

from .ranef import random_effects_frame

__all__ = ["caterpillar", "effect_plot", "pooling_lines", "pooling_shrinkage"]

_COLORS = {"complete": "0.45", "no": "tab:blue", "partial": "tab:red"}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError("mlglm's plots need matplotlib: pip install 'mlglm[plot]'") from exc
    return plt


def _inline_backend() -> bool:
    """Whether pyplot draws through Jupyter's inline backend (matplotlib-inline)."""
    import matplotlib
    return "inline" in str(matplotlib.get_backend()).lower()


def _finish(fig, created: bool):
    """The figure to return: closed in pyplot when this module made it and the inline
    backend would draw it a second time (module notes)."""
    if created and _inline_backend():
        _pyplot().close(fig)
    return fig


def _axes_list(ax, k, ncols, panel_size, sharey=False):
    """(figure, list of k axes): new small multiples, or the axes given."""
    plt = _pyplot()
    if ax is None:
        ncols = max(1, min(ncols, k))
        nrows = int(np.ceil(k / ncols))
        fig, axs = plt.subplots(nrows, ncols, figsize=(panel_size[0] * ncols,
                                                        panel_size[1] * nrows),
                                squeeze=False, sharey=sharey, layout="constrained")
        axs = list(axs.ravel())
        for a in axs[k:]:
            a.set_visible(False)
        return fig, axs[:k]
    axs = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axs) < k:
        raise ValueError(f"{k} panels to draw but {len(axs)} axes given")
    return axs[0].figure, axs[:k]


def _figure_legend(fig, handles, labels, max_cols):
    """A legend below the panels with as many columns as fit the figure's width
    (fewer, wrapping onto more rows, when the entries are too wide), so that
    neither the screen nor a saved file cuts it off."""
    for ncols in range(max(1, max_cols), 0, -1):
        leg = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize=8,
                         frameon=False)
        box = leg.get_window_extent()
        if ncols == 1 or (box.x0 >= fig.bbox.x0 and box.x1 <= fig.bbox.x1):
            return leg
        leg.remove()
    return leg


def _term_label(results, term):
    gname = getattr(results.model, "group_name", None)
    Z = getattr(results.model, "exog_re", None)
    names = list(results.model.data.exog_re_names)
    if Z is not None and term in names and np.all(np.asarray(Z)[:, names.index(term)] == 1.0):
        return f"Intercept ({gname or term})"
    return term


# ---------------------------------------------------------------- caterpillar
def caterpillar(results, term=None, level=0.95, ax=None):
    """Caterpillar plot of the random effects with conditional intervals.

    Parameters
    ----------
    results : MixedGLMResults or statsmodels MixedLMResults
    term : random-effect column (e.g. the group name for the intercept, or
        ``"cses"``); default: one panel per random-effect term. With several
        grouping factors the panels are per effect and factor,
        ``"Intercept | school"``.
    level : coverage of the intervals ``b_j -/+ z sqrt(Var(b_j | y))``.
    ax : Axes, or a sequence of Axes (one per term).

    Returns
    -------
    matplotlib.figure.Figure
    """
    frame = random_effects_frame(results, level=level)
    if "factor" in frame.columns:        # several grouping factors: a panel per factor
        frame = frame.assign(term=frame["term"] + " | " + frame["factor"])
    terms = list(dict.fromkeys(frame["term"])) if term is None else [term]
    if term is not None and term not in set(frame["term"]):
        raise ValueError(f"term {term!r} is not a random-effect term; use one of "
                         f"{list(dict.fromkeys(frame['term']))}")
    n_groups = frame["group"].nunique()
    height = float(np.clip(0.14 * n_groups + 1.2, 3.0, 14.0))
    created = ax is None
    fig, axs = _axes_list(ax, len(terms), len(terms), (4.2, height), sharey=False)
    gname = getattr(results.model, "group_name", None) or "group"
    for a, t in zip(axs, terms):
        d = frame[frame["term"] == t].sort_values("estimate", kind="stable")
        pos = np.arange(len(d))
        err = [d["estimate"] - d["lower"], d["upper"] - d["estimate"]]
        a.errorbar(d["estimate"], pos, xerr=err, fmt="o", ms=3, lw=0.8, color="tab:blue",
                   ecolor="0.55", capsize=0)
        a.axvline(0.0, color="tab:red", lw=0.8, ls="--")
        a.set_title(_term_label(results, t), fontsize=10)
        a.set_xlabel(f"conditional mode, {level:.0%} interval")
        a.set_ylim(-1, len(d))
        if len(d) <= 70:
            a.set_yticks(pos)
            a.set_yticklabels([str(g) for g in d["group"]], fontsize=6 if len(d) > 35 else 8)
        else:
            a.set_yticks([])
            a.set_ylabel(f"{len(d)} {gname} groups, sorted")
        a.grid(axis="x", color="0.9")
    if len(axs):
        axs[0].set_ylabel(axs[0].get_ylabel() or gname)
    return _finish(fig, created)


# ----------------------------------------------------------------- effect plot
def _design_info(model):
    data = model.data
    for attr in ("model_spec", "design_info"):
        di = getattr(data, attr, None)
        if di is not None:
            return di
    raise ValueError("the effect plot needs a model built from a formula")


def _build_exog(design_info, frame):
    import patsy
    if isinstance(design_info, patsy.DesignInfo):
        return np.asarray(patsy.build_design_matrices([design_info], frame)[0], dtype=float)
    return np.asarray(design_info.get_model_matrix(frame), dtype=float)  # formulaic


def _formula_columns(formula, data):
    rhs = formula.split("~", 1)[-1]
    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", rhs))
    return [c for c in data.columns if str(c) in tokens]


def _typical_value(col: pd.Series):
    """Mean of a numeric column; the reference (first) level of a categorical."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.categories[0]
    if pd.api.types.is_bool_dtype(col):
        return False
    if pd.api.types.is_numeric_dtype(col):
        return float(col.mean())
    return sorted(col.dropna().unique())[0]


def _inverse_link(results):
    fam = getattr(results.model, "fam", None)
    return (lambda eta: eta) if fam is None else fam.inverse_link


def _mean_label(results):
    model = results.model
    y = str(getattr(model, "endog_names", "y"))
    fam = getattr(model, "fam", None)
    if fam is not None and fam.is_binomial:
        return f"Pr({y} = 1)" if np.all(np.asarray(model.n_trials) == 1) else f"proportion {y}"
    if fam is not None and fam.is_count:
        return f"expected {y}"
    return f"mean {y}"


def effect_plot(results, x, data=None, at=None, ax=None, level=0.95, n_points=100):
    r"""Population-level predicted mean against one covariate, with a confidence band.

    The curve is :math:`\hat\mu(x) = g^{-1}(x'\hat\beta)` at random effects 0
    (``predict(conditional=False)``: the typical group, not an average over
    groups; offset 0, i.e. per unit exposure for Poisson rates), the band
    :math:`g^{-1}(x'\hat\beta \pm z\sqrt{x'Vx})` with V the fixed-effect
    covariance from ``cov_params()``.

    Parameters
    ----------
    results : MixedGLMResults or statsmodels MixedLMResults (from a formula).
    x : column of ``data`` to vary (numeric: a grid over its range;
        categorical: its levels).
    data : the data to take ranges and typical values from (default the
        model's data).
    at : dict column -> value for the other covariates; those not given are
        held at their mean (numeric) or reference level (categorical).
    level : coverage of the pointwise band.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    model = results.model
    data = model.data.frame if data is None else data
    if x not in data.columns:
        raise ValueError(f"{x!r} is not a column of the data")
    at = dict(at or {})
    cols = _formula_columns(model.formula, data)
    if x not in cols:
        raise ValueError(f"{x!r} does not appear in the fixed part {model.formula!r}")
    categorical = not pd.api.types.is_numeric_dtype(data[x]) or isinstance(
        data[x].dtype, pd.CategoricalDtype)
    if categorical:
        grid = (list(data[x].cat.categories) if isinstance(data[x].dtype, pd.CategoricalDtype)
                else sorted(data[x].dropna().unique()))
    else:
        grid = np.linspace(float(data[x].min()), float(data[x].max()), n_points)
    held = {c: at.get(c, _typical_value(data[c])) for c in cols if c != x}
    new = pd.DataFrame({x: grid})
    if categorical and isinstance(data[x].dtype, pd.CategoricalDtype):
        new[x] = pd.Categorical(grid, categories=data[x].cat.categories)
    for c, v in held.items():
        new[c] = (pd.Categorical([v] * len(new), categories=data[c].cat.categories)
                  if isinstance(data[c].dtype, pd.CategoricalDtype) else v)
    X = _build_exog(_design_info(model), new)
    p = X.shape[1]
    beta = np.asarray(results.fe_params, dtype=float)[:p]
    V = np.asarray(results.cov_params(), dtype=float)[:p, :p]
    eta = X @ beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    z = stats.norm.ppf(0.5 + level / 2.0)
    inv = _inverse_link(results)
    mu, lo, hi = inv(eta), inv(eta - z * se), inv(eta + z * se)
    created = ax is None
    if created:
        fig, ax = plt.subplots(figsize=(6, 4.2), layout="constrained")
    fig = ax.figure
    if categorical:
        pos = np.arange(len(grid))
        ax.errorbar(pos, mu, yerr=[mu - lo, hi - mu], fmt="o", color="tab:blue", capsize=4)
        ax.set_xticks(pos)
        ax.set_xticklabels([str(g) for g in grid])
    else:
        ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.2, lw=0,
                        label=f"{level:.0%} confidence band")
        ax.plot(grid, mu, color="tab:blue", lw=2, label="population-level mean (b = 0)")
        ax.plot(data[x].to_numpy(dtype=float), np.full(len(data), 0.0), "|", color="0.3",
                ms=8, alpha=0.15, transform=ax.get_xaxis_transform())
        ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_xlabel(x)
    ax.set_ylabel(_mean_label(results))
    held_txt = ", ".join(f"{c}={v:.3g}" if isinstance(v, float) else f"{c}={v}"
                         for c, v in held.items())
    ax.set_title(f"Effect of {x}" + (f"\n(other covariates: {held_txt})" if held_txt else ""),
                 fontsize=10)
    ax.grid(color="0.92")
    return _finish(fig, created)


# ------------------------------------------------------------ pooling plots
def _default_x(pc):
    cols = _formula_columns(pc.formula, pc.frame)
    num = [c for c in cols if pd.api.types.is_numeric_dtype(pc.frame[c])
           and not isinstance(pc.frame[c].dtype, pd.CategoricalDtype)]
    if len(num) == 1:
        return num[0]
    raise ValueError(f"give x= (one of the numeric covariates {num or cols}) for the lines plot")


def _response(pc, rows):
    import patsy
    env = patsy.EvalEnvironment([getattr(pc.mixed.model, "formula_env", None) or {}])
    y = np.asarray(patsy.dmatrices(pc.formula, pc.frame.iloc[rows], eval_env=env,
                                   return_type="dataframe", NA_action="raise")[0], dtype=float)
    if y.shape[1] == 2:  # (successes, failures)
        return y[:, 0] / np.maximum(y.sum(axis=1), 1)
    return y[:, 0]


def pooling_lines(pc, groups=None, x=None, ax=None, ncols=3):
    """Per-group scatter with the complete-, no- and partial-pooling mean curves.

    One panel per group (default :meth:`PoolingComparison.default_groups`):
    the data (response against ``x``) and :math:`g^{-1}(x'\\hat\\beta)` with
    :math:`\\hat\\beta` the complete-pooling, the group's no-pooling and the
    group's partial-pooling coefficients; other covariates at the group's
    mean (numeric) or most frequent level.
    """
    _pyplot()
    x = _default_x(pc) if x is None else x
    if x not in pc.frame.columns:
        raise ValueError(f"{x!r} is not a column of the data")
    groups = pc.default_groups() if groups is None else list(groups)
    labels = pd.Series(pc.groups).astype(str).to_numpy()
    table = pc.table.set_index(["group", "term"])
    terms = pc.terms
    reasons = dict(zip(pc.failed["group"].astype(str), pc.failed["reason"]))
    created = ax is None
    fig, axs = _axes_list(ax, len(groups), ncols, (3.4, 2.8), sharey=True)
    cols = _formula_columns(pc.formula, pc.frame)
    yname = pc.formula.split("~", 1)[0].strip()
    for a, g in zip(axs, groups):
        rows = np.flatnonzero(labels == str(g))
        if rows.size == 0:
            raise ValueError(f"no group {g!r} in the data")
        sub = pc.frame.iloc[rows]
        yv = _response(pc, rows)
        xv = sub[x].to_numpy(dtype=float)
        jitter = 0.0
        if pc.fam.is_binomial and np.all(np.isin(yv, (0.0, 1.0))):
            jitter = np.random.default_rng(0).uniform(-0.03, 0.03, size=yv.size)
        a.scatter(xv, yv + jitter, s=9, color="0.35", alpha=0.45, lw=0)
        grid = np.linspace(np.nanmin(xv), np.nanmax(xv), 60) if np.ptp(xv) > 0 else xv[:1]
        new = pd.DataFrame({x: grid})
        for c in cols:
            if c == x:
                continue
            col = sub[c]
            v = (float(col.mean()) if pd.api.types.is_numeric_dtype(col)
                 and not isinstance(col.dtype, pd.CategoricalDtype) else col.mode().iloc[0])
            new[c] = (pd.Categorical([v] * len(new), categories=col.cat.categories)
                      if isinstance(col.dtype, pd.CategoricalDtype) else v)
        X = _build_exog(pc.design_info, new)
        key = pc.table.loc[pc.table["group"].astype(str) == str(g), "group"].iloc[0]
        coef = table.loc[key].reindex(terms)
        for which, style in (("complete_pooling", dict(color=_COLORS["complete"], ls="--")),
                             ("no_pooling", dict(color=_COLORS["no"], ls="-")),
                             ("partial_pooling", dict(color=_COLORS["partial"], ls="-"))):
            b = coef[which].to_numpy(dtype=float)
            if np.all(np.isfinite(b)):
                a.plot(grid, pc.inverse_link(X @ b), lw=1.8, label=which.replace("_", " "),
                       **style)
        if str(g) in reasons:
            a.text(0.02, 0.02, "no pooling failed:\n" + _wrap(reasons[str(g)].split(":")[0], 38),
                   transform=a.transAxes, fontsize=6, color=_COLORS["no"], va="bottom")
        a.set_title(f"{pc.group_name} {g} (n = {rows.size})", fontsize=9)
        a.set_xlabel(x, fontsize=8)
        a.tick_params(labelsize=7)
        a.grid(color="0.93")
    axs[0].set_ylabel(yname, fontsize=8)
    handles, lab = axs[0].get_legend_handles_labels()
    if handles and ax is None:
        _figure_legend(fig, handles, lab, 3)
    elif handles:
        axs[0].legend(fontsize=7, frameon=False)
    return _finish(fig, created)


def _wrap(text, width):
    import textwrap
    return "\n".join(textwrap.wrap(text, width)[:3])


def pooling_shrinkage(pc, term=None, ax=None):
    """Arrows from each group's no-pooling to its partial-pooling estimate, against
    group size (log axis), with the complete-pooling value (grey dashed) and the
    mixed model's fixed effect (red dotted) as horizontal lines. One panel per
    term with a random effect, or just ``term``. Groups without a no-pooling
    fit are drawn as crosses at their partial-pooling value."""
    _pyplot()
    sh = pc.shrinkage
    if term is None:
        terms = [t for t in sh.index if sh.loc[t, "random"]] or list(sh.index)
    else:
        if term not in sh.index:
            raise ValueError(f"term {term!r} is not one of {list(sh.index)}")
        terms = [term]
    created = ax is None
    fig, axs = _axes_list(ax, len(terms), 2, (5.0, 3.8))
    rng = np.random.default_rng(0)
    for a, t in zip(axs, terms):
        d = pc.table[pc.table["term"] == t]
        n = d["n"].to_numpy(dtype=float) * np.exp(rng.uniform(-0.04, 0.04, len(d)))
        no, part = d["no_pooling"].to_numpy(), d["partial_pooling"].to_numpy()
        ok = np.isfinite(no)
        a.quiver(n[ok], no[ok], np.zeros(ok.sum()), part[ok] - no[ok], angles="xy",
                 scale_units="xy", scale=1.0, color="0.5", width=0.0035, headwidth=4,
                 headlength=5, headaxislength=4.5, zorder=2)
        a.scatter(n[ok], no[ok], s=14, facecolors="none", edgecolors=_COLORS["no"], lw=0.8,
                  label="no pooling", zorder=3)
        a.scatter(n[ok], part[ok], s=12, color=_COLORS["partial"], label="partial pooling",
                  zorder=3)
        if (~ok).any():
            a.scatter(n[~ok], part[~ok], s=18, marker="x", color=_COLORS["partial"], lw=0.9,
                      label="partial (no-pooling fit failed)", zorder=3)
        a.axhline(sh.loc[t, "complete_pooling"], color=_COLORS["complete"], ls="--", lw=1.2,
                  label="complete pooling")
        a.axhline(sh.loc[t, "fixed_effect"], color=_COLORS["partial"], ls=":", lw=1.2,
                  label="mixed-model fixed effect")
        if np.nanmax(n) / max(np.nanmin(n), 1) > 8:
            a.set_xscale("log")
        a.set_xlabel(f"{pc.group_name} size (rows)")
        a.set_ylabel(f"coefficient: {t}")
        a.set_title(f"{t}: SD across groups {sh.loc[t, 'sd_no_pooling']:.3g} (no pooling) -> "
                    f"{sh.loc[t, 'sd_partial_pooling']:.3g} (partial)", fontsize=9)
        a.grid(color="0.93")
    handles, labels = axs[0].get_legend_handles_labels()
    if ax is None:
        _figure_legend(fig, handles, labels, len(labels))
    else:
        axs[0].legend(fontsize=7, frameon=False, loc="best")
    return _finish(fig, created)
