"""lme4-style front door: ``glmer`` and ``lmer`` with bar formulas.

``glmer("y ~ x + (1 + x | g)", data, family="binomial", nagq=1)`` parses the
bar term (:mod:`mlglm.formula`), builds the same :class:`~mlglm.model.MixedGLM`
a statsmodels user would build with ``groups=`` and ``re_formula=``, and fits
it. ``nagq`` follows lme4: 1 is Laplace, K > 1 is K-point AGHQ per dimension
(here also for random slopes).
"""
from __future__ import annotations

import re

import statsmodels.api as sm

from .data_checks import MixedGLMInputError
from .formula import parse_lme4
from .model import MixedGLM

__all__ = ["glmer", "lmer", "family_from_name"]

_FAMILIES = {"binomial": sm.families.Binomial, "poisson": sm.families.Poisson,
             "gaussian": sm.families.Gaussian}
_LINKS = {"logit": sm.families.links.Logit, "probit": sm.families.links.Probit,
          "cloglog": sm.families.links.CLogLog, "log": sm.families.links.Log,
          "identity": sm.families.links.Identity}


def family_from_name(family, link=None):
    """A statsmodels family from ``"binomial"``, ``"poisson"``, ``"gaussian"`` (or
    ``"binomial(link='probit')"``-free spelling ``link="probit"``); family objects
    pass through."""
    if not isinstance(family, str):
        return family
    name = family.strip().lower()
    m = re.fullmatch(r"(\w+)\s*\(\s*(?:link\s*=\s*)?['\"]?(\w+)['\"]?\s*\)", name)
    if m:
        name, link = m.group(1), m.group(2)
    if name not in _FAMILIES:
        raise MixedGLMInputError(f"unknown family {family!r}; use 'binomial', 'poisson' or "
                                 "'gaussian' (or a statsmodels family object)")
    if link is None:
        return _FAMILIES[name]()
    if link not in _LINKS:
        raise MixedGLMInputError(f"unknown link {link!r}; use one of {', '.join(_LINKS)}")
    return _FAMILIES[name](link=_LINKS[link]())


def _model(formula, data, family, **kwargs):
    parsed = parse_lme4(formula)
    terms = parsed.response_terms
    if len(terms) == 2:
        wrap = [t if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", t) else f"I({t})" for t in terms]
        fixed = f"{wrap[0]} + {wrap[1]} ~ {parsed.fixed_rhs}"
    else:
        fixed = parsed.fixed
    first, rest = parsed.random_terms[0], list(parsed.random_terms[1:])
    if len(first.factors) > 1:
        # an interaction a:b first: every term goes through mlglm's own design
        return MixedGLM.from_formula(fixed, data, family=family,
                                     _random_terms=[first] + rest, **kwargs)
    cov_struct = "diagonal" if first.diagonal else "unstructured"
    return MixedGLM.from_formula(fixed, data, groups=first.group, re_formula=first.re_formula,
                                 family=family, cov_struct=cov_struct, _random_terms=rest,
                                 **kwargs)


def glmer(formula, data, family="binomial", nagq=1, link=None, subset=None, offset=None,
          exposure=None, n_trials=None, missing="none", **fit_kwargs):
    """Fit a GLMM written in lme4's syntax, e.g. ``"y ~ x + (1 + x | g)"``.

    Parameters
    ----------
    family : "binomial" | "poisson" | a statsmodels family object.
    nagq : 1 for the Laplace approximation (default, as lme4), K > 1 for
        K-point adaptive Gauss-Hermite quadrature per random-effect dimension.
    link : link name for string families ("logit", "probit", "cloglog", "log").
    subset, offset, exposure, n_trials, missing : as MixedGLM.from_formula.
    **fit_kwargs : passed to :meth:`MixedGLM.fit`.

    A ``cbind(successes, failures)`` response is accepted as in R.
    """
    fam = family_from_name(family, link)
    if type(fam).__name__ == "Gaussian":
        raise MixedGLMInputError("use lmer() for Gaussian models")
    if not isinstance(nagq, int) or nagq < 1:
        raise MixedGLMInputError("nagq must be an integer >= 1 (nAGQ = 0 is not offered: "
                                 "mlglm's Laplace fit is already fast)")
    model = _model(formula, data, fam, subset=subset, offset=offset, exposure=exposure,
                   n_trials=n_trials, missing=missing)
    if nagq == 1:
        return model.fit(method="laplace", **fit_kwargs)
    return model.fit(method="aghq", nagq=nagq, **fit_kwargs)


def lmer(formula, data, reml=True, subset=None, offset=None, missing="none", **fit_kwargs):
    """Fit a linear mixed model written in lme4's syntax by REML (default) or ML."""
    model = _model(formula, data, sm.families.Gaussian(), subset=subset, offset=offset,
                   missing=missing)
    return model.fit(reml=reml, **fit_kwargs)
