"""The driver's model object of a sharded fit: :class:`ShardedMixedGLM`.

It is an ordinary :class:`~mlglm.api.models.MixedGLM` built by ``from_formula`` on
a *template* -- the first rows of the data, with the whole data's categorical
levels pinned (:mod:`mlglm.distributed.spec`) -- so names, formula, patsy
design information and the random-effects terms are exactly those of the
in-memory model, and predictions on new pandas data go through the usual
code. What depends on all rows is then replaced by whole-data facts:

* ``nobs``, the group labels and sizes, each term's levels (gathered from
  the shards: labels and counts, never rows);
* ``exog``, ``exog_re``, ``endog``, ``offset``: a stand-in with the data's
  first and second moments (:mod:`mlglm.distributed.standin`), on which the
  rank of X, column SDs, the mean linear predictor and the adjusted ICC are
  exact (constant columns, such as the intercept or Bernoulli trials, exactly
  constant);
* prior weights: stand-ins that say there are weights and, for frequency
  weights, add up to the whole data's total (the results' ``nobs``); the rows'
  own weights are on the shards.

The cluster side -- the shuffle, the shards and the layout of their levels --
is built on first use (:meth:`ShardedMixedGLM.fit`, :meth:`objective`) with
the client given there, the one given to ``from_formula``, or the active
one, and kept for later fits of the same model. It is not pickled: a
results object shipped to workers for predictions carries the model without
it.
"""
from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from ..core.spec.terms import ReTerm, ReTerms
from ..design.data_checks import MixedGLMInputError
from ..design.mixedlm_view import single_term, term_labels
from ..api.models import MixedGLM
from .cluster import ClusterTimeoutError, ShardSet
from .lmm import LMMShard, sharded_lmm_fit
from .objective import Placement, ShardedObjective
from .results import sharded_results
from .shard import Shard
from .standin import standin_rows

__all__ = ["ShardedMixedGLM"]


