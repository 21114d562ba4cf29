"""lme4's accessors under lme4's names: ``fixef``, ``ranef``, ``VarCorr``, ``coef``,
``update``.

Each works per grouping factor (one entry per random-effects term,
``model.re_terms``), as lme4 returns one entry per factor: ``ranef(res)["district"]`` is a DataFrame with one row
per district and one column per random effect.

* ``fixef(res)``: the fixed effects beta-hat (``res.fe_params``).
* ``ranef(res)``: the conditional modes b-hat_j (lme4's BLUPs for linear models),
  with their conditional SDs sqrt(diag Var(b_j | y)) in ``.cond_sd`` (lme4's
  ``condVar = TRUE``; ``res.random_effects_cov`` has the whole matrices).
* ``VarCorr(res)``: the estimated covariance matrix of each factor's random
  effects (and the residual SD of a Gaussian fit), printed as lme4 prints it:
  SDs and correlations.
* ``coef(res)``: per group, beta-hat plus b-hat_j for the coefficients with a
  random effect, beta-hat alone for the others.
* ``update(res, "~ . - x")``: the model refitted with a changed formula (``.``
  is the current formula, as in R) or settings.
* ``isSingular(res)``: whether the fit is on the boundary (``res.is_singular()``).
"""
from __future__ import annotations

from collections import ChainMap

import numpy as np
import pandas as pd

from ..design.expressions import evaluate_terms
from ..design.formula import update_formula
from ..design.formula_env import capture
from ..design.lme4_front import glmer_fit, lmer_fit
from ..design.mixedlm_view import term_labels

__all__ = ["fixef", "ranef", "Ranef", "VarCorr", "VarCorrResult", "coef", "update",
           "isSingular"]


def fixef(results) -> pd.Series:
    """The fixed effects, a Series indexed by the fixed-effect names (lme4's ``fixef``)."""
    return pd.Series(np.asarray(results.fe_params, dtype=float),
                     index=[str(n) for n in results.model.exog_names])


class Ranef(dict):
    """``{grouping factor: DataFrame of conditional modes}`` (rows: groups; columns:
    random effects), with ``cond_sd`` -- the same layout holding the conditional
    SDs sqrt(diag Var(b_j | y)) -- and ``cond_var`` -- ``{factor: (G, q, q) array}``
    of conditional covariances (lme4's ``attr(, "postVar")``)."""

    def __init__(self, modes, cond_sd, cond_var):
        super().__init__(modes)
        self.cond_sd = cond_sd
        self.cond_var = cond_var


def ranef(results) -> Ranef:
    """Conditional modes of the random effects per grouping factor, with their
    conditional SDs (see :class:`Ranef`)."""
    out = results.outcome
    modes, sds, covs = {}, {}, {}
    for t, b, V in zip(results.model.re_terms, out.b, out.b_cov):
        b, V = np.asarray(b, dtype=float), np.asarray(V, dtype=float)
        index = pd.Index(term_labels(t), name=t.name)
        names = list(t.column_names)
        modes[t.name] = pd.DataFrame(b, index=index, columns=names)
        sds[t.name] = pd.DataFrame(np.sqrt(np.clip(np.diagonal(V, axis1=1, axis2=2), 0, None)),
                                   index=index, columns=names)
        covs[t.name] = V
    return Ranef(modes, sds, covs)


def coef(results) -> dict:
    """Per grouping factor, a DataFrame of group-specific coefficients (lme4's
    ``coef``): rows are groups, columns the fixed effects (plus any random effect
    without a fixed counterpart); beta-hat plus the group's conditional mode where
    there is a random effect."""
    beta = fixef(results)
    out = {}
    for name, modes in ranef(results).items():
        table = pd.DataFrame(np.tile(beta.to_numpy(), (len(modes), 1)), index=modes.index,
                             columns=beta.index)
        for term in modes.columns:
            if term in table.columns:
                table[term] = table[term] + modes[term]
            else:
                table[term] = modes[term]
        out[name] = table
    return out


