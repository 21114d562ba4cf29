"""Model classes: MixedGLM (a statsmodels MixedLM subclass) and its families.

``MixedGLM`` reuses MixedLM for what it does well (grouping, parameter
names, ``from_formula`` with ``groups=``/``re_formula=``) and replaces every
Gaussian-only piece: the response handling per family, offsets/exposure/
trials, the objective (the numerical core in :mod:`mlglm.core`) and the
results class. The stages are lme4's: parse (statsmodels/patsy) -> design
(arrays sorted by group, :class:`~mlglm.core.grouping.GroupedData`) ->
objective (:class:`~mlglm.core.objective.MarginalLoglik`) -> optimise
(:func:`~mlglm.core.optimize.fit_glmm`) -> package (:mod:`mlglm.results`).
"""
from __future__ import annotations

import re
import warnings
from functools import cached_property

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.regression.mixed_linear_model import MixedLM

from .core.covariance import Sigma_from_vech, theta_from_Sigma
from .core.families import get_family_link
from .core.grouping import make_grouped_data
from .core.lmm import lmm_fit
from .core.modes import ModeFailure
from .core.nested import NestedObjective, quadrature_dimension
from .core.objective import MarginalLoglik
from .core.optimize import fit_glmm
from .core.quadrature import MAX_GRID_POINTS
from .data_checks import (DataWarning, MixedGLMInputError, binomial_response, family_link_names,
                          poisson_response, report_nonfinite)
from .mixedlm_setup import MixedLMSetup

__all__ = ["MixedGLM", "BinomialMixedGLM", "PoissonMixedGLM"]

_METHODS = ("laplace", "aghq", "reml", "ml")


