"""lme4 formulas to a fitted model: what ``glmer``, ``lmer`` and ``update`` share.

The front doors (:func:`mlglm.api.lme4style.glmer`, :func:`mlglm.api.lme4style.lmer`) and the
results' ``update`` (:func:`mlglm.results.lme4api.update`) all turn an lme4 formula into a model
of a given class and fit it. The class is an argument (``cls``: :class:`~mlglm.api.models.MixedGLM`
from the front doors, ``type(results.model)`` from ``update``), so this module sits
below both and neither needs to import the other.

:func:`lme4_model` parses the bar terms (:mod:`mlglm.design.formula`) and builds the same
model a statsmodels user would build with ``groups=`` and ``re_formula=``. Columns an
lme4 formula computes inline are evaluated as patsy evaluates formula terms
(:func:`mlglm.design.expressions.evaluate`): the failures of ``cbind(s, n - s)`` become a
column of their own (named so as not to clash with any column of the data), and
``offset(expr)`` terms are summed into the offset (with ``offset=`` if given too).
Names resolve as everywhere in a formula (:mod:`mlglm.design.formula_env`): columns, then the
caller's namespace (``eval_env=``), then R's spellings of common functions (``log``,
``exp``, ``sqrt``, ``factor``, ``scale``, ...), then patsy's and Python's built-ins.
"""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import statsmodels.api as sm

from .data_checks import (MixedGLMInputError, is_dask_frame, is_integer, resolve_family,
                          unexpected_keywords)
from .expressions import ExpressionError, evaluate
from .fit_keywords import ACCEPTED, REFUSED
from .formula import parse_lme4, split_offsets
from .formula_env import R_FUNCTIONS, formula_names, identifiers