class ShardedMixedGLM(MixedGLM):
    """A MixedGLM whose rows live in the partitions of a Dask DataFrame (module docstring).

    Built by ``MixedGLM.from_formula(..., data=ddf)``, ``glmer(..., ddf)`` or
    ``lmer(..., ddf)``; not constructed directly.
    """

    _cluster_state = None
    #: this fit's cluster options (client, progress, retries), while :meth:`fit` runs
    _run = None
    #: the arrays exog, endog, ... are a stand-in, not the rows (row-based code refuses)
    rows_on_driver = False

    def __getstate__(self):
        """The model without its cluster side; the patsy design (which does not pickle)
        is rebuilt on unpickling from the template rows with the formula names of the
        spec (:meth:`__setstate__`), not from the unpickling process's stack frames,
        where statsmodels would look for them and a worker has none of the caller's."""
        state = dict(self.__dict__)
        for key in ("_cluster_state", "_source", "_client", "_last_objective", "_run"):
            state.pop(key, None)
        data = state.get("data")
        if data is not None and "model_spec" in data.__dict__ and "_spec" in state:
            copy = object.__new__(type(data))
            copy.__dict__.update({k: v for k, v in data.__dict__.items() if k != "model_spec"})
            state["data"] = copy
            state["_rebuild_model_spec"] = True
        return state

    def __setstate__(self, state):
        rebuild = state.pop("_rebuild_model_spec", False)
        self.__dict__.update(state)
        if rebuild:
            from statsmodels.formula._manager import FormulaManager
            mgr = FormulaManager()
            mgr.get_matrices(self.data.formula, self.data.frame, eval_env=self._spec.eval_env(),
                             pandas=True)
            self.data.model_spec = mgr.spec

    # -------------------------------------------------------------- set-up
    def _attach(self, spec, facts, source, client, npartitions, retries, worker_timeout=None):
        self._spec = spec
        self._source = source
        self._client = client
        self._npartitions = npartitions
        self._retries = retries
        self._worker_timeout = worker_timeout
        self.dropped_levels = dict(facts.get("dropped_levels", {}))
        self.n_dropped = int(facts.get("n_missing", 0))
        sizes = facts["top_sizes"]
        if single_term(self):           # MixedLM's one-factor attributes (mixedlm_view)
            self.group_labels = list(sizes.index)
            self.n_groups = len(self.group_labels)
            self.group_sizes = np.asarray(sizes, dtype=np.int64)
        self.nobs = self.n_totobs = int(np.sum(np.asarray(sizes)))

    def _cluster(self, client=None, retries=None):
        """The shards on the cluster, built on first use (again for another client).

        If the cluster has no workers for ``worker_timeout`` seconds the half-built
        shards are released (a later fit builds them again) and
        :class:`~mlglm.distributed.cluster.ClusterTimeoutError` is raised."""
        state = self._cluster_state
        if state is not None and (client is None or client is state["shards"].client):
            return state
        if state is not None:
            self.release()
        client = client or self._client or _default_client()
        spec = self._spec
        shuffled = self._source[spec.columns].shuffle(on=list(spec.top),
                                                      npartitions=self._npartitions,
                                                      shuffle_method=spec.shuffle_method)
        parts = shuffled.to_delayed()
        kind = LMMShard if self.fam.is_gaussian else Shard
        shards = ShardSet(client, parts, spec, kind=kind,
                          retries=self._retries if retries is None else retries,
                          worker_timeout=self._worker_timeout)
        try:
            infos = shards.map("summary", what="building the shards")
        except BaseException:
            shards.release()
            raise
        placement = Placement(infos, [t.name for t in self.re_terms])
        self._cluster_state = {"shards": shards, "placement": placement, "infos": infos}
        self._apply_global_facts(infos, placement)
        return self._cluster_state

    def _apply_global_facts(self, infos, placement):
        """Whole-data rows, levels and the stand-in design (module docstring)."""
        n = sum(i.n for i in infos)
        if n == 0:
            raise MixedGLMInputError("no rows left to fit (after dropping missing values)")
        self.nobs = self.n_totobs = n
        # rows dropped for missing values: counted (and warned about) on the whole data
        # when the model was built; the shards' own count is the same rows
        self.n_dropped = sum(i.n_dropped for i in infos)
        total = sum(i.moments[0] for i in infos if i.n)
        cross = sum(i.moments[1] for i in infos if i.n)
        p, q = self.exog.shape[1], self.exog_re.shape[1]
        W = standin_rows(total, cross, n)
        self.endog = W[:, 0]
        self.n_trials = W[:, 1]
        self.exog = np.asfortranarray(W[:, 2:2 + p])
        self.exog_re = W[:, 2 + p:2 + p + q]
        self.offset = W[:, -1]
        self.group_codes = np.zeros(W.shape[0], dtype=np.intp)
        # prior weights live on the shards; the driver keeps stand-ins that say there are
        # weights and, for frequency weights, add up to the whole data's total (results' nobs)
        if self.freq_weights is not None:
            self.freq_weights = np.zeros(W.shape[0])
            self.freq_weights[0] = sum(i.freq_total for i in infos if i.n)
        if self.var_weights is not None:
            self.var_weights = np.ones(W.shape[0])
        XtX = cross[2:2 + p, 2:2 + p]
        self._X_moments = (total[2:2 + p] / n, XtX / n)
        self._rank_X = _gram_rank(XtX, self.exog_names)
        terms = []
        for k, t in enumerate(self.re_terms):
            levels = placement.levels[k]
            if len(levels) < 2:
                raise MixedGLMInputError(
                    f"the grouping factor {t.name} has a single level: its random effects "
                    "cannot be told apart from the fixed intercept; drop the term")
            if self.fam.is_gaussian and len(levels) * t.q >= n:
                raise MixedGLMInputError(
                    f"the grouping factor {t.name} has {len(levels)} levels x {t.q} effects for "
                    f"{n} observations: its random effects and the residual variance are "
                    "unidentifiable (as lme4 says); drop the term or use a GLMM")
            terms.append(ReTerm(t.name, np.zeros(0, np.intp), len(levels), np.zeros((0, t.q)),
                                t.pattern, t.column_names, levels))
        self.re_terms = ReTerms(tuple(terms))
        for k, specs in enumerate(getattr(self, "re_info", []) or []):
            for s in specs:
                s.levels = placement.levels[k]
        if single_term(self):           # MixedLM's one-factor attributes (mixedlm_view)
            self.group_labels = term_labels(self.re_terms[0])
            self.group_sizes = placement.sizes(0)
            self.n_groups = len(self.group_labels)

    # ----------------------------------------------------------------- fit
    def objective(self, nagq: int = 1, client=None, progress=None):
        """The sharded log-likelihood as an Objective (see
        :class:`~mlglm.distributed.objective.ShardedObjective`)."""
        if self.fam.is_gaussian:
            raise NotImplementedError("Gaussian models are fitted by profiled (RE)ML; "
                                      "use fit()")
        # nagq > 1 with nested factors: each shard's model.objective(nagq) decides (and
        # says so if its engine is not there); crossed factors never reach this point
        state = self._cluster(client)
        if nagq > 1:      # built first, the AGHQ objective shares its data with its Laplace twin
            state["shards"].map("build_objective", nagq, what="objective")
        fl = self.fam.kernel()
        obj = ShardedObjective(state["shards"], fl, self.re_terms, self.k_fe, nagq,
                               state["placement"], progress,
                               estimate_dispersion=self.fam.estimates_dispersion)
        self._last_objective = obj
        return obj

    def fit(self, method=None, nagq=None, reml=None, start_params=None, maxiter=1000,
            hessian=True, client=None, progress=None, npartitions=None, retries=None,
            worker_timeout=None, **kwargs):
        """Fit on the cluster: :meth:`MixedGLM.fit` (the same arguments, checks and
        warnings), whose engine step (:meth:`_fit`) runs on the shards; plus

        client : the ``distributed.Client`` (default: the one given to
            ``from_formula``, else the active one).
        progress : ``True`` prints one line per evaluation of the log-likelihood
            (nothing else); a callable receives the same records as dicts
            (evaluation, what, nagq, loglik, seconds, rebuilds).
        npartitions : shards to cut the data into (default: the Dask DataFrame's
            partitions); used when the shards are first built.
        retries : repeats of an evaluation after worker failures (default 3).
        worker_timeout : seconds any wait on the cluster tolerates having no worker at
            all (default: the model's, 120). Then
            :class:`~mlglm.distributed.cluster.ClusterTimeoutError` is raised; its
            ``params`` is the best point the fit had reached, to pass as
            ``start_params=`` to a fit once the cluster has workers again.
        """
        if worker_timeout is not None:
            self._worker_timeout = worker_timeout
            if self._cluster_state is not None:
                self._cluster_state["shards"].worker_timeout = worker_timeout
        if npartitions is not None:
            self._npartitions = npartitions
        self._last_objective = None
        self._run = {"client": client, "progress": progress, "retries": retries}
        try:
            return super().fit(method, nagq, reml, start_params, maxiter, hessian, **kwargs)
        except ClusterTimeoutError as exc:
            self.release()          # a later fit builds the shards again from the source
            best = getattr(self._last_objective, "best", None)
            params = None if best is None else self._params_from_x(best[1])
            resume = ("" if params is None else
                      f" To go on from the best point this fit reached (log L {best[0]:.6f}), "
                      "pass start_params=err.params to fit().")
            raise ClusterTimeoutError(f"{exc}.{resume}", params=params) from None
        finally:
            self._run = None

    def _params_from_x(self, x):
        """params (fe_params, vech(Sigma) per term[, dispersion]) from x = (beta, theta[,
        log dispersion]): the inverse of :meth:`theta_from_params`."""
        x = np.asarray(x, dtype=float)
        p, n_theta = self.k_fe, self.re_terms.n_theta
        parts = [x[:p]]
        for L in self.re_terms.Lambdas(x[p:p + n_theta]):
            parts.append((L @ L.T)[np.tril_indices(L.shape[0])])
        if self.fam.estimates_dispersion:
            parts.append([self.fam.dispersion_from_log(x[-1])])
        return pd.Series(np.concatenate(parts), index=list(self.data.param_names))

    def _fit(self, how, start_params, maxiter, hessian):
        """:meth:`MixedGLM._fit` on the shards, with this fit's cluster options
        (:meth:`fit`): the Gaussian model by profiled (RE)ML from the shards' sums, a
        GLMM by the in-memory optimiser (:meth:`MixedGLM._optimise`) on the sharded
        objective."""
        run = self._run or {}
        state = self._cluster(run.get("client"), retries=run.get("retries"))
        if how.gaussian:
            fitted = sharded_lmm_fit(state["shards"], state["placement"], self.re_terms,
                                     self.nobs, self.k_fe, reml=how.reml,
                                     progress=_lmm_reporter(run.get("progress")))
            return sharded_results(self, fitted)
        obj = self.objective(how.nagq, run.get("client"), run.get("progress"))
        fitted = self._optimise(obj, how, start_params, maxiter, hessian)
        obj = obj.with_nagq(fitted.nagq)         # nagq="auto": where the ladder settled
        state["shards"].map("keep_objectives", (1, fitted.nagq), what="objectives")
        extreme = obj.extreme_rows() if self.fam.is_binomial else 0
        return sharded_results(self, fitted, extreme_rows=extreme)

    def predict(self, params, exog=None, offset=None, which="mean"):
        """As :meth:`MixedGLM.predict` for given rows; without ``exog`` (the data of the
        fit, whose rows are on the cluster) it is refused -- the model's arrays here are
        the stand-in, not the rows."""
        if exog is None:
            raise NotImplementedError(
                "the rows of this model live on a Dask cluster; use results.predict(ddf) "
                "(a Dask Series) or pass exog")
        return MixedGLM.predict(self, params, exog, offset=offset, which=which)

    def release(self):
        """Free the shards on the workers (a later fit rebuilds them)."""
        if self._cluster_state is not None:
            self._cluster_state["shards"].release()
            self._cluster_state = None


