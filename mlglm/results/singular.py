r"""What collapsed in a singular fit, in words.

A fit is singular (lme4's ``isSingular``) when a diagonal element of the
covariance factor Lambda (relative to sigma for Gaussian fits) is ~0: Sigma =
Lambda Lambda' has lost a dimension. That happens in two ways, and the table
of SDs tells them apart only if one knows where to look:

* the random effect k has no variation of its own and none shared: its whole row
  of Lambda is ~0, so its SD is ~0;
* it still varies, but only in step with the effects before it: its SD is
  clearly positive and it is an exact linear function of them (with one other
  effect, a correlation of +-1).

:func:`describe_singular` says which, naming the effects
(:func:`mlglm.design.fit_checks.singular_advice` says what to do about it).
"""
from __future__ import annotations

import numpy as np

from ..core.spec.record import SINGULAR_TOL
from ..design.mixedlm_view import term_prefix

__all__ = ["describe_singular"]

#: an SD below this (on the scale of Lambda's singularity test: absolute for
#: binomial/Poisson, relative to sigma for Gaussian fits) counts as 0
SD_ZERO = 1e-3


def _terms(results):
    """(prefix, names, Sigma, Lambda, flags) per random-effects term: flags mark the
    effects whose diagonal entry of Lambda is ~0 (the singularity test, the fit's
    ``singular`` flags); the prefix names the factor when there are several."""
    model = results.model
    Lams = model.re_terms.Lambdas(np.asarray(results.outcome.theta, dtype=float))
    for t, Sigma, Lam in zip(model.re_terms, results.outcome.Sigmas, Lams):
        names = [str(n) for n in t.column_names] or [f"re{k}" for k in range(t.q)]
        yield (term_prefix(model, t), names, np.asarray(Sigma, dtype=float), Lam,
               np.abs(np.diag(Lam)) < SINGULAR_TOL)


def describe_singular(results) -> str:
    """One clause per collapsed direction, e.g. ``"the SD of x is 0"`` or
    ``"x is perfectly correlated with Intercept (correlation -1.00)"``; with several
    grouping factors each clause names its factor (``"school: the SD of ..."``)."""
    model = results.model
    unit = np.sqrt(results.scale) if model.fam.is_gaussian else 1.0
    parts = []
    for prefix, names, Sigma, Lam, flags in _terms(results):
        sd = np.sqrt(np.clip(np.diag(Sigma), 0, None))
        for k in np.flatnonzero(flags):
            if sd[k] < SD_ZERO * unit:
                parts.append(f"{prefix}the SD of {names[k]} is {sd[k]:.2g}, essentially 0")
                continue
            row = np.abs(Lam[k, :k])
            partners = [j for j in range(k) if row[j] > 1e-6 * max(row.max(initial=0.0),
                                                                     1e-300)]
            if len(partners) == 1:
                j = partners[0]
                rho = Sigma[k, j] / (sd[k] * sd[j])
                parts.append(f"{prefix}{names[k]} is perfectly correlated with {names[j]} "
                             f"(correlation {rho:+.2f}; SD {sd[k]:.3g}): the random-effects "
                             "covariance matrix is singular")
            else:
                others = ", ".join(names[j] for j in partners)
                parts.append(f"{prefix}{names[k]} (SD {sd[k]:.3g}) is an exact linear "
                             f"combination of {others}: the random-effects covariance matrix "
                             "is rank deficient")
    return "; ".join(parts) or "a random-effect SD is estimated at 0"
