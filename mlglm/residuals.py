r"""Residuals of a fit at its conditional means, as statsmodels' GLM names them.

With y the response (successes out of m trials for binomial rows) and
:math:`\mu = g^{-1}(x'\hat\beta + z'\hat b_j + o)` the conditional mean per trial:

* ``resid_response``: :math:`y/m - \mu`;
* ``resid_pearson``: :math:`(y - m\mu) / \sqrt{m V(\mu)}`, V the variance function
  (:math:`\mu(1-\mu)` binomial, :math:`\mu` Poisson; mu clipped to machine epsilon
  from 0 and 1 in V, as statsmodels does); Gaussian: :math:`(y-\mu)/\hat\sigma`;
* ``resid_deviance``: :math:`\mathrm{sign}(y - m\mu)\sqrt{d_i}` with the unit
  deviance :math:`d_i = 2[y\log\frac{y}{m\mu} + (m-y)\log\frac{m-y}{m(1-\mu)}]`
  (binomial), :math:`2[y\log\frac{y}{\mu} - (y-\mu)]` (Poisson), :math:`(y-\mu)^2`
  (Gaussian), :math:`0\log 0 = 0`.
"""
from __future__ import annotations

import numpy as np
from scipy import special

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
    return model.family_name, y, m, mu


def response_residuals(results) -> np.ndarray:
    """y/m - mu (per trial for binomial rows)."""
    _, y, m, mu = _parts(results)
    return y / m - mu


def pearson_residuals(results) -> np.ndarray:
    """(y - m mu) / sqrt(m V(mu)); Gaussian (y - mu) / sigma."""
    fam, y, m, mu = _parts(results)
    if fam == "gaussian":
        return (y - mu) / np.sqrt(results.scale)
    mu_v = np.clip(mu, _EPS, 1 - _EPS) if fam == "binomial" else np.maximum(mu, _EPS)
    var = m * mu_v * (1 - mu_v) if fam == "binomial" else mu_v
    return (y - m * mu) / np.sqrt(var)


def deviance_residuals(results) -> np.ndarray:
    """sign(y - m mu) sqrt(unit deviance)."""
    fam, y, m, mu = _parts(results)
    if fam == "gaussian":
        return y - mu
    if fam == "binomial":
        fitted = m * mu
        d = 2 * (special.xlogy(y, y) - special.xlogy(y, fitted)
                 + special.xlogy(m - y, m - y) - special.xlogy(m - y, m - fitted))
    else:
        d = 2 * (special.xlogy(y, y) - special.xlogy(y, mu) - (y - mu))
    return np.sign(y - m * mu) * np.sqrt(np.clip(d, 0, None))