class MixedGLM(MixedLMSetup, MixedLM):
    """Generalised linear mixed model with one grouping factor, fitted by ML.

    Parameters
    ----------
    endog : response. Binomial: 0/1 or bool, proportions with ``n_trials``, or
        two columns (successes, failures). Poisson: non-negative counts.
    exog : fixed-effects design (n, p).
    groups : group labels (n,).
    exog_re : random-effects design (n, q); default a random intercept.
    family : a statsmodels family: ``Binomial()`` (Logit, Probit, CLogLog links),
        ``Poisson()`` (Log) or ``Gaussian()`` (exact linear mixed model).
    offset, exposure : added to the linear predictor (``log(exposure)`` for the
        latter; Poisson).
    n_trials : binomial trials per row when ``endog`` holds proportions.
    cov_struct : ``"unstructured"`` (correlated random effects, the default) or
        ``"diagonal"`` (independent, lme4's ``||``).
    missing : ``"none"`` (NaN/inf raise with advice) or ``"drop"`` (rows with
        NaN/inf in any array are dropped, with a warning giving the count).
    """

    _formula_max_endog = 2

    def __init__(self, endog, exog, groups, exog_re=None, family=None, offset=None,
                 exposure=None, n_trials=None, cov_struct="unstructured", missing="none",
                 exog_vc=None, **kwargs):
        extra_specs = list(kwargs.pop("_extra_specs", None) or [])
        no_group_re = kwargs.pop("_no_group_re", False)
        group_factors = kwargs.pop("_group_factors", None)
        self._re_formula = kwargs.pop("_re_formula", None)
        from_formula = kwargs.pop("_from_formula", False)
        if exog_vc is not None and getattr(exog_vc, "names", None):
            raise NotImplementedError(
                "variance components given as exog_vc arrays are not supported; use "
                "from_formula(..., vc_formula={...}) or lme4 terms in glmer()/lmer()")
        family = sm.families.Gaussian() if family is None else family
        if isinstance(family, type):
            raise MixedGLMInputError("pass a family instance such as sm.families.Binomial(), "
                                     "not the class")
        fam, link = family_link_names(family)
        if cov_struct not in ("unstructured", "diagonal"):
            raise MixedGLMInputError("cov_struct must be 'unstructured' or 'diagonal'")
        endog_names = kwargs.pop("_endog_names", None)
        n_dropped = kwargs.pop("_n_dropped", 0)
        # from_formula has already checked (or dropped) missing group labels: a
        # null check of a string column is the slowest of these checks
        groups_chk = None if kwargs.pop("_groups_checked", False) else groups
        if missing == "drop":
            mask = report_nonfinite({"endog": _num(endog), "exog": _num(exog), "groups": groups_chk,
                                     "exog_re": _num(exog_re), "offset": offset,
                                     "exposure": exposure, "n_trials": n_trials}, "drop")
            if mask is not None:
                n_dropped += int((~mask).sum())
                endog, exog, groups, exog_re, offset, exposure, n_trials = (
                    _take(a, mask) for a in (endog, exog, groups, exog_re, offset, exposure,
                                             n_trials))
        elif missing in ("none", "raise"):
            report_nonfinite({"endog": _num(endog), "exog": _num(exog), "groups": groups_chk,
                              "exog_re": _num(exog_re), "offset": offset, "exposure": exposure,
                              "n_trials": n_trials}, "none")
        else:
            raise MixedGLMInputError("missing must be 'none' or 'drop'")
        if endog_names is None and isinstance(endog, pd.DataFrame):
            endog_names = list(endog.columns)
        y, m = self._response(fam, endog, n_trials, endog_names)
        n = y.shape[0]
        off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).reshape(-1)
        if exposure is not None:
            if fam != "poisson":
                raise MixedGLMInputError("exposure= is for Poisson models; use offset= otherwise")
            ex = np.asarray(exposure, dtype=float).reshape(-1)
            if np.any(ex <= 0):
                raise MixedGLMInputError("exposure must be positive (it enters as log(exposure))")
            off = off + np.log(ex)
        if off.shape[0] != n:
            raise MixedGLMInputError(f"offset/exposure has {off.shape[0]} values for {n} rows")
        endog_sm = pd.Series(y, name=_endog_name(endog, endog_names)) \
            if isinstance(exog, pd.DataFrame) else y
        if isinstance(exog, pd.DataFrame):
            endog_sm.index = exog.index
        self._init_mixedlm(endog_sm, exog, groups, exog_re, **kwargs)
        _check_rank(np.asarray(self.exog, dtype=float), self.exog_names)
        if self.n_groups < 2 and not no_group_re:
            raise MixedGLMInputError("a mixed model needs at least two groups; found "
                                     f"{self.n_groups}")
        self.family = family
        self.family_name, self.link_name = fam, link
        self.n_trials = m
        self.offset = off
        self.exposure = exposure
        self.cov_struct = cov_struct
        self.n_dropped = n_dropped
        self.reml = fam == "gaussian"
        self._init_keys.extend(["family", "offset", "exposure", "n_trials", "cov_struct"])
        self._term_args = (extra_specs, no_group_re, group_factors)
        if not from_formula:
            self._build_re_terms(*self._term_args)

    def _build_re_terms(self, extra_specs, no_group_re, group_factors):
        """``self.re_terms``: the grouping factor of ``groups`` with ``exog_re``
        (unless a ``vc_formula`` replaced it), then the other terms; terms on the
        same factor merged (:func:`mlglm.design.build_terms`)."""
        from .design import TermSpec, blocks_for, build_terms
        specs = []
        gname = getattr(self, "group_name", None) or "Group"
        if not no_group_re:
            names = [("Intercept" if n in (gname, "Group") else str(n))
                     for n in self.data.exog_re_names]
            specs.append(TermSpec(gname, self.group_codes,
                                  pd.Index(self.group_labels, name=gname),
                                  np.asarray(self.exog_re, dtype=float), names,
                                  blocks_for(self.exog_re.shape[1], self.cov_struct == "diagonal"),
                                  tuple(group_factors or (gname,)), "groups",
                                  self._re_formula or "1"))
        specs.extend(extra_specs)
        if not specs:
            raise MixedGLMInputError("the model has no random effects; use statsmodels' GLM")
        terms, info = build_terms(specs, self.family_name == "gaussian", self.nobs)
        self.re_terms = terms
        self.re_info = info
        if self.multi:
            self.data.param_names = list(self.exog_names) + _re_param_names(terms)
            self.k_params = len(self.data.param_names)

    @property
    def multi(self) -> bool:
        """More than one random-effects term, or a term other than ``groups``' own."""
        return (len(self.re_terms) > 1 or len(self.re_info[0]) > 1
                or self.re_info[0][0].source != "groups")

    @staticmethod
    def _response(fam, endog, n_trials, names):
        if fam == "binomial":
            return binomial_response(endog, n_trials, names)
        if n_trials is not None:
            raise MixedGLMInputError("n_trials= is for binomial models")
        if fam == "poisson":
            y = poisson_response(endog)
        else:
            y = np.asarray(endog, dtype=float).reshape(-1)
        return y, np.ones_like(y)

    # ------------------------------------------------------------------ formula
    @classmethod
    def from_formula(cls, formula, data, re_formula=None, vc_formula=None, subset=None,
                     use_sparse=False, missing="none", *args, **kwargs):
        """Model from a formula, as :meth:`MixedLM.from_formula`.

        ``groups`` (column name or array), ``re_formula`` (e.g. ``"~urban"``),
        ``subset`` (boolean mask or index labels), ``offset``/``exposure``/
        ``n_trials`` (column names or arrays) and ``missing`` are applied
        consistently to every array. A two-column response ``s + f ~ ...``
        is (successes, failures) for the binomial.
        """
        random_terms = list(kwargs.pop("_random_terms", None) or [])
        eval_env = kwargs.pop("eval_env", None)
        if eval_env is None:
            import patsy
            eval_env = patsy.EvalEnvironment.capture(1)
        if "family" in kwargs and isinstance(kwargs["family"], str):
            from .lme4style import family_from_name
            kwargs["family"] = family_from_name(kwargs["family"])
        if vc_formula is not None and not isinstance(vc_formula, dict):
            raise MixedGLMInputError("vc_formula must be a dict {name: formula}, e.g. "
                                     "{'class': '0 + C(class)'}")
        if "groups" not in kwargs and random_terms:
            kwargs["groups"] = np.zeros(len(data), dtype=np.intp)
            kwargs["_no_group_re"] = True
        if "groups" not in kwargs:
            raise MixedGLMInputError("groups= is required: the column name (or array) of the "
                                     "grouping factor")
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        arrays = {}
        group_name = kwargs.get("groups")
        for key in ("groups", "offset", "exposure", "n_trials"):
            val = kwargs.pop(key, None)
            if isinstance(val, str):
                if val not in data.columns:
                    raise MixedGLMInputError(
                        f"{key}={val!r} is not a column of data; columns are "
                        f"{', '.join(map(str, data.columns[:20]))}")
                val = data[val].to_numpy()
            elif val is not None:
                val = np.asarray(val)
                if val.shape[0] != data.shape[0]:
                    raise MixedGLMInputError(f"{key} has {val.shape[0]} values for "
                                             f"{data.shape[0]} rows of data")
            arrays[key] = val
        if subset is not None:
            keep = data.index.isin(data.loc[subset].index) if not (
                np.asarray(subset).dtype == bool) else np.asarray(subset)
            data = data.loc[keep]
            arrays = {k: (v[keep] if v is not None else None) for k, v in arrays.items()}
        extra_text = " ".join(list((vc_formula or {}).values())
                              + [f"{t.re_formula} {' '.join(t.factors)}" for t in random_terms])
        used = _formula_columns(data, formula, (re_formula or "") + " " + extra_text)
        check = {c: data[c].to_numpy() for c in used}
        check.update({k: v for k, v in arrays.items() if v is not None})
        mask = report_nonfinite(check, missing)
        n_dropped = 0
        if mask is not None:
            n_dropped = int((~mask).sum())
            data = data.loc[mask]
            arrays = {k: (v[mask] if v is not None else None) for k, v in arrays.items()}
        kwargs.update({k: v for k, v in arrays.items() if v is not None})
        if isinstance(group_name, str):
            kwargs["groups"] = group_name  # MixedLM names the random effects after it
        kwargs["_n_dropped"] = n_dropped
        kwargs["_re_formula"] = re_formula
        kwargs["_from_formula"] = True
        kwargs["_groups_checked"] = True
        lhs = formula.split("~", 1)[0]
        if "+" in lhs:
            kwargs["_endog_names"] = [s.strip() for s in lhs.split("+")]
        # patsy sees only the columns the formulas can name: statsmodels copies the
        # frame it is given and converts every string column to object first
        # (pandas >= 3), which on a wide frame cost more than the fit of a small LMM.
        # Any column patsy could look up appears literally in the formula text.
        text = formula + " " + (re_formula or "") + " " + extra_text
        used_cols = [c for c in data.columns if str(c) in text or
                     (isinstance(group_name, str) and c == group_name)]
        full_data = data
        if vc_formula is not None and re_formula is None:
            kwargs["_no_group_re"] = True        # statsmodels: no group effect besides the vc
        if vc_formula is not None or random_terms:
            from .design import bar_term_specs, vc_term_specs
            from .mixedlm_setup import _factorize_groups
            specs = bar_term_specs(random_terms, full_data, eval_env)
            if vc_formula:
                labels, codes = _factorize_groups(kwargs["groups"] if not isinstance(
                    kwargs["groups"], str) else full_data[kwargs["groups"]].to_numpy())
                specs += vc_term_specs(vc_formula, codes, labels,
                                       group_name if isinstance(group_name, str) else "Group",
                                       full_data, eval_env)
            kwargs["_extra_specs"] = specs
        if len(used_cols) < data.shape[1] and not data.columns.has_duplicates:
            data = data[used_cols]
        try:
            mod = super().from_formula(formula, data, re_formula=re_formula, subset=None,
                                       use_sparse=use_sparse, missing="none", *args, **kwargs)
        except MixedGLMInputError:
            raise
        except Exception as exc:  # patsy/formulaic errors: say which formula
            if type(exc).__name__ in ("PatsyError", "FormulaSyntaxError", "FactorEvaluationError",
                                      "FormulaParsingError"):
                raise MixedGLMInputError(f"could not build the model from {formula!r} "
                                         f"(re_formula={re_formula!r}): {exc}") from exc
            raise
        mod.group_name = group_name if isinstance(group_name, str) else "Group"
        mod.data.frame = full_data      # as statsmodels attaches it: every column
        mod._build_re_terms(*mod._term_args)
        return mod

    # ------------------------------------------------------------------ fitting
    @property
    def q(self) -> int:
        return self.exog_re.shape[1]

    @property
    def diagonal(self) -> bool:
        return self.cov_struct == "diagonal"

    def _grouped(self):
        return make_grouped_data(self.endog, self.exog, self.exog_re, self.group_codes,
                                 offset=self.offset, m=self.n_trials)

    @cached_property
    def _cross_plan(self):
        """The blocked layout of Z'WZ for several factors (built once per model)."""
        from .core.crossprod import CrossPlan
        return CrossPlan(self.re_terms)

    def objective(self, nagq: int = 1):
        """The marginal log-likelihood as a function of x = (beta, theta)
        (a :class:`~mlglm.core.objective.Objective`)."""
        fl = get_family_link(self.family_name, self.link_name)
        if self.multi:
            if nagq > 1:
                _check_aghq_structure(self.re_terms)
            if self.re_terms.kind == "nested":       # nested: Laplace and AGHQ by levels
                return NestedObjective(fl, self.endog, self.n_trials, self.exog, self.offset,
                                       self.re_terms, nagq)
            from .core.laplace_multi import MultiLaplace
            return MultiLaplace(fl, self.endog, self.n_trials, self.exog, self.offset,
                                self.re_terms, self._cross_plan)
        return MarginalLoglik(fl, self._grouped(), nagq=nagq,
                              pattern=self.re_terms[0].pattern)

    def theta_from_params(self, params) -> np.ndarray:
        """x = (beta, theta) from params = (fe_params, vech(cov_re) per term)."""
        params = np.asarray(params, dtype=float)
        p = self.k_fe
        thetas, i = [], p
        for t in self.re_terms:
            k = t.q * (t.q + 1) // 2
            thetas.append(t.pattern.theta_from_Sigma(Sigma_from_vech(params[i:i + k], t.q)))
            i += k
        return np.concatenate([params[:p]] + thetas)

    def loglike(self, params, method="laplace", nagq=None):
        """Marginal log-likelihood at ``params`` = (fe_params, vech(cov_re) [per term]),
        constants included.

        ``vech`` is the row-major lower triangle, the order of ``results.params``.
        """
        if self.family_name == "gaussian":
            raise NotImplementedError("use results.llf for Gaussian fits")
        nagq = _resolve_nagq(method, nagq, quadrature_dimension(self.re_terms))
        return self.objective(nagq)(self.theta_from_params(params))

    def fit(self, method=None, nagq=None, reml=None, start_params=None, maxiter=1000,
            hessian=True, **kwargs):
        """Fit by maximum likelihood.

        Parameters
        ----------
        method : ``"laplace"`` (default for binomial/Poisson) or ``"aghq"``;
            Gaussian models use ``"reml"`` (default) or ``"ml"``.
        nagq : quadrature points per random-effect dimension for AGHQ (default
            11 for q <= 2, 7 for q >= 3; the product rule has nagq**q points).
            ``nagq=1`` is the Laplace approximation.
        reml : Gaussian only; same as method="reml"/"ml".
        start_params : (fe_params, vech(cov_re)) to start from.
        """
        from .results import build_results
        if kwargs:
            raise TypeError(f"unexpected fit arguments: {', '.join(kwargs)}")
        _check_re_in_fixed(np.asarray(self.exog, dtype=float), np.asarray(self.exog_re),
                           getattr(self.data, "exog_re_names", None))
        if self.family_name == "gaussian":
            if method not in (None, "reml", "ml"):
                raise MixedGLMInputError("Gaussian models are fitted exactly by 'reml' or 'ml'")
            if reml is None:
                reml = method != "ml"
            if start_params is not None:
                warnings.warn("start_params is not used for Gaussian models: the profiled "
                              "(RE)ML criterion is optimised over theta from its own start",
                              UserWarning, stacklevel=2)
            if self.multi:
                from .core.lmm_multi import multi_lmm_fit
                from .results import build_results_multi
                fitted = multi_lmm_fit(self.endog - self.offset, np.asarray(self.exog, float),
                                       self.re_terms, reml=reml)
                res = build_results_multi(self, fitted, method="reml" if reml else "ml")
                _warn_fit_problems(res)
                return res
            fitted = lmm_fit(self.endog - self.offset, self.exog, self.exog_re, self.group_codes,
                             reml=reml, diagonal=self.diagonal)
            res = build_results(self, fitted, method="reml" if reml else "ml", nagq=None)
            _warn_fit_problems(res)
            return res
        if reml:
            raise MixedGLMInputError("REML is for Gaussian models; GLMMs are fitted by ML")
        method = "laplace" if method is None else method
        if method not in ("laplace", "aghq"):
            raise MixedGLMInputError(f"method must be 'laplace' or 'aghq', got {method!r}")
        nagq = _resolve_nagq(method, nagq, quadrature_dimension(self.re_terms))
        obj = self.objective(nagq)
        x0 = None if start_params is None else self.theta_from_params(start_params)
        try:
            state = fit_glmm(obj, x0=x0, maxiter=maxiter, hessian=hessian)
        except (ModeFailure, np.linalg.LinAlgError) as exc:
            sd = np.asarray(self.exog, float).std(axis=0)
            wide = [str(n) for n, v in zip(self.exog_names, sd) if v > 100 or 0 < v < 1e-2]
            hint = (f"; covariates on extreme scales ({', '.join(wide)}): standardise them"
                    if wide else "")
            raise FitError(f"the fit broke down numerically ({exc}){hint}; try a simpler "
                           "random-effects structure or start_params=") from exc
        res = build_results(self, state, method=method if nagq > 1 else "laplace", nagq=nagq)
        _warn_fit_problems(res)
        return res

    # -------------------------------------------------- Gaussian-only methods off
    def score(self, params, *args, **kwargs):
        raise NotImplementedError("MixedGLM computes its exact gradient internally; "
                                  "use model.objective(nagq).value_and_gradient(x)")

    def hessian(self, params, *args, **kwargs):
        raise NotImplementedError("the observed information is in results.cov_params()")

    def fit_regularized(self, *args, **kwargs):
        raise NotImplementedError("regularised fits are not available for MixedGLM")

    def get_fe_params(self, *args, **kwargs):
        raise NotImplementedError("fixed effects are not profiled in a GLMM")

    def get_scale(self, *args, **kwargs):
        raise NotImplementedError("binomial and Poisson models have no scale parameter")

    def get_distribution(self, *args, **kwargs):
        raise NotImplementedError("use results.predict() for means")

    def predict(self, params, exog=None, offset=None, which="mean"):
        """Population-level prediction g^{-1}(X beta + offset) at b = 0.

        Conditional (group-specific) predictions are on the results:
        ``results.predict(conditional=True)``.
        """
        exog = self.exog if exog is None else np.asarray(exog, dtype=float)
        beta = np.asarray(params)[:self.k_fe]
        off = (self.offset if exog is self.exog else 0.0) if offset is None else offset
        eta = exog @ beta + off
        if which == "linear":
            return eta
        if self.family_name == "gaussian":
            return eta
        return get_family_link(self.family_name, self.link_name).inverse_link(eta)


