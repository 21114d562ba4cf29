"""The pooling comparison from a formula: fits the mixed model, then compares.

:func:`compare_pooling` is a front door (it builds and fits a
:class:`~mlglm.api.models.MixedGLM`); the comparison itself -- complete, no and partial
pooling, table and plot -- is :func:`mlglm.results.pooling.compare_pooling_from_results`,
which works on any fit and lives with the results.
"""
from __future__ import annotations

from ..design.formula_env import capture
from .models import MixedGLM
from ..results.pooling import compare_pooling_from_results

__all__ = ["compare_pooling"]


def compare_pooling(formula, data, groups, family=None, re_formula=None, nagq=1,
                    eval_env=None):
    """Compare complete, no and partial pooling for ``formula`` by ``groups``.

    Parameters
    ----------
    formula : str
        Fixed-effects formula without bars, e.g. ``"mAch ~ cses"``.
    data : pandas.DataFrame
    groups : str or array
        The grouping column (or labels per row).
    family : None (Gaussian), a name (``"binomial"``, ``"poisson"``, ...) or a statsmodels
        family, as :class:`~mlglm.api.models.MixedGLM` takes it.
    re_formula : str, optional
        Random effects of the mixed model, as in ``MixedLM.from_formula``
        (default: a random intercept only, so slopes are fully pooled; pass
        e.g. ``"~cses"`` to let the slope vary too).
    nagq : int
        Laplace (1) or AGHQ points for the binomial/Poisson mixed model.
    eval_env : where the formula's names that are not columns resolve (default: the
        caller's namespace; see :mod:`mlglm.design.formula_env`).

    Returns
    -------
    PoolingComparison
    """
    model = MixedGLM.from_formula(formula, data, groups=groups, re_formula=re_formula,
                                  family=family, eval_env=capture(eval_env, depth=1))
    if model.fam.is_gaussian:
        res = model.fit(reml=True)
    elif nagq == 1:
        res = model.fit(method="laplace")
    else:
        res = model.fit(method="aghq", nagq=nagq)
    return compare_pooling_from_results(res)
