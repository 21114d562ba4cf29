"""statsmodels' family objects and mlglm's :class:`~mlglm.core.spec.family.Family`, both ways.

mlglm takes statsmodels' family objects (``sm.families.Binomial(link=Probit())``) and
keeps the one given as ``model.family``; inside, a family is a
:class:`~mlglm.core.spec.family.Family`. The statsmodels classes are found by identity from
the names each distribution and link carries (``Distribution.statsmodels``,
``Link.statsmodels``), so a distribution added to :mod:`mlglm.core.spec.family` with a
statsmodels counterpart needs nothing here. The door that reads what a user gives is
:func:`mlglm.design.data_checks.resolve_family`.
"""
from __future__ import annotations

import numpy as np
import statsmodels.api as sm

from ..core.spec.family import DISTRIBUTIONS, LINKS, Distribution, Family, Link

__all__ = ["statsmodels_distribution", "statsmodels_link", "statsmodels_family",
           "supported_text"]

#: statsmodels' family and link classes -> mlglm's distributions and links
_DISTRIBUTIONS = {getattr(sm.families, d.statsmodels): d for d in DISTRIBUTIONS.values()
                  if d.statsmodels}
_LINKS = {getattr(sm.families.links, name): link for link in LINKS.values()
          for name in link.statsmodels}


def statsmodels_distribution(family) -> Distribution | None:
    """The distribution of a statsmodels family object whatever its link (e.g. of an
    ``sm.GLM`` fit); None for another object or None. A subclass is another family."""
    return _DISTRIBUTIONS.get(type(family))


def statsmodels_link(link) -> Link | None:
    """The link of a statsmodels link object (``Logit()``, the deprecated ``logit()``);
    None for another one (``LogLog``, derived from ``Logit``, is not the logit)."""
    return _LINKS.get(type(link))


def statsmodels_family(fam: Family, dispersion=None):
    """The statsmodels family object of ``fam``, e.g. for ``sm.GLM``. A negative binomial
    is ``NegativeBinomial(alpha=1 / theta)`` with theta the fixed one, else ``dispersion``
    (an estimate), else NaN (estimated: what ``family="negative_binomial"`` makes).
    A family statsmodels has no class for (zero-inflated, hurdle, beta) is its own
    object: ``fam`` itself."""
    if fam.distribution.statsmodels is None:
        return fam
    link = getattr(sm.families.links, fam.link.statsmodels[0])()
    cls = getattr(sm.families, fam.distribution.statsmodels)
    if fam.distribution.dispersion_fixable:
        theta = fam.fixed_dispersion if fam.fixed_dispersion is not None else dispersion
        return cls(alpha=np.nan if theta is None else 1.0 / float(theta), link=link)
    return cls(link=link)


def supported_text() -> str:
    """'Binomial (Logit, Probit, CLogLog), Poisson (Log), ...': the pairs mlglm fits in
    statsmodels' names."""
    parts = [f"{d.statsmodels} ({', '.join(LINKS[name].statsmodels[0] for name in d.kernels)})"
             for d in DISTRIBUTIONS.values() if d.statsmodels]
    return ", ".join(parts[:-1]) + " or " + parts[-1]