class BinomialMixedGLM(MixedGLM):
    """MixedGLM with the binomial family (logit link unless ``family=`` says otherwise)."""

    def __init__(self, endog, exog, groups, exog_re=None, family=None, **kwargs):
        family = sm.families.Binomial() if family is None else family
        if type(family).__name__ != "Binomial":
            raise MixedGLMInputError("BinomialMixedGLM takes a Binomial family (any of its links)")
        super().__init__(endog, exog, groups, exog_re=exog_re, family=family, **kwargs)


class PoissonMixedGLM(MixedGLM):
    """MixedGLM with the Poisson family and log link (``exposure=`` for rates)."""

    def __init__(self, endog, exog, groups, exog_re=None, family=None, **kwargs):
        family = sm.families.Poisson() if family is None else family
        if type(family).__name__ != "Poisson":
            raise MixedGLMInputError("PoissonMixedGLM takes a Poisson family")
        super().__init__(endog, exog, groups, exog_re=exog_re, family=family, **kwargs)


# ---------------------------------------------------------------------- helpers
class FitError(RuntimeError):
    """The optimisation broke down numerically; the message says what to try."""


class SingularFitWarning(UserWarning):
    """A random-effect SD is estimated at zero (the fit is on the boundary)."""


class SeparationWarning(UserWarning):
    """Binomial data (quasi-)completely separated by some fixed effect."""


