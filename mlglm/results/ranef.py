r"""Random effects as a tidy table with conditional intervals.

For group j and random-effect term k, the estimate is the conditional mode
:math:`\hat b_{jk}` and the standard error the square root of the conditional
variance, :math:`\mathrm{se}_{jk} = \sqrt{[\mathrm{Var}(b_j \mid y)]_{kk}}`
(``results.random_effects_cov``: :math:`\Lambda H_j^{-1} \Lambda'` for the
Laplace approximation, exact for Gaussian models). The interval is
:math:`\hat b_{jk} \pm z_{1-\alpha/2}\, \mathrm{se}_{jk}`, lme4's
``condVar`` intervals (they ignore the uncertainty in the fixed effects and
the variance parameters).

Every factor's levels are listed, one block per factor in term order; with
several grouping factors a ``factor`` column says which factor a row's group
belongs to (one factor: statsmodels' names, the intercept named after the group).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..design import mixedlm_view as view

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
    model = results.model
    if getattr(model, "re_terms", None) is None:            # statsmodels' MixedLM
        terms, _, bs, b_covs = view.statsmodels_term(results)
        effects = [list(t.column_names) for t in terms]
    else:
        terms, bs, b_covs = model.re_terms, results.outcome.b, results.outcome.b_cov
        effects = [view.effect_labels(model, t) for t in terms]
    frames = []
    for t, b, C, names in zip(terms, bs, b_covs, effects):
        b = np.asarray(b, dtype=float)
        se = np.sqrt(np.clip(np.diagonal(np.asarray(C, dtype=float), axis1=1, axis2=2), 0.0,
                             None))
        J, q = b.shape
        est, s = b.reshape(-1), se.reshape(-1)
        frames.append(pd.DataFrame({
            "factor": t.name, "group": _repeat(view.term_labels(t), q),
            "term": np.tile(np.asarray(names, dtype=object), J),
            "estimate": est, "se": s, "lower": est - z * s, "upper": est + z * s}))
    out = pd.concat(frames, ignore_index=True)
    return out.drop(columns="factor") if view.single_term(model) else out


def _repeat(labels, q) -> np.ndarray:
    """Each level label q times, as an array of the labels' own type (object when mixed)."""
    out = np.repeat(np.asarray(labels, dtype=object), q)
    inferred = pd.Series(out).infer_objects()
    return out if inferred.dtype == object else inferred.to_numpy()
