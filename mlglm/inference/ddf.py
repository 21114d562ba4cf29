"""t and F tests of the fixed effects of a linear mixed model with small-sample degrees
of freedom: Satterthwaite's (lmerTest) and Kenward-Roger's (pbkrtest).

A fit with few groups (a split-plot trial, a handful of clinics) makes the normal
approximation of Wald z tests anti-conservative, and how many degrees of freedom a
test has depends on the term: in a split plot the whole-plot factor is tested
against the variation between whole plots, the split-plot factor against the
residual. The tables here are lmerTest 3.1's:

* ``res.coef_table(ddf=...)``: ``Estimate``, ``Std. Error``, ``df``, ``t value``,
  ``Pr(>|t|)`` per fixed effect (``summary(lmerTest fit)$coefficients``);
* ``res.anova(type=3, ddf=...)``: ``Sum Sq``, ``Mean Sq``, ``NumDF``, ``DenDF``,
  ``F value``, ``Pr(>F)`` per term of the formula (``anova(lmerTest fit)``), with
  the hypotheses of :mod:`mlglm.inference.hypotheses`;
* ``t_test``, ``wald_test`` / ``f_test``, ``conf_int`` and ``summary`` of a
  Gaussian fit take ``ddf=``.

``ddf`` is ``"satterthwaite"`` (lmerTest's default), ``"kenward-roger"``
(REML fits only: the adjusted covariance Phi_A of the fixed effects replaces
``cov_params()`` in every statistic, as pbkrtest) or ``"normal"`` (df = inf: z
and chi-square/q tests, the statsmodels default). The mathematics and its cost
are in :mod:`mlglm.core.engines.lmm.ddf`; the derivatives are exact (lmerTest
differentiates numerically), and at lme4's estimates every df, SE, p-value, F and
DenDF of lmerTest's and pbkrtest's tables is reproduced to 3e-6 relative or better
(``tests/test_ddf.py``).

``res.anova()`` is not :func:`mlglm.anova`, which compares *several* fits by
likelihood-ratio tests (lme4's ``anova(m0, m1)``); this one tests the terms of
*one* fit (lmerTest's ``anova(m)``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..core.engines.lmm.ddf import (LevelSpace, dense_component_size, kenward_roger,
                                    kenward_roger_f, kenward_roger_t, satterthwaite,
                                    satterthwaite_f, satterthwaite_t, t_pvalue)
from ..design.data_checks import MixedGLMInputError
from .hypotheses import term_hypotheses

__all__ = ["resolve_ddf", "coef_table", "anova_table", "contrast_t", "contrast_f",
           "ddf_t_test", "ddf_f_test", "ddf_conf_int", "summary_coefficients",
           "DDF_DENSE_LIMIT", "DDF_SUMMARY_LIMIT"]

DDF_DENSE_LIMIT = 6000
"""Largest connected component of random effects (levels x effects sharing rows) for which
df are computed: its dense work grows as its size cubed (crossed factors form one component;
one factor or nested factors give one per top-level group)."""

DDF_SUMMARY_LIMIT = 2000
"""The same limit for the df that ``summary()`` computes unasked (z tests beyond it, said so)."""

DDF_KEEP_BYTES = 64 * 2 ** 20
"""The level-space arrays are kept on the results (for the other method) up to this size;
larger ones are recomputed when asked for."""

_ALIASES = {"satterthwaite": "satterthwaite", "kenward-roger": "kenward-roger",
            "kenward_roger": "kenward-roger", "kenwardroger": "kenward-roger",
            "kr": "kenward-roger", "normal": "normal", "z": "normal", "asymptotic": "normal"}

_LABEL = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger",
          "normal": "normal (z)"}


def resolve_ddf(res, ddf, default="satterthwaite") -> str:
    """The method's canonical name; refuses df methods for GLMMs and Kenward-Roger for
    ML fits with the reason."""
    if ddf is None:
        ddf = default
    key = str(ddf).strip().lower().replace(" ", "")
    if key not in _ALIASES:
        raise MixedGLMInputError(f"ddf must be 'satterthwaite', 'kenward-roger' or 'normal' "
                                 f"(got {ddf!r})")
    method = _ALIASES[key]
    if method == "normal":
        return method
    if not res.model.fam.is_gaussian:
        raise MixedGLMInputError(
            f"ddf={ddf!r}: Satterthwaite and Kenward-Roger degrees of freedom are for "
            "Gaussian (linear) mixed models; a GLMM's fixed effects are tested by Wald z "
            "tests (ddf='normal')")
    if method == "kenward-roger" and not res.reml:
        raise MixedGLMInputError(
            "Kenward-Roger's method is for REML fits (as in pbkrtest and lmerTest); refit "
            "with reml=True (lmer's default) or use ddf='satterthwaite', which works with "
            "ML fits too")
    return method


# ------------------------------------------------------------------ the computations
def _level_space(res, limit=None) -> LevelSpace:
    cache = res._cache
    if "_ddf_level_space" in cache:
        return cache["_ddf_level_space"]
    model = res.model
    if not getattr(model, "rows_on_driver", True):
        raise NotImplementedError(
            "df for a fit on a Dask cluster need every row on one machine; use ddf='normal' "
            "(or fit the data in memory)")
    pr = model.problem
    size = dense_component_size(pr.terms)
    limit = DDF_DENSE_LIMIT if limit is None else limit
    if size > limit:
        raise NotImplementedError(
            f"the random effects form a connected block of {size} effects (crossed "
            f"factors); df need dense work of order {size}^3 there (limit {limit}). With "
            "this many levels the normal approximation is close: use ddf='normal'")
    beta = np.asarray(res.outcome.beta, dtype=float)
    theta = np.asarray(res.outcome.theta, dtype=float)
    r = pr.y - pr.offset - pr.X @ beta
    sqrt_w, n = None, float(pr.n)
    if pr.freq is not None or pr.var is not None:
        f = np.ones(pr.n) if pr.freq is None else np.asarray(pr.freq, dtype=float)
        v = np.ones(pr.n) if pr.var is None else np.asarray(pr.var, dtype=float)
        w = f * v
        sqrt_w, n = np.sqrt(w), float(f[w > 0].sum())
    ls = LevelSpace(pr.X, r, pr.terms, pr.terms.Lambdas(theta), float(res.scale), n, sqrt_w)
    cache["_ddf_level_space"] = ls
    return ls


def _method_inputs(res, method, limit=None):
    key = f"_ddf_{method}"
    cache = res._cache
    if key not in cache:
        ls = _level_space(res, limit)
        if method == "satterthwaite":
            cache[key] = satterthwaite(ls, bool(res.reml))
            if cache[key].problem:
                import warnings
                warnings.warn(cache[key].problem, RuntimeWarning, stacklevel=4)
        else:
            cache[key] = kenward_roger(ls)
        if ls.nbytes > DDF_KEEP_BYTES:
            cache.pop("_ddf_level_space", None)
    return cache[key]


def _fe_matrix(res, L) -> np.ndarray:
    """L over the fixed effects (columns over ``params`` must be 0 beyond them)."""
    L = np.atleast_2d(np.asarray(L, dtype=float))
    p = res.k_fe
    if L.shape[1] == p:
        return L
    if L.shape[1] == len(res.params) and not np.any(L[:, p:] != 0):
        return L[:, :p]
    if L.shape[1] == len(res.params):
        raise MixedGLMInputError("ddf= tests are for the fixed effects; this hypothesis "
                                 "involves variance parameters")
    raise MixedGLMInputError(f"the hypothesis has {L.shape[1]} columns; give one per fixed "
                             f"effect ({p})")


def contrast_t(res, L, ddf=None):
    """(estimates, standard errors, df) of the rows l of L (over the fixed effects).

    Satterthwaite: SE from ``cov_params()``; Kenward-Roger: from Phi_A; normal: df inf."""
    method = resolve_ddf(res, ddf)
    L = _fe_matrix(res, L)
    beta = np.asarray(res.fe_params, dtype=float)
    est = L @ beta
    if method == "normal":
        V = np.asarray(res.cov_params(), dtype=float)[:res.k_fe, :res.k_fe]
        return est, np.sqrt(np.einsum("ra,ab,rb->r", L, V, L)), np.full(len(est), np.inf)
    if method == "satterthwaite":
        var, df = satterthwaite_t(L, _method_inputs(res, method))
    else:
        var, df = kenward_roger_t(L, _method_inputs(res, method))
    return est, np.sqrt(var), df


def contrast_f(res, L, ddf=None, rhs=None) -> dict:
    """F test of L beta = rhs: dict with ``F`` (the test statistic), ``F_unscaled``
    (Kenward-Roger before its scaling; = F otherwise), ``num_df``, ``den_df``,
    ``pvalue``."""
    method = resolve_ddf(res, ddf)
    L = _fe_matrix(res, L)
    beta = np.asarray(res.fe_params, dtype=float)
    if rhs is not None:
        rhs = np.asarray(rhs, dtype=float).reshape(-1)
    if method == "normal":
        b = beta if rhs is None else beta - np.linalg.pinv(L) @ rhs
        V = np.asarray(res.cov_params(), dtype=float)[:res.k_fe, :res.k_fe]
        q = int(np.linalg.matrix_rank(L))
        Lb = L @ b
        F = float(Lb @ np.linalg.pinv(L @ V @ L.T) @ Lb) / q
        return dict(F=F, F_unscaled=F, num_df=q, den_df=np.inf,
                    pvalue=float(stats.chi2.sf(F * q, q)))
    if method == "satterthwaite":
        F, q, den = satterthwaite_f(L, beta, _method_inputs(res, method), rhs)
        Fu = F
    else:
        Fu, q, den, scaling = kenward_roger_f(L, beta, _method_inputs(res, method), rhs)
        F = Fu * scaling
    return dict(F=F, F_unscaled=Fu, num_df=q, den_df=den,
                pvalue=float(stats.f.sf(F, q, den)) if q else np.nan)


# ------------------------------------------------------------------ tables
def coef_table(res, ddf="satterthwaite") -> pd.DataFrame:
    """lmerTest's coefficient table (see :meth:`MixedGLMResults.coef_table`)."""
    method = resolve_ddf(res, ddf)
    p = res.k_fe
    est, se, df = contrast_t(res, np.eye(p), method)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = est / se
    out = pd.DataFrame({"Estimate": est, "Std. Error": se, "df": df, "t value": t,
                        "Pr(>|t|)": t_pvalue(t, df)},
                       index=pd.Index(list(res.model.exog_names)[:p]))
    out.attrs["ddf"] = method
    return out


