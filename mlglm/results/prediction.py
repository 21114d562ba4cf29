r"""Predictions from a fit: means or linear predictors, at the population level or
conditional on the groups' random effects, with standard errors.

For a row with fixed-effects design x, random-effects design z and offset o:

* population level (``conditional=False``, the default, as statsmodels'
  ``MixedLMResults.predict``): :math:`\eta = o + x'\hat\beta`, the random effects
  at 0;
* conditional (``conditional=True``, lme4's default ``re.form = NULL``):
  :math:`\eta = o + x'\hat\beta + \sum_k z_k'\hat b_{k j_k}` with
  :math:`\hat b_{kj}` the conditional mode of level j of term (grouping factor) k.
  Levels are matched by label (:func:`mlglm.design.factors.match_factor`); a level the
  fit never saw is an error unless ``allow_new_levels=True``, which leaves that
  term at the population level (its random effects 0);
* the mean is :math:`g^{-1}(\eta)` (per trial for binomial models).

Standard errors (:func:`get_prediction`) are by the delta method. At the population
level :math:`\mathrm{Var}(\hat\eta) = x' V_\beta x` with :math:`V_\beta` the
fixed-effects block of ``cov_params()``. Conditionally, with :math:`\zeta` the row's
random-effects design spread over the levels of every term (b all terms' effects
stacked), the prediction error :math:`x'(\hat\beta - \beta) + \zeta'(\hat b - b)`
has variance

.. math:: (x + D'\zeta)' V_\beta (x + D'\zeta) + \zeta' P \zeta,
          \qquad P = \mathrm{Var}(b \mid y, \beta), \quad D = -P Z'WX,

:math:`D = \partial\hat b / \partial\beta` being the movement of the modes with the
fixed effects (W the per-row curvature -d2l/deta2 at the conditional modes, times
the row's prior weight; w/sigma^2 for Gaussian models). For a linear mixed model
this is exactly Henderson's prediction error variance from the inverse of the
mixed-model equations; for GLMMs it is its Laplace (mode and curvature)
counterpart. Intervals for the mean are the linear predictor's interval mapped
through the inverse link (statsmodels' ``PredictionResultsMean``).

:func:`conditional_error_terms` computes the two terms in one of two ways, chosen
by the term structure (``re_terms.kind``):

* **one term** (``"single"``): P is block diagonal over the groups,
  :math:`P_j = ` ``random_effects_cov`` and :math:`D_j = -P_j Z_j'W_jX_j`, so a
  row needs only its group's q x q block -- the per-group closed form, a few
  einsums over the rows (the sums :math:`Z_j'W_jX_j` come from the shards when a
  sharded fit's rows are not in memory);
* **several terms** (nested or crossed): P is no longer block diagonal (the
  factors couple the levels), so with F block diagonal, :math:`F_kF_k' =
  \Sigma_k` (any square root; a singular :math:`\Sigma_k` is fine), A = ZF and
  the sparse :math:`H = I + A'WA`,

  .. math:: P = F H^{-1} F', \qquad \zeta'P\zeta = v' H^{-1} v, \qquad
            D'\zeta = -(A'WX)' H^{-1} v, \qquad v = F'\zeta,

  one sparse factorisation of H and one solve per prediction row (in blocks of
  columns). With one term this is the same number as the closed form
  (tests/test_prediction_multi.py), only slower.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import patsy
from scipy import stats
try:                                     # statsmodels >= 0.14
    from statsmodels.base._prediction_inference import PredictionResultsMean
except ImportError:  # pragma: no cover - older statsmodels: the same class, GLM's name
    from statsmodels.genmod._prediction import PredictionResults as PredictionResultsMean
from scipy import sparse
from scipy.sparse.linalg import splu
from statsmodels.genmod.families import links
from statsmodels.regression._prediction import PredictionResults

from ..design.expressions import evaluate_terms
from ..design.factors import match_categories, match_factor, random_part
from ..inference.marginal import marginal_predict

__all__ = ["predict", "get_prediction", "predict_marginal", "design",
           "conditional_error_terms"]

#: prediction rows solved for at once by the sparse path (a dense n_b x BLOCK right-hand
#: side)
BLOCK = 256


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
    """(X, Zs, offset, index) for the fit's rows (``exog=None``) or for new data.

    ``Zs`` holds one random-effects design per term (``model.re_terms``). A DataFrame
    (or a dict of columns) goes through the model's formula (same coding as the fit)
    when ``transform`` is true; ``index`` is its index (None for arrays and in-sample).
    On new rows the offset is, unless ``offset=`` is given, the formula's offset
    terms (``offset(log(n))``) plus the column the model's ``offset=`` named,
    evaluated on the new DataFrame; likewise ``log`` of the column its ``exposure=``
    named unless ``exposure=`` is given (so a rate model predicts counts for the new
    rows' exposures, as the ``offset(log(t))`` spelling does). ``Zs`` is None where a
    term's design cannot be built from the rows given (arrays whose random effects
    are not fixed-effect columns): only conditional and population-averaged
    predictions need it.
    """
    model = results.model
    exog = as_frame(exog)
    if exog is None:
        return (np.asarray(model.exog, float), [t.Z for t in model.re_terms],
                np.asarray(model.offset, float), None)
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
    Zs = [_term_design(model, t, specs, exog, X)
          for t, specs in zip(model.re_terms, model.re_info)]
    return X, (None if any(Z is None for Z in Zs) else Zs), off, index


def _effect_source(model, term, k):
    """Where column k of ``term`` comes from on new rows: "ones" (a random intercept,
    whether or not the fixed part has one), the position of the fixed-effect column of
    the same name, or None (only the term's own formula can build it)."""
    name = str(term.column_names[k])
    fitted = term.Z[:, k] if term.Z.shape[0] else None      # a sharded model holds no rows
    ones = fitted is None or bool(np.all(fitted == 1.0))
    if name == "Intercept":
        return "ones" if ones else None                     # e.g. a vc indicator with zeros
    names = list(model.exog_names)
    if name in names:
        return names.index(name)
    return "ones" if fitted is not None and ones else None


def _term_design(model, term, specs, exog, X):
    """One term's Z for new rows: its columns taken from the fixed-effects design where
    they are fixed-effect columns (a random intercept is ones), else built from a
    DataFrame through the term's effects formulas with the fit's coding; None for an
    array whose random effects are not fixed-effect columns."""
    sources = [_effect_source(model, term, k) for k in range(term.q)]
    if all(s is not None for s in sources):
        return np.column_stack([np.ones(X.shape[0]) if s == "ones" else X[:, s]
                                for s in sources])
    if not isinstance(exog, pd.DataFrame):
        return None
    return np.column_stack([s.effects_for(exog, model) for s in specs])


def _need_Z(model, Zs):
    """``Zs``, or the error saying why conditional predictions of these rows fail."""
    if Zs is not None:
        return Zs
    missing = [str(t.column_names[k]) for t in model.re_terms for k in range(t.q)
               if _effect_source(model, t, k) is None]
    raise NotImplementedError(
        f"the random-effect column(s) {', '.join(missing)} are not fixed-effect columns, so "
        "they cannot be built from these rows; pass a DataFrame (formula models), include "
        "them in the fixed part, or predict at the population level (conditional=False)")


def group_codes(results, exog, allow_new_levels):
    """Per term (grouping factor), each row's level among the fit's (-1: new level)."""
    model = results.model
    if exog is None:
        return [t.codes for t in model.re_terms]
    return [match_factor(t, specs, exog, model, allow_new_levels)
            for t, specs in zip(model.re_terms, model.re_info)]


def inverse_link(results, eta):
    """The family's mean function g^{-1}(eta) (identity for Gaussian models)."""
    return results.model.fam.inverse_link(eta)


def predict(results, exog=None, which="mean", conditional=None, offset=None, exposure=None,
            transform=True, marginal=False, nagq=15, allow_new_levels=False):
    """Predicted means or linear predictors (see :meth:`MixedGLMResults.predict`)."""
    auxiliary = results.model.fam.auxiliary
    if which not in (AUXILIARY_SCALES if auxiliary else ("mean", "linear")):
        raise ValueError("which must be " + (", ".join(repr(w) for w in AUXILIARY_SCALES)
                                             if auxiliary else "'mean' or 'linear'"))
    exog = as_frame(exog)
    if auxiliary and marginal:
        raise NotImplementedError(f"population-averaged (marginal=True) predictions are not "
                                  f"available for {results.model.fam.label} models yet")
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
        eta = eta + random_part(results.model.re_terms, results.outcome.b,
                                _need_Z(results.model, Z), codes)
    if auxiliary:
        out = auxiliary_response(results, eta, exog, which)
    else:
        out = eta if which == "linear" else inverse_link(results, eta)
    return out if index is None else pd.Series(out, index=index)


#: the prediction scales of zero-inflated, hurdle and beta fits
AUXILIARY_SCALES = ("mean", "conditional_mean", "zero_prob", "variance", "linear")


def zero_part_design(results, exog) -> np.ndarray:
    """X_zi of the fit's rows (``exog`` None) or of new rows (a DataFrame, coded as the
    fit's ``ziformula``)."""
    model = results.model
    if exog is None:
        return np.asarray(model.exog_zi, dtype=float)
    coding = model.zero_part_coding()
    if not isinstance(exog, pd.DataFrame) or coding is None:
        raise ValueError("predictions of a zero-inflated or hurdle model on new rows need "
                         "a DataFrame with the columns of ziformula (and a model built "
                         "from a formula)")
    (D,) = patsy.build_design_matrices([coding], exog, NA_action="raise")
    return np.asarray(D, dtype=float)


def auxiliary_response(results, eta, exog, which) -> np.ndarray:
    """Predictions of a zero-inflated, hurdle or beta fit at linear predictors ``eta``
    (glmmTMB's ``predict`` types): ``"mean"`` E y = (1 - pi) mu (zero inflation),
    (1 - pi) mu / (1 - f(0)) (hurdle), mu (beta); ``"conditional_mean"`` the count
    model's mean mu = e^eta (glmmTMB's "conditional"; the beta's mu); ``"zero_prob"``
    Pr(y = 0) = pi + (1 - pi) f(0) (zero inflation) or pi (hurdle), pi = expit(x_zi'
    gamma) (glmmTMB's "zprob" is pi itself); ``"variance"`` Var y (the zero part and the
    dispersion included); ``"linear"`` eta."""
    model = results.model
    fam = model.fam
    if which == "linear":
        return eta
    kernel = fam.kernel()
    t = None if results.dispersion is None else float(np.log(results.dispersion))
    if which == "conditional_mean":
        return fam.inverse_link(eta)
    a = zero_part_design(results, exog) @ np.asarray(results.outcome.zi) \
        if fam.zero_part is not None else None
    if which == "zero_prob":
        if fam.zero_part is None:
            raise ValueError(f"a {fam.label} response has no zeros: which='zero_prob' is for "
                             "zero-inflated and hurdle models")
        return kernel.zero_prob(eta, a, t)
    if which == "variance":
        return kernel.variance(eta, a, t)
    return kernel.mean(eta, a, t)


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
    """D_j = d b_j / d beta = -P_j Z_j' W_j X_j for every group of a one-term fit,
    (G, q, p); the sums Z_j'W_j X_j come from the shards when the rows are not here
    (``group_zwx``)."""
    model = results.model
    if getattr(model, "rows_on_driver", True):
        t = model.re_terms[0]
        ZWX = group_cross(np.asarray(model.exog, float), t.Z, t.codes,
                          working_weights(results), t.n_levels)
    else:
        ZWX = results.group_zwx()
    return -np.einsum("gqr,grp->gqp", np.asarray(results.outcome.b_cov[0]), ZWX)


def conditional_error_terms(results, X, Zs, codes):
    """(grad, var_re) of conditional predictions for rows with designs X (n, p), Zs (per
    term, n x q_k) and level codes (per term, -1: a level the fit never saw):
    grad = x + D'zeta and var_re = zeta' P zeta (module notes), so that the variance of
    the linear predictor is grad' V_beta grad + var_re.

    One term: the per-group closed form (block diagonal P); several: one sparse
    factorisation of H = I + A'WA (the fit's rows must be in memory)."""
    if results.model.re_terms.kind == "single":
        return _block_diagonal_terms(results, X, Zs[0], codes[0])
    return _sparse_terms(results, X, Zs, codes)


def _block_diagonal_terms(results, X, Z, codes):
    """:func:`conditional_error_terms` for one term: z'D_j and z'P_j z per row."""
    D = mode_sensitivity(results)
    P = np.asarray(results.outcome.b_cov[0])
    grad = np.array(X, dtype=float)
    var_re = np.zeros(grad.shape[0])
    known = codes >= 0
    z, c = Z[known], codes[known]
    grad[known] += np.einsum("nq,nqp->np", z, D[c])
    var_re[known] += np.einsum("nq,nqr,nr->n", z, P[c], z)
    return grad, var_re


def _root(Sigma) -> np.ndarray:
    """F with F F' = Sigma (symmetric square root; Sigma may be singular)."""
    lam, V = np.linalg.eigh(np.asarray(Sigma, float))
    return V * np.sqrt(np.clip(lam, 0.0, None))


def _spread(Zs, codes, Fs, offsets, n_b):
    """The sparse (rows x n_b) matrix Z F: row i holds z_ik' F_k at the columns of level
    codes[k][i] of every term k (levels coded -1 contribute nothing). For the fit's rows
    it is A; for prediction rows its rows are the v' = zeta' F of the module notes."""
    n = Zs[0].shape[0]
    rows, cols, vals = [], [], []
    for Z, c, F, off in zip(Zs, codes, Fs, offsets):
        q = F.shape[0]
        c = np.asarray(c)
        known = np.flatnonzero(c >= 0)
        rows.append(np.repeat(known, q))
        cols.append((off + c[known, None] * q + np.arange(q)).ravel())
        vals.append((np.asarray(Z, float)[known] @ F).ravel())
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows),
                                                     np.concatenate(cols))), shape=(n, n_b))


