"""Fits on data sharded across a Dask cluster (the ``mlglm[dask]`` extra).

``mlglm.glmer(formula, ddf)``, ``mlglm.lmer(formula, ddf)`` and
``MixedGLM.from_formula(..., data=ddf)`` with a ``dask.dataframe.DataFrame``
fit on the active ``distributed.Client`` (or ``client=``). This package is a
plugin: ``from_formula`` recognises a Dask frame without importing dask and
loads it on demand (:func:`mlglm.api.models.sharded_engine`), calling
:func:`sharded_model`; nothing below imports it. The rows are
shuffled once so that every top-level group lives whole in one partition,
each worker keeps its partitions' designs and conditional modes in memory,
and the driver runs the same optimiser as an in-memory fit on sums the
shards send back. Modules, from the front door down:

* :mod:`.frontend` -- the entry point ``from_formula`` hands a Dask frame to;
* :mod:`.spec` -- the coding learned once from the whole data;
* :mod:`.model` -- the driver's model object; :mod:`.standin` its stand-in rows;
* :mod:`.cluster` -- the shards as pinned futures, retries after lost workers, and
  :class:`ClusterTimeoutError` when the cluster has no workers at all;
* :mod:`.shard` -- a shard on a worker; :mod:`.lmm` the Gaussian shard and fit (the
  core's per-block sums, :mod:`mlglm.core.engines.lmm.sums`, one factor or nested ones);
* :mod:`.objective` -- the sharded Objective the unchanged driver optimises;
* :mod:`.results` -- results whose per-row outputs are Dask Series.

Nothing here is imported by ``import mlglm``; dask is imported on first use.
"""
from .cluster import ClusterTimeoutError
from .frontend import sharded_model
from .model import ShardedMixedGLM

__all__ = ["ShardedMixedGLM", "ClusterTimeoutError", "sharded_model"]