def anova_table(res, type=3, ddf="satterthwaite") -> pd.DataFrame:
    """lmerTest's ``anova(m, type=, ddf=)`` table (see :meth:`MixedGLMResults.anova`)."""
    if isinstance(type, str):
        type = {"i": 1, "ii": 2, "iii": 3, "1": 1, "2": 2, "3": 3}.get(type.strip().lower(), type)
    method = resolve_ddf(res, ddf)
    hyps = term_hypotheses(res.model, type)
    # sums of squares are sigma^2-scaled Wald statistics: for a GLMM (ddf="normal", Wald
    # chi-square / q as F) there is no sigma^2 and they are left out
    sigma2 = float(res.scale) if res.model.fam.is_gaussian else np.nan
    rows = {}
    for name, L in hyps.items():
        if L.shape[0] == 0:
            rows[name] = dict.fromkeys(["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value",
                                        "Pr(>F)"], np.nan)
            continue
        r = contrast_f(res, L, method)
        ms = r["F_unscaled"] * sigma2
        rows[name] = {"Sum Sq": ms * r["num_df"], "Mean Sq": ms, "NumDF": r["num_df"],
                      "DenDF": r["den_df"], "F value": r["F"], "Pr(>F)": r["pvalue"]}
    out = pd.DataFrame.from_dict(rows, orient="index",
                                 columns=["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value",
                                          "Pr(>F)"])
    roman = {1: "I", 2: "II", 3: "III"}[type]
    out.attrs["heading"] = (f"Type {roman} Analysis of Variance Table with "
                            f"{_LABEL[method]} df")
    out.attrs["hypotheses"] = hyps
    out.attrs["ddf"] = method
    return out


