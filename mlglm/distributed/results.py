"""Results of a sharded fit: the ordinary results, with per-row outputs computed on the cluster.

Everything that is a function of the estimates, their covariance and the
whole-data facts of the model (:mod:`mlglm.distributed.model`) is inherited
unchanged: ``params``, ``bse``, ``cov_params``, ``summary()``, Wald
``conf_int()``, ``random_effects``, ``icc()``, tests, and ``predict`` on a
pandas DataFrame. What is per row is computed where the rows are:

* ``predict(ddf)`` on a Dask DataFrame maps the pandas prediction over its
  partitions and returns a Dask Series (lazy, with the frame's index);
  ``predict()`` and ``fittedvalues`` do so on the data of the fit;
* the separation check counts rows fitted at probability 0 or 1 on the shards
  at the optimum (the column SDs come from the data's moments).

What needs all rows on one machine or refits on simulated data -- residuals,
simulation, bootstrap and profile intervals, population-averaged
coefficients -- is refused with the reason rather than answered from the
driver's few stand-in rows.
"""
from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.base import wrapper as wrap
from statsmodels.tools._decorators import cache_readonly

from ..design.data_checks import is_dask_frame
from ..inference.intervals import interval_frame
from ..inference.profile import natural_names, natural_values
from ..results.results import MixedGLMResults, MixedGLMResultsWrapper

__all__ = ["ShardedMixedGLMResults", "sharded_results"]


def sharded_results(model, fitted, extreme_rows: int = 0):
    """Package a sharded fit (its :class:`~mlglm.core.spec.record.CoreFit`) as
    :class:`ShardedMixedGLMResults`."""
    return ShardedMixedGLMResultsWrapper(ShardedMixedGLMResults(model, fitted, extreme_rows))


def _needs_rows(what: str):
    raise NotImplementedError(
        f"{what} needs every row of the data on one machine (or refits on simulated data), "
        "and this fit's rows live on a Dask cluster; compute it from an in-memory fit "
        "(df = ddf.compute()) or, for per-row quantities, from predict(ddf)")


def _predict_partition(df, results, kwargs):
    df = results.model._spec.for_prediction(df)
    out = MixedGLMResults.predict(results, df, **kwargs)
    return pd.Series(np.asarray(out, dtype=float), index=df.index)