__all__ = ["lme4_model", "glmer_fit", "lmer_fit"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def _fresh_name(data, stem):
    """A column name not in ``data``."""
    name = stem
    while name in data.columns:
        name += "_"
    return name


def lme4_model(cls, formula, data, family, offset=None, namespace=None, **kwargs):
    """The model (of class ``cls``) of an lme4 formula (computed response columns and offset terms
    evaluated on ``data``); names that are not columns resolve in ``namespace`` (the
    caller's), then among R's functions (:mod:`mlglm.design.formula_env`)."""
    dask = is_dask_frame(data)
    if not dask and not isinstance(data, pd.DataFrame):
        data = pd.DataFrame(data)
    parsed = parse_lme4(formula)
    fixed_rhs, offset_terms = split_offsets(parsed.fixed_rhs)
    terms = parsed.response_terms
    names = formula_names({} if namespace is None else namespace,
                          [parsed.fixed, *offset_terms, *terms,
                           *(f"{t.re_formula}" for t in parsed.random_terms),
                           kwargs.get("subset") if isinstance(kwargs.get("subset"), str)
                           else None], r_names=True)
    added = {}
    if dask and (offset_terms or (len(terms) == 2 and not all(
            _NAME.fullmatch(t) and t in data.columns for t in terms))):
        raise NotImplementedError(
            "on a Dask DataFrame, cbind() arguments and offset() terms must be column names: "
            "add the computed columns to the frame first (ddf.assign(...))")
    r_used = sorted(n for n in identifiers(parsed.fixed, *(t.re_formula for t in
                                                            parsed.random_terms))
                    if n in set(R_FUNCTIONS) - {"abs", "round"}     # (Python built-ins work)
                    and (namespace is None or n not in namespace))  # (the caller's own win)
    if dask and r_used:     # the workers evaluate with numpy and patsy's names only
        raise NotImplementedError(
            f"on a Dask DataFrame, R's function names ({', '.join(r_used)}) are not "
            "translated: write numpy's (np.log(x), np.exp(x), np.sqrt(x)) or patsy's "
            "(C(x) for factor(x)), or add the column to the frame first")
    if len(terms) == 2:
        cols = []
        for k, t in enumerate(terms):
            if _NAME.fullmatch(t) and t in data.columns:
                cols.append(t)
            else:
                name = _fresh_name(data, f"cbind_{'failures' if k else 'successes'}")
                added[name] = _evaluated(t, data, names, f"the {'failures' if k else 'successes'} "
                                       f"{t} of {parsed.response}")
                cols.append(name)
        lhs = f"{cols[0]} + {cols[1]}"
    else:
        lhs = parsed.response
    offset_column = offset if isinstance(offset, str) else None
    if offset_terms:
        if isinstance(offset, str):
            offset = data[offset].to_numpy(dtype=float)
        total = np.zeros(len(data)) if offset is None else np.asarray(offset, dtype=float)
        offset = total + sum(_evaluated(t, data, names, f"offset({t})") for t in offset_terms)
    if added:
        data = data.assign(**added)
    first, rest = parsed.random_terms[0], list(parsed.random_terms[1:])
    if len(first.factors) > 1:
        # an interaction a:b first: every term goes through mlglm's own design
        model = cls.from_formula(f"{lhs} ~ {fixed_rhs}", data, family=family,
                                      offset=offset, _random_terms=[first] + rest,
                                      eval_env=names, **kwargs)
    else:
        cov_struct = "diagonal" if first.diagonal else "unstructured"
        model = cls.from_formula(f"{lhs} ~ {fixed_rhs}", data, groups=first.group,
                                      re_formula=first.re_formula, family=family,
                                      cov_struct=cov_struct, offset=offset, _random_terms=rest,
                                      eval_env=names, **kwargs)
    model.formula_offsets = offset_terms
    if offset_column is not None:        # read from new rows by predict, as from_formula's
        model.offset_column = offset_column
    model.formula_env = names
    return model


def _evaluated(expr, data, names, what):
    """:func:`~mlglm.design.expressions.evaluate`, its errors as input errors."""
    try:
        return evaluate(expr, data, names, what)
    except ExpressionError as exc:
        raise MixedGLMInputError(str(exc)) from exc


def _weights(**given):
    """The prior-weight keywords that were given (column names or arrays)."""
    return {k: v for k, v in given.items() if v is not None}


#: lme4's optCtrl entries that cap the optimiser's work (bobyqa, Nelder_Mead, nloptwrap)
_ITERATION_LIMITS = ("maxfun", "maxit", "maxeval")


def _control(control, function: str, fit_kwargs: dict) -> dict:
    """``fit_kwargs`` with what mlglm can honour of lme4's ``control=`` (a dict of
    ``glmerControl()`` / ``lmerControl()`` options); anything else is refused.

    glmer: ``optCtrl = {"maxfun": n}`` (or ``maxit``, ``maxeval``) becomes
    ``maxiter=n``, the iteration limit of mlglm's optimiser. lmer has nothing to
    map: the profiled (RE)ML criterion is minimised to convergence. The optimizer
    choice has no counterpart (mlglm's quasi-Newton method uses the exact
    gradient); the ``check.*`` options only silence lme4's checks, which in Python
    is a warnings filter.
    """
    if control is None:
        return fit_kwargs
    if not isinstance(control, Mapping):
        raise MixedGLMInputError(
            "control= takes lme4's glmerControl()/lmerControl() options as a dict, e.g. "
            "control={'optCtrl': {'maxfun': 20000}}")
    out = dict(fit_kwargs)
    honoured = ("optCtrl's maxfun / maxit / maxeval (as maxiter=, the iteration limit of "
                "mlglm's optimiser)" if function == "glmer" else "none of them (the "
                "profiled REML/ML criterion is minimised to convergence)")
    for key, value in control.items():
        if key == "optCtrl" and function == "glmer" and isinstance(value, Mapping):
            for k, v in value.items():
                if k not in _ITERATION_LIMITS:
                    raise MixedGLMInputError(
                        f"control optCtrl {k!r} has no counterpart in mlglm; {function} "
                        f"honours {honoured}")
                if "maxiter" in out and out["maxiter"] != int(v):
                    raise MixedGLMInputError(f"maxiter={out['maxiter']} and optCtrl {k}={v} "
                                             "disagree; give one")
                out["maxiter"] = int(v)
            continue
        if key == "optimizer":
            why = ("mlglm has one optimiser, a quasi-Newton method with the exact gradient "
                   "(L-BFGS-B finished by Newton steps), so lme4's choice of optimizer "
                   "(bobyqa, Nelder_Mead, nloptwrap) has no counterpart; drop it")
        elif str(key).startswith("check."):
            why = ("lme4's check options silence its checks; mlglm's checks are warnings "
                   "(e.g. mlglm.SingularFitWarning): silence one with "
                   "warnings.filterwarnings('ignore', category=...)")
        else:
            why = "it has no counterpart in mlglm"
        raise MixedGLMInputError(f"control option {key!r}: {why}. Of lme4's control options "
                                 f"{function} honours {honoured}")
    return out


#: Keywords of a fit on a Dask DataFrame (:mod:`mlglm.distributed`).
_SHARDED_KEYWORDS = ("client", "progress", "npartitions", "retries", "worker_timeout")

#: Of those, the ones the model takes (the pass over the data that builds it runs on
#: the cluster too): moved from the fit's keywords to the model's.
_SHARDED_MODEL_KEYWORDS = ("client", "worker_timeout")


def _model_keywords(data, fit_kwargs) -> dict:
    """The sharded model's keywords taken out of ``fit_kwargs`` (a Dask DataFrame only)."""
    if not is_dask_frame(data):
        return {}
    return {k: fit_kwargs.pop(k) for k in _SHARDED_MODEL_KEYWORDS if k in fit_kwargs}


def _fit_keywords(cls, function, fit_kwargs, data=None):
    """Refuse misspelt keywords with a did-you-mean over the front door's own
    arguments (``function``: :func:`glmer_fit` or :func:`lmer_fit`, whose arguments are
    the front door's, ``namespace`` standing for ``eval_env``) and those of
    ``cls.fit`` (statsmodels' own are checked there); a Dask DataFrame adds the sharded
    fit's keywords."""
    own = [p for p in inspect.signature(function).parameters
           if p not in ("cls", "fit_kwargs", "namespace")] + ["eval_env"]
    fit = [p for p in inspect.signature(cls.fit).parameters if p not in ("self", "kwargs")]
    valid = own + fit + list(ACCEPTED) + list(REFUSED)
    if is_dask_frame(data):
        valid += list(_SHARDED_KEYWORDS)
    unexpected_keywords(function.__name__.replace("_fit", ""), fit_kwargs, valid)


def glmer_fit(cls, formula, data, family="binomial", nagq=1, link=None, subset=None,
              offset=None, exposure=None, n_trials=None, missing="none", nAGQ=None, REML=None,
              weights=None, freq_weights=None, var_weights=None, control=None, namespace=None,
              ziformula=None, **fit_kwargs):
    """:func:`mlglm.api.lme4style.glmer` for a model class ``cls``, names resolving in
    ``namespace`` (the caller's, captured by the front door)."""
    _fit_keywords(cls, glmer_fit, fit_kwargs, data)
    fit_kwargs = _control(control, "glmer", fit_kwargs)
    if REML:
        raise MixedGLMInputError("REML is for linear mixed models (use lmer); GLMMs are "
                                 "fitted by maximum likelihood")
    if nAGQ is not None:
        if nagq not in (1, nAGQ):
            raise MixedGLMInputError(f"nagq={nagq} and nAGQ={nAGQ} disagree; give one")
        nagq = nAGQ
    fam, spec = resolve_family(family, link)
    if spec.is_gaussian:
        raise MixedGLMInputError("use lmer() for Gaussian models")
    if weights is not None:
        if spec.is_binomial:
            if n_trials is not None:
                raise MixedGLMInputError("give the binomial trials once: weights= (lme4's "
                                         "spelling) or n_trials=")
            n_trials = weights
        else:
            if freq_weights is not None:
                raise MixedGLMInputError("weights= is lme4's spelling of freq_weights= for "
                                         "this family; give one of them")
            freq_weights = weights
    if not (isinstance(nagq, str) and nagq == "auto"):
        if not is_integer(nagq) or nagq < 1:
            raise MixedGLMInputError("nagq must be an integer >= 1 or 'auto' (nAGQ = 0 is not "
                                     "offered: mlglm's Laplace fit is already fast)")
        nagq = int(nagq)
    model = lme4_model(cls, formula, data, fam, subset=subset, offset=offset, exposure=exposure,
                   n_trials=n_trials, missing=missing, namespace=namespace,
                   **_model_keywords(data, fit_kwargs),
                   **_weights(freq_weights=freq_weights, var_weights=var_weights),
                   **({} if ziformula is None else {"ziformula": ziformula}))
    if nagq == 1:
        return model.fit(method="laplace", **fit_kwargs)
    return model.fit(method="aghq", nagq=nagq, **fit_kwargs)


def lmer_fit(cls, formula, data, reml=True, subset=None, offset=None, missing="none",
             REML=None, weights=None, freq_weights=None, var_weights=None, control=None,
             namespace=None, **fit_kwargs):
    """:func:`mlglm.api.lme4style.lmer` for a model class ``cls``, names resolving in
    ``namespace``."""
    _fit_keywords(cls, lmer_fit, fit_kwargs, data)
    fit_kwargs = _control(control, "lmer", fit_kwargs)
    if REML is not None:
        reml = bool(REML)
    if weights is not None:
        if var_weights is not None:
            raise MixedGLMInputError("weights= is lme4's spelling of var_weights=; give one")
        var_weights = weights
    model = lme4_model(cls, formula, data, sm.families.Gaussian(), subset=subset, offset=offset,
                   missing=missing, namespace=namespace, **_model_keywords(data, fit_kwargs),
                   **_weights(freq_weights=freq_weights, var_weights=var_weights))
    return model.fit(reml=reml, **fit_kwargs)
