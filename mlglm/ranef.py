r"""Random effects as a tidy table with conditional intervals.

For group j and random-effect term k, the estimate is the conditional mode
:math:`\hat b_{jk}` and the standard error the square root of the conditional
variance, :math:`\mathrm{se}_{jk} = \sqrt{[\mathrm{Var}(b_j \mid y)]_{kk}}`
(``results.random_effects_cov``: :math:`\Lambda H_j^{-1} \Lambda'` for the
Laplace approximation, exact for Gaussian models). The interval is
:math:`\hat b_{jk} \pm z_{1-\alpha/2}\, \mathrm{se}_{jk}`, lme4's
``condVar`` intervals (they ignore the uncertainty in the fixed effects and
the variance parameters).

With several grouping factors every factor's levels are listed, one block per
factor in term order, and a ``factor`` column says which factor a row's group
belongs to.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["random_effects_frame"]


def random_effects_frame(results, level=0.95) -> pd.DataFrame:
    """Conditional modes and intervals of every group's random effects.

    Parameters
    ----------
    results : MixedGLMResults or statsmodels MixedLMResults
    level : float
        Coverage of the conditional intervals (0 < level < 1).

    Returns
    -------
    pandas.DataFrame
        One row per (group, term): ``group``, ``term``, ``estimate``
        (:math:`\\hat b_{jk}`), ``se``, ``lower``, ``upper``
        (``estimate -/+ z se`` with z the normal ``(1 + level) / 2`` quantile).
        With several grouping factors a first column ``factor`` (one row per
        (factor, level, term)).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    z = stats.norm.ppf(0.5 + level / 2.0)
    if getattr(getattr(results, "model", None), "multi", False):
        return _multi_frame(results, z)
    re = results.random_effects
    cov = results.random_effects_cov
    rows = []
    for g, b in re.items():
        b = pd.Series(b)
        c = cov[g]
        cv = np.atleast_2d(np.asarray(c, dtype=float))
        names = list(b.index)
        if isinstance(c, pd.DataFrame):
            cv = c.reindex(index=names, columns=names).to_numpy(dtype=float)
        se = np.sqrt(np.clip(np.diag(cv), 0.0, None))
        for k, term in enumerate(names):
            est = float(b.iloc[k])
            rows.append((g, term, est, se[k], est - z * se[k], est + z * se[k]))
    return pd.DataFrame.from_records(rows, columns=["group", "term", "estimate", "se", "lower",
                                                    "upper"])


def _multi_frame(results, z) -> pd.DataFrame:
    """:func:`random_effects_frame` for several factors, from the per-term conditional
    modes (J_k x q_k) and covariances (J_k x q_k x q_k)."""
    from .factors import term_labels
    frames = []
    for t, b, C in zip(results.model.re_terms, results.outcome.b, results.outcome.b_cov):
        b = np.asarray(b, dtype=float)
        se = np.sqrt(np.clip(np.diagonal(np.asarray(C, dtype=float), axis1=1, axis2=2), 0.0,
                             None))
        J, q = b.shape
        est, s = b.reshape(-1), se.reshape(-1)
        frames.append(pd.DataFrame({
            "factor": t.name, "group": np.repeat(np.asarray(term_labels(t), dtype=object), q),
            "term": np.tile(np.asarray(t.column_names, dtype=object), J), "estimate": est,
            "se": s, "lower": est - z * s, "upper": est + z * s}))
    return pd.concat(frames, ignore_index=True)
