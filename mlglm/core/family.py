"""The family of a model: one conditional distribution with one link.

:class:`Family` is what every layer asks of the response distribution, so no
module branches on family names: the kernel of the log-likelihood
(:mod:`mlglm.core.families`), the mean function and its inverse, the variance
function (Pearson residuals), the unit deviance (deviance residuals), a draw
of new responses (simulation, the parametric bootstrap), the distribution-
specific variance on the link scale (the ICC), whether the model is the exact
Gaussian one, and the dispersion parameter: whether there is one, whether the
fit estimates it, its name and its transform to the optimiser's coordinate.

Distributions (Var y per unit prior weight; binomial per trial):

=================  ==============  ====================  =========================
name               links           variance              dispersion (reported)
=================  ==============  ====================  =========================
binomial           logit, probit,  mu (1 - mu) / m       none
                   cloglog
poisson            log             mu                    none
negative_binomial  log             mu + mu^2 / theta     theta (NB2 size), ML
gamma              log, inverse    phi mu^2              scale phi = 1 / shape, ML
gaussian           identity        sigma^2               scale sigma^2 (exact LMM)
=================  ==============  ====================  =========================

The optimiser sees the dispersion as t = log(theta) or log(phi): unconstrained,
and the log-likelihood is closer to quadratic in it. A negative binomial can
also have theta held fixed (``dispersion=``), which is what a statsmodels
``NegativeBinomial(alpha=a)`` family means (theta = 1 / a).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .families import get_family_link

__all__ = ["Family", "FAMILY_NAMES"]

FAMILY_NAMES = ("binomial", "poisson", "negative_binomial", "gamma", "gaussian")

_LINKS = {
    "logit": (special.expit, special.logit),
    "probit": (special.ndtr, special.ndtri),
    "cloglog": (lambda eta: -np.expm1(-np.exp(np.minimum(eta, 700.0))),
                lambda mu: np.log(-np.log1p(-mu))),
    "log": (lambda eta: np.exp(np.minimum(eta, 700.0)), np.log),
    "inverse": (lambda eta: 1.0 / eta, lambda mu: 1.0 / mu),
    "identity": (lambda eta: eta, lambda mu: mu),
}

#: variance of the standard latent error per binomial link (latent-scale ICC), and as text
LATENT_VARIANCE = {"logit": np.pi ** 2 / 3, "probit": 1.0, "cloglog": np.pi ** 2 / 6}
LATENT_TEXT = {"logit": "pi^2/3", "probit": "1", "cloglog": "pi^2/6"}


class Family:
    """A conditional distribution with a link (see the module docstring).

    Parameters
    ----------
    name : one of :data:`FAMILY_NAMES`.
    link : the link's name (``"logit"``, ``"log"``, ``"inverse"``, ...).
    dispersion : a fixed dispersion on its own scale (negative binomial theta);
        None (default) estimates it for the families that have one.
    """

    def __init__(self, name: str, link: str, dispersion: float | None = None):
        if name not in FAMILY_NAMES:
            raise ValueError(f"unknown family {name!r}; use one of {FAMILY_NAMES}")
        self.name, self.link = name, link
        if dispersion is not None and name != "negative_binomial":
            raise ValueError("a fixed dispersion is offered for the negative binomial only")
        self.fixed_dispersion = None if dispersion is None else float(dispersion)
        if not self.is_gaussian:
            get_family_link(name, link)        # raises for a pair without a kernel
        elif link != "identity":
            raise ValueError("the Gaussian family is fitted exactly with the identity link only")

    def __repr__(self):
        fixed = "" if self.fixed_dispersion is None else f", theta fixed at {self.fixed_dispersion:g}"
        return f"Family({self.name}, {self.link}{fixed})"

    # ----------------------------------------------------------- what it is
    @property
    def is_gaussian(self) -> bool:
        """The exact linear mixed model (profiled REML/ML, no quadrature)."""
        return self.name == "gaussian"

    @property
    def is_binomial(self) -> bool:
        return self.name == "binomial"

    @property
    def has_dispersion(self) -> bool:
        """The distribution has a dispersion parameter (fixed or estimated)."""
        return self.name in ("negative_binomial", "gamma", "gaussian")

    @property
    def estimates_dispersion(self) -> bool:
        """A GLMM whose fit carries the log dispersion as a parameter."""
        return self.name in ("negative_binomial", "gamma") and self.fixed_dispersion is None

    @property
    def dispersion_name(self) -> str | None:
        """``"theta"`` (negative binomial), ``"scale"`` (Gamma phi, Gaussian sigma^2)."""
        return {"negative_binomial": "theta", "gamma": "scale",
                "gaussian": "scale"}.get(self.name)

    @property
    def dispersion_description(self) -> str:
        return {"negative_binomial": "NB2: Var = mu + mu^2 / theta",
                "gamma": "Var = scale x mu^2, scale = 1 / shape",
                "gaussian": "residual variance"}.get(self.name, "")

    def scale(self, dispersion) -> float:
        """statsmodels' ``scale`` of a fit with this dispersion: sigma^2 (Gaussian), phi
        (Gamma), 1 for the families whose dispersion is not a scale (binomial, Poisson,
        negative binomial theta)."""
        return float(dispersion) if self.name in ("gaussian", "gamma") else 1.0

    @staticmethod
    def dispersion_from_log(t) -> float:
        """theta or phi from the optimiser's coordinate t = log(dispersion)."""
        return float(np.exp(t))

    @staticmethod
    def log_dispersion(d) -> float:
        return float(np.log(d))

    # ------------------------------------------------------------- kernels
    def kernel(self, log_dispersion=None):
        """The row-wise log-likelihood kernel (:mod:`mlglm.core.families`), bound to
        ``log_dispersion`` (or to the fixed dispersion, or to t = 0)."""
        if self.is_gaussian:
            raise ValueError("the Gaussian model is fitted exactly; it has no GLMM kernel")
        fl = get_family_link(self.name, self.link)
        if log_dispersion is None and self.fixed_dispersion is not None:
            log_dispersion = np.log(self.fixed_dispersion)
        return fl.at(0.0 if log_dispersion is None else log_dispersion) \
            if fl.has_dispersion else fl

    def inverse_link(self, eta):
        """mu = g^{-1}(eta) (per trial for the binomial)."""
        return _LINKS[self.link][0](np.asarray(eta, dtype=float))

    def link_function(self, mu):
        """eta = g(mu)."""
        return _LINKS[self.link][1](np.asarray(mu, dtype=float))

    # ------------------------------------------------ moments and residuals
    def _dispersion(self, dispersion):
        if self.fixed_dispersion is not None:
            return self.fixed_dispersion
        if self.has_dispersion and dispersion is None:
            raise ValueError(f"the {self.name} family needs its dispersion here")
        return dispersion

    def variance(self, mu, dispersion=None, m=1.0):
        """Var(y | mu) of a row with m trials (binomial: successes; others m = 1)."""
        mu = np.asarray(mu, dtype=float)
        d = self._dispersion(dispersion)
        if self.name == "binomial":
            return m * mu * (1.0 - mu)
        if self.name == "poisson":
            return mu
        if self.name == "negative_binomial":
            return mu + mu * mu / d
        if self.name == "gamma":
            return d * mu * mu
        return np.full_like(mu, d)

    def unit_deviance(self, y, mu, m=1.0, dispersion=None):
        """2 [l(y | mu = y) - l(y | mu)] of one row (0 log 0 = 0), as ``sm.GLM``'s
        deviance residuals use it (Gamma and Gaussian not divided by the scale)."""
        y, mu = np.asarray(y, dtype=float), np.asarray(mu, dtype=float)
        xlogy = special.xlogy
        if self.name == "binomial":
            fitted = m * mu
            return 2 * (xlogy(y, y) - xlogy(y, fitted) + xlogy(m - y, m - y)
                        - xlogy(m - y, m - fitted))
        if self.name == "poisson":
            return 2 * (xlogy(y, y) - xlogy(y, mu) - (y - mu))
        if self.name == "negative_binomial":
            th = self._dispersion(dispersion)
            return 2 * (xlogy(y, y) - xlogy(y, mu)
                        - (y + th) * (np.log(y + th) - np.log(mu + th)))
        if self.name == "gamma":
            return 2 * ((y - mu) / mu - np.log(y / mu))
        return (y - mu) ** 2

    def draw(self, mu, rng, m=1.0, dispersion=None, var_weights=None):
        """New responses with means mu (binomial: successes out of m trials).

        Negative binomial: Gamma-Poisson with shape theta; Gamma: shape
        v nu = v / phi and mean mu (v the variance weight); Gaussian:
        N(mu, sigma^2 / v).
        """
        mu = np.asarray(mu, dtype=float)
        v = 1.0 if var_weights is None else np.asarray(var_weights, dtype=float)
        if self.name == "binomial":
            return rng.binomial(np.asarray(m).astype(np.int64), mu).astype(float)
        if self.name == "poisson":
            return rng.poisson(mu).astype(float)
        d = self._dispersion(dispersion)
        if self.name == "negative_binomial":
            return rng.negative_binomial(d, d / (d + mu)).astype(float)
        if self.name == "gamma":
            shape = v / d
            return rng.gamma(shape, mu / shape)
        return mu + rng.normal(size=mu.size) * np.sqrt(d / v)

    # --------------------------------------------------------------- ICC
    def latent_variance(self):
        """(variance, as text) of the standard latent error of a binomial link: the
        response is a threshold of eta + e with e standard logistic (pi^2/3), normal
        (1) or Gumbel (pi^2/6), so the ICC on that scale uses it as the within variance."""
        if not self.is_binomial or self.link not in LATENT_VARIANCE:
            raise NotImplementedError(f"no latent-scale variance for the {self.name} family "
                                      f"with the {self.link} link")
        return float(LATENT_VARIANCE[self.link]), LATENT_TEXT[self.link]

    def distribution_variance(self, lam, dispersion=None, method="lognormal"):
        """(sigma^2_d, formula) on the log scale: the distribution-specific variance
        of Nakagawa, Johnson & Schielzeth (2017, J. R. Soc. Interface 14: 20170213),
        with lam the expected count for the count families, as the R packages
        ``insight``/``performance`` compute it: with cv^2 = 1/lam (Poisson),
        1/lam + 1/theta (negative binomial) or phi (Gamma), lognormal ln(1 + cv^2),
        delta cv^2, trigamma psi_1(1 / cv^2)."""
        if self.link != "log" or self.name not in ("poisson", "negative_binomial", "gamma"):
            raise NotImplementedError(f"no log-scale distribution variance for the {self.name} "
                                      f"family with the {self.link} link")
        d = self._dispersion(dispersion) if self.has_dispersion else None
        cv2, text = {"poisson": (lambda: 1.0 / lam, "1/lambda"),
                     "negative_binomial": (lambda: 1.0 / lam + 1.0 / d, "1/lambda + 1/theta"),
                     "gamma": (lambda: d, "scale")}[self.name]
        cv2 = float(cv2())
        if method == "lognormal":
            return float(np.log1p(cv2)), f"ln(1 + {text})"
        if method == "delta":
            return cv2, text
        if method == "trigamma":
            return float(special.polygamma(1, 1.0 / cv2)), f"trigamma(1 / ({text}))"
        raise ValueError("method must be 'lognormal', 'delta' or 'trigamma'")