class VarCorrResult(dict):
    """``{grouping factor: covariance DataFrame}`` of the random effects, plus
    ``sigma`` (residual SD; None for binomial/Poisson). ``frame`` is lme4's
    ``as.data.frame(VarCorr(fit))``: columns grp, var1, var2, vcov, sdcor (SDs in
    the rows with var2 empty, correlations in the others). Printed as lme4 prints
    it: ``Groups  Name  Std.Dev.  Corr``."""

    def __init__(self, covs, sigma):
        super().__init__(covs)
        self.sigma = sigma

    @property
    def frame(self) -> pd.DataFrame:
        rows = []
        for grp, S in self.items():
            names = list(S.index)
            A = S.to_numpy(dtype=float)
            sd = np.sqrt(np.clip(np.diag(A), 0, None))
            for k, n in enumerate(names):
                rows.append((grp, n, None, A[k, k], sd[k]))
            for k in range(len(names)):
                for j in range(k + 1, len(names)):
                    r = A[k, j] / (sd[k] * sd[j]) if sd[k] > 0 and sd[j] > 0 else np.nan
                    rows.append((grp, names[k], names[j], A[k, j], r))
        if self.sigma is not None:
            rows.append(("Residual", None, None, self.sigma ** 2, self.sigma))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def _lines(self, digits=5):
        """lme4's layout: Groups, Name, Std.Dev. (R's ``format(digits = 5)``: the
        decimals that give the smallest SD 5 significant digits) and the
        correlations with the effects above (3 decimals), left-aligned."""
        rows = []
        for grp, S in self.items():
            A = S.to_numpy(dtype=float)
            sd = np.sqrt(np.clip(np.diag(A), 0, None))
            uncorrelated = not np.any(A[np.tril_indices(len(A), -1)])   # (1 + x || g)
            for k, n in enumerate(S.index):
                cors = [] if uncorrelated else [
                    f"{A[k, j] / (sd[k] * sd[j]):.3f}" if sd[k] > 0 and sd[j] > 0 else "NaN"
                    for j in range(k)]
                rows.append([grp if k == 0 else "", str(n), sd[k], " ".join(cors)])
        if self.sigma is not None:
            rows.append(["Residual", "", self.sigma, ""])
        sds = [r[2] for r in rows if r[2] > 0]
        decimals = max([max(0, digits - 1 - int(np.floor(np.log10(v)))) for v in sds] or [0])
        for r in rows:
            r[2] = f"{r[2]:.{decimals}f}"
        table = [["Groups", "Name", "Std.Dev.", "Corr"]] + rows
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        return [" " + " ".join(r[i].ljust(widths[i]) for i in range(4)) for r in table]

    def __str__(self):
        return "\n".join(self._lines())

    __repr__ = __str__

    def _repr_html_(self):
        return "<pre>" + str(self) + "</pre>"


def VarCorr(results) -> VarCorrResult:  # noqa: N802 - lme4's name
    """Estimated covariance matrices of the random effects per grouping factor and
    the residual SD (see :class:`VarCorrResult`)."""
    covs = {t.name: pd.DataFrame(np.asarray(Sigma, dtype=float), index=list(t.column_names),
                                 columns=list(t.column_names))
            for t, Sigma in zip(results.model.re_terms, results.outcome.Sigmas)}
    sigma = float(np.sqrt(results.scale)) if results.model.fam.is_gaussian else None
    return VarCorrResult(covs, sigma)


def isSingular(results, tol=1e-4) -> bool:  # noqa: N802 - lme4's name
    """lme4's ``isSingular``: whether some diagonal element of a (relative) covariance
    factor is below ``tol`` -- an SD at 0 or a correlation at +-1
    (:meth:`MixedGLMResults.is_singular`)."""
    return results.is_singular(tol=tol)