def _sparse_terms(results, X, Zs, codes):
    """:func:`conditional_error_terms` for several terms, by the sparse joint system."""
    model = results.model
    if not getattr(model, "rows_on_driver", True):
        raise NotImplementedError(
            "standard errors of conditional predictions with several grouping factors "
            "need the sparse system of every row of the fit on one machine, and this "
            "fit's rows live on a Dask cluster; use predict(conditional=True) for the "
            "predictions, or fit the data in memory (df = ddf.compute())")
    terms = model.re_terms
    Fs = [_root(S) for S in results.outcome.Sigmas]
    sizes = [t.n_levels * t.q for t in terms]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
    n_b = int(sum(sizes))
    A = _spread([t.Z for t in terms], [t.codes for t in terms], Fs, offsets, n_b)
    w = working_weights(results)
    H = sparse.identity(n_b, format="csc") + (A.T @ A.multiply(w[:, None])).tocsc()
    lu = splu(H.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
              options={"SymmetricMode": True})      # H is SPD: symmetric ordering, no pivoting
    AWX = np.asarray(A.T @ (np.asarray(model.exog, float) * w[:, None]))       # (n_b, p)
    Vt = _spread(Zs, codes, Fs, offsets, n_b)                                 # (rows, n_b)
    X = np.asarray(X, float)
    grad = X.copy()
    var_re = np.zeros(X.shape[0])
    for lo in range(0, X.shape[0], BLOCK):
        Vb = Vt[lo:lo + BLOCK].toarray().T                                    # (n_b, block)
        S = lu.solve(Vb)
        var_re[lo:lo + BLOCK] = np.einsum("ij,ij->j", Vb, S)
        grad[lo:lo + BLOCK] -= S.T @ AWX
    return grad, var_re


