"""Likelihood-ratio tests and R-style ``anova()`` tables for nested fits.

Every log-likelihood mlglm reports carries all normalising constants, for
Laplace, AGHQ and Gaussian ML alike, so a MixedGLM fit can be compared with
another MixedGLM fit or with an ordinary statsmodels ``GLM``/``OLS`` fit of the
same data (lme4's nAGQ > 1 log-likelihoods cannot).

When the larger model adds random-effect terms, the null hypothesis puts a
variance on the boundary of its space and the usual chi-square reference is
conservative. For adding one random effect to q existing ones with an
unstructured covariance (df = q + 1 extra parameters) the null distribution
is the 50:50 mixture of chi^2_q and chi^2_{q+1} (Self & Liang 1987; Stram &
Lee 1994), which is what ``boundary=True`` (the default) uses and says.

The same holds between random-effects structures with several grouping
factors: what is counted is the number of variance components (one SD per
effect of every factor; one per tied block). Adding one -- ``(1 | school)``
against ``(1 | school/class)``, one factor against two crossed ones, a
random slope on one factor -- tests that variance at 0 with the 50:50
mixture of chi^2_{df-1} and chi^2_df (chi^2_0 being a point mass at 0, so
for df = 1 the p-value is half the chi^2_1 one).
"""
from __future__ import annotations

import textwrap
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..design.factors import random_terms_text
from ..design.sm_families import statsmodels_distribution

__all__ = ["LRTest", "compare_lr_test", "anova", "AnovaTable", "check_same_data", "is_reml"]

#: the width anova() tables print in (a terminal's)
PRINT_WIDTH = 80


def _n_params(res) -> int:
    out = getattr(res, "outcome", None)
    if out is not None:
        return int(out.n_params)
    k = len(np.asarray(res.params))
    fam = getattr(getattr(res, "model", None), "family", None)
    dist = statsmodels_distribution(fam)
    if fam is None or (dist is not None and dist.dispersion_is_scale):
        k += 1  # OLS / Gaussian or Gamma GLM: the scale is a parameter too
    return k


def _n_re(res) -> int:
    """The number of variance components (random-effect SDs) of a fit: one per effect
    of an unstructured block, one per tied block, summed over the terms (statsmodels'
    ``MixedLM``: its random-effect columns)."""
    model = getattr(res, "model", None)
    terms = getattr(model, "re_terms", None)
    if terms is not None:
        return sum(b.size if b.kind == "unstructured" else 1
                   for t in terms for b in t.pattern.blocks)
    if model is None or not hasattr(model, "exog_re"):
        return 0
    return int(np.asarray(model.exog_re).shape[1])


def _label(res) -> str:
    """The model of a fit in words: its formula with the random part in lme4's syntax."""
    model = res.model
    if getattr(model, "re_terms", None) is not None and getattr(model, "formula", None):
        return f"{model.formula} + {random_terms_text(model)}"
    text = getattr(model, "formula", None) or type(model).__name__
    if hasattr(model, "exog_re") and hasattr(model, "group_name"):
        names = [("1" if n == model.group_name else n) for n in model.data.exog_re_names]
        text += f" + ({' + '.join(map(str, names))} | {model.group_name})"
    return text


def is_reml(res) -> bool:
    """Whether a fit maximised a REML criterion (mlglm's or statsmodels' MixedLM)."""
    return bool(getattr(res, "reml", False)) or str(getattr(res, "method", "")).lower() == "reml"


def _response(res):
    """(response per row on the scale of the mean -- successes per trial for a binomial
    fit --, row labels or None) of a fit: what two fits of the same data share."""
    model = res.model
    y = np.asarray(model.endog, dtype=float)
    m = getattr(model, "n_trials", None)
    if y.ndim == 2 and y.shape[1] == 2:           # sm.GLM's (successes, failures)
        y = y[:, 0] / y.sum(axis=1)
    elif m is not None and np.shape(m) == y.shape:
        y = y / np.asarray(m, dtype=float)
    labels = getattr(getattr(model, "data", None), "row_labels", None)
    return y.reshape(-1), (None if labels is None or len(labels) != y.size else labels)


def _same_fixed_effects(a, b) -> bool:
    """Same fixed-effects design (names and columns): REML criteria then compare."""
    Xa, Xb = np.asarray(a.model.exog, dtype=float), np.asarray(b.model.exog, dtype=float)
    return (list(map(str, a.model.exog_names)) == list(map(str, b.model.exog_names))
            and Xa.shape == Xb.shape and np.allclose(Xa, Xb, rtol=1e-12, atol=0.0))


