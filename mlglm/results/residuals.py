r"""Residuals of a fit at its conditional means, as statsmodels' GLM names them.

With y the response (successes out of m trials for binomial rows) and
:math:`\mu = g^{-1}(x'\hat\beta + z'\hat b_j + o)` the conditional mean per trial:

* ``resid_response``: :math:`y/m - \mu`;
* ``resid_pearson``: :math:`(y - m\mu) / \sqrt{\mathrm{Var}(y\mid\mu)}` with the
  family's variance (:meth:`mlglm.core.spec.family.Family.variance`: :math:`m\mu(1-\mu)`
  binomial, :math:`\mu` Poisson, :math:`\mu + \mu^2/\theta` negative binomial,
  :math:`\phi\mu^2` Gamma, :math:`\sigma^2` Gaussian) at the fitted dispersion,
  divided by the row's variance weight (so they have variance ~1; statsmodels' Gamma
  and Gaussian GLMs leave the scale out); mu clipped to machine epsilon from 0 and 1
  in V, as statsmodels does; zero-inflated, hurdle and beta fits: (y - E y) / sqrt(Var y)
  with the zero part and the dispersion (``predict(which="variance")``), as glmmTMB's
  Pearson residuals;
* ``resid_deviance``: :math:`\mathrm{sign}(y - m\mu)\sqrt{d_i}` with the unit
  deviance (:meth:`~mlglm.core.spec.family.Family.unit_deviance`, e.g.
  :math:`d_i = 2[y\log\frac{y}{m\mu} + (m-y)\log\frac{m-y}{m(1-\mu)}]` binomial,
  :math:`2[y\log\frac{y}{\mu} - (y+\theta)\log\frac{y+\theta}{\mu+\theta}]` negative
  binomial, :math:`2[(y-\mu)/\mu - \log(y/\mu)]` Gamma, :math:`(y-\mu)^2` Gaussian,
  as ``sm.GLM``), :math:`0\log 0 = 0`. Beta fits: :math:`d_i = 2[\max_m l(y_i\mid m,
  \phi) - l(y_i\mid\mu_i, \phi)]` at the fitted precision (the saturated mean is unique:
  l is strictly concave in the mean at fixed phi;
  :func:`~mlglm.core.spec.families_beta.beta_unit_deviance`). Zero-inflated and hurdle
  fits have none: saturating both the count mean and the zero part fits every zero
  exactly, so there is no agreed unit deviance (glmmTMB, pscl and countreg offer none);
  the error says so and points to the Pearson and response residuals.
"""
from __future__ import annotations

import numpy as np

__all__ = ["response_residuals", "pearson_residuals", "deviance_residuals"]

#: means are kept this far inside (0, 1) (binomial) or above 0 in the variance
#: function, as statsmodels' families do, so a fitted probability of exactly 0 or 1
#: gives a large residual rather than 0/0
_EPS = np.finfo(float).eps


def _parts(results):
    model = results.model
    y = np.asarray(model.endog, dtype=float)
    m = np.asarray(model.n_trials, dtype=float)
    mu = np.asarray(results.predict(conditional=True), dtype=float)
    return model.fam, y, m, mu


def _dispersion(results):
    """The fit's dispersion for the variance function: NB theta, Gamma phi, Gaussian
    sigma^2 (None for binomial and Poisson)."""
    fam = results.model.fam
    return results.scale if fam.is_gaussian else results.dispersion


def response_residuals(results) -> np.ndarray:
    """y/m - mu (per trial for binomial rows)."""
    _, y, m, mu = _parts(results)
    return y / m - mu


def pearson_residuals(results) -> np.ndarray:
    """(y - m mu) / sqrt(V), V = Var(y | mu) of the family at the fit's dispersion
    divided by the row's variance weight (Gaussian: (y - mu) / sigma)."""
    fam, y, m, mu = _parts(results)
    if fam.auxiliary:       # zero-inflated, hurdle, beta: Var y with the zero part
        var = np.asarray(results.predict(which="variance", conditional=True), dtype=float)
        return (y - mu) / np.sqrt(var)
    mu_v = mu
    if fam.is_binomial:
        mu_v = np.clip(mu, _EPS, 1 - _EPS)
    elif not fam.is_gaussian:
        mu_v = np.maximum(mu, _EPS)
    var = fam.variance(mu_v, _dispersion(results), m)
    v = results.model.var_weights
    return (y - m * mu) / np.sqrt(var if v is None else var / v)


def deviance_residuals(results) -> np.ndarray:
    """sign(y - m mu) sqrt(v d_i), d_i the family's unit deviance (v the variance weight)."""
    fam, y, m, mu = _parts(results)
    d = fam.unit_deviance(y, mu, m, _dispersion(results))
    v = results.model.var_weights
    if fam.is_gaussian:
        return (y - mu) if v is None else (y - mu) * np.sqrt(v)
    d = np.clip(d, 0, None) * (1.0 if v is None else v)
    return np.sign(y - m * mu) * np.sqrt(d)
