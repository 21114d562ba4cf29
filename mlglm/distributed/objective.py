"""The sharded marginal log-likelihood: an Objective whose pieces live on the cluster.

With one grouping factor, or factors nested in a top-level one, log L, its
gradient, the beta information and the GLM start's sums are sums over
top-level groups, hence over shards. :class:`ShardedObjective` is the
:class:`~mlglm.core.fit.objective.Objective` the unchanged driver
(:func:`~mlglm.core.fit.optimize.fit_glmm`) optimises: every call sends x to the
shards (:class:`~mlglm.distributed.cluster.ShardSet`) and adds up what comes
back -- a value and a vector of length p + n_theta per shard, in one message
per worker thread -- so the optimiser, its preconditioner, Newton polish and
observed information are exactly those of an in-memory fit.

Warm starts. The driver controls the modes' warm start through ``obj.u``
(it saves it, and restores a reference point before each finite difference).
Here ``u`` is a *token*: every evaluation saves each shard's modes under a
new integer and ``u`` becomes that integer; restoring ``u`` makes the next
evaluation start every shard from the modes it saved under it
(:class:`~mlglm.distributed.shard.Shard`). ``None`` is a cold start, as in
memory.

Progress. ``progress`` is called after every evaluation of the
log-likelihood with a dict (evaluation number, what was evaluated, log L,
seconds, shards rebuilt so far); ``progress=True`` prints one line per
evaluation. The rounds of the GLM start and of the beta information are not
evaluations and are not reported (the GLM start alone can take a hundred
rounds when a coefficient runs off, as under separation).

The best point evaluated so far (:attr:`ShardedObjective.best`) is kept, so
that a fit cut short by a cluster without workers can say where to resume.
"""
from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from ..core.fit.objective import Objective
from ..core.fit.glm_fit import glm_newton, solve_sym
from ..design.data_checks import MixedGLMInputError
from .spec import _sorted_index

__all__ = ["ShardedObjective", "Placement"]

_tokens = itertools.count(1)


class Placement:
    """Where each shard's levels go in the global level order, per term.

    Built once from the shards' level labels: the global levels of term k are
    the sorted union, for the top-level factor the labels of all groups (sorted
    as in memory: numbers before strings when labels mix them);
    ``index[s][k]`` gives the global positions of shard s's levels. A level in
    two shards means the factor is not nested in the top-level one.
    """

    def __init__(self, infos, term_names):
        self.n_terms = len(term_names)
        self.levels = []
        for k in range(self.n_terms):
            parts = [info.levels[k] for info in infos if info.n]
            allv = parts[0].append(parts[1:]) if len(parts) > 1 else parts[0]
            if allv.has_duplicates:
                raise MixedGLMInputError(
                    f"levels of {term_names[k]} occur in several shards: the factor is not "
                    "nested in the top-level grouping factor, so the likelihood does not split "
                    "by shard; fit crossed models in memory")
            self.levels.append(_sorted_index(allv))
        self.index = [[self.levels[k].get_indexer(info.levels[k]) for k in range(self.n_terms)]
                      if info.n else None for info in infos]
        self._sizes = [info.sizes for info in infos]

    def n_levels(self, k) -> int:
        return len(self.levels[k])

    def sizes(self, k) -> np.ndarray:
        """Rows per level of term k (in the global order)."""
        out = np.zeros(self.n_levels(k), dtype=np.int64)
        for idx, sz in zip(self.index, self._sizes):
            if idx is not None:
                out[idx[k]] = sz[k]
        return out


