"""The shards on the cluster: building them, calling them, surviving lost workers.

:class:`ShardSet` owns one Dask future per shard. The futures are the
*pinned* state of the fit: a shard is computed once on some worker and stays
in that worker's memory; each call (:meth:`ShardSet.map`) submits one small
task per shard that takes the shard future as its argument, so the scheduler
runs it where the shard lives (the shard reports its size, which keeps the
scheduler from moving it) and only the task's small result travels.

Fault tolerance comes in two layers.

* Lineage (Dask's own): a shard future remembers the graph it came from --
  the shuffle of the source partitions (a Parquet read, or the partitions of
  a frame the client holds). When the worker holding it dies, the scheduler
  recomputes the shard from the source on a live worker and runs the waiting
  evaluation there; the driver sees nothing but a slower evaluation.
* Retry (here): if a call still fails for a reason that is about workers and
  not about the model -- a task that repeatedly killed its worker
  (``KilledWorker``), a cancelled future, a broken connection, a shard not in
  the process that ran the task (``ShardLost``) -- the shards are rebuilt
  under fresh keys from the source and the call is repeated, up to
  ``retries`` times. Errors of the model (bad data, a numerical failure)
  are raised at once.

A rebuilt shard has lost its warm starts, so its modes restart from zero:
the same optimum (the inner problem is solved to 1e-10), a few more Newton
steps.

Two things are not retried. A cluster with *no workers* (all lost, or scaled
to zero) runs nothing and Dask waits for workers without limit: every wait
here watches the number of workers and, after ``worker_timeout`` seconds
without any (:data:`WORKER_TIMEOUT` by default), raises
:class:`ClusterTimeoutError`, which says what to do. And an error of the model
on a shard (a bad value in its rows) is raised on the driver with its own type
and message, naming the shard and some of its groups
(:func:`~mlglm.distributed.shard.build_shard`).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time

from .shard import Shard, ShardJanitor, ShardLost, build_shard, call_many

__all__ = ["ShardSet", "worker_errors", "ClusterTimeoutError", "WORKER_TIMEOUT", "compute",
           "wait_for"]

log = logging.getLogger("mlglm.distributed")

#: seconds a wait on the cluster tolerates having no worker at all (``worker_timeout=``)
WORKER_TIMEOUT = 120.0


class ClusterTimeoutError(RuntimeError):
    """The cluster had no workers for ``worker_timeout`` seconds.

    ``params`` holds the best point a fit had reached (statsmodels' parameter
    order), to pass as ``start_params=`` once the cluster has workers again; None
    when the fit had not evaluated the likelihood yet.
    """

    def __init__(self, message, params=None):
        super().__init__(message)
        self.params = params


def _n_workers(client) -> int:
    try:
        return len(client.nthreads())
    except Exception:       # noqa: BLE001 - a scheduler that does not answer has no workers
        return 0


def wait_for(client, futures, timeout=None, what: str = "the computation") -> None:
    """Wait until ``futures`` are finished (or failed), like ``distributed.wait``, but
    give up when the cluster has had no worker for ``timeout`` seconds (None: the
    default :data:`WORKER_TIMEOUT`; ``float("inf")``: never).

    A legitimately long computation is never cut short: only the absence of every
    worker counts.
    """
    from distributed import wait
    timeout = WORKER_TIMEOUT if timeout is None else float(timeout)
    poll = min(1.0, max(timeout / 4.0, 0.05))
    since = None
    while True:
        try:
            wait(futures, timeout=poll)
            return
        except (TimeoutError, asyncio.TimeoutError):      # the same class from Python 3.11
            pass
        if _n_workers(client):
            since = None
            continue
        now = time.monotonic()
        if since is None:
            since = now
            log.warning("mlglm: %s is waiting for workers: the cluster has none (giving up "
                        "after %g s)", what, timeout)
        elif now - since >= timeout:
            raise ClusterTimeoutError(
                f"{what} gave up: the cluster has had no workers for {timeout:g} s (all "
                "were lost, or it was scaled to zero). Start workers (cluster.scale(n), or "
                "check the scheduler's logs for why they died) and run it again; to wait "
                "longer, pass worker_timeout= (seconds) to the model or fit()")


def compute(client, collections, timeout=None, what: str = "the computation") -> list:
    """``dask.compute(*collections)`` on ``client`` (default: the active client),
    watched by :func:`wait_for`; with no distributed client at all, dask's local
    scheduler."""
    import dask
    if client is None:
        try:
            from distributed import default_client
            client = default_client()
        except (ImportError, ValueError):
            return list(dask.compute(*collections))
    futures = client.compute(list(collections))
    wait_for(client, futures, timeout, what)
    return client.gather(futures)


@functools.lru_cache(maxsize=1)
def worker_errors() -> tuple:
    """Exceptions that are about workers, not about the model (imported on first use)."""
    from distributed import KilledWorker
    from distributed.comm.core import CommClosedError
    errors = [KilledWorker, CommClosedError, OSError, TimeoutError]
    try:
        from distributed.client import FutureCancelledError
        errors.append(FutureCancelledError)
    except ImportError:     # older distributed
        pass
    from concurrent.futures import CancelledError
    errors.append(CancelledError)
    import asyncio
    errors.append(asyncio.CancelledError)
    return tuple(errors)


class ShardSet:
    """One future per shard of the shuffled data (module docstring).

    Parameters
    ----------
    client : distributed.Client.
    parts : the shuffled frame's partitions as ``dask.delayed`` objects.
    spec : the DesignSpec the shards are built with.
    kind : the class of the shards: :class:`~mlglm.distributed.shard.Shard` (objectives)
        or a subclass (the Gaussian shard's cross products); see
        :func:`~mlglm.distributed.shard.build_shard`.
    retries : how many times a call is repeated after worker failures.
    worker_timeout : seconds any wait tolerates a cluster without workers
        (:func:`wait_for`; None: :data:`WORKER_TIMEOUT`).
    """

    def __init__(self, client, parts, spec, kind: type = Shard, retries: int = 3,
                 worker_timeout=None):
        self.client = client
        self.parts = list(parts)
        self.spec = spec
        self.kind = kind
        self.retries = int(retries)
        self.worker_timeout = worker_timeout
        self.rebuilds = 0
        client.register_plugin(ShardJanitor())      # frees shards with their futures
        self.futures = self._build()
        self._holders = None

    def __len__(self):
        return len(self.futures)

    def _build(self):
        import dask

        spec = dask.delayed(self.spec, traverse=False)
        n = len(self.parts)
        shards = [dask.delayed(build_shard, pure=False)(p, spec, self.kind, i, n)
                  for i, p in enumerate(self.parts)]
        return self.client.compute(shards)

    def rebuild(self):
        """Rebuild every shard under fresh keys from the source partitions."""
        self.rebuilds += 1
        old = self.futures
        self.futures = self._build()
        self._holders = None
        self.client.cancel(old)        # the workers' ShardJanitor frees the old shards

    def holders(self) -> list:
        """The worker holding each shard (asked once per set of shards)."""
        if self._holders is None:
            wait_for(self.client, self.futures, self.worker_timeout, "building the shards")
            for f in self.futures:
                if f.status == "error":      # the model's error on a shard's rows
                    f.result()
            who = self.client.who_has(self.futures)
            self._holders = [(list(who.get(f.key, ())) or [None])[0] for f in self.futures]
        return self._holders

    def _batches(self):
        """Shards grouped into one task per worker thread: [(worker, [shard indices])].

        An evaluation is then a handful of tasks whatever the number of shards
        (the scheduler's cost is per task, a few milliseconds each). Holders no
        longer in the cluster are asked again (their shards were rebuilt elsewhere).
        """
        workers = self.client.scheduler_info().get("workers", {})
        if self._holders is not None and any(w not in workers for w in self._holders):
            self._holders = None
        holders = self.holders()
        threads = {w: max(int(i.get("nthreads", 1)), 1) for w, i in workers.items()}
        by_worker = {}
        for i, w in enumerate(holders):
            by_worker.setdefault(w, []).append(i)
        out = []
        for w, idx in by_worker.items():
            k = min(threads.get(w, 1), len(idx))
            out.extend((w, idx[j::k]) for j in range(k))
        return out

    def map(self, method: str, *args, what: str = ""):
        """``[shard.method(*args) for shard]``, computed where each shard lives.

        One task per worker thread takes that worker's shards as arguments
        (:meth:`_batches`); it is restricted, loosely, to the worker holding
        them, so a shard is never copied to another worker (where a second copy
        would double its memory and its warm starts would diverge). If that
        worker is gone the restriction lapses and the scheduler rebuilds the
        shards from their lineage wherever it likes.
        """
        last = None
        for attempt in range(self.retries + 1):
            batches = self._batches()
            futs = [self.client.submit(call_many, [self.futures[i] for i in idx], method, *args,
                                       pure=False, workers=None if w is None else [w],
                                       allow_other_workers=w is not None)
                    for w, idx in batches]
            try:
                wait_for(self.client, futs, self.worker_timeout, what or method)
                res = self.client.gather(futs)
            except worker_errors() + (ShardLost,) as exc:
                last = exc
                log.warning("mlglm: %s failed on the cluster (%s: %s); rebuilding the shards "
                            "from the source and retrying (%d of %d)", what or method,
                            type(exc).__name__, exc, attempt + 1, self.retries)
                self.client.cancel(futs)
                time.sleep(0.5 * (attempt + 1))
                self.rebuild()
                continue
            out = [None] * len(self.futures)
            for (_, idx), values in zip(batches, res):
                for i, v in zip(idx, values):
                    out[i] = v
            return out
        raise RuntimeError(f"{what or method} failed {self.retries + 1} times on the cluster; "
                           "the last error was shown above") from last

    def release(self):
        """Drop the shards from the workers' memory."""
        self.client.cancel(self.futures)
        self.futures = []