def get_prediction(results, exog=None, which="mean", conditional=None, offset=None,
                   exposure=None, transform=True, allow_new_levels=False):
    """Predictions with delta-method standard errors (see the module notes), as
    statsmodels' ``PredictionResultsMean``: ``predicted_mean``, ``se_mean``,
    ``conf_int(alpha=)``, ``summary_frame(alpha=)`` (columns ``mean``, ``mean_se``,
    ``mean_ci_lower``, ``mean_ci_upper``)."""
    if results.model.fam.auxiliary:
        raise NotImplementedError(f"predictions with standard errors are not available for "
                                  f"{results.model.fam.label} models yet; predict() gives "
                                  "the estimates")
    if which not in ("mean", "linear"):
        raise ValueError("which must be 'mean' or 'linear'")
    conditional = resolve_conditional(conditional, allow_new_levels)
    exog = as_frame(exog)
    model = results.model
    p = model.k_fe
    V = np.asarray(results.cov_params(), dtype=float)[:p, :p]
    X, Z, off, index = design(results, exog, offset, exposure, transform)
    eta = off + X @ np.asarray(results.outcome.beta)
    grad, var_re = X, np.zeros(X.shape[0])
    if conditional:
        Z = _need_Z(model, Z)
        codes = group_codes(results, exog, allow_new_levels)
        eta = eta + random_part(model.re_terms, results.outcome.b, Z, codes)
        grad, var_re = conditional_error_terms(results, X, Z, codes)
    # a coefficient without a standard error (separation; NaN in cov_params) makes the
    # SE of every prediction that depends on it NaN, and no other
    missing = ~np.isfinite(np.diag(V))
    V = np.where(missing[:, None] | missing[None, :], 0.0, V)
    var_eta = np.einsum("np,pr,nr->n", grad, V, grad) + var_re
    if missing.any():
        var_eta[np.any(grad[:, missing] != 0, axis=1)] = np.nan
    gaussian = model.fam.is_gaussian
    linpred = PredictionResults(eta, var_eta, var_resid=results.scale if gaussian else np.nan,
                                dist="norm", row_labels=index)
    if which == "linear" or gaussian:
        return PredictionResultsMean(eta, var_eta, dist="norm", row_labels=index,
                                     linpred=linpred, link=links.Identity())
    mu = inverse_link(results, eta)
    dmu = model.fam.mu_eta(eta)
    return PredictionResultsMean(mu, dmu ** 2 * var_eta, dist="norm", row_labels=index,
                                 linpred=linpred, link=model.family.link)


def predict_marginal(results, exog=None, offset=None, exposure=None, se=True, level=0.95,
                     nagq=15) -> pd.DataFrame:
    """Population-averaged means E_b[g^{-1}(x'beta + z'b)] by quadrature, with
    delta-method standard errors and a Wald interval (see :mod:`mlglm.inference.marginal`)."""
    X, Z, off, index = design(results, exog, offset, exposure)
    mu, sd = marginal_predict(results, X, _need_Z(results.model, Z), off, nagq=nagq, se=se)
    out = pd.DataFrame({"mean": mu}, index=index)
    if se:
        crit = stats.norm.ppf(0.5 + level / 2)
        out["se"] = sd
        out["lower"] = mu - crit * sd
        out["upper"] = mu + crit * sd
    return out