def _warn_fit_problems(res):
    """One warning per problem, with advice; the summary shows the same flags."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    if not res.converged:
        rec = res.optim
        detail = ""
        if hasattr(rec, "newton_decrement"):
            detail = (f" (max |gradient| {rec.grad_norm:.2g}, Newton decrement "
                      f"{rec.newton_decrement:.2g}, Hessian PD: {rec.hessian_pd})")
        warnings.warn("the fit has not converged" + detail + "; try start_params= from a "
                      "simpler model, rescale covariates, or check for separation",
                      ConvergenceWarning, stacklevel=3)
    if np.any(res.singular) and getattr(res.model, "multi", False):
        warnings.warn(f"singular fit: {res.singular_description()}; consider simplifying the "
                      "random effects", SingularFitWarning, stacklevel=3)
    elif np.any(res.singular):
        names = [n for n, s in zip(res.model.data.exog_re_names, res.singular) if s]
        warnings.warn(f"singular fit: the SD of {', '.join(map(str, names))} is estimated at 0; "
                      "consider dropping that random effect", SingularFitWarning, stacklevel=3)
    sep = getattr(res, "separation", None)
    if sep:
        warnings.warn(f"possible separation: {sep}; remove or merge the offending terms or "
                      "levels", SeparationWarning, stacklevel=3)


def _check_re_in_fixed(X, Z, names):
    """Warn when a random-effect column is not in the fixed part: its mean is then
    forced to zero, which is rarely intended (allowed, as in lme4)."""
    if Z is None or Z.ndim != 2:
        return
    missing = []
    for k in range(Z.shape[1]):
        z = Z[:, k]
        if not any(np.array_equal(z, X[:, j]) for j in range(X.shape[1])):
            missing.append(str(names[k]) if names is not None else f"column {k}")
    if missing:
        warnings.warn(f"random effect(s) {', '.join(missing)} have no matching fixed effect, so "
                      "their mean is fixed at 0; add them to the fixed part unless that is "
                      "intended", DataWarning, stacklevel=3)


def _check_rank(X, names):
    """Refuse a rank-deficient fixed-effects design, naming the redundant columns."""
    if X.shape[1] == 0:
        return
    scale = np.sqrt((X * X).sum(axis=0))
    if np.any(scale == 0):
        bad = [names[i] for i in np.flatnonzero(scale == 0)]
        raise MixedGLMInputError(f"fixed-effect column(s) {', '.join(bad)} are all zero; "
                                 "drop them from the formula")
    R = np.linalg.qr(X / scale, mode="r")
    d = np.abs(np.diag(R))
    tol = d.max() * max(X.shape) * np.finfo(float).eps * 10
    if np.any(d <= tol):
        bad = [names[i] for i in np.flatnonzero(d <= tol)]
        raise MixedGLMInputError(
            f"the fixed-effects design is rank deficient: {', '.join(bad)} "
            "is a linear combination of the columns before it; drop it (or a level) "
            "from the formula")


def _check_aghq_structure(terms):
    """nagq > 1 needs factors nested in one another (the integral factorises by
    top-level group); crossed factors are refused with the reason (never a silent
    Laplace)."""
    if terms.kind == "crossed":
        raise MixedGLMInputError(
            f"adaptive quadrature (nagq > 1) needs grouping factors nested in one another; "
            f"{', '.join(terms.names)} are crossed, so the likelihood does not factorise over "
            "the groups of any one factor and there is no low-dimensional integral to do by "
            "quadrature. Use the Laplace approximation (nagq=1)")


def _resolve_nagq(method, nagq, q):
    if method == "laplace":
        if nagq not in (None, 1):
            raise MixedGLMInputError("nagq > 1 needs method='aghq'")
        return 1
    if nagq is None:
        nagq = 11 if q <= 2 else 7
    if not isinstance(nagq, (int, np.integer)) or nagq < 1:
        raise MixedGLMInputError(f"nagq must be a positive integer, got {nagq!r}")
    if nagq ** q > MAX_GRID_POINTS:
        raise MixedGLMInputError(
            f"nagq={nagq} with {q} random effects is a product grid of {nagq ** q:,} points per "
            f"group (about {nagq ** q * 8 / 1e6:,.0f} MB per 1,000 rows); the limit is "
            f"{MAX_GRID_POINTS:,}: lower nagq")
    return int(nagq)


def _num(a):
    if a is None:
        return None
    a = np.asarray(a)
    return a.astype(float) if a.dtype.kind in "biuf" else a


def _take(a, mask):
    if a is None:
        return None
    if isinstance(a, (pd.Series, pd.DataFrame)):
        return a.loc[mask]
    return np.asarray(a)[mask]


def _endog_name(endog, names):
    if isinstance(endog, pd.Series) and endog.name is not None:
        return endog.name
    if names:
        return names[0]
    if isinstance(endog, pd.DataFrame):
        return str(endog.columns[0])
    return "y"


def _re_param_names(terms) -> list[str]:
    """Names of the per-term vech(Sigma_k) parameters of a model with several factors:
    ``"{factor} Var"`` for an intercept, ``"{factor} {col} Var"`` for another
    effect, ``"{factor} {col_r} x {col_c} Cov"`` for a covariance."""
    out = []
    for t in terms:
        cols = list(t.column_names)
        for r, c in zip(*np.tril_indices(t.q)):
            if r == c:
                out.append(f"{t.name} Var" if cols[r] == "Intercept" else
                           f"{t.name} {cols[r]} Var")
            else:
                out.append(f"{t.name} {cols[r]} x {cols[c]} Cov")
    return out


def _formula_columns(data, formula, re_formula):
    """Columns of data named in the formulas (used for the NaN check)."""
    text = formula + " " + (re_formula or "")
    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", text))
    return [c for c in data.columns if str(c) in tokens]
