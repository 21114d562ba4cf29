"""The front door: ``from_formula`` / ``glmer`` / ``lmer`` with a Dask DataFrame.

:meth:`MixedGLM.from_formula` hands a Dask DataFrame to :func:`sharded_model`
(it recognises one without importing dask). Here the coding is learned from
the whole data (:func:`~mlglm.distributed.spec.learn_spec`: categorical
levels, the top-level grouping factor, group labels and sizes), and the
driver's model object is built on the template rows
(:class:`~mlglm.distributed.model.ShardedMixedGLM`). The shuffle and the
shards wait for the first fit.
"""
from __future__ import annotations

import warnings

import statsmodels.api as sm

from ..data_checks import DataWarning, MixedGLMInputError
from ..model import _check_re_in_fixed
from .model import ShardedMixedGLM
from .spec import learn_spec

__all__ = ["sharded_model"]


def sharded_model(cls, formula, data, re_formula=None, vc_formula=None, subset=None,
                  missing="none", **kwargs):
    """A :class:`ShardedMixedGLM` for ``cls.from_formula(formula, data, ...)`` with a
    Dask DataFrame ``data``.

    Extra keywords: ``client`` (a ``distributed.Client``; default the active
    one), ``npartitions`` (shards; default the frame's partitions) and
    ``retries`` (repeats of an evaluation after worker failures, default 3).
    """
    from ..lme4style import family_from_name
    from ..model import BinomialMixedGLM, PoissonMixedGLM
    client = kwargs.pop("client", None)
    npartitions = kwargs.pop("npartitions", None)
    retries = kwargs.pop("retries", 3)
    kwargs.pop("eval_env", None)
    if subset is not None:
        raise MixedGLMInputError("subset= is not taken with a Dask DataFrame; filter the frame "
                                 "instead (ddf[ddf.x > 0])")
    if vc_formula is not None and not isinstance(vc_formula, dict):
        raise MixedGLMInputError("vc_formula must be a dict {name: formula}")
    family = kwargs.get("family")
    if isinstance(family, str):
        family = family_from_name(family)
    if family is None and issubclass(cls, BinomialMixedGLM):
        family = sm.families.Binomial()
    elif family is None and issubclass(cls, PoissonMixedGLM):
        family = sm.families.Poisson()
    if family is not None:
        kwargs["family"] = family
    weighted = kwargs.get("freq_weights") is not None or kwargs.get("var_weights") is not None
    if weighted and (family is None or type(family).__name__ == "Gaussian"):
        raise NotImplementedError(     # the Gaussian shards' sums are unweighted
            "prior weights with a Gaussian (linear mixed) model are not taken by sharded "
            "fits: their per-shard sums are unweighted; fit the data in memory "
            "(df = ddf.compute()), or use the weights with a GLMM family")
    spec, facts = learn_spec(formula, data, re_formula, vc_formula, missing, kwargs, client)
    with warnings.catch_warnings():     # rows dropped are counted on the shards, once
        warnings.simplefilter("ignore", DataWarning)
        model = spec.local_model(facts["template"], cls=ShardedMixedGLM)
    _check_re_in_fixed(model.exog, model.exog_re, getattr(model.data, "exog_re_names", None))
    model._attach(spec, facts, data, client, npartitions, retries)
    return model
