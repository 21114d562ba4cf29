"""Model classes: MixedGLM (a statsmodels MixedLM subclass) and its families.

``MixedGLM`` reuses MixedLM for what it does well (grouping, parameter
names, ``from_formula`` with ``groups=``/``re_formula=``) and replaces every
Gaussian-only piece: the response handling per family, offsets/exposure/
trials, the objective (the numerical core in :mod:`mlglm.core`) and the
results class. The stages are lme4's: parse (statsmodels/patsy) -> design
(arrays sorted by group, :class:`~mlglm.core.engines.blockdiag.grouping.GroupedData`) ->
objective (:class:`~mlglm.core.engines.blockdiag.objective.MarginalLoglik`) -> optimise
(:func:`~mlglm.core.fit.optimize.fit_glmm`) -> package (:mod:`mlglm.results.results`).
"""
from __future__ import annotations

import importlib
import warnings
from functools import cached_property

import numpy as np
import pandas as pd
import patsy
from statsmodels.regression.mixed_linear_model import MixedLM

from ..core.spec.covariance import Sigma_from_vech
from ..core.spec.family import POISSON
from ..core.spec.errors import ModeFailure
from ..core.engines.nested.objective import quadrature_dimension
from ..core.problem import Problem
from ..core.fit.adequacy import auto_schedule
from ..core.fit.optimize import fit_glmm, fit_glmm_auto
from ..core.numerics.quadrature import MAX_GRID_POINTS, grid_problem
from ..design.data_checks import (MixedGLMInputError, binomial_response,
                                  check_categorical_response, category_levels,
                                  check_constant_response, checked_count, count_response,
                                  did_you_mean, drop_unused_levels, hurdle_response,
                                  is_dask_frame, positive_response, prior_weights,
                                  report_nonfinite, resolve_family, unit_interval_response,
                                  zero_part)
from ..design.terms import (TermSpec, bar_term_specs, blocks_for, build_terms, quote_keywords,
                     vc_term_specs)
from ..design.fit_checks import (FitError, SeparationWarning, SingularFitWarning,  # noqa: F401
                         _check_dense_memory, _check_rank, _check_start_covariances,
                         _check_start_params, _report, _resolve_nagq, _warn_fit_problems,
                         check_re_in_fixed, resolve_fit_method)
from ..design.fit_keywords import check_fit_keywords
from ..design.formula_data import (_ROW_KEYWORDS, _endog_name, _formula_columns,
                                   _nullable_as_numpy, _num, _strings_as_categories, _take,
                                   check_duplicate_columns, check_frame, column_values,
                                   computed_terms, formula_hint, refuse_r_dot, row_values,
                                   subset_mask)
from ..design.formula_env import capture, formula_names, identifiers
from ..design.mixedlm_setup import MixedLMSetup, _factorize_groups
from ..design.mixedlm_view import adopt_single_term, variance_param_names
from ..design.model_data import robust_data
from ..results.results import build_results

__all__ = ["MixedGLM", "BinomialMixedGLM", "PoissonMixedGLM", "sharded_engine"]

_METHODS = ("laplace", "aghq", "reml", "ml")

#: The module of the optional Dask engine (the ``mlglm[dask]`` extra), see
#: :func:`sharded_engine`.
SHARDED_ENGINE = "mlglm.distributed"


def sharded_engine():
    """The Dask engine, :data:`SHARDED_ENGINE`, imported on first use: the plugin
    mechanism of the optional ``mlglm[dask]`` extra.

    The engine sits above the model, inference and results layers and builds on
    them, so nothing below imports it: a front door that receives a Dask DataFrame
    (recognised by duck typing, :func:`~mlglm.design.data_checks.is_dask_frame`, without
    importing dask) loads the module here and calls its ``sharded_model(cls, formula,
    data, re_formula, vc_formula, subset, missing, **kwargs)``, which returns the model
    (:class:`mlglm.distributed.ShardedMixedGLM`). ``import mlglm`` imports neither
    dask nor the engine.
    """
    return importlib.import_module(SHARDED_ENGINE)


