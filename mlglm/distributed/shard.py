"""One partition's share of a model, kept in a worker's memory between evaluations.

A :class:`Shard` is built on a worker from one partition of the shuffled data
(every top-level group whole in it) and stays there; every evaluation is a
small task that finds the shard, works on it and returns a few numbers.

Where it stays: in a registry of the worker process, not in Dask's own
store. The Dask future of a shard holds a :class:`ShardHandle` (an id of a
few bytes, freed with the future by :class:`ShardJanitor`). Dask spills the
values of futures to disk when a worker's memory
passes 60-70 % of its limit; a spilled shard would be written out and read
back at every evaluation, and its warm starts mutated on a copy. Held in the
registry it is ordinary process memory that Dask leaves alone, while the
handle keeps the future's lineage: if the worker dies the handle is
recomputed, which rebuilds the shard from the source. A handle whose shard
is not in the process that runs the task (a worker restarted under it)
raises :class:`ShardLost`, and the driver rebuilds the shards
(:mod:`mlglm.distributed.cluster`). A shard holds

* the pinned rows (the model's columns only), from which the local model is
  rebuilt whenever an objective of another kind is asked for;
* the per-shard objective: whatever ``model.objective(nagq)`` of the local
  model is -- the core chooses the engine from the terms (one term, nested
  factors; Laplace or AGHQ), and nothing here depends on which;
* the warm starts of its conditional modes under *tokens*: the driver's
  objective stands for the modes of all shards by one token (see
  :mod:`mlglm.distributed.objective`); an evaluation restores the modes saved
  under its start token and saves the new ones under its own. A token the
  shard does not have (evicted, or the shard was rebuilt after a worker was
  lost) means a cold start: the same modes, found with more Newton steps;
* its summary (:class:`ShardInfo`): rows, level labels per term, and the
  moments of [y, m, X, Z, offset] the driver's stand-in design is built from.

The Gaussian model keeps cross products instead
(:class:`mlglm.distributed.lmm.LMMShard`, one factor or nested factors).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from distributed.diagnostics.plugin import WorkerPlugin

from ..results.prediction import group_cross, row_curvature

__all__ = ["Shard", "ShardInfo", "ShardHandle", "ShardLost", "ShardJanitor", "build_shard",
           "call_many"]

#: warm starts kept per shard (the driver restores at most the last few)
MAX_STARTS = 8

#: objectives kept per shard (Laplace, the fit's nagq and the check's or auto's next one)
MAX_OBJECTIVES = 3

#: this process's shards by (worker address, key of the task that built them)
_REGISTRY: dict = {}


class ShardLost(RuntimeError):
    """The shard of a handle is not in this worker process (rebuild the shards)."""


class ShardHandle:
    """What a shard's Dask future holds: where the shard is in its worker's registry.

    The shard is registered under the building task's key, so the worker plugin
    :class:`ShardJanitor` frees it when Dask releases that key (the client
    dropped the future, or a rebuild cancelled it): the shard's lifetime is
    the future's, although Dask never sees its memory.
    """

    __slots__ = ("id",)

    def __init__(self, shard):
        from distributed import get_worker
        worker = get_worker()
        self.id = (worker.address, worker.get_current_task())
        _REGISTRY[self.id] = shard

    def __getstate__(self):
        return self.id

    def __setstate__(self, state):
        self.id = state

    def __sizeof__(self) -> int:
        return 64

    def get(self):
        shard = _REGISTRY.get(self.id)
        if shard is None:
            raise ShardLost(f"shard {self.id} is not in worker process {os.getpid()}")
        return shard


class ShardJanitor(WorkerPlugin):
    """Frees a registered shard when its worker releases the key of its handle."""

    name = "mlglm-shard-janitor"

    def setup(self, worker):
        self.address = worker.address

    def transition(self, key, start, finish, **kwargs):
        if start == "memory" and finish != "memory":
            _REGISTRY.pop((self.address, key), None)


@dataclass(frozen=True, eq=False)
class ShardInfo:
    """What the driver learns about a shard once.

    n : rows fitted.  n_dropped : rows dropped for missing values.
    levels : per random-effects term, the labels of its levels in this shard
    (as the local model orders them).  sizes : per term, rows per level.
    moments : (sum v, sum v v') of the row vectors v = (y, m, x, z, offset) (see
    :mod:`mlglm.distributed.standin`).  freq_total : the sum of the rows' frequency
    weights (None without them).
    """

    n: int
    n_dropped: int
    levels: tuple
    sizes: tuple
    moments: tuple
    freq_total: float | None = None


def _moments(model) -> tuple:
    """(sum v, sum v v') with v = (y, m, x, z, offset) per row (float64)."""
    V = np.column_stack([np.asarray(model.endog, float), np.asarray(model.n_trials, float),
                         np.asarray(model.exog, float),
                         np.asarray(model.exog_re, float), np.asarray(model.offset, float)])
    return V.sum(axis=0), V.T @ V


def _sizes(model) -> tuple:
    """Rows per level, per random-effects term."""
    return tuple(np.bincount(t.codes, minlength=t.n_levels) for t in model.re_terms)


def _levels(model) -> tuple:
    """The labels of each term's levels (in the local model's order)."""
    return tuple(t.levels if t.levels is not None else pd.RangeIndex(t.n_levels)
                 for t in model.re_terms)


class Shard:
    """A partition's rows, its per-shard objectives and its warm starts (module docstring)."""

    def __init__(self, part: pd.DataFrame, spec):
        self.spec = spec
        self.rows = spec.pin(part)
        self._objectives = OrderedDict()
        self._starts = OrderedDict()
        self._model = None
        if self.rows.shape[0] == 0:
            self.info = ShardInfo(0, 0, (), (), (None, None))
            return
        model = spec.local_model(self.rows)
        self._model = model
        fw = getattr(model, "freq_weights", None)
        self.info = ShardInfo(int(model.nobs), int(getattr(model, "n_dropped", 0)),
                              _levels(model), _sizes(model), _moments(model),
                              None if fw is None else float(np.sum(fw)))

    def summary(self) -> ShardInfo:
        return self.info

    @property
    def empty(self) -> bool:
        return self.info.n == 0

    # ------------------------------------------------------------- objectives
    def objective(self, nagq: int):
        """The local model's objective for ``nagq`` (built on first use).

        Built from an objective the shard already has when it can (its Laplace twin,
        or ``with_nagq``: the same data, other points), else from the local model.
        At most ``MAX_OBJECTIVES`` are kept (``nagq="auto"`` asks for a dozen in
        turn); the least recently used goes first, the Laplace one last.
        """
        obj = self._objectives.get(nagq)
        if obj is not None:
            self._objectives.move_to_end(nagq)
            return obj
        for other in reversed(self._objectives.values()):
            try:
                obj = other.laplace() if nagq == 1 else other.with_nagq(nagq)
            except NotImplementedError:      # an engine without other nagq (crossed Laplace)
                obj = None
            break
        if obj is None:
            model = self._model if self._model is not None else self.spec.local_model(self.rows)
            obj = model.objective(nagq)
        self._model = None               # the objective holds what it needs
        self._objectives[nagq] = obj
        while len(self._objectives) > MAX_OBJECTIVES:
            self._objectives.pop(next(k for k in self._objectives if k != 1))
        return obj

    def keep_objectives(self, nagqs) -> None:
        """Free the objectives for other nagq (after the fit-time check or ``nagq="auto"``:
        each holds row-length arrays of its last evaluation)."""
        for k in [k for k in self._objectives if k not in set(nagqs)]:
            del self._objectives[k]

    def build_objective(self, nagq: int) -> None:
        """Build the objective for ``nagq`` now (errors of its engine surface here)."""
        if not self.empty:
            self.objective(nagq)

    def _restore(self, obj, token):
        start = self._starts.get(token) if token is not None else None
        if token is not None and start is not None:
            self._starts.move_to_end(token)
        obj.u = start

    def _save(self, obj, token):
        self._starts[token] = obj.u
        self._starts.move_to_end(token)
        while len(self._starts) > MAX_STARTS:
            self._starts.popitem(last=False)

    # ------------------------------------------------------------ evaluations
    def value_and_gradient(self, nagq, x, token_in, token_out, n_x):
        if self.empty:
            return 0.0, np.zeros(n_x)
        obj = self.objective(nagq)
        self._restore(obj, token_in)
        value, grad = obj.value_and_gradient(np.asarray(x, float))
        self._save(obj, token_out)
        return float(value), grad

    def value(self, nagq, x, token_in, token_out, n_x):
        if self.empty:
            return 0.0
        obj = self.objective(nagq)
        self._restore(obj, token_in)
        value = obj(np.asarray(x, float))
        self._save(obj, token_out)
        return float(value)

    def beta_information(self, nagq, x, token_in, token_out, p):
        if self.empty:
            return np.zeros((p, p))
        obj = self.objective(nagq)
        self._restore(obj, token_in)
        info = obj.beta_information(np.asarray(x, float))
        self._save(obj, token_out)
        return info

    def random_effects(self, nagq):
        """(Lambdas, b, b_cov) of the local objective's last evaluation."""
        if self.empty:
            return None
        return self.objective(nagq).random_effects()

    def extreme_rows(self, nagq) -> int:
        """Rows fitted at probability 0 or 1 (|eta| > 15 at the modes) agreeing with
        their response: the row part of the separation check."""
        if self.empty:
            return 0
        obj = self.objective(nagq)
        eta = obj.state.eta
        y, m = obj.y, obj.m_rows
        return int(np.sum(((eta > 15) & (y == m)) | ((eta < -15) & (y == 0))))

    def group_zwx(self, beta, labels, b, dispersion, scale):
        """Per level of this shard's first random-effects term (the model's one term),
        Z_j'W_j X_j at the estimates: W (:func:`mlglm.results.prediction.row_curvature`) at
        eta = offset + X beta + z'b_j, b_j the fit's conditional mode of the level (``b``
        in the order of the global ``labels``). Returns (this shard's levels,
        (J_s, q, p)); the driver turns them into the modes' sensitivity to beta
        (:func:`mlglm.results.prediction.mode_sensitivity`)."""
        if self.empty:
            return None
        model = self.spec.local_model(self.rows)
        t = model.re_terms[0]
        bj = np.asarray(b, float)[pd.Index(labels).get_indexer(t.levels)]
        X = np.asarray(model.exog, float)
        eta = (np.asarray(model.offset, float) + X @ beta
               + np.einsum("nq,nq->n", t.Z, bj[t.codes]))
        w = row_curvature(model, eta, scale, dispersion)
        return t.levels, group_cross(X, t.Z, t.codes, w, t.n_levels)

    # ------------------------------------------------------- GLM start pieces
    def glm_initial(self, nagq):
        """(X'WX, X'W(z - offset)) with z the transformed response of
        :func:`mlglm.core.fit.glm_fit.glm_start` (W the prior weights, if any)."""
        obj = self.objective(nagq) if not self.empty else None
        if obj is None:
            return None
        X, o, w = obj.X, obj.offset, getattr(obj, "weights", None)
        y, m = getattr(obj, "y_obs", obj.y), getattr(obj, "m_obs", obj.m_rows)
        z = obj.fl.start_response(y, m)
        XW = X.T if w is None else X.T * w
        return XW @ X, XW @ (z - o)

    def glm_at(self, nagq, beta, log_dispersion=None):
        """(sum of GLM log-likelihood kernels, X'd1, X'D2X) at beta (random effects 0),
        with the kernel at ``log_dispersion`` when given (negative binomial, Gamma)."""
        if self.empty:
            return None
        obj = self.objective(nagq)
        X = obj.X
        fl = obj.fl if log_dispersion is None else obj.fl.at(log_dispersion)
        ker, d1, d2 = fl.kernel_derivatives(obj.offset + X @ beta, obj.y, obj.m_rows)
        return float(np.sum(ker)), X.T @ d1, (X.T * d2) @ X

    def dispersion_moments(self, nagq, beta):
        """This shard's sums behind the dispersion start at the GLM fit beta."""
        return None if self.empty else self.objective(nagq).dispersion_moments(beta)


def build_shard(part: pd.DataFrame, spec, kind: type = Shard, index: int | None = None,
                count: int | None = None) -> ShardHandle:
    """A shard of ``part`` registered in this worker process; returns its handle.

    kind : the class of the shard, :class:`Shard` (a GLMM: objectives and warm starts)
    or a subclass (the Gaussian ``lmm.LMMShard``: cross products); ``kind(part, spec)``.
    index, count : the shard's position among the shards, for error messages.

    An error of the model on these rows (a response out of range, a label that
    cannot be coded) is raised again with its own type and message, prefixed by
    the shard and some of its top-level groups (:func:`in_shard`), so that the
    driver shows what the in-memory fit would have said and where to look.
    """
    try:
        shard = kind(part, spec)
    except Exception as exc:            # noqa: BLE001 - re-raised with where it happened
        raise in_shard(exc, _where(part, spec, index, count)) from exc
    return ShardHandle(shard)


def _where(part, spec, index, count) -> str:
    """'shard 2 of 3 (groups of g such as 5, 9, 12)' for ``part``."""
    name = "shard" if index is None else f"shard {index + 1} of {count}"
    try:
        labels = part[list(spec.top)].drop_duplicates()
        shown = [str(tuple(r)) if len(r) > 1 else repr(r[0])
                 for r in labels.head(3).itertuples(index=False)]
        more = ", ..." if labels.shape[0] > 3 else ""
        return (f"{name} (the rows of {labels.shape[0]} groups of {':'.join(spec.top)}: "
                f"{', '.join(shown)}{more})")
    except Exception:     # noqa: BLE001 - the description must not hide the error
        return name


def in_shard(exc: BaseException, where: str) -> BaseException:
    """``exc`` again, its message prefixed with ``where``: the same type when it can be
    built from one message, else ``exc`` itself with a note."""
    message = f"on {where}: {exc}"
    try:
        new = type(exc)(message)
        if str(new) in (message, repr(message)):
            return new
    except Exception:     # noqa: BLE001 - exception types with other signatures
        pass
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised on {where})")
    return exc


def call_many(handles, method: str, *args):
    """``[shard.method(*args) for each shard]`` on the worker holding them (a Dask task)."""
    out = []
    for h in handles:
        shard = h.get()
        try:
            out.append(getattr(shard, method)(*args))
        except ShardLost:
            raise
        except Exception as exc:        # noqa: BLE001 - re-raised with where it happened
            raise in_shard(exc, _describe(shard)) from exc
    return out


def _describe(shard) -> str:
    info = getattr(shard, "info", None)
    if info is None or not info.levels:
        return "a shard"
    labels = list(info.levels[0][:3])
    more = ", ..." if len(info.levels[0]) > 3 else ""
    return (f"the shard of the groups {', '.join(map(repr, labels))}{more} "
            f"({len(info.levels[0])} groups, {info.n} rows)")