def _default_client():
    try:
        from distributed import default_client
        return default_client()
    except ValueError:
        raise MixedGLMInputError(
            "a Dask DataFrame is fitted on a distributed cluster: start one "
            "(from distributed import Client; client = Client() or Client('tcp://scheduler:8786'))"
            " or pass client=") from None


def _lmm_reporter(progress):
    if not progress:
        return None
    t0, n = time.perf_counter(), [0]

    def report(what, value):
        n[0] += 1
        rec = {"evaluation": n[0], "what": what, "nagq": None, "loglik": value,
               "seconds": time.perf_counter() - t0, "rebuilds": None}
        if callable(progress):
            progress(rec)
        else:
            print(f"mlglm: evaluation {n[0]} ({what}) log L {value:.6f} at "
                  f"{rec['seconds']:.1f} s", file=sys.stderr)
    return report


def _gram_rank(XtX, names) -> int:
    """Refuse a rank-deficient X from X'X (sequential Cholesky on the scaled Gram
    matrix: a column whose residual is below 1e-10 of its length is redundant)."""
    d = np.sqrt(np.diag(XtX))
    if np.any(d == 0):
        bad = [str(names[i]) for i in np.flatnonzero(d == 0)]
        raise MixedGLMInputError(f"fixed-effect column(s) {', '.join(bad)} are all zero; "
                                 "drop them from the formula")
    C = XtX / np.outer(d, d)
    p = C.shape[0]
    bad = []
    L = np.zeros_like(C)
    for j in range(p):
        v = C[j, j] - L[j, :j] @ L[j, :j]
        if v <= 1e-10:
            bad.append(names[j])
            continue
        L[j, j] = np.sqrt(v)
        L[j + 1:, j] = (C[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]
    if bad:
        raise MixedGLMInputError(
            f"the fixed-effects design is rank deficient: {', '.join(map(str, bad))} is a "
            "linear combination of the columns before it; drop it (or a level) from the formula")
    return p

