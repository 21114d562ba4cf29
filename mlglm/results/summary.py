"""The ``summary()`` of a MixedGLM fit as a statsmodels ``Summary`` (text and HTML).

Three parts: a header (family/link, method and nagq, observations, groups
with their sizes, log-likelihood, AIC, BIC, deviance = -2 llf, convergence
and singular-fit flags, prior weights), the fixed-effects table (coef, SE, z,
P>|z|, CI) and the random-effects table (variance, SD, correlations; residual
variance for Gaussian models; the dispersion row -- negative binomial theta or
Gamma scale with its SE, or "fixed" -- for the families that have one), then
any warnings in words.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.iolib import summary2

from ..design import mixedlm_view as view
from ..core.engines.nested.objective import quadrature_dimension
from ..core.spec.record import SINGULAR_TOL
from ..inference.ddf import summary_coefficients
from ..design.factors import varcorr_rows
from ..design.fit_checks import boundary_groups, singular_advice, standard_error_note
from .singular import describe_singular

__all__ = ["make_summary", "method_label"]


def method_label(res) -> str:
    if res.method == "reml":
        return "REML (exact)"
    if res.method == "ml":
        return "ML (exact)"
    if res.method == "aghq" and res.nagq and res.nagq > 1:
        how = " (auto)" if getattr(res.optim, "auto", None) is not None else ""
        terms = res.model.re_terms
        if terms.kind == "nested":
            return (f"ML (AGHQ, nAGQ={res.nagq}{how} at each of {len(terms)} nested "
                    "levels)")
        points = res.nagq ** quadrature_dimension(terms)
        return f"ML (AGHQ, nAGQ={res.nagq}{how}, {points} points/group)"
    return "ML (Laplace)"


#: numbers this large print in scientific notation (a separated coefficient's SE would
#: otherwise stretch its table by dozens of columns)
SCIENTIFIC_ABOVE = 1e6


def _fmt(x, d=3, sci=False):
    """x with d decimals; with ``sci`` (table cells) in scientific notation from
    SCIENTIFIC_ABOVE up."""
    if x is None or not np.isfinite(x):
        return "nan"
    if sci and abs(x) >= SCIENTIFIC_ABOVE:
        return f"{x:.{max(d - 1, 1)}e}"
    return f"{x:.{d}f}"


def _convergence_detail(res):
    rec = res.optim
    if getattr(rec, "information", "").startswith("not computed"):
        return f"{rec.grad_norm:.1e} / not computed"
    if hasattr(rec, "hessian_pd"):
        return f"{rec.grad_norm:.1e} / {'yes' if rec.hessian_pd else 'NO'}"
    return f"{getattr(rec, 'grad_norm', float('nan')):.1e} / exact (profiled)"


def _converged(res) -> str:
    if getattr(res.optim, "information", "").startswith("not computed"):
        return "not checked"
    return "yes" if res.converged else "NO"


def _groups_info(model) -> dict:
    """"No. groups" line: every factor's levels; with one factor (statsmodels' header)
    also its group sizes."""
    terms = model.re_terms
    info = {"No. groups:": ", ".join(f"{t.n_levels} ({t.name})" for t in terms)}
    if view.single_term(model):
        sizes = getattr(model, "group_sizes", None)     # a sharded model holds no rows
        sizes = np.bincount(terms[0].codes) if sizes is None else np.asarray(sizes)
        info["Group size min/mean/max:"] = (f"{sizes.min()} / {sizes.mean():.1f} / "
                                            f"{sizes.max()}")
    return info


def _header(res):
    model = res.model
    fam = model.fam.distribution.title
    link = model.fam.link_name
    nobs = f"{int(res.nobs)}" if model.freq_weights is None else \
        f"{res.nobs:g} (frequency-weighted; {model.nobs} rows)"
    info = {
        "Model:": type(model).__name__,
        "Family / link:": f"{fam} / {link}",
        "Method:": method_label(res),
        "Dependent variable:": str(model.endog_names),
        "No. observations:": nobs,
        **_groups_info(model),
        "Log-likelihood:": _fmt(res.llf, 4),
        "AIC:": _fmt(res.aic, 4),
        "BIC:": _fmt(res.bic, 4),
        "Deviance (-2 llf):": _fmt(res.deviance, 4),
        "Converged:": _converged(res),
        "Max |gradient| / Hessian PD:": _convergence_detail(res),
        "Singular fit:": "YES" if np.any(res.singular) else "no",
    }
    if model.fam.is_gaussian:
        info["Residual variance:"] = _fmt(res.scale, 4)
    if model.var_weights is not None:
        info["Variance weights:"] = "yes (Var of row i divided by v_i)"
    # issue 13: the fit-time quadrature check (and the nagq="auto" path)
    chk = getattr(res.optim, "quadrature_check", None)
    if chk is not None:
        info["Quadrature check:"] = chk.verdict()
    if getattr(model, "n_dropped", 0):
        info["Rows dropped (missing):"] = str(model.n_dropped)
    return info


def _fe_table(res, alpha, table=None):
    if table is not None:         # t tests with df (Gaussian fits, mlglm.inference.ddf)
        fmt = lambda v: _fmt(v, 4)        # noqa: E731
        return table.map(fmt) if hasattr(table, "map") else table.applymap(fmt)
    p = res.k_fe
    return _wald_table(np.asarray(res.fe_params), np.asarray(res.bse_fe),
                       list(res.model.exog_names)[:p], alpha)


def _zi_table(res, alpha):
    """(table, heading): the zero part's coefficients (zero-inflated and hurdle models) as
    a Wald z table of their own and a line saying what the zero part is; None without
    one."""
    k = res.k_zi
    if not k:
        return None
    names = list(res.model.data.param_names)
    end = len(names) - int(res.model.fam.estimates_dispersion)
    se = np.sqrt(np.diag(np.asarray(res.cov_params()))[end - k:end])
    what = ("Zero-inflation model, logit Pr(structural zero):"
            if res.model.fam.zero_part == "inflation" else
            "Zero (hurdle) model, logit Pr(y = 0):")
    return _wald_table(np.asarray(res.zi_params), se, list(res.zi_params.index), alpha), what


def _wald_table(coef, se, names, alpha):
    with np.errstate(divide="ignore", invalid="ignore"):
        z = coef / se
    pv = 2 * stats.norm.sf(np.abs(z))
    crit = stats.norm.ppf(1 - alpha / 2)
    lo, hi = f"[{alpha / 2:.3f}", f"{1 - alpha / 2:.3f}]"
    df = pd.DataFrame({"Coef.": coef, "Std.Err.": se, "z": z, "P>|z|": pv,
                       lo: coef - crit * se, hi: coef + crit * se}, index=names)
    cell = (lambda v: _fmt(v, 4, sci=True))      # noqa: E731
    return df.map(cell) if hasattr(df, "map") else df.applymap(cell)


def _re_table(res):
    """The random-effects table: statsmodels' MixedLM layout for one factor (rows named
    by its effects, correlations in columns), lme4's ``VarCorr`` layout (a block per
    factor) for several; the residual variance of a Gaussian fit last."""
    model = res.model
    scale = res.scale if model.fam.is_gaussian else None
    if not view.single_term(model):
        return _with_dispersion(res, varcorr_rows(model.re_terms, res.outcome.Sigmas, scale))
    t = model.re_terms[0]
    names = view.effect_names(t)
    S = np.asarray(res.outcome.Sigmas[0], dtype=float)
    Lam = model.re_terms.Lambdas(np.asarray(res.outcome.theta, dtype=float))[0]
    singular = np.abs(np.diag(Lam)) < SINGULAR_TOL
    sd = np.sqrt(np.clip(np.diag(S), 0, None))
    rows = []
    q = len(names)
    for i, nm in enumerate(names):
        row = {"Variance": _fmt(S[i, i], 4, sci=True), "Std.Dev.": _fmt(sd[i], 4, sci=True)}
        for j in range(i):
            c = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
            row[f"Corr({names[j]})"] = _fmt(c, 3)
        if singular[i]:
            row["Note"] = "singular (see note)"
        rows.append(row)
    index = names[:]
    if scale is not None:
        rows.append({"Variance": _fmt(scale, 4), "Std.Dev.": _fmt(np.sqrt(scale), 4)})
        index.append("Residual")
    df = pd.DataFrame(rows, index=index).fillna("")
    if q > 1 and t.pattern.is_diagonal and not t.pattern.is_unstructured:
        df["Note"] = ["uncorrelated (diagonal)"] * q + [""] * (len(index) - q)
    return _with_dispersion(res, df)


def _with_dispersion(res, df):
    """The random-effects table with a row for the dispersion of a negative binomial
    or Gamma fit: its estimate under Variance, its SE under Std.Dev., what it is in
    Note (the table's columns; the row's label names it)."""
    fam = res.model.fam
    if fam.is_gaussian or not fam.has_dispersion:
        return df
    cols = list(df.columns)
    row = {c: "" for c in cols}
    value_col, se_col = ("Variance", "Std.Dev.") if "Variance" in cols else cols[:2]
    row[value_col] = _fmt(res.dispersion, 4)
    if fam.estimates_dispersion:
        row[se_col] = f"SE {_fmt(res.bse_dispersion, 4)}"
        note = f"{fam.dispersion_name}, ML ({fam.dispersion_description})"
    else:
        note = f"{fam.dispersion_name}, fixed ({fam.dispersion_description})"
    if "Note" not in cols:
        df = df.assign(Note="")
    row["Note"] = note
    extra = pd.DataFrame([row], index=[f"Dispersion ({fam.dispersion_name})"])
    return pd.concat([df, extra[df.columns]]).fillna("")


def _warnings(res):
    out = []
    se_note = standard_error_note(res)
    if se_note:
        out.append(se_note + ".")
    if not res.converged and not getattr(res.optim, "information", "").startswith(
            "not computed"):
        rec = res.optim
        g = getattr(rec, "grad_norm", np.nan)
        out.append(f"The optimiser did not converge (max |gradient| = {g:.2g}); try "
                   "start_params= from a simpler model, or rescale covariates.")
    if np.any(res.singular):
        what = describe_singular(res)
        out.append(f"Singular fit: {what}; {singular_advice(what)}.")
    dropped = getattr(res.model, "dropped_levels", None)
    if dropped:
        text = "; ".join(f"{col}: {', '.join(map(str, levels))}" for col, levels in dropped.items())
        out.append(f"Unused levels dropped (no rows in the data): {text}.")
    if res.model.fam.is_binomial and res.method == "laplace":
        sizes = getattr(res.model, "group_sizes", None)     # a sharded model holds no rows
        sizes = np.bincount(res.model.re_terms[0].codes) if sizes is None else sizes
        if np.all(res.model.n_trials == 1) and len(sizes) and np.median(sizes) < 10:
            out.append("Binary data with small groups: the Laplace approximation can be biased; "
                       "compare with method='aghq'.")
    col = getattr(res, "collinearity", None)
    if col:
        out.append(f"Near-collinear fixed effects: {col}.")
    sep = getattr(res, "separation", None)
    if sep:
        out.append(f"Possible separation: {sep}")
    # issue 13: quadrature adequacy, in words
    chk = getattr(res.optim, "quadrature_check", None)
    if chk is not None:
        out.append(chk.describe() + ("." if chk.adequate else f"; {chk.advice()}."))
        why = "" if chk.adequate else boundary_groups(res.model)
        if why:
            out.append(why[0].upper() + why[1:] + ".")
    auto = getattr(res.optim, "auto", None)
    if auto is not None:
        out.append(auto.describe() + ".")
    if not res.model.fam.is_gaussian:
        out.append("Deviance is -2 x log-likelihood (all constants included), not lme4's "
                   "sum of deviance residuals.")
    return out


class MixedGLMSummary(summary2.Summary):
    """statsmodels' Summary, with each table at its natural width in text.

    (statsmodels stretches every table to the widest one by widening the
    column separators, which turns a 3-column random-effects table into a
    120-character line.)
    """

    def as_text(self):
        n = len(self.tables)
        simple = summary2._simple_tables(self.tables, self.settings, [2] * n, [0] * n)
        parts = [t.as_text() for t in simple]
        widest = max(len(line) for part in parts for line in part.splitlines())
        body = "\n".join(parts).split("\n")
        body[0] = "=" * widest
        body.append("=" * widest)
        title = self.title or ""
        title = " " * max(int(widest / 2 - len(title) / 2), 0) + title
        txt = "\n".join("\n".join(textwrap.wrap(x, widest)) for x in self.extra_txt)
        return f"{title}\n" + "\n".join(body) + f"\n{txt}"


def make_summary(res, alpha=0.05, ddf=None):
    """Build the statsmodels Summary for ``res`` (``ddf``: see :mod:`mlglm.inference.ddf`)."""
    table, how, notes = summary_coefficients(res, alpha, ddf)
    smry = MixedGLMSummary()
    smry.add_title(f"{type(res.model).__name__} results: {method_label(res)}")
    smry.add_dict({**_header(res), "Fixed-effect tests:": how}, ncols=2)
    smry.add_df(_fe_table(res, alpha, table), float_format="%s")
    zi = _zi_table(res, alpha)
    if zi is not None:          # its own block, headed by a row saying what it models
        table, what = zi
        head = pd.DataFrame([[""] * table.shape[1]], index=[what], columns=table.columns)
        smry.add_df(pd.concat([head, table]), float_format="%s")
    smry.add_df(_re_table(res), float_format="%s")
    for w in _warnings(res) + notes:
        smry.add_text(w)
    return smry