class ShardedMixedGLMResults(MixedGLMResults):
    """MixedGLMResults of a fit on a Dask DataFrame (module docstring)."""

    def __init__(self, model, outcome, extreme_rows: int = 0):
        super().__init__(model, outcome)
        self.df_resid = self.nobs - model._rank_X
        self.extreme_rows = int(extreme_rows)
        self._dask_token = uuid.uuid4().hex

    def __getstate__(self):
        return dict(self.__dict__)

    def __dask_tokenize__(self):
        """Dask's name for this results object in a graph (``predict(ddf)``): one per
        object. Hashing its pickle is not deterministic when the formula uses a
        function of the caller's (pickled by value)."""
        return ("mlglm.ShardedMixedGLMResults", self._dask_token)

    # ----------------------------------------------------------- prediction
    def predict(self, exog=None, which="mean", conditional=None, offset=None, exposure=None,
                transform=True, marginal=False, nagq=15, **kwargs):
        """As :meth:`MixedGLMResults.predict`; a Dask DataFrame (or ``exog=None``: the
        data of the fit) gives a Dask Series computed partition by partition.

        Categorical columns are coded with the fit's levels
        (:meth:`~mlglm.distributed.spec.DesignSpec.for_prediction`): the frame the model
        was fitted on predicts even when its categories are in another order or
        include levels no row used."""
        if exog is None:
            exog = getattr(self.model, "_source", None)
            if exog is None:
                raise ValueError("this results object has no data attached (it was "
                                 "unpickled); pass exog")
        kw = dict(which=which, conditional=conditional, transform=transform,
                  marginal=marginal, nagq=nagq, **kwargs)
        if is_dask_frame(exog):
            if offset is not None or exposure is not None:
                raise ValueError("with a Dask DataFrame, put offset/exposure in a column and "
                                 "name it in the model formula's data")
            return exog.map_partitions(_predict_partition, self, kw, meta=(None, "f8"))
        exog = self.model._spec.for_prediction(exog)
        return MixedGLMResults.predict(self, exog, offset=offset, exposure=exposure, **kw)

    @cache_readonly
    def fittedvalues(self):
        """Conditional means for the data of the fit (a Dask Series)."""
        return self.predict(conditional=True)

    def group_zwx(self) -> np.ndarray:
        """Z_j'W_j X_j per group (G, q, p) at the estimates, summed on the shards where
        the rows are (one grouping factor; see ``Shard.group_zwx``): what the standard
        errors of conditional predictions need from the rows."""
        model = self.model
        labels = model.re_terms[0].levels
        parts = model._cluster()["shards"].map(
            "group_zwx", np.asarray(self.outcome.beta, float), labels,
            np.asarray(self.outcome.b[0], float), self.dispersion, float(self.scale),
            what="prediction standard errors")
        q, p = np.asarray(self.outcome.b[0]).shape[1], model.k_fe
        out = np.zeros((len(labels), q, p))
        for part in parts:
            if part is not None:
                out[labels.get_indexer(part[0])] = part[1]
        return out

    @cache_readonly
    def resid(self):
        _needs_rows("resid")

    @cache_readonly
    def resid_pearson(self):
        _needs_rows("resid_pearson")

    @cache_readonly
    def separation(self):
        """As :attr:`MixedGLMResults.separation`, from the data's column SDs (moments)
        and the rows counted on the shards."""
        model = self.model
        if not model.fam.is_binomial:
            return None
        mean, second = model._X_moments
        sd = np.sqrt(np.clip(np.diag(second) - mean ** 2, 0.0, None))
        beta = np.asarray(self.outcome.beta)
        big = [str(n) for n, b, s in zip(model.exog_names, beta, sd) if s > 0 and abs(b) * s > 10]
        if not big and self.extreme_rows == 0:
            return None
        parts = []
        if big:
            parts.append(f"huge coefficients for {', '.join(big)}")
        if self.extreme_rows:
            parts.append(f"{self.extreme_rows} rows fitted at probability 0 or 1")
        return "; ".join(parts) + " (estimates and SEs of those terms are not meaningful)"

    # ------------------------------------------------------------- refused
    def conf_int(self, alpha=0.05, method="wald", **kwargs):
        """Wald intervals in statsmodels' shape (see :meth:`MixedGLMResults.conf_int`);
        profile and bootstrap intervals refit the model many times and are not offered
        for sharded fits."""
        if method != "wald":
            _needs_rows(f"conf_int(method={method!r})")
        return MixedGLMResults.conf_int(self, alpha=alpha, method="wald", **kwargs)

    def intervals(self, method="wald", level=0.95, which=None, **kwargs):
        """Intervals for fixed effects, SDs and correlations (see
        :meth:`MixedGLMResults.intervals`): Wald only for a sharded fit."""
        if method != "wald":
            _needs_rows(f"intervals(method={method!r})")
        if not self.model.fam.is_gaussian:
            return MixedGLMResults.intervals(self, method="wald", level=level, which=which)
        return self._gaussian_wald(level, which)

    def _gaussian_wald(self, level, which):
        """Fixed-effect Wald rows; the variance parameters' Wald SEs come from the
        information of the REML criterion re-evaluated from rows (profile
        machinery), which a sharded fit does not hold: reported as not available."""
        est = natural_values(self)
        fe, re, extra = natural_names(self.model)
        z = stats.norm.ppf(0.5 + level / 2.0)
        cov = np.asarray(self.cov_params(), dtype=float)
        rows = [(name, est[name] - z * np.sqrt(cov[i, i]), est[name] + z * np.sqrt(cov[i, i]),
                 "Wald") for i, name in enumerate(fe)]
        rows += [(name, np.nan, np.nan, "not available (sharded fit)")
                 for name in re + extra]
        out = interval_frame(rows, est, level)
        return out if which is None else out.loc[list(which)]

    def simulate(self, *args, **kwargs):
        _needs_rows("simulate")

    def bootstrap(self, *args, **kwargs):
        _needs_rows("bootstrap")

    def marginal_params(self, *args, **kwargs):
        _needs_rows("marginal_params")

    def get_prediction(self, exog=None, *args, **kwargs):
        """As :meth:`MixedGLMResults.get_prediction` for pandas rows. The data of the fit
        and Dask DataFrames are refused: the result holds every row's values in memory
        (use ``predict(ddf)`` for lazy predictions, or pass some pandas rows)."""
        if exog is None or is_dask_frame(exog):
            raise NotImplementedError(
                "get_prediction holds every row's prediction and standard error in memory, "
                "and this fit's rows live on a Dask cluster; pass pandas rows "
                "(get_prediction(ddf.head(1000))) or use predict(ddf) for lazy predictions")
        exog = self.model._spec.for_prediction(exog)
        return MixedGLMResults.get_prediction(self, exog, *args, **kwargs)

    def predict_marginal(self, exog=None, *args, **kwargs):
        if exog is None or is_dask_frame(exog):
            _needs_rows("predict_marginal on the data of the fit")
        exog = self.model._spec.for_prediction(exog)
        return MixedGLMResults.predict_marginal(self, exog, *args, **kwargs)

    def compare_pooling(self):
        _needs_rows("compare_pooling")

    def check_quadrature(self, *args, **kwargs):
        _needs_rows("check_quadrature (refit it with model.fit(nagq=...))")


class ShardedMixedGLMResultsWrapper(MixedGLMResultsWrapper):
    # fitted values are Dask Series: not relabelled with the (absent) row labels
    _wrap_attrs = {k: v for k, v in MixedGLMResultsWrapper._wrap_attrs.items()
                   if k not in ("fittedvalues", "resid")}


wrap.populate_wrapper(ShardedMixedGLMResultsWrapper, ShardedMixedGLMResults)