def check_same_data(small, big):
    """Refuse to compare fits of different responses or different rows: their
    log-likelihoods are of different data, so their difference tests nothing."""
    if int(small.nobs) != int(big.nobs):
        raise ValueError(f"the fits use different numbers of observations "
                         f"({int(small.nobs)} and {int(big.nobs)}); compare fits of the same rows")
    if not all(getattr(r.model, "rows_on_driver", True) for r in (small, big)):
        return                  # a sharded fit's rows live on a cluster: nobs is what is here
    (ya, la), (yb, lb) = _response(small), _response(big)
    if ya.shape == yb.shape and la is not None and lb is not None and not la.equals(lb) \
            and la.sort_values().equals(lb.sort_values()):
        yb = pd.Series(yb, index=lb).reindex(la).to_numpy()     # same rows, other order
    if ya.shape != yb.shape or not np.allclose(ya, yb, rtol=1e-10, atol=1e-12, equal_nan=True):
        differ = int(np.sum(~np.isclose(ya, yb, rtol=1e-10, atol=1e-12))) \
            if ya.shape == yb.shape else None
        raise ValueError("the fits have different responses (" + (
            f"{differ} of {ya.size} rows differ" if differ is not None else "different rows")
            + "): a likelihood-ratio test compares models of the same data; fit both to the "
            "same response and the same rows")


def _check_comparable(small, big):
    check_same_data(small, big)
    reml = (is_reml(small), is_reml(big))
    if any(reml):
        if not all(reml):
            raise ValueError("one fit is REML and the other ML: their log-likelihoods are "
                             "different criteria; refit the REML one with reml=False, or use "
                             "mlglm.anova(), which refits by ML as lme4 does")
        if not _same_fixed_effects(small, big):
            raise ValueError("REML log-likelihoods are comparable only between fits with the "
                             "same fixed effects, and these differ; refit both with reml=False "
                             "(method='ml'), or use mlglm.anova(), which refits by ML as lme4 "
                             "does")


def _nb_over_poisson(big, small) -> int:
    """1 when ``big`` is a negative binomial fit with estimated theta and ``small`` a
    Poisson fit: the Poisson is the boundary 1/theta = 0 of the negative binomial."""
    fb = getattr(getattr(big, "model", None), "fam", None)
    small_model = getattr(small, "model", None)
    fs = getattr(small_model, "fam", None)
    small_dist = fs.distribution if fs is not None else \
        statsmodels_distribution(getattr(small_model, "family", None))
    return int(fb is not None and fb.nests_at_boundary(small_dist))


@dataclass(frozen=True)
class LRTest:
    """Likelihood-ratio test of a smaller model against a larger one."""

    statistic: float
    df: int
    pvalue: float
    reference: str
    llf_small: float
    llf_big: float

    def __repr__(self):
        return (f"LR test: chi2 = {self.statistic:.4f}, df = {self.df}, p = {self.pvalue:.4g} "
                f"({self.reference})")


def compare_lr_test(big, small, boundary=True) -> LRTest:
    """LR test of ``small`` nested in ``big`` (either order is accepted).

    ``boundary=True`` uses the 50:50 chi-square mixture when ``big`` has one
    parameter on the boundary of the smaller model more than ``small``: one more
    variance component (a random effect, of any grouping factor; see the module
    docstring), or a negative binomial against the Poisson (1/theta = 0); set it
    to False for the plain chi-square of lme4's ``anova()``.

    Both fits must be of the same response on the same rows (else ``ValueError``).
    REML fits are compared only with each other and only when their fixed effects
    are the same (a test of the random effects; the REML criterion depends on the
    fixed-effects design); otherwise refit by ML or use :func:`anova`, which does.
    """
    if _n_params(big) < _n_params(small):
        big, small = small, big
    _check_comparable(small, big)
    df = _n_params(big) - _n_params(small)
    if df <= 0:
        raise ValueError("the models have the same number of parameters; they are not nested")
    lr = max(2.0 * (big.llf - small.llf), 0.0)
    extra_re = _n_re(big) - _n_re(small) + _nb_over_poisson(big, small)
    if boundary and extra_re == 1:
        p = 0.5 * stats.chi2.sf(lr, df) + (0.5 * stats.chi2.sf(lr, df - 1) if df > 1 else 0.0)
        what = ("1/theta = 0 (the Poisson) on the boundary" if _nb_over_poisson(big, small)
                else "a variance on the boundary")
        ref = f"50:50 mixture of chi2({df - 1}) and chi2({df}): {what}"
    else:
        p = stats.chi2.sf(lr, df)
        ref = f"chi2({df})"
    return LRTest(float(lr), int(df), float(p), ref, float(small.llf), float(big.llf))