class MixedGLM(MixedLMSetup, MixedLM):
    """Generalised (and linear) mixed model fitted by maximum likelihood (REML for
    Gaussian models by default).

    The random effects belong to one grouping factor (``groups`` with ``exog_re``,
    as statsmodels' ``MixedLM``) or to several, nested or crossed:
    ``from_formula(..., vc_formula={...})`` (statsmodels' variance components) or
    the bar terms of :func:`mlglm.glmer` / :func:`mlglm.lmer`
    (``(1 | school/class)``, ``(1 | s) + (1 | d)``).

    Parameters
    ----------
    endog : response. Binomial: 0/1 or bool, proportions with ``n_trials``, or
        two columns (successes, failures). Poisson: non-negative counts.
    exog : fixed-effects design (n, p).
    groups : group labels (n,).
    exog_re : random-effects design (n, q) on ``groups``; default a random
        intercept.
    family : a statsmodels family: ``Binomial()`` (Logit, Probit, CLogLog links),
        ``Poisson()`` (Log), ``NegativeBinomial(alpha=a)`` (Log; NB2 with theta = 1/a
        held fixed, as ``sm.GLM`` holds alpha), ``Gamma()`` (InversePower, Log; the
        dispersion estimated by ML) or ``Gaussian()`` (exact linear mixed model), or
        its name as ``glmer`` takes it (``"binomial"``, ``"poisson"``,
        ``"negative_binomial"`` -- theta estimated by ML jointly with everything
        else --, ``"gamma"``, ``"gaussian"``).
    offset, exposure : added to the linear predictor (``log(exposure)`` for the
        latter; log-link families).
    freq_weights, var_weights : prior weights as ``sm.GLM`` defines them: a row
        with frequency weight f counts f times (the fit equals the fit on the
        expanded rows); a variance weight v divides the row's dispersion by v
        (Gaussian: Var e_i = sigma^2 / v_i, lmer's ``weights=``; Gamma: shape
        v_i / phi) and, for the families without a dispersion in that sense
        (binomial, Poisson, negative binomial), multiplies the row's
        log-likelihood, as ``sm.GLM`` does. Finite and non-negative.
    n_trials : binomial trials per row when ``endog`` holds proportions.
    cov_struct : ``"unstructured"`` (correlated random effects, the default) or
        ``"diagonal"`` (independent, lme4's ``||``).
    missing : ``"none"`` (NaN/inf raise with advice) or ``"drop"`` (rows with
        NaN/inf in any array are dropped, with a warning giving the count).
    exog_zi : (n, k) design of the zero part (glmmTMB's ``ziformula``; built from a
        formula by ``from_formula(..., ziformula="~ x")``): with ``family="poisson"`` or
        ``"negative_binomial"`` a zero-inflated model (a structural zero with
        probability expit(x_zi' gamma)), with ``"truncated_poisson"`` or
        ``"truncated_negative_binomial"`` a hurdle model (Pr(y = 0) = expit(x_zi'
        gamma)), which needs one. None or no columns: no zero part. The zero-part
        coefficients are reported as ``zi_<name>`` after the variance parameters.
        ``family="beta"``: a response strictly in (0, 1), logit link, precision phi.
    """

    _formula_max_endog = 2
    #: the family when ``family=`` is not given (a name, :func:`resolve_family`)
    _default_family = "gaussian"
    #: the data columns ``from_formula``'s ``offset=`` / ``exposure=`` named (None: not
    #: given, or given as an array); ``predict`` on new rows reads them there
    offset_column = None
    exposure_column = None
    #: patsy's design info of ``ziformula`` (from_formula), which codes new rows' zero part
    zi_design_info = None
    #: the zero-part formula from_formula was given (None: none)
    ziformula = None
    #: the zero part's design (n, k) and column names (None without a zero part)
    exog_zi = exog_zi_names = None
    #: the rows are in this process (a sharded model, :mod:`mlglm.distributed`, holds a
    #: stand-in with the data's moments instead)
    rows_on_driver = True

    def __getstate__(self):
        # patsy's design info of the zero part does not pickle: rebuilt on demand
        # (zero_part_coding)
        state = self.__dict__.copy()
        state.pop("zi_design_info", None)
        return state

    def zero_part_coding(self):
        """patsy's design info of ``ziformula`` (how new rows' zero part is coded), rebuilt
        from the fit's rows after unpickling; None without a formula's zero part."""
        if self.zi_design_info is None and self.ziformula is not None:
            env = patsy.EvalEnvironment([getattr(self, "formula_env", None) or {}])
            self.zi_design_info = _zero_part_from_formula(self.ziformula, self.data.frame,
                                                          env)[2]
        return self.zi_design_info

    def _handle_data(self, *args, **kwargs):
        """statsmodels' data handling, with a data object that unpickles at the top level
        of a script too (:mod:`mlglm.design.model_data`)."""
        return robust_data(super()._handle_data(*args, **kwargs))

    def __init__(self, endog, exog, groups, exog_re=None, family=None, offset=None,
                 exposure=None, n_trials=None, cov_struct="unstructured", missing="none",
                 exog_vc=None, freq_weights=None, var_weights=None, exog_zi=None, **kwargs):
        zi_names = kwargs.pop("_zi_names", None)
        extra_specs = list(kwargs.pop("_extra_specs", None) or [])
        self._checks = kwargs.pop("_global_checks", True)  # False: a shard (mlglm.distributed)
        no_group_re = kwargs.pop("_no_group_re", False)
        group_factors = kwargs.pop("_group_factors", None)
        self._re_formula = kwargs.pop("_re_formula", None)
        from_formula = kwargs.pop("_from_formula", False)
        if exog_vc is not None and getattr(exog_vc, "names", None):
            raise NotImplementedError(
                "variance components given as exog_vc arrays are not supported; use "
                "from_formula(..., vc_formula={...}) or lme4 terms in glmer()/lmer()")
        family, spec = resolve_family(family, default=self._default_family)
        exog_zi, zi_names = _zero_part_design(exog_zi, zi_names)
        family, spec = zero_part(family, spec, exog_zi)
        if spec.auxiliary and (freq_weights is not None or var_weights is not None):
            raise MixedGLMInputError(f"prior weights are not taken by {spec.label} models yet")
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
                                     "exposure": exposure, "n_trials": n_trials,
                                     "freq_weights": freq_weights,
                                     "var_weights": var_weights, "exog_zi": exog_zi}, "drop")
            if mask is not None:
                n_dropped += int((~mask).sum())
                (endog, exog, groups, exog_re, offset, exposure, n_trials, freq_weights,
                 var_weights, exog_zi) = (_take(a, mask) for a in (
                     endog, exog, groups, exog_re, offset, exposure, n_trials, freq_weights,
                     var_weights, exog_zi))
        elif missing in ("none", "raise"):
            report_nonfinite({"endog": _num(endog), "exog": _num(exog), "groups": groups_chk,
                              "exog_re": _num(exog_re), "offset": offset, "exposure": exposure,
                              "n_trials": n_trials, "freq_weights": freq_weights,
                              "var_weights": var_weights, "exog_zi": exog_zi}, "none")
        else:
            raise MixedGLMInputError("missing must be 'none' or 'drop'")
        if endog_names is None and isinstance(endog, pd.DataFrame):
            endog_names = list(endog.columns)
        y, m = self._response(spec, endog, n_trials, endog_names)
        n = y.shape[0]
        off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float).reshape(-1)
        if exposure is not None:
            if not spec.link.log_scale:
                raise MixedGLMInputError("exposure= is for log-link models (Poisson, negative "
                                         "binomial, Gamma with log link); use offset= otherwise")
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
        if self._checks:
            check_constant_response(spec, y, m, freq_weights)
            _check_rank(np.asarray(self.exog, dtype=float), self.exog_names)
            if exog_zi is not None:
                _check_rank(exog_zi, [f"zi_{n}" for n in zi_names])
            if self.n_groups < 2 and not no_group_re:
                raise MixedGLMInputError("a mixed model needs at least two groups; found "
                                         f"{self.n_groups}")
        self.family = family
        self.fam = spec           # what every layer asks of the family (mlglm.core.spec.family)
        self.family_name, self.link_name = spec.name, spec.link_name
        self.freq_weights = prior_weights(freq_weights, n, "freq_weights")
        self.var_weights = prior_weights(var_weights, n, "var_weights")
        self.n_trials = m
        self.exog_zi = exog_zi
        self.exog_zi_names = zi_names
        self.offset = off
        self.exposure = exposure
        self.cov_struct = cov_struct
        self.n_dropped = n_dropped
        self.reml = spec.is_gaussian
        self._init_keys.extend(["family", "offset", "exposure", "n_trials", "cov_struct",
                                "freq_weights", "var_weights", "exog_zi"])
        self._term_args = (extra_specs, no_group_re, group_factors)
        if not from_formula:
            self._build_re_terms(*self._term_args)

    def _build_re_terms(self, extra_specs, no_group_re, group_factors):
        """``self.re_terms``: the grouping factor of ``groups`` with ``exog_re``
        (unless a ``vc_formula`` replaced it), then the other terms; terms on the
        same factor merged (:func:`mlglm.design.terms.build_terms`)."""
        specs = []
        gname = getattr(self, "group_name", None) or "Group"
        if not no_group_re:
            # statsmodels names the intercept after the group ("Group Var" unnamed)
            names = [("Intercept" if n in (gname, "Group", "Group Var") else str(n))
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
        terms, info = build_terms(specs, self.fam.is_gaussian, self.nobs, self._checks)
        if self._checks:
            _check_dense_memory(terms, self.fam.is_gaussian)
        self.re_terms = terms
        self.re_info = info
        if not (len(info) == 1 and len(info[0]) == 1 and info[0][0].source == "groups"):
            adopt_single_term(self)     # MixedLM's attributes did not describe the term
        self.data.exog_re_names_full = variance_param_names(terms)
        self.data.param_names = list(self.exog_names) + self.data.exog_re_names_full
        self.k_params = len(self.data.param_names)
        if self.exog_zi is not None:               # the zero part after the variances
            self.data.param_names = list(self.data.param_names) + [
                f"zi_{n}" for n in self.exog_zi_names]
            self.k_params = len(self.data.param_names)
        if self.fam.estimates_dispersion:          # the dispersion is the last parameter
            self.data.param_names = list(self.data.param_names) + [self.fam.dispersion_name]
            self.k_params = len(self.data.param_names)

    @staticmethod
    def _response(fam, endog, n_trials, names):
        if fam.is_binomial:
            return binomial_response(endog, n_trials, names)
        if n_trials is not None:
            raise MixedGLMInputError("n_trials= is for binomial models")
        if fam.is_count:
            y = count_response(endog, fam.label)
            if fam.zero_part == "hurdle":
                hurdle_response(y, fam.label)
        elif fam.distribution.unit_interval:
            y = unit_interval_response(endog, fam.label)
        elif fam.distribution.positive:
            y = positive_response(endog, fam.label)
        else:
            y = np.asarray(endog, dtype=float).reshape(-1)
        return y, np.ones_like(y)

    # ------------------------------------------------------------------ formula
    @classmethod
    def from_formula(cls, formula, data, re_formula=None, vc_formula=None, subset=None,
                     use_sparse=False, missing="none", *args, **kwargs):
        """Model from a formula, as :meth:`MixedLM.from_formula`.

        ``groups`` (column name or array), ``re_formula`` (e.g. ``"~urban"``),
        ``offset``/``exposure``/``n_trials``/``freq_weights``/``var_weights``
        (column names or arrays) and ``missing`` are applied consistently to every
        array; an array given as a pandas Series is aligned with ``data`` by its
        index, as pandas aligns (its index must hold every row label of ``data``).
        ``subset`` is a boolean mask (a Series is aligned by its index, an array
        taken by position), index labels, or a string evaluated by pandas'
        ``data.eval`` (``subset="x > 0 and g != 'a'"``; your variables as
        ``@name``). A two-column response ``s + f ~ ...`` is (successes,
        failures) for the binomial.

        ``eval_env`` (statsmodels' keyword) is where the formulas' names that are not
        columns resolve: by default the namespace of the caller (an int k: k frames
        further up; -1: none; or a dict). See :mod:`mlglm.design.formula_env` for exactly
        what a formula can use.
        A Dask DataFrame ``data`` is handed to the optional Dask engine, loaded on
        demand (:func:`sharded_engine`).
        """
        if is_dask_frame(data):        # rows on a Dask cluster: the optional engine (plugin)
            if kwargs.get("ziformula") is not None or resolve_family(
                    kwargs.get("family"), default=cls._default_family)[1].auxiliary:
                raise NotImplementedError("zero-inflated, hurdle and beta models are fitted "
                                          "in memory only: pass a pandas DataFrame")
            return sharded_engine().sharded_model(cls, formula, data, re_formula, vc_formula,
                                                  subset, missing, **kwargs)
        random_terms = list(kwargs.pop("_random_terms", None) or [])
        ziformula = kwargs.pop("ziformula", None)
        if ziformula is not None and not isinstance(ziformula, str):
            raise MixedGLMInputError(f"ziformula must be a string such as '~ x' or '~ 1', got "
                                     f"{type(ziformula).__name__}")
        namespace = capture(kwargs.pop("eval_env", None), depth=1)
        if not isinstance(data, pd.DataFrame):
            data = pd.DataFrame(data)
        if not isinstance(formula, str):
            raise MixedGLMInputError(f"formula must be a string such as 'y ~ x', got "
                                     f"{type(formula).__name__}")
        if vc_formula is not None and not isinstance(vc_formula, dict):
            raise MixedGLMInputError("vc_formula must be a dict {name: formula}, e.g. "
                                     "{'class': '0 + C(class)'}")
        check_frame(data, "data")
        formula = quote_keywords(formula, data.columns)
        if re_formula is not None:
            re_formula = quote_keywords(re_formula, data.columns)
        refuse_r_dot(formula, data, kwargs.get("groups"))
        if ziformula is not None:
            ziformula = quote_keywords(ziformula, data.columns)
        extra_text = " ".join(list((vc_formula or {}).values())
                              + [f"{t.re_formula} {' '.join(t.factors)}" for t in random_terms]
                              + [_zi_rhs(ziformula)])
        names = formula_names(namespace, [formula, re_formula, extra_text,
                                          subset if isinstance(subset, str) else None])
        data = check_duplicate_columns(data, identifiers(formula, re_formula, extra_text) | {
            v for k, v in kwargs.items() if isinstance(v, str) and k in _ROW_KEYWORDS})
        if "groups" not in kwargs and random_terms:
            kwargs["groups"] = np.zeros(len(data), dtype=np.intp)
            kwargs["_no_group_re"] = True
        if "groups" not in kwargs:
            raise MixedGLMInputError("groups= is required: the column name (or array) of the "
                                     "grouping factor")
        arrays = {}
        group_name = kwargs.get("groups")
        # offset=/exposure= given as column names: predictions on new rows read them there
        named = {k: kwargs[k] for k in ("offset", "exposure") if isinstance(kwargs.get(k), str)}
        for key in _ROW_KEYWORDS:
            val = kwargs.pop(key, None)
            if isinstance(val, str):
                if val not in data.columns:
                    raise MixedGLMInputError(
                        f"{key}={val!r} is not a column of data; columns are "
                        f"{', '.join(map(str, data.columns[:20]))}"
                        + did_you_mean(val, data.columns))
                val = column_values(data[val])
            elif val is not None:
                val = row_values(val, data.index, key)
                if val.ndim == 0:             # a scalar (e.g. n_trials=2): every row
                    val = np.full(data.shape[0], val[()])
                if val.shape[0] != data.shape[0]:
                    raise MixedGLMInputError(f"{key} has {val.shape[0]} values for "
                                             f"{data.shape[0]} rows of data")
            arrays[key] = val
        if subset is not None:
            keep = subset_mask(subset, data, names)
            data = data.loc[keep]
            arrays = {k: (v[keep] if v is not None else None) for k, v in arrays.items()}
            check_frame(data, "data after subset=")
        used = _formula_columns(data, formula, (re_formula or "") + " " + extra_text)
        check = {c: data[c].to_numpy() for c in used}
        check.update(computed_terms(data, [formula, re_formula] + list(
            (vc_formula or {}).values()) + [t.re_formula for t in random_terms], names, used))
        check.update({k: v for k, v in arrays.items() if v is not None})
        mask = report_nonfinite(check, missing)
        n_dropped = 0
        if mask is not None:
            n_dropped = int((~mask).sum())
            data = data.loc[mask]
            arrays = {k: (v[mask] if v is not None else None) for k, v in arrays.items()}
            if kwargs.get("_global_checks", True):     # (a shard: counted on the whole data)
                check_frame(data, "data after missing='drop'")
        if kwargs.get("_global_checks", True):
            data, dropped_levels = drop_unused_levels(data, used)
        else:           # a shard: the coding was fixed on the whole data (mlglm.distributed)
            dropped_levels = {}
        data = _nullable_as_numpy(data, used)
        lhs = formula.split("~", 1)[0]
        if "+" not in lhs:
            check_categorical_response(
                data, lhs, resolve_family(kwargs.get("family"), default=cls._default_family)[1])
        kwargs.update({k: v for k, v in arrays.items() if v is not None})
        if isinstance(group_name, str):
            kwargs["groups"] = group_name  # MixedLM names the random effects after it
        kwargs["_n_dropped"] = n_dropped
        kwargs["_re_formula"] = re_formula
        kwargs["_from_formula"] = True
        kwargs["_groups_checked"] = True
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
        env = patsy.EvalEnvironment([names])
        zi_design = None
        if ziformula is not None:
            kwargs["exog_zi"], kwargs["_zi_names"], zi_design = _zero_part_from_formula(
                ziformula, full_data, env)
        if vc_formula is not None and re_formula is None:
            kwargs["_no_group_re"] = True        # statsmodels: no group effect besides the vc
        if vc_formula is not None or random_terms:
            specs = bar_term_specs(random_terms, full_data, env)
            if vc_formula:
                labels, codes = _factorize_groups(kwargs["groups"] if not isinstance(
                    kwargs["groups"], str) else full_data[kwargs["groups"]].to_numpy())
                specs += vc_term_specs(vc_formula, codes, labels,
                                       group_name if isinstance(group_name, str) else "Group",
                                       full_data, env)
            kwargs["_extra_specs"] = specs
        if len(used_cols) < data.shape[1]:
            data = data[used_cols]
        data = _strings_as_categories(data, exclude=group_name if isinstance(group_name, str)
                                      else None)
        try:
            mod = super().from_formula(formula, data, re_formula=re_formula, subset=None,
                                       use_sparse=use_sparse, missing="none", *args,
                                       eval_env=names, **kwargs)
        except MixedGLMInputError:
            raise
        except Exception as exc:  # patsy/formulaic errors: say which formula
            if type(exc).__name__ in ("PatsyError", "FormulaSyntaxError", "FactorEvaluationError",
                                      "FormulaParsingError", "SyntaxError"):
                raise MixedGLMInputError(f"could not build the model from {formula!r} "
                                         f"(re_formula={re_formula!r}): {exc}"
                                         + formula_hint(exc, formula, full_data.columns)) \
                    from exc
            raise
        mod.group_name = group_name if isinstance(group_name, str) else "Group"
        mod.zi_design_info = zi_design      # the zero part's coding, for new rows
        mod.ziformula = ziformula           # update() refits with it
        mod.data.frame = full_data      # as statsmodels attaches it: every column
        mod.re_formula = re_formula
        mod.dropped_levels = dropped_levels
        # how the fit codes each categorical column of the effects (not of the grouping
        # factors, which take new levels): new data are coded the same (prediction)
        rhs = formula.split("~", 1)[1]
        mod.category_levels = category_levels(data, [c for c in data.columns if str(c) in (
            identifiers(rhs, re_formula, *(t.re_formula for t in random_terms))
            | set(_formula_columns(data, rhs, re_formula or "")))])
        mod.formula_env = names
        # the row-aligned arrays (after subset= and missing="drop"), for update()
        mod.formula_arrays = {k: v for k, v in arrays.items() if k != "groups"}
        mod.formula_arrays["missing"] = missing
        mod.offset_column = named.get("offset")
        mod.exposure_column = named.get("exposure")
        mod._build_re_terms(*mod._term_args)
        return mod

    # ------------------------------------------------------------------ fitting
    @property
    def q(self) -> int:
        return self.exog_re.shape[1]

    @property
    def diagonal(self) -> bool:
        """Independent random effects of a single term (lme4's ``||``, however spelled)."""
        pattern = self.re_terms[0].pattern
        return (len(self.re_terms) == 1 and pattern.is_diagonal
                and not pattern.is_unstructured)

    @cached_property
    def problem(self) -> Problem:
        """The model as the core sees it (:class:`~mlglm.core.problem.Problem`), built once
        and shared by fitting, profiles, the bootstrap and simulation."""
        fam = None if self.fam.is_gaussian else self.fam.kernel()
        return Problem(y=np.asarray(self.endog, dtype=float),
                       m=np.asarray(self.n_trials, dtype=float),
                       X=np.asarray(self.exog, dtype=float),
                       offset=np.asarray(self.offset, dtype=float), terms=self.re_terms,
                       family=fam, freq=self.freq_weights,
                       var=self.var_weights, estimate_dispersion=self.fam.estimates_dispersion,
                       X_zi=self.exog_zi)

    def objective(self, nagq: int = 1):
        """The marginal log-likelihood as a function of x = (beta, theta)
        (a :class:`~mlglm.core.fit.objective.Objective`)."""
        return self.problem.objective(nagq)

    def theta_from_params(self, params) -> np.ndarray:
        """x = (beta, theta[, gamma][, t]) from params = (fe_params, vech(cov_re) per
        term[, zero-part coefficients][, dispersion]), t = log(dispersion)."""
        params = np.asarray(params, dtype=float)
        p = self.k_fe
        thetas, i = [], p
        for t in self.re_terms:
            k = t.q * (t.q + 1) // 2
            thetas.append(t.pattern.theta_from_Sigma(Sigma_from_vech(params[i:i + k], t.q)))
            i += k
        if self.exog_zi is not None:
            k = self.exog_zi.shape[1]
            thetas.append(params[i:i + k])
            i += k
        if self.fam.estimates_dispersion:
            thetas.append([self.fam.log_dispersion(params[i])])
        return np.concatenate([params[:p]] + thetas)

    def _largest_group_rows(self) -> int | None:
        """Rows of the largest group of any grouping factor (with nested factors: of the
        largest top-level group), what one chunk of the quadrature holds at least; None
        when the rows are not here (a sharded model's are on the cluster)."""
        if not self.rows_on_driver:
            return None
        return max(int(np.bincount(np.asarray(t.codes)).max()) for t in self.re_terms)

    def loglike(self, params, method="laplace", nagq=None):
        """Marginal log-likelihood at ``params`` = (fe_params, vech(cov_re) [per term][, the
        zero part's coefficients][, dispersion]), constants included.

        ``vech`` is the row-major lower triangle, the order of ``results.params``.
        """
        if self.fam.is_gaussian:
            raise NotImplementedError("use results.llf for Gaussian fits")
        nagq = _resolve_nagq(method, nagq, quadrature_dimension(self.re_terms),
                             self._largest_group_rows())
        return self.objective(nagq)(self.theta_from_params(params))

    def fit(self, method=None, nagq=None, reml=None, start_params=None, maxiter=1000,
            hessian=True, **kwargs):
        """Fit by maximum likelihood.

        Parameters
        ----------
        method : ``"laplace"`` (default for binomial/Poisson) or ``"aghq"``;
            Gaussian models use ``"reml"`` (default) or ``"ml"``. Any case is
            accepted (lme4's and the literature's ``"Laplace"``, ``"AGHQ"``,
            ``"REML"``, ``"ML"``).
        nagq : quadrature points per random-effect dimension for AGHQ (default
            11 for q <= 2, 7 for q >= 3; the product rule has nagq**q points).
            ``nagq=1`` is the Laplace approximation; ``nagq > 1`` without
            ``method`` means AGHQ. ``nagq="auto"`` raises the points until two
            consecutive fits agree (llf to 1e-3, every parameter to 0.01 SE;
            :mod:`mlglm.core.fit.adequacy`); the nagq it settled on is ``results.nagq``
            and its path ``results.optim.auto``. Every AGHQ fit (one factor or
            nested factors) checks itself with nagq + 2 points at the estimates and
            warns (``QuadratureWarning``) if the estimates would move or the
            log-likelihood shifts (``results.optim.quadrature_check``, shown in
            the summary).
        reml : Gaussian only; same as method="reml"/"ml".
        start_params : (fe_params, vech(cov_re)[, zero part][, dispersion]) to start from
            (GLMMs; the Gaussian model optimises from its own start). A variance of 0 is a legal
            start: the log-likelihood is even in each random effect's column of the
            covariance factor, so its gradient there is exactly 0, and the fit probes
            just inside the boundary and restarts from inside when that raises the
            log-likelihood (``results.optim.stages`` says so). A negative variance or a
            correlation beyond +-1 is refused.
        maxiter : iterations of the quasi-Newton search.
        hessian : compute the observed information (default True): central differences
            of the exact gradient for the variance parameters and the dispersion,
            forward differences for the fixed effects (one or two gradients per
            parameter). It gives the standard errors, the final Newton steps and the
            second-order half of the convergence check. With ``hessian=False`` (a
            faster point estimate) every standard error, p-value and Wald interval is
            NaN and ``converged`` is False, since only the gradient was checked; the
            summary says "not checked". Where the information is singular in some
            directions (separation: a coefficient running off to infinity) the
            parameters along them get NaN standard errors and the others keep theirs
            (``results.se_missing``, a ``StandardErrorWarning`` and a note in the
            summary).
        **kwargs : statsmodels' fit keywords: ``disp`` (True prints the outcome),
            ``full_output``, ``do_cg``, ``niter_sa=0``, ``cov_type="nonrobust"``,
            ``use_t=False`` are accepted; the others (``free``, ``fe_pen``,
            ``cov_pen``, ``gtol``, ``callback``, ...) are refused with the reason
            (:mod:`mlglm.design.fit_keywords`).
        """
        options = check_fit_keywords(kwargs, method, ("method", "nagq", "reml", "start_params",
                                                      "maxiter", "hessian"))
        maxiter = checked_count(maxiter, "maxiter", minimum=0)
        if self.rows_on_driver:     # a sharded model checked its template rows when built
            check_re_in_fixed(self)
        how = resolve_fit_method(self, method, nagq, reml)
        if start_params is not None:
            if how.gaussian:
                warnings.warn("start_params is not used for Gaussian models: the profiled "
                              "(RE)ML criterion is optimised over theta from its own start",
                              UserWarning, stacklevel=2)
            else:
                start_params = _check_start_params(self, start_params)
                _check_start_covariances(self, start_params)
        res = self._fit(how, start_params, maxiter, hessian)
        _warn_fit_problems(res)
        _report(res, options.get("disp"))
        return res

    def _fit(self, how, start_params, maxiter, hessian):
        """The engine step of :meth:`fit`, for a resolved method
        (:class:`~mlglm.design.fit_checks.FitMethod`): the results, not yet checked for
        warnings. A model whose rows live elsewhere (:mod:`mlglm.distributed`) overrides
        this step alone."""
        if how.gaussian:
            return build_results(self, self.problem.fit_lmm(reml=how.reml))
        return build_results(self, self._optimise(self.objective(how.nagq), how, start_params,
                                                  maxiter, hessian))

    def _optimise(self, obj, how, start_params, maxiter, hessian):
        """The GLMM fit on the objective ``obj``: :func:`~mlglm.core.fit.optimize.fit_glmm`, or
        ``nagq="auto"``'s ladder of fits (the rungs whose grids fit in memory); a numerical
        breakdown, or an optimum where the log-likelihood is not finite, is a
        :class:`FitError` that says what to try."""
        x0 = None if start_params is None else self.theta_from_params(start_params)
        try:
            if how.auto:
                q_dim = quadrature_dimension(self.re_terms)
                max_rows = self._largest_group_rows()
                schedule = auto_schedule(q_dim, MAX_GRID_POINTS)
                fits = [k for k in schedule if not grid_problem(k, q_dim, max_rows)]
                if not fits:
                    raise MixedGLMInputError(grid_problem(schedule[0], q_dim, max_rows))
                state = fit_glmm_auto(obj, fits, x0=x0, maxiter=maxiter)
            else:
                state = fit_glmm(obj, x0=x0, maxiter=maxiter, hessian=hessian, check=hessian)
        except (ModeFailure, np.linalg.LinAlgError) as exc:
            sd = np.asarray(self.exog, float).std(axis=0)
            wide = [str(n) for n, v in zip(self.exog_names, sd) if v > 100 or 0 < v < 1e-2]
            hint = (f"; covariates on extreme scales ({', '.join(wide)}): standardise them"
                    if wide else "")
            raise FitError(f"the fit broke down numerically ({exc}){hint}; try a simpler "
                           "random-effects structure or start_params=") from exc
        if not np.isfinite(state.llf):
            hint = ("; with the inverse link every fitted mean 1 / eta must be positive, "
                    "which no parameters reached here: use the log link (family="
                    "sm.families.Gamma(sm.families.links.Log()), or glmer(..., "
                    "family='gamma(link=log)'))" if self.fam.link.restricted else
                    "; try start_params= from a simpler model")
            raise FitError(f"the fit ended where the log-likelihood is {state.llf}{hint}")
        return state

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
        return self.fam.inverse_link(eta)


def _zi_rhs(ziformula) -> str:
    """The right-hand side of a zero-part formula ("" for none)."""
    if ziformula is None:
        return ""
    return ziformula.split("~", 1)[1] if "~" in ziformula else ziformula


def _zero_part_from_formula(ziformula, data, env):
    """(X_zi, names, patsy design info) of ``ziformula`` ("~ x + z", "~ 1", "~ 0") on the
    model's rows; (None, None, None) for no columns."""
    rhs = _zi_rhs(ziformula).strip()
    if "|" in rhs:
        raise MixedGLMInputError("random effects in the zero part (ziformula with a bar "
                                 "term) are not supported; the zero part takes fixed effects")
    try:
        D = patsy.dmatrix(rhs or "0", data, eval_env=env, return_type="dataframe", NA_action="raise")
    except Exception as exc:  # patsy's errors: say which formula and what the columns are
        raise MixedGLMInputError(f"could not build the zero part from ziformula="
                                 f"{ziformula!r}: {exc}"
                                 + formula_hint(exc, ziformula, data.columns)) from exc
    if D.shape[1] == 0:
        return None, None, None
    return D.to_numpy(dtype=float), [str(c) for c in D.columns], D.design_info


def _zero_part_design(exog_zi, names):
    """(array (n, k) or None, column names) of a zero-part design: a DataFrame's columns
    name it, else ``names`` or zi0, zi1, ...; no columns is no zero part (None)."""
    if exog_zi is None:
        return None, None
    if isinstance(exog_zi, pd.DataFrame):
        names = [str(c) for c in exog_zi.columns] if names is None else names
    X = np.asarray(exog_zi, dtype=float)
    X = X.reshape(X.shape[0], -1)
    if X.shape[1] == 0:
        return None, None
    if names is None:
        names = [f"zi{k}" for k in range(X.shape[1])]
    if len(names) != X.shape[1]:
        raise MixedGLMInputError(f"exog_zi has {X.shape[1]} columns for {len(names)} names")
    return X, list(names)


class BinomialMixedGLM(MixedGLM):
    """MixedGLM with the binomial family (logit link unless ``family=`` says otherwise)."""

    _default_family = "binomial"

    def __init__(self, endog, exog, groups, exog_re=None, family=None, **kwargs):
        family, fam = resolve_family(family, default=self._default_family)
        if not fam.is_binomial:
            raise MixedGLMInputError("BinomialMixedGLM takes a Binomial family (any of its links)")
        super().__init__(endog, exog, groups, exog_re=exog_re, family=family, **kwargs)


class PoissonMixedGLM(MixedGLM):
    """MixedGLM with the Poisson family and log link (``exposure=`` for rates)."""

    _default_family = "poisson"

    def __init__(self, endog, exog, groups, exog_re=None, family=None, **kwargs):
        family, fam = resolve_family(family, default=self._default_family)
        if fam.distribution is not POISSON:
            raise MixedGLMInputError("PoissonMixedGLM takes a Poisson family")
        super().__init__(endog, exog, groups, exog_re=exog_re, family=family, **kwargs)