# ------------------------------------------------------------------ statsmodels' shapes
def _no_covariance_override(cov_p=None, invcov=None):
    if cov_p is not None or invcov is not None:
        raise MixedGLMInputError("ddf= tests use the covariance of their method (cov_params() "
                                 "for Satterthwaite, the adjusted one for Kenward-Roger); "
                                 "cov_p= and invcov= are for the Wald tests without ddf=")


def ddf_t_test(res, R, q=None, ddf=None, cov_p=None):
    """statsmodels ``ContrastResults`` of the t tests R beta = q with the df of ``ddf``."""
    from statsmodels.stats.contrast import ContrastResults
    _no_covariance_override(cov_p)
    est, se, df = contrast_t(res, R, ddf)
    q = np.zeros(len(est)) if q is None else np.asarray(q, dtype=float).reshape(-1)
    t = (est - q) / se
    if np.all(np.isinf(df)):
        return ContrastResults(effect=est, sd=se, statistic=t, distribution="norm",
                               alpha=0.05)
    out = ContrastResults(t=t, sd=se, effect=est, df_denom=df)
    out.ddf_method = resolve_ddf(res, ddf)
    return out


def ddf_f_test(res, R, q=None, ddf=None, use_f=True, cov_p=None, invcov=None):
    """statsmodels ``ContrastResults`` of the joint test R beta = q by ``ddf``'s F."""
    from statsmodels.stats.contrast import ContrastResults
    _no_covariance_override(cov_p, invcov)
    r = contrast_f(res, R, ddf, q)
    if np.isinf(r["den_df"]) and not use_f:
        return ContrastResults(statistic=r["F"] * r["num_df"], df_denom=r["num_df"],
                               distribution="chi2")
    if np.isinf(r["den_df"]):
        return ContrastResults(F=r["F"], df_denom=np.inf, df_num=r["num_df"])
    out = ContrastResults(F=r["F"], df_denom=r["den_df"], df_num=r["num_df"])
    out.ddf_method = resolve_ddf(res, ddf)
    return out