class AnovaTable(pd.DataFrame):
    """The DataFrame of :func:`anova` (index: the models' formulas), printed as R
    prints it: the formulas listed as m1, m2, ... above a table that fits in
    :data:`PRINT_WIDTH` columns."""

    def to_text(self) -> str:
        short = [f"m{i + 1}" for i in range(len(self))]
        lines = ["Models:"]
        for tag, label in zip(short, self.index):
            lines += textwrap.wrap(f"{tag}: {label}", PRINT_WIDTH, subsequent_indent="    ")

        def num(d):
            return lambda v: "" if pd.isna(v) else f"{v:.{d}f}"
        formats = {"npar": lambda v: f"{int(v)}", "AIC": num(2), "BIC": num(2),
                   "logLik": num(2), "deviance": num(2), "Chisq": num(4),
                   "Df": lambda v: "" if pd.isna(v) else f"{int(v)}",
                   "Pr(>Chisq)": lambda v: "" if pd.isna(v) else f"{v:.4g}"}
        if self.attrs.get("refitted"):
            lines.append("(refitted with ML instead of REML: "
                         + ", ".join(tag for tag, label in zip(short, self.index)
                                     if label in self.attrs["refitted"]) + ")")
        table = pd.DataFrame(self.to_numpy(), index=short, columns=self.columns)
        lines += table.to_string(formatters={c: formats.get(c, str) for c in self.columns},
                                 na_rep="", line_width=PRINT_WIDTH).splitlines()
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return self.to_text()

    __str__ = __repr__


def anova(*results, boundary=False, refit=True) -> AnovaTable:
    """R-style table for nested fits, ordered by the number of parameters:
    npar, AIC, BIC, logLik, deviance (-2 logLik), Chisq, Df, Pr(>Chisq); indexed by
    the models' formulas and printed as R prints it (:class:`AnovaTable`).

    Each row is tested against the row above it. ``boundary=False`` (the
    default, as lme4) uses plain chi-square p-values; ``True`` the mixture.

    ``refit=True`` (the default, as lme4's ``anova(refit = TRUE)``): REML fits
    (``lmer``'s default) are refitted by maximum likelihood first, since REML
    criteria of different fixed effects are not comparable, and the table is of the
    ML fits; a ``UserWarning`` says so ("refitting model(s) with ML (instead of
    REML)", lme4's message) and the printed table repeats it (``attrs["refitted"]``
    lists the refitted models). ``refit=False`` compares REML fits as they are,
    which is valid only when they share the fixed effects (a test of the random
    effects; refused otherwise). Fits of different responses or rows are refused.
    """
    if len(results) < 2:
        raise ValueError("anova() compares two or more fits")
    for other in results[1:]:
        check_same_data(results[0], other)
    refitted = []
    if refit and any(is_reml(r) for r in results):
        warnings.warn("refitting model(s) with ML (instead of REML)", UserWarning, stacklevel=2)
        fitted = []
        for r in results:
            if is_reml(r):
                refitted.append(_label(r))
                r = r.model.fit(reml=False)
            fitted.append(r)
        results = fitted
    fits = sorted(results, key=_n_params)
    rows = []
    for i, r in enumerate(fits):
        k = _n_params(r)
        llf = float(r.llf)
        row = {"model": _label(r), "npar": k, "AIC": -2 * llf + 2 * k,
               "BIC": -2 * llf + np.log(float(r.nobs)) * k, "logLik": llf, "deviance": -2 * llf,
               "Chisq": np.nan, "Df": np.nan, "Pr(>Chisq)": np.nan}
        if i:
            t = compare_lr_test(r, fits[i - 1], boundary=boundary)
            row.update({"Chisq": t.statistic, "Df": t.df, "Pr(>Chisq)": t.pvalue})
        rows.append(row)
    out = AnovaTable(pd.DataFrame(rows).set_index("model"))
    out.attrs["refitted"] = refitted
    return out