def lme4_formula(model) -> str:
    """The model's formula in lme4's syntax (response ~ fixed + random term)."""
    if getattr(model, "formula", None) is None:
        raise ValueError("update() needs a model built from a formula (from_formula, glmer "
                         "or lmer)")
    lhs, rhs = model.formula.split("~", 1)
    offsets = "".join(f" + offset({t})" for t in getattr(model, "formula_offsets", ()))
    return f"{lhs.strip()} ~ {rhs.strip()}{offsets} + {_bar_terms(model)}"


def _bar_terms(model) -> str:
    """Every random-effects term of the model as an lme4 bar term, from the effects
    formula and grouping columns each was built from (``groups``/``re_formula``
    become ``(1 + re_formula | groups)``)."""
    out = []
    for spec in (s for specs in model.re_info for s in specs):
        if spec.source == "vc":
            raise ValueError("update() rewrites the model in lme4's syntax, which has no "
                             "vc_formula terms; build the new model with from_formula")
        inner = str(spec.formula or "1").strip().lstrip("~").strip() or "1"
        if not inner.startswith(("1", "0", "-1")):
            inner = "1 + " + inner
        diagonal = len(spec.blocks) > 1 and all(b.size == 1 for b in spec.blocks)
        out.append(f"({inner} {'||' if diagonal else '|'} {':'.join(spec.factors)})")
    return " + ".join(out)


def update(results, formula=None, data=None, eval_env=None, **changes):
    """Refit ``results``'s model with a changed formula and/or settings, as lme4's
    ``update``.

    Parameters
    ----------
    formula : an update formula in lme4's syntax; ``.`` stands for the current
        formula's side (``"~ . - x"``, ``". ~ . + z"``, ``"~ . - (1 | g) + (1 + x | g)"``).
        None keeps the formula.
    data : new data (default: the fit's data, after its ``subset``/``missing``
        handling; then its offsets, exposure and trials are kept too).
    eval_env : where names the original formula did not use resolve (default: the
        caller's namespace; statsmodels' keyword, see :mod:`mlglm.design.formula_env`). The
        names the original formula used keep the values they had at its fit, as R's
        ``update`` keeps the formula's environment.
    **changes : ``family``, ``link``, ``nagq``/``nAGQ``, ``method``, ``reml``/``REML``,
        ``offset``, ``exposure``, ``n_trials``, ``missing``, ``subset``.

    Returns
    -------
    The new fit's results.
    """
    model = results.model
    old = lme4_formula(model)
    new = old if formula is None else update_formula(old, formula)
    names = ChainMap(getattr(model, "formula_env", None) or {}, capture(eval_env, depth=1))
    kwargs = {}
    if data is None:
        data = model.data.frame
        kwargs = {k: v for k, v in getattr(model, "formula_arrays", {}).items() if v is not None}
        terms = getattr(model, "formula_offsets", ())
        if terms and "offset" in kwargs:     # the formula's offset terms are in the formula
            rest = kwargs.pop("offset") - evaluate_terms(terms, data, names)
            if np.any(rest != 0):
                kwargs["offset"] = rest
        for key in ("offset", "exposure"):      # named columns stay named (for predict)
            column = getattr(model, f"{key}_column", None)
            if column is not None and column in data.columns:
                kwargs[key] = column
    kwargs.update(changes)
    cls = type(model)
    gaussian = model.fam.is_gaussian and "family" not in changes
    if gaussian:
        if not any(k in kwargs for k in ("reml", "REML")):
            kwargs["reml"] = results.method == "reml"
        return lmer_fit(cls, new, data, namespace=names,
                        **{k: v for k, v in kwargs.items() if k not in ("exposure", "n_trials")})
    kwargs.setdefault("family", model.family)
    if model.ziformula is not None:
        kwargs.setdefault("ziformula", model.ziformula)
    if not any(k in kwargs for k in ("nagq", "nAGQ")):
        kwargs["nagq"] = int(results.nagq or 1)
    return glmer_fit(cls, new, data, namespace=names, **kwargs)
