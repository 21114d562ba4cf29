"""The front door: ``from_formula`` / ``glmer`` / ``lmer`` with a Dask DataFrame.

:meth:`MixedGLM.from_formula` hands a Dask DataFrame to :func:`sharded_model`
(it recognises one without importing dask and loads this package on demand,
:func:`mlglm.api.models.sharded_engine`). Here the caller's names that the
formulas use are captured (:func:`~mlglm.distributed.spec.formula_namespace`),
the coding is learned from the whole data
(:func:`~mlglm.distributed.spec.learn_spec`: categorical levels, missing
values, the top-level grouping factor, group labels and sizes), and the
driver's model object is built on the template rows
(:class:`~mlglm.distributed.model.ShardedMixedGLM`). The shuffle and the
shards wait for the first fit.

What a formula can use on the workers: the frame's columns; the names of the
calling namespace it mentions (as statsmodels' ``eval_env``; ``eval_env=``
passes another depth, a dict of names or a ``patsy.EvalEnvironment``), pickled
on the driver and shipped to the workers; numpy as ``np``; patsy's builtins
(``C``, ``I``, ``Q``, contrasts such as ``Treatment``); Python's builtins. Not
patsy's stateful transforms (``center``, ``standardize``, ``scale``). A name
that is missing, or whose value cannot be pickled, fails here, on the driver.
"""
from __future__ import annotations

import sys
import warnings

from ..design.data_checks import DataWarning, MixedGLMInputError, resolve_family
from ..design.fit_checks import check_re_in_fixed
from .model import ShardedMixedGLM
from .spec import _show, formula_namespace, learn_spec

__all__ = ["sharded_model"]


def sharded_model(cls, formula, data, re_formula=None, vc_formula=None, subset=None,
                  missing="none", **kwargs):
    """A :class:`ShardedMixedGLM` for ``cls.from_formula(formula, data, ...)`` with a
    Dask DataFrame ``data``.

    Extra keywords: ``client`` (a ``distributed.Client``; default the active
    one), ``npartitions`` (shards; default the frame's partitions), ``retries``
    (repeats of an evaluation after worker failures, default 3) and
    ``worker_timeout`` (seconds any wait on the cluster tolerates having no
    worker at all before raising
    :class:`~mlglm.distributed.cluster.ClusterTimeoutError`; default 120).
    ``eval_env`` is where the formulas' names are looked up (module docstring).
    """
    client = kwargs.pop("client", None)
    npartitions = kwargs.pop("npartitions", None)
    retries = kwargs.pop("retries", 3)
    worker_timeout = kwargs.pop("worker_timeout", None)
    eval_env = kwargs.pop("eval_env", None)
    if subset is not None:
        raise MixedGLMInputError("subset= is not taken with a Dask DataFrame; filter the frame "
                                 "instead (ddf[ddf.x > 0])")
    if vc_formula is not None and not isinstance(vc_formula, dict):
        raise MixedGLMInputError("vc_formula must be a dict {name: formula}")
    kwargs["family"], fam = resolve_family(kwargs.get("family"), default=cls._default_family)
    weighted = kwargs.get("freq_weights") is not None or kwargs.get("var_weights") is not None
    if weighted and fam.is_gaussian:
        raise NotImplementedError(     # the Gaussian shards' sums are unweighted
            "prior weights with a Gaussian (linear mixed) model are not taken by sharded "
            "fits: their per-shard sums are unweighted; fit the data in memory "
            "(df = ddf.compute()), or use the weights with a GLMM family")
    texts = [formula, re_formula] + list((vc_formula or {}).values()) + \
        [t.re_formula for t in kwargs.get("_random_terms") or []]
    namespace, refused = formula_namespace(eval_env, texts, data.columns)
    spec, facts = learn_spec(formula, data, re_formula, vc_formula, missing, kwargs, client,
                             namespace=namespace, timeout=worker_timeout)
    _warn_data_facts(facts)
    try:
        model = spec.local_model(facts["template"], cls=ShardedMixedGLM)
    except MixedGLMInputError as exc:
        if "NameError" not in str(exc) and "is not defined" not in str(exc):
            raise
        why = "".join(f"; {name} cannot be sent to the workers ({reason})"
                      for name, reason in refused.items())
        raise MixedGLMInputError(
            f"{exc}\nOn a Dask DataFrame the workers evaluate the formula with the frame's "
            "columns, the names of the calling namespace it mentions (pickled on the "
            "driver; or pass eval_env={name: value}), numpy as np, patsy's builtins and "
            f"Python's builtins{why}") from exc
    check_re_in_fixed(model)
    model._attach(spec, facts, data, client, npartitions, retries, worker_timeout)
    return model


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside mlglm, seen from the function calling
    this one (so that a warning points at the user's line, whatever the route:
    ``glmer``, ``lmer`` or ``from_formula``)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and \
            str(frame.f_globals.get("__name__", "")).split(".")[0] == "mlglm":
        frame, level = frame.f_back, level + 1
    return level


def _warn_data_facts(facts) -> None:
    """The in-memory fit's warnings about the data, once, with whole-data counts."""
    level = _caller_level()
    if facts["n_missing"]:
        warnings.warn(f"dropped {facts['n_missing']} rows with NaN or inf (in "
                      f"{', '.join(map(str, facts['missing_by_column']))})", DataWarning,
                      stacklevel=level)
    if facts["dropped_levels"]:       # the in-memory fit's words (drop_unused_levels)
        text = "; ".join(f"{c}: {', '.join(map(str, levels))}"
                         for c, levels in facts["dropped_levels"].items())
        warnings.warn(f"unused categories dropped (no row of the data has them): {text}. "
                      "The model has no coefficient for them; predictions on frames with "
                      "the same categorical dtype work, rows with these levels are refused",
                      DataWarning, stacklevel=level)
    for c, levels in facts["undeclared_levels"].items():
        warnings.warn(f"the Dask DataFrame declares categories for {c!r} that lack "
                      f"{_show(levels)}, which its partitions hold; the levels were learned "
                      "from the data (fix the frame's dtype, e.g. ddf[col].cat.as_known())",
                      DataWarning, stacklevel=level)
