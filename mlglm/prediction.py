r"""Predictions from a fit: means or linear predictors, at the population level or
conditional on the groups' random effects, with standard errors.

For a row with fixed-effects design x, random-effects design z and offset o:

* population level (``conditional=False``, the default, as statsmodels'
  ``MixedLMResults.predict``): :math:`\eta = o + x'\hat\beta`, the random effects
  at 0;
* conditional (``conditional=True``, lme4's default ``re.form = NULL``):
  :math:`\eta = o + x'\hat\beta + z'\hat b_j` with :math:`\hat b_j` the
  conditional mode of the row's group j. Groups are matched by label
  (:func:`mlglm.factors.match_levels`); a group the fit never saw is an error
  unless ``allow_new_levels=True``, which predicts it at the population level;
* the mean is :math:`g^{-1}(\eta)` (per trial for binomial models).

Standard errors (:func:`get_prediction`) are by the delta method. At the population
level :math:`\mathrm{Var}(\hat\eta) = x' V_\beta x` with :math:`V_\beta` the
fixed-effects block of ``cov_params()``. Conditionally, the prediction error
:math:`x'(\hat\beta - \beta) + z'(\hat b_j - b_j)` has variance

.. math:: (x + D_j'z)' V_\beta (x + D_j'z) + z' P_j z,

with :math:`P_j = \mathrm{Var}(b_j \mid y, \beta)` (``random_effects_cov``) and
:math:`D_j = \partial \hat b_j / \partial\beta = -P_j Z_j' W_j X_j` the movement of
the group's mode with the fixed effects (W the per-row curvature -d2l/deta2 at the
conditional modes, times the row's prior weight; w/sigma^2 for Gaussian models).
For a linear mixed model this
is exactly Henderson's prediction error variance from the inverse of the
mixed-model equations; for GLMMs it is its Laplace (mode and curvature)
counterpart. Intervals for the mean are the linear predictor's interval mapped
through the inverse link (statsmodels' ``PredictionResultsMean``).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats
try:                                     # statsmodels >= 0.14
    from statsmodels.base._prediction_inference import PredictionResultsMean
except ImportError:  # pragma: no cover - older statsmodels: the same class, GLM's name
    from statsmodels.genmod._prediction import PredictionResults as PredictionResultsMean
from statsmodels.genmod.families import links
from statsmodels.regression._prediction import PredictionResults

from .expressions import evaluate_terms
from .factors import grouping_factors, match_categories, match_levels

__all__ = ["predict", "get_prediction", "predict_marginal", "design"]


def as_frame(exog):
    """New rows given as a dict of columns (statsmodels' ``predict`` takes one) as a
    DataFrame (a dict of scalars is one row); anything else unchanged."""
    if isinstance(exog, Mapping):
        if all(np.ndim(v) == 0 for v in exog.values()):
            return pd.DataFrame({k: [v] for k, v in exog.items()})
        return pd.DataFrame(dict(exog))
    return exog


def resolve_conditional(conditional, allow_new_levels):
    """Whether a prediction is conditional on the groups' random effects.

    ``conditional=None`` (the default) means population level unless
    ``allow_new_levels=True``, which only has a meaning for conditional predictions
    (lme4's ``allow.new.levels`` goes with its default ``re.form = NULL``) and so
    asks for them; ``conditional=False`` with ``allow_new_levels=True`` contradicts
    itself and is refused.
    """
    if conditional is None:
        return bool(allow_new_levels)
    if allow_new_levels and not conditional:
        raise ValueError("allow_new_levels=True is for conditional predictions (known groups "
                         "get their random effects, new ones the population level); with "
                         "conditional=False every row is predicted at the population level "
                         "already: drop one of the two")
    return bool(conditional)


def _new_data_offset(model, exog, n):
    """The offset of new rows when none is given: the formula's ``offset(expr)`` terms
    and the ``offset=`` / ``exposure=`` columns the model was fitted with, evaluated on
    the new DataFrame (zero for arrays, as statsmodels)."""
    off = np.zeros(n)
    if not isinstance(exog, pd.DataFrame):
        return off
    terms = getattr(model, "formula_offsets", ())
    if terms:
        off = off + evaluate_terms(terms, exog, getattr(model, "formula_env", None))
    column = getattr(model, "offset_column", None)
    if column is not None:
        off = off + _column(exog, column, "offset").astype(float)
    return off


def _column(exog, column, what):
    if column not in exog.columns:
        raise ValueError(f"the model was fitted with {what}={column!r}: the new rows need "
                         f"the column {column!r} (or pass {what}= to predict)")
    return exog[column].to_numpy()


def _design_rows(exog, model) -> np.ndarray:
    """Rows of the fixed-effects design given as an array: numbers, one column per
    fixed effect (a single row may be 1-d); else a clear error."""
    names = [str(c) for c in model.exog_names]
    try:
        X = np.atleast_2d(np.asarray(exog, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"exog must be numbers, the fixed-effects design's {len(names)} columns "
            f"({', '.join(names)}); got values that are not ({exc}). Pass a DataFrame with "
            "the data's columns to have the formula build the design") from exc
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(
            f"exog has {X.shape[-1]} columns; the fixed-effects design has {len(names)} "
            f"({', '.join(names)}): pass those columns in that order, or a DataFrame with "
            "the data's columns to have the formula build the design")
    return X


def design(results, exog=None, offset=None, exposure=None, transform=True):
    """(X, Z, offset, index) for the fit's rows (``exog=None``) or for new data.

    A DataFrame (or a dict of columns) goes through the model's formula (same coding
    as the fit) when ``transform`` is true; ``index`` is its index (None for arrays
    and in-sample). On new rows the offset is, unless ``offset=`` is given, the
    formula's offset terms (``offset(log(n))``) plus the column the model's
    ``offset=`` named, evaluated on the new DataFrame; likewise ``log`` of the
    column its ``exposure=`` named unless ``exposure=`` is given (so a rate model
    predicts counts for the new rows' exposures, as the ``offset(log(t))``
    spelling does). ``Z`` is None where the random-effects design cannot be built
    from the rows given (arrays whose random effects are not fixed-effect columns):
    only conditional and population-averaged predictions need it.
    """
    model = results.model
    multi = getattr(model, "multi", False)
    exog = as_frame(exog)
    if exog is None:
        Z = [t.Z for t in model.re_terms] if multi else np.asarray(model.exog_re, float)
        return np.asarray(model.exog, float), Z, np.asarray(model.offset, float), None
    index = exog.index if isinstance(exog, (pd.DataFrame, pd.Series)) else None
    if isinstance(exog, pd.DataFrame):      # categorical columns coded as in the fit
        exog = match_categories(exog, getattr(model, "category_levels", None))
    if (transform and isinstance(exog, pd.DataFrame)
            and getattr(model, "formula", None) is not None):
        X, index = results._transform_predict_exog(exog, transform=True)
        X = np.asarray(X, dtype=float)
    else:
        X = _design_rows(exog, model)
    n = X.shape[0]
    if offset is None:
        off = _new_data_offset(model, exog, n)
    else:
        off = np.broadcast_to(np.asarray(offset, dtype=float), (n,)).copy()
    if exposure is None and isinstance(exog, pd.DataFrame) \
            and getattr(model, "exposure_column", None) is not None:
        exposure = _column(exog, model.exposure_column, "exposure")
    if exposure is not None:
        off = off + np.log(np.asarray(exposure, dtype=float))
    if multi:
        from .factors import new_data_design
        Z = new_data_design(model, exog) if isinstance(exog, pd.DataFrame) else None
        return X, Z, off, index
    return X, _re_design(model, X), off, index


def _re_design(model, X):
    """Random-effects columns for new rows, taken from the fixed-effects design (a
    random intercept is a column of ones whether or not the fixed part has one);
    None when some random-effect column is not a fixed-effect column."""
    names = list(model.exog_names)
    from .factors import re_term_names
    Z_fit = np.asarray(model.exog_re, dtype=float)
    cols = []
    for k, term in enumerate(re_term_names(model)):
        if term in names:
            cols.append(X[:, names.index(term)])
        elif np.all(Z_fit[:, k] == 1.0):
            cols.append(np.ones(X.shape[0]))
        else:
            return None
    return np.column_stack(cols) if cols else np.zeros((X.shape[0], 0))


def _need_Z(model, Z):
    """``Z``, or the error saying why conditional predictions of these rows fail."""
    if Z is not None or getattr(model, "multi", False):
        return Z     # several factors: group_codes refuses arrays; marginal means take None
    from .factors import re_term_names
    missing = [str(nm) for nm, term in zip(model.data.exog_re_names, re_term_names(model))
               if term not in list(model.exog_names)]
    raise NotImplementedError(
        f"the random-effect column(s) {', '.join(missing)} are not fixed-effect columns, so "
        "they cannot be built from these rows; pass a DataFrame (formula models), include "
        "them in the fixed part, or predict at the population level (conditional=False)")


def group_codes(results, exog, allow_new_levels):
    """Per grouping factor, each row's level among the fit's (-1: new level)."""
    model = results.model
    factors = grouping_factors(model)
    if exog is None:
        return [f.codes for f in factors]
    if getattr(model, "multi", False):
        from .factors import match_factor
        if not isinstance(exog, pd.DataFrame):
            raise ValueError("conditional predictions on new data need a DataFrame with the "
                             "grouping columns; or pass conditional=False")
        return [match_factor(f, exog, model, allow_new_levels) for f in factors]
    out = []
    for f in factors:
        if not isinstance(exog, pd.DataFrame) or f.name not in exog.columns:
            raise ValueError(f"conditional predictions on new data need the group column "
                             f"{f.name!r} in the DataFrame; or pass conditional=False")
        out.append(match_levels(f.labels, exog[f.name], f.name, allow_new_levels))
    return out


def _conditional_part(results, Z, codes_by_factor):
    """z'b for every row (0 for new levels), summed over grouping factors."""
    if getattr(results.model, "multi", False):
        from .factors import random_part
        return random_part(results.model.re_terms, results.outcome.b, Z, codes_by_factor)
    b = np.asarray(results.outcome.b[0])
    total = np.zeros(Z.shape[0])
    for f, codes in zip(grouping_factors(results.model), codes_by_factor):
        known = codes >= 0
        cols = f.columns
        total[known] += np.einsum("nq,nq->n", Z[known][:, cols], b[codes[known]][:, cols])
    return total


def inverse_link(results, eta):
    """The family's mean function g^{-1}(eta) (identity for Gaussian models)."""
    return results.model.fam.inverse_link(eta)


def predict(results, exog=None, which="mean", conditional=None, offset=None, exposure=None,
            transform=True, marginal=False, nagq=15, allow_new_levels=False):
    """Predicted means or linear predictors (see :meth:`MixedGLMResults.predict`)."""
    if which not in ("mean", "linear"):
        raise ValueError("which must be 'mean' or 'linear'")
    exog = as_frame(exog)
    if marginal:
        if which != "mean" or conditional or allow_new_levels:
            raise ValueError("marginal=True averages means over the random effects; use "
                             "which='mean' and conditional=False (allow_new_levels is for "
                             "conditional predictions)")
        frame = predict_marginal(results, exog, offset=offset, exposure=exposure, se=False,
                                 nagq=nagq)
        return frame["mean"] if isinstance(exog, pd.DataFrame) else frame["mean"].to_numpy()
    conditional = resolve_conditional(conditional, allow_new_levels)
    X, Z, off, index = design(results, exog, offset, exposure, transform)
    eta = off + X @ np.asarray(results.outcome.beta)
    if conditional:
        codes = group_codes(results, exog, allow_new_levels)
        eta = eta + _conditional_part(results, _need_Z(results.model, Z), codes)
    out = eta if which == "linear" else inverse_link(results, eta)
    return out if index is None else pd.Series(out, index=index)


def _prior_weights(model):
    """f x v per row, or None."""
    f, v = model.freq_weights, model.var_weights
    if f is None:
        return v
    return f if v is None else f * v


def row_curvature(model, eta, scale, dispersion) -> np.ndarray:
    """W per row of ``model``: -d^2 l / d eta^2 at ``eta`` (1/sigma^2 = 1/scale for
    Gaussian models; ``dispersion``: the NB theta or Gamma phi, else None), times the
    row's prior weight."""
    if model.fam.is_gaussian:
        w = np.full(np.asarray(model.exog).shape[0], 1.0 / scale)
    else:
        fl = model.fam.kernel(None if dispersion is None else np.log(dispersion))
        w = fl.derivatives(eta, np.asarray(model.endog, float),
                           np.asarray(model.n_trials, float))[1]
    prior = _prior_weights(model)
    return w if prior is None else w * prior     # a weighted row's curvature is w times its own


def group_cross(X, Z, codes, w, n_groups) -> np.ndarray:
    """Z_j' W_j X_j per group, (n_groups, q, p), from rows (X, Z, group codes, W)."""
    q, p = Z.shape[1], X.shape[1]
    out = np.empty((n_groups, q, p))
    for k in range(q):
        zw = Z[:, k] * w
        for l in range(p):
            out[:, k, l] = np.bincount(codes, weights=zw * X[:, l], minlength=n_groups)
    return out


def working_weights(results) -> np.ndarray:
    """:func:`row_curvature` of the fit's rows at the conditional modes."""
    model = results.model
    eta = None if model.fam.is_gaussian else predict(results, which="linear", conditional=True)
    return row_curvature(model, eta, results.scale, results.dispersion)


def mode_sensitivity(results) -> np.ndarray:
    """D_j = d b_j / d beta = -P_j Z_j' W_j X_j for every group, (G, q, p); the sums
    Z_j'W_j X_j come from the shards when the rows are not here (``group_zwx``)."""
    model = results.model
    if getattr(model, "rows_on_driver", True):
        ZWX = group_cross(np.asarray(model.exog, float), np.asarray(model.exog_re, float),
                          np.asarray(model.group_codes), working_weights(results),
                          model.n_groups)
    else:
        ZWX = results.group_zwx()
    return -np.einsum("gqr,grp->gqp", np.asarray(results.outcome.b_cov[0]), ZWX)


def get_prediction(results, exog=None, which="mean", conditional=None, offset=None,
                   exposure=None, transform=True, allow_new_levels=False):
    """Predictions with delta-method standard errors (see the module notes), as
    statsmodels' ``PredictionResultsMean``: ``predicted_mean``, ``se_mean``,
    ``conf_int(alpha=)``, ``summary_frame(alpha=)`` (columns ``mean``, ``mean_se``,
    ``mean_ci_lower``, ``mean_ci_upper``)."""
    if which not in ("mean", "linear"):
        raise ValueError("which must be 'mean' or 'linear'")
    conditional = resolve_conditional(conditional, allow_new_levels)
    exog = as_frame(exog)
    model = results.model
    p = model.k_fe
    V = np.asarray(results.cov_params(), dtype=float)[:p, :p]
    X, Z, off, index = design(results, exog, offset, exposure, transform)
    if conditional:
        Z = _need_Z(model, Z)
    eta = off + X @ np.asarray(results.outcome.beta)
    grad = X.copy()
    var_re = np.zeros(X.shape[0])
    if conditional and getattr(model, "multi", False):
        if not getattr(model, "rows_on_driver", True):
            raise NotImplementedError(
                "standard errors of conditional predictions with several grouping factors "
                "need the sparse system of every row of the fit on one machine, and this "
                "fit's rows live on a Dask cluster; use predict(conditional=True) for the "
                "predictions, or fit the data in memory (df = ddf.compute())")
        from .prediction_multi import conditional_error_terms
        codes = group_codes(results, exog, allow_new_levels)
        eta = eta + _conditional_part(results, Z, codes)
        grad, var_re = conditional_error_terms(results, X, Z, codes)
    elif conditional:
        eta = eta + _conditional_part(results, Z, group_codes(results, exog, allow_new_levels))
        D = mode_sensitivity(results)
        P = np.asarray(results.outcome.b_cov[0])
        for f, codes in zip(grouping_factors(model),
                            group_codes(results, exog, allow_new_levels)):
            known = codes >= 0
            z = Z[known][:, f.columns]
            c = codes[known]
            grad[known] += np.einsum("nq,nqp->np", z, D[c][:, f.columns, :])
            var_re[known] += np.einsum("nq,nqr,nr->n", z, P[c][:, f.columns][:, :, f.columns], z)
    var_eta = np.einsum("np,pr,nr->n", grad, V, grad) + var_re
    gaussian = model.fam.is_gaussian
    linpred = PredictionResults(eta, var_eta, var_resid=results.scale if gaussian else np.nan,
                                dist="norm", row_labels=index)
    if which == "linear" or gaussian:
        return PredictionResultsMean(eta, var_eta, dist="norm", row_labels=index,
                                     linpred=linpred, link=links.Identity())
    link = model.family.link
    mu = inverse_link(results, eta)
    dmu = np.asarray(link.inverse_deriv(eta), dtype=float)
    return PredictionResultsMean(mu, dmu ** 2 * var_eta, dist="norm", row_labels=index,
                                 linpred=linpred, link=link)


def predict_marginal(results, exog=None, offset=None, exposure=None, se=True, level=0.95,
                     nagq=15) -> pd.DataFrame:
    """Population-averaged means E_b[g^{-1}(x'beta + z'b)] by quadrature, with
    delta-method standard errors and a Wald interval (see :mod:`mlglm.marginal`)."""
    from .marginal import marginal_predict
    X, Z, off, index = design(results, exog, offset, exposure)
    mu, sd = marginal_predict(results, X, _need_Z(results.model, Z), off, nagq=nagq, se=se)
    out = pd.DataFrame({"mean": mu}, index=index)
    if se:
        crit = stats.norm.ppf(0.5 + level / 2)
        out["se"] = sd
        out["lower"] = mu - crit * sd
        out["upper"] = mu + crit * sd
    return out