class ShardedObjective(Objective):
    """log L(beta, theta) summed over the shards (module docstring).

    Parameters
    ----------
    shards : ShardSet.   fl : Kernel.   terms : ReTerms of the driver's
    model (patterns and theta layout).   p : fixed effects.   nagq : points per
    dimension (1 = Laplace).   placement : Placement of the levels.
    progress : None, True or a callable(dict).
    """

    def __init__(self, shards, fl, terms, p, nagq, placement, progress=None, counter=None,
                 estimate_dispersion=False):
        self.shards = shards
        self.fl = fl
        self.terms = terms
        self.p = int(p)
        self.n_theta = terms.n_theta
        self.n_disp = int(bool(fl.has_dispersion and estimate_dispersion))
        self.nagq = int(nagq)
        self.placement = placement
        self.progress = progress
        self.u = None
        self.n_evals = 0
        self._counter = counter if counter is not None else {"n": 0, "t0": time.perf_counter()}
        self._last_x = None

    # ----------------------------------------------------------------- seam
    @property
    def best(self):
        """(log L, x) of the best evaluation so far at the latest nagq, or None."""
        return self._counter.get("best")

    def _report(self, what, value, x=None):
        if value is None:           # a round of the start or of the information: not shown
            return
        best = self._counter.get("best")
        if x is not None and np.isfinite(value) and (
                best is None or best[2] != self.nagq or value > best[0]):
            self._counter["best"] = (value, np.array(x, dtype=float), self.nagq)
        self._counter["n"] += 1
        if self.progress is None:
            return
        rec = {"evaluation": self._counter["n"], "what": what, "nagq": self.nagq,
               "loglik": value, "seconds": time.perf_counter() - self._counter["t0"],
               "rebuilds": self.shards.rebuilds}
        if callable(self.progress):
            self.progress(rec)
        elif self.progress:
            ll = "" if value is None else f" log L {value:.6f}"
            print(f"mlglm: evaluation {rec['evaluation']} ({what}, nagq={self.nagq}){ll} "
                  f"at {rec['seconds']:.1f} s", file=sys.stderr)

    def _count(self, x):
        key = np.asarray(x, float).tobytes()
        if key != self._last_x:
            self.n_evals += 1
            self._last_x = key

    def value_and_gradient(self, x):
        x = np.asarray(x, dtype=float)
        self._count(x)
        tok = next(_tokens)
        out = self.shards.map("value_and_gradient", self.nagq, x, self.u, tok, x.size,
                              what="log-likelihood and gradient")
        self.u = tok
        value = float(sum(v for v, _ in out))
        grad = np.sum([g for _, g in out], axis=0)
        self._report("value+gradient", value, x)
        return value, grad

    def __call__(self, x) -> float:
        x = np.asarray(x, dtype=float)
        self.n_evals += 1
        tok = next(_tokens)
        out = self.shards.map("value", self.nagq, x, self.u, tok, x.size, what="log-likelihood")
        self.u = tok
        value = float(sum(out))
        self._report("value", value, x)
        return value

    def beta_information(self, x) -> np.ndarray:
        tok = next(_tokens)
        out = self.shards.map("beta_information", self.nagq, np.asarray(x, float), self.u, tok,
                              self.p, what="beta information")
        self.u = tok
        self._report("beta information", None)
        return np.sum(out, axis=0)

    def laplace(self) -> "ShardedObjective":
        return self.with_nagq(1)

    def with_nagq(self, nagq: int) -> "ShardedObjective":
        """The same sharded model with ``nagq`` points per dimension (the fit-time
        quadrature check and ``nagq="auto"`` use it). Each shard builds its objective for
        ``nagq`` from the one it has (sharing its data); the modes saved under a token
        serve every nagq, so ``u`` carries over as it does in memory."""
        nagq = int(nagq)
        if nagq == self.nagq:
            return self
        if nagq > 1:
            self.shards.map("build_objective", nagq, what="objective")
        return ShardedObjective(self.shards, self.fl, self.terms, self.p, nagq, self.placement,
                                self.progress, self._counter, bool(self.n_disp))

    def random_effects(self):
        """(Lambdas, b, b_cov) per term in the global level order, from every shard's
        last evaluation."""
        out = self.shards.map("random_effects", self.nagq, what="random effects")
        Lambdas = next(o[0] for o in out if o is not None)
        b, b_cov = [], []
        for k, t in enumerate(self.terms):
            J, q = self.placement.n_levels(k), t.q
            bk, ck = np.zeros((J, q)), np.zeros((J, q, q))
            for s, o in enumerate(out):
                if o is None:
                    continue
                idx = self.placement.index[s][k]
                bk[idx] = o[1][k]
                ck[idx] = o[2][k]
            b.append(bk)
            b_cov.append(ck)
        return tuple(Lambdas), tuple(b), tuple(b_cov)

    # ---------------------------------------------------------------- start
    def dispersion_moments(self, beta) -> np.ndarray:
        """The dispersion start's row sums, added over the shards (each shard's objective
        computes its own, :meth:`mlglm.core.fit.objective.Objective.dispersion_moments`)."""
        parts = [o for o in self.shards.map("dispersion_moments", self.nagq, beta,
                                            what="dispersion start") if o is not None]
        return np.sum(parts, axis=0)

    def glm_beta(self, log_dispersion=None) -> np.ndarray:
        """:meth:`Objective.glm_beta` from per-shard sums: the in-memory start's least
        squares (one round of X'WX, X'W(z - offset)), then the same Newton iteration
        (:func:`~mlglm.core.fit.glm_fit.glm_newton`), each trial point one round of (kernel
        sum, X'd1, X'D2X) (the kernel at ``log_dispersion`` when given). With
        :meth:`dispersion_moments` all :meth:`Objective.start` needs."""
        def at(beta):
            parts = [o for o in self.shards.map("glm_at", self.nagq, beta, log_dispersion,
                                                what="GLM start")
                     if o is not None]
            self._report("GLM start", None)
            score = np.sum([o[1] for o in parts], axis=0)
            info = np.sum([o[2] for o in parts], axis=0)
            return sum(o[0] for o in parts), lambda: (score, info)

        parts = [o for o in self.shards.map("glm_initial", self.nagq, what="GLM start")
                 if o is not None]
        XtX = np.sum([o[0] for o in parts], axis=0)
        Xtz = np.sum([o[1] for o in parts], axis=0)
        return glm_newton(at, solve_sym(XtX, Xtz))

    def extreme_rows(self) -> int:
        return int(sum(self.shards.map("extreme_rows", self.nagq, what="separation check")))

