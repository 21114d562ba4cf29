"""The exact Gaussian LMM on sharded data: profiled (RE)ML from per-shard sums.

One grouping factor or factors nested in the top-level one: every level of
every factor lives in one shard (the shuffle keeps each top-level group
whole, and a nested factor's levels lie inside top-level groups), so
H = Lambda'Z'Z Lambda + I is block-diagonal over the shards and the profiled
criterion is a sum of per-shard pieces (:mod:`mlglm.core.engines.lmm.sums`; one
factor is the case of one term). Each shard keeps the cross products of its
rows (:class:`~mlglm.core.engines.lmm.blocked.MultiLMMStats`, formed once with the whole
data's OLS shift) and, at each theta, returns log|H_s|, a (p+1)^2 matrix and
per term a q_k^2 and a q_k^2 (p+1)^2 array -- whatever its rows. The driver
adds them up, forms the criterion and its exact gradient
(:func:`~mlglm.core.engines.lmm.sums.combine`), and runs the minimiser of the
in-memory several-factor fit (:func:`~mlglm.core.engines.lmm.blocked.minimise_theta`)
from the same moment start, whose sums are additive over shards too. One
round per evaluation; the result is the core's
:class:`~mlglm.core.spec.record.CoreFit` (:func:`~mlglm.core.engines.lmm.blocked.package_fit`).
"""
from __future__ import annotations

import numpy as np

from ..core.engines.crossed.crossprod import level_sums, outer_rows
from ..core.engines.lmm.blocked import (minimise_theta, moment_sums, moment_theta, multi_lmm_stats,
                              package_fit)
from ..core.engines.lmm.sums import block_effects, block_sums, combine
from .shard import Shard

__all__ = ["LMMShard", "sharded_lmm_fit"]


class LMMShard(Shard):
    """A shard of a Gaussian model: the cross products of its rows (module docstring)."""

    def __init__(self, part, spec):
        super().__init__(part, spec)
        model, self._model = self._model, None
        self.rows = None
        self.stats = None
        if self.empty:
            return
        prob = model.problem
        self._y = np.asarray(prob.y - prob.offset, dtype=float)
        self._X = np.asarray(prob.X, dtype=float)
        self._terms, self._plan = prob.terms, prob.plan

    def ols_pieces(self):
        """(X'X, X'y) for the global OLS shift."""
        if self.empty:
            return None
        return self._X.T @ self._X, self._X.T @ self._y

    def prepare(self, beta_ols):
        """Cross products of e = y - X beta_ols; returns ([X e]'[X e], moment-start sums).

        Later calls pass beta_ols again and the cross products are formed here if
        this copy lacks them (a shard rebuilt after a lost worker)."""
        if self.empty:
            return None
        self.stats = multi_lmm_stats(self._y, self._X, self._terms, plan=self._plan,
                                     beta_ols=beta_ols)
        return self.stats.EE, moment_sums(self._y - self._X @ beta_ols, self._terms)

    def _stats(self, beta_ols):
        if self.stats is None or not np.array_equal(self.stats.beta_ols, beta_ols):
            self.prepare(beta_ols)
        return self.stats

    def pieces(self, theta, beta_ols):
        """This shard's :class:`~mlglm.core.engines.lmm.sums.BlockSums` at theta (None if empty)."""
        if self.empty:
            return None
        return block_sums(theta, self._stats(beta_ols))

    def effects(self, theta, beta_ols, beta_e, sigma2):
        """Per term (b_k, b_cov_k) of this shard's levels."""
        if self.empty:
            return None
        return block_effects(theta, self._stats(beta_ols), beta_e, sigma2)

    def group_zwx(self, beta, labels, b, dispersion, scale):
        """Z_j'X_j / sigma^2 per level of the first term (the Gaussian working weights are
        1/sigma^2, whatever beta and b): (this shard's levels, (J_s, q, p)); see
        :meth:`Shard.group_zwx`."""
        if self.empty:
            return None
        t, p = self._terms[0], self._X.shape[1]
        ZX = level_sums(t.codes, t.n_levels, outer_rows(t.Z, self._X)) / scale
        return t.levels, ZX.reshape(t.n_levels, t.q, p)


def _add_moment_sums(parts) -> dict:
    out = {}
    for d in parts:
        for k, v in d.items():
            if isinstance(k, str):
                out[k] = out.get(k, 0) + v
            else:
                a, b = out.get(k, (0.0, 0.0))
                out[k] = (a + v[0], b + v[1])
    return out


def sharded_lmm_fit(shards, placement, terms, n, p, reml=True, gtol=1e-8, progress=None):
    """Fit the Gaussian LMM on the shards (module docstring).

    ``terms`` are the driver's random-effects terms (patterns, theta layout);
    returns a :class:`~mlglm.core.spec.record.CoreFit` with the random effects
    in ``placement``'s global level order.
    """
    ols = [o for o in shards.map("ols_pieces", what="OLS shift") if o is not None]
    XtX = np.sum([o[0] for o in ols], axis=0)
    beta_ols = np.linalg.solve(XtX, np.sum([o[1] for o in ols], axis=0))
    prep = [o for o in shards.map("prepare", beta_ols, what="cross products") if o is not None]
    EE = np.sum([o[0] for o in prep], axis=0)
    theta0 = moment_theta(terms, terms.theta_on_diagonal(), _add_moment_sums(o[1] for o in prep))
    what = "REML criterion" if reml else "ML criterion"

    def evaluate(theta):
        parts = [o for o in shards.map("pieces", theta, beta_ols, what=what) if o is not None]
        out = combine(parts, EE, terms, n, reml)
        if progress is not None:
            progress(what, -out.criterion / 2.0)
        return out

    last = {}                   # the latest evaluation: usually the optimum

    def criterion(theta):
        out = evaluate(theta)
        last.clear()
        last[np.asarray(theta, dtype=float).tobytes()] = out
        return out.criterion, out.gradient

    theta, message, n_evals = minimise_theta(terms, theta0, criterion, gtol)
    at = last.get(np.asarray(theta, dtype=float).tobytes())
    if at is None:
        at, n_evals = evaluate(theta), n_evals + 1
    sigma2 = at.r2 / (n - p if reml else n)
    b = [np.zeros((placement.n_levels(k), t.q)) for k, t in enumerate(terms)]
    b_cov = [np.zeros((placement.n_levels(k), t.q, t.q)) for k, t in enumerate(terms)]
    for s, o in enumerate(shards.map("effects", theta, beta_ols, at.beta_e, sigma2,
                                     what="random effects")):
        if o is not None:
            for k in range(len(terms)):
                idx = placement.index[s][k]
                b[k][idx], b_cov[k][idx] = o[0][k], o[1][k]
    return package_fit(terms, theta, at.criterion, at.gradient, beta_ols + at.beta_e, sigma2,
                       at.RXinv, at.deviance_ml, tuple(b), tuple(b_cov), reml, gtol,
                       n_evals, message)