def ddf_conf_int(res, alpha=0.05, ddf=None) -> np.ndarray:
    """(k, 2) limits for ``params``: the fixed effects estimate -/+ t_{df, 1-alpha/2} SE
    with the df (and, for Kenward-Roger, the SE) of ``ddf``; the variance rows as
    ``conf_int()`` has them."""
    from statsmodels.base.model import LikelihoodModelResults
    out = np.asarray(LikelihoodModelResults.conf_int(res, alpha), dtype=float).copy()
    p = res.k_fe
    est, se, df = contrast_t(res, np.eye(p), ddf)
    crit = np.where(np.isinf(df), stats.norm.ppf(1 - alpha / 2),
                    stats.t.ppf(1 - alpha / 2, np.where(np.isinf(df), 1.0, df)))
    out[:p, 0] = est - crit * se
    out[:p, 1] = est + crit * se
    return out


def summary_coefficients(res, alpha=0.05, ddf=None):
    """(table, how, notes) for ``summary()``: the fixed-effects table with df and t-based
    p-values and intervals for a Gaussian fit (Satterthwaite unless ``ddf`` says
    otherwise), a phrase saying how the tests were made, and sentences on numerical
    trouble. None for the table when z tests are shown (GLMMs; ddf='normal'; df not
    available -- the phrase says why)."""
    gaussian = res.model.fam.is_gaussian
    if not gaussian:
        if ddf is not None:
            resolve_ddf(res, ddf)           # refuses df methods with the reason
        return None, "Wald z (df methods are for Gaussian models)", []
    method = resolve_ddf(res, ddf)
    if method == "normal":
        return None, "Wald z (normal; ddf='normal')", []
    limit = DDF_SUMMARY_LIMIT if ddf is None else None
    try:
        inputs = _method_inputs(res, method, limit)
    except (NotImplementedError, np.linalg.LinAlgError, MemoryError) as exc:
        return None, "Wald z (normal)", [f"Fixed-effect tests are z tests: {method} df were "
                                         f"not computed: {exc}."]
    notes = [f"Satterthwaite df: {inputs.problem}."] if getattr(inputs, "problem", None) \
        else []
    tab = coef_table(res, method)
    p = res.k_fe
    df = tab["df"].to_numpy()
    crit = stats.t.ppf(1 - alpha / 2, df)
    est, se = tab["Estimate"].to_numpy(), tab["Std. Error"].to_numpy()
    lo, hi = f"[{alpha / 2:.3f}", f"{1 - alpha / 2:.3f}]"
    out = pd.DataFrame({"Coef.": est, "Std.Err.": se, "df": df, "t": tab["t value"].to_numpy(),
                        "P>|t|": tab["Pr(>|t|)"].to_numpy(), lo: est - crit * se,
                        hi: est + crit * se}, index=list(res.model.exog_names)[:p])
    how = {"satterthwaite": "t, Satterthwaite df (lmerTest)",
           "kenward-roger": "t, Kenward-Roger df and SEs (pbkrtest)"}[method]
    return out, how, notes
