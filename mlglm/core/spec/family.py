"""The family of a model: one conditional distribution composed with one link.

:class:`Family` is what every layer asks of the response distribution, so no
module branches on family names: the row kernel of the log-likelihood, the
mean function and its inverse, the variance function (Pearson residuals), the
unit deviance (deviance residuals), a draw of new responses (simulation, the
parametric bootstrap), the distribution-specific variance on the link scale
(the ICC), whether the model is the exact Gaussian one, and the dispersion
parameter: whether there is one, whether the fit estimates it, its name and
its transform to the optimiser's coordinate.

It is composed once from two objects that answer for themselves:

* a :class:`Distribution` (:data:`BINOMIAL`, :data:`POISSON`,
  :data:`NEGATIVE_BINOMIAL`, :data:`GAMMA`, :data:`GAUSSIAN`): variance function,
  unit deviance, draw, normalising constants, start, dispersion, ICC variance;
* a :class:`Link` (logit, probit, cloglog, log, inverse, identity): g, g^{-1},
  d mu / d eta, and the latent error of a binary threshold model.

The row kernels the engines evaluate (:mod:`mlglm.core.spec.families`,
:mod:`mlglm.core.spec.families_dispersion`: the log-likelihood in eta and its
derivatives, fused for speed) are a specialisation of the composition: each
distribution lists the kernel it has for each link it takes
(:attr:`Distribution.kernels`), and :meth:`Family.kernel` makes it. A new
distribution is a new :class:`Distribution` subclass with its kernels, entered
in :data:`DISTRIBUTIONS`; nothing outside this module needs to know its name.

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
from scipy import special, stats

from .families import (ETA_MAX, BinomialCloglog, BinomialLogit, BinomialProbit, Kernel,
                       PoissonLog, RowConstants, weight_product)
from .families_beta import BetaLogit, beta_unit_deviance
from .families_dispersion import (GammaConstants, GammaInverse, GammaLog, NBConstants,
                                  NegativeBinomialLog)
from .families_zero import HurdleNB2, HurdlePoisson, ZeroInflatedNB2, ZeroInflatedPoisson

__all__ = ["Family", "Distribution", "AuxiliaryDistribution", "Link", "LINKS",
           "DISTRIBUTIONS", "AUXILIARY_DISTRIBUTIONS", "FAMILY_NAMES", "KERNEL_PAIRS",
           "distribution_named", "link_named", "BINOMIAL", "POISSON", "NEGATIVE_BINOMIAL",
           "GAMMA", "GAUSSIAN", "ZI_POISSON", "ZI_NEGATIVE_BINOMIAL", "TRUNCATED_POISSON",
           "TRUNCATED_NEGATIVE_BINOMIAL", "BETA"]


# ------------------------------------------------------------------------ links
def _exp(eta):
    return np.exp(np.minimum(eta, ETA_MAX))


def _dmu_logit(eta):
    e = np.exp(-np.abs(eta))                # mu (1 - mu) = e / (1 + e)^2, e = exp(-|eta|)
    return e / (1.0 + e) ** 2


def _dmu_cloglog(eta):
    eta = np.minimum(eta, ETA_MAX)
    return np.exp(eta - np.exp(eta))


class Link:
    """A link g: mean -> linear predictor eta = g(mu), with its inverse and d mu / d eta.

    Attributes
    ----------
    name : ``"logit"``, ``"log"``, ...
    inverse, link, mu_eta : the elementwise functions g^{-1}, g and d g^{-1} / d eta (the
        delta method from the link to the mean scale).
    statsmodels : the names of statsmodels' link classes for it (``sm.families.links``),
        the first the one to build.
    latent : (variance, as text) of the standard latent error e when the link is the
        threshold model y = 1{eta + e > 0} of a binary response (logistic pi^2/3, normal 1,
        Gumbel pi^2/6), else None.
    log_scale : eta is the log of the mean (effects multiply it; an exposure enters as
        log(exposure); the log-scale variances of the ICC apply).
    linear : g^{-1} is linear, so E g^{-1}(eta + z'b) = g^{-1}(eta).
    restricted : g^{-1} gives a positive mean on part of the line only (the inverse link:
        eta > 0), which a fit may fail to reach.
    """

    def __init__(self, name, inverse, link, mu_eta, statsmodels, latent=None,
                 log_scale=False, linear=False, restricted=False):
        self.name, self.inverse, self.link, self.mu_eta = name, inverse, link, mu_eta
        self.statsmodels, self.latent = tuple(statsmodels), latent
        self.log_scale, self.linear, self.restricted = log_scale, linear, restricted

    def __str__(self):
        return self.name

    def __repr__(self):
        return f"Link({self.name})"

    def __reduce__(self):           # unpickles to the registered link
        return link_named, (self.name,)


LOGIT = Link("logit", special.expit, special.logit, _dmu_logit, ("Logit", "logit"),
             latent=(np.pi ** 2 / 3, "pi^2/3"))
PROBIT = Link("probit", special.ndtr, special.ndtri,
              lambda eta: np.exp(-0.5 * eta * eta) / np.sqrt(2.0 * np.pi), ("Probit", "probit"),
              latent=(1.0, "1"))
CLOGLOG = Link("cloglog", lambda eta: -np.expm1(-np.exp(np.minimum(eta, ETA_MAX))),
               lambda mu: np.log(-np.log1p(-mu)), _dmu_cloglog, ("CLogLog", "cloglog"),
               latent=(np.pi ** 2 / 6, "pi^2/6"))
LOG = Link("log", _exp, np.log, _exp, ("Log", "log"), log_scale=True)
INVERSE = Link("inverse", lambda eta: 1.0 / eta, lambda mu: 1.0 / mu,
               lambda eta: -1.0 / (eta * eta), ("InversePower", "inverse_power"),
               restricted=True)
IDENTITY = Link("identity", lambda eta: eta, lambda mu: mu, np.ones_like,
                ("Identity", "identity"), linear=True)

#: the links by name
LINKS = {link.name: link for link in (LOGIT, PROBIT, CLOGLOG, LOG, INVERSE, IDENTITY)}


def link_named(name: str) -> Link:
    """The link called ``name`` (ValueError for an unknown one)."""
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; use one of {', '.join(LINKS)}") from None


# ---------------------------------------------------------------- distributions
class Distribution:
    """The conditional distribution of a response given its mean (one instance each).

    Subclasses set the class attributes and the methods that differ; the
    dispersion d passed to the methods is the reported one (theta, phi,
    sigma^2), already resolved by :class:`Family`.
    """

    name = ""
    #: how messages name it
    label = ""
    #: statsmodels' family class (``sm.families``), None when statsmodels has none
    statsmodels: str | None = None
    #: other spellings of the name
    aliases: tuple = ()
    #: the links it takes, each with its row kernel class (None: fitted exactly)
    kernels: dict = {}
    default_link = ""
    #: why other links are not offered (for the message refusing them)
    link_hint = ""
    #: the exact linear mixed model (profiled REML/ML, no quadrature)
    is_gaussian = False
    #: y successes out of m trials
    is_binomial = False
    #: y a count with mean lambda (log-scale ICC variances in lambda)
    is_count = False
    #: integer responses
    discrete = False
    #: positive responses (y > 0)
    positive = False
    #: "theta", "scale" or None (no dispersion parameter)
    dispersion_name: str | None = None
    dispersion_description = ""
    #: the dispersion is statsmodels' ``scale`` (sigma^2, phi), not a shape such as theta
    dispersion_is_scale = False
    #: a dispersion held fixed is offered (statsmodels' NegativeBinomial(alpha))
    dispersion_fixable = False
    #: the distribution it becomes at the boundary of its dispersion (NB2 at theta =
    #: infinity: the Poisson), or None
    limit = None
    #: the row kernel takes auxiliary linear predictors (a zero part, the log
    #: dispersion: :mod:`mlglm.core.spec.families_auxiliary`); fitted by the one-term engine
    #: :class:`~mlglm.core.engines.blockdiag.objective_aux.AuxiliaryLoglik`
    auxiliary = False
    #: "inflation" (structural zeros with probability expit(a)), "hurdle" (Pr(y = 0) =
    #: expit(a), positives from the zero-truncated model) or None: the model has a
    #: zero part a = X_zi gamma (glmmTMB's ``ziformula``)
    zero_part: str | None = None
    #: the zero-inflated version of this distribution (``ziformula=``), or None
    zero_inflated = None
    #: responses strictly between 0 and 1 (the beta)
    unit_interval = False

    def __repr__(self):
        return f"Distribution({self.name})"

    def __reduce__(self):           # unpickles to the registered distribution
        return distribution_named, (self.name,)

    @property
    def has_dispersion(self) -> bool:
        return self.dispersion_name is not None

    @property
    def title(self) -> str:
        """The name a summary shows: statsmodels' (``NegativeBinomial``), else the label."""
        return self.statsmodels or self.label

    def _needs(self, d):
        if d is None:
            raise ValueError(f"the {self.name} family needs its dispersion here")
        return d

    # ---------------------------------------------- the part of the likelihood without eta
    def log_const(self, y, m):  # pragma: no cover - abstract
        raise NotImplementedError

    def row_constants(self, y, m, freq=None, var=None) -> RowConstants:
        """sum_i w_i log_const(y_i, m_i), w = freq x var (the raw y and m)."""
        rows = self.log_const(y, m)
        w = weight_product(freq, var)
        return RowConstants(rows if w is None else w * rows)

    def start_mean(self, y, m):
        """A mean per row near the response, for the start of the GLM fit."""
        return y

    def start_response(self, y, m, link):
        """g(start mean): the response for the least-squares start of the GLM fit
        (:func:`mlglm.core.fit.glm_fit.glm_start`)."""
        return link.link(self.start_mean(y, m))

    def dispersion_moments(self, y, mu, w):  # pragma: no cover - no dispersion
        raise NotImplementedError(f"the {self.name} family has no dispersion to start")

    def dispersion_from_moments(self, moments, p):  # pragma: no cover - no dispersion
        raise NotImplementedError(f"the {self.name} family has no dispersion to start")

    def dispersion_start(self, y, mu, w, p) -> float:
        """The log dispersion's start from a GLM fit's means (:meth:`dispersion_moments`
        are sums over rows, so data held in pieces add theirs)."""
        return self.dispersion_from_moments(self.dispersion_moments(y, mu, w), p)

    # ------------------------------------------------------------- moments
    def variance(self, mu, d, m):  # pragma: no cover - abstract
        raise NotImplementedError

    def unit_deviance(self, y, mu, m, d):  # pragma: no cover - abstract
        raise NotImplementedError

    def draw(self, mu, rng, m, d, v):  # pragma: no cover - abstract
        raise NotImplementedError

    # ----------------------------------------------------------------- ICC
    def latent_variance(self, link):
        raise NotImplementedError(f"no latent-scale variance for the {self.name} family "
                                  f"with the {link} link")

    def log_scale_cv2(self, lam, d):
        """(cv^2, as text): the squared coefficient of variation of the response on the
        log scale (Nakagawa et al. 2017), lam the expected count."""
        raise NotImplementedError(f"no log-scale distribution variance for the {self.name} "
                                  "family")


class Binomial(Distribution):
    name, label, statsmodels = "binomial", "binomial", "Binomial"
    kernels = {"logit": BinomialLogit, "probit": BinomialProbit, "cloglog": BinomialCloglog}
    default_link = "logit"
    is_binomial = discrete = True

    def log_const(self, y, m):
        if np.ndim(m) == 0 and m == 1.0 and np.all((y == 0.0) | (y == 1.0)):
            return np.zeros_like(y)         # log C(1, y) = 0 for Bernoulli rows
        return special.gammaln(m + 1) - special.gammaln(y + 1) - special.gammaln(m - y + 1)

    def start_response(self, y, m, link):
        # the empirical logit, whatever the link
        return np.log((y + 0.5) / (m - y + 0.5))

    def variance(self, mu, d, m):
        return m * mu * (1.0 - mu)

    def unit_deviance(self, y, mu, m, d):
        xlogy = special.xlogy
        fitted = m * mu
        return 2 * (xlogy(y, y) - xlogy(y, fitted) + xlogy(m - y, m - y)
                    - xlogy(m - y, m - fitted))

    def draw(self, mu, rng, m, d, v):
        return rng.binomial(np.asarray(m).astype(np.int64), mu).astype(float)

    def latent_variance(self, link):
        if link.latent is None:
            return super().latent_variance(link)
        value, text = link.latent
        return float(value), text


class Poisson(Distribution):
    name, label, statsmodels = "poisson", "Poisson", "Poisson"
    kernels = {"log": PoissonLog}
    default_link = "log"
    is_count = discrete = True

    def log_const(self, y, m):
        return -special.gammaln(y + 1)

    def start_mean(self, y, m):
        return y + 0.5

    def variance(self, mu, d, m):
        return mu

    def unit_deviance(self, y, mu, m, d):
        xlogy = special.xlogy
        return 2 * (xlogy(y, y) - xlogy(y, mu) - (y - mu))

    def draw(self, mu, rng, m, d, v):
        return rng.poisson(mu).astype(float)

    def log_scale_cv2(self, lam, d):
        return 1.0 / lam, "1/lambda"


class NegativeBinomial(Poisson):
    """NB2, Var y = mu + mu^2 / theta; at theta = infinity the Poisson."""

    name, label, statsmodels = "negative_binomial", "negative binomial", "NegativeBinomial"
    aliases = ("nbinom2", "negativebinomial", "negbin")
    kernels = {"log": NegativeBinomialLog}
    dispersion_name = "theta"
    dispersion_description = "NB2: Var = mu + mu^2 / theta"
    dispersion_fixable = True

    def row_constants(self, y, m, freq=None, var=None) -> RowConstants:
        return NBConstants(y, weight_product(freq, var))

    @staticmethod
    def dispersion_moments(y, mu, w) -> np.ndarray:
        """(sum w ((y - mu)^2 - y), sum w mu^2): E[(y - mu)^2 - y] = mu^2 / theta."""
        return np.array([np.sum(w * ((y - mu) ** 2 - y)), np.sum(w * mu * mu)])

    @staticmethod
    def dispersion_from_moments(moments, p) -> float:
        """log theta by the moments, within [1e-2, 1e4] (theta beyond that is a Poisson)."""
        excess, mu2 = moments
        theta = mu2 / excess if excess > 0 else 1e4
        return float(np.log(np.clip(theta, 1e-2, 1e4)))

    def variance(self, mu, d, m):
        d = self._needs(d)
        return mu + mu * mu / d

    def unit_deviance(self, y, mu, m, d):
        th = self._needs(d)
        xlogy = special.xlogy
        return 2 * (xlogy(y, y) - xlogy(y, mu) - (y + th) * (np.log(y + th) - np.log(mu + th)))

    def draw(self, mu, rng, m, d, v):
        d = self._needs(d)
        return rng.negative_binomial(d, d / (d + mu)).astype(float)

    def log_scale_cv2(self, lam, d):
        return 1.0 / lam + 1.0 / self._needs(d), "1/lambda + 1/theta"


class Gamma(Distribution):
    """Var y = phi mu^2, phi = 1 / shape (statsmodels' scale)."""

    name, label, statsmodels = "gamma", "Gamma", "Gamma"
    kernels = {"log": GammaLog, "inverse": GammaInverse}
    default_link = "inverse"        # R's Gamma() and statsmodels' default
    positive = True
    dispersion_name = "scale"
    dispersion_description = "Var = scale x mu^2, scale = 1 / shape"
    dispersion_is_scale = True

    def log_const(self, y, m):
        return -np.log(y)

    def row_constants(self, y, m, freq=None, var=None) -> RowConstants:
        return GammaConstants(y, freq, var)

    @staticmethod
    def dispersion_moments(y, mu, w) -> np.ndarray:
        """(sum w ((y - mu) / mu)^2, sum w): the Pearson statistic and the rows."""
        return np.array([np.sum(w * ((y - mu) / mu) ** 2), np.sum(w)])

    @staticmethod
    def dispersion_from_moments(moments, p) -> float:
        """log phi = log(Pearson / (n - p)), within [1e-6, 1e6]."""
        pearson, n = moments
        phi = pearson / max(n - p, 1.0)
        return float(np.log(np.clip(phi, 1e-6, 1e6)))

    def variance(self, mu, d, m):
        return self._needs(d) * mu * mu

    def unit_deviance(self, y, mu, m, d):
        return 2 * ((y - mu) / mu - np.log(y / mu))

    def draw(self, mu, rng, m, d, v):
        shape = v / self._needs(d)
        return rng.gamma(shape, mu / shape)

    def log_scale_cv2(self, lam, d):
        return self._needs(d), "scale"


class Gaussian(Distribution):
    name, label, statsmodels = "gaussian", "Gaussian", "Gaussian"
    kernels = {"identity": None}
    default_link = "identity"
    link_hint = ("a Gaussian with another link is not log-concave in the linear predictor, "
                 "so the conditional modes and the Laplace approximation are not "
                 "guaranteed; use Gamma(link=Log()) for a positive response")
    is_gaussian = True
    dispersion_name = "scale"
    dispersion_description = "residual variance"
    dispersion_is_scale = True

    def variance(self, mu, d, m):
        return np.full_like(mu, self._needs(d))

    def unit_deviance(self, y, mu, m, d):
        return (y - mu) ** 2

    def draw(self, mu, rng, m, d, v):
        return mu + rng.normal(size=mu.size) * np.sqrt(self._needs(d) / v)


class AuxiliaryDistribution(Distribution):
    """A distribution whose row kernel takes auxiliary linear predictors: zero-inflated
    and hurdle Poisson / NB2 (a zero part a = X_zi gamma) and the beta (glmmTMB's
    parametrisation, ``docs/zero_inflation_math.md``). The kernel classes are
    :mod:`mlglm.core.spec.families_zero` and :mod:`mlglm.core.spec.families_beta`; the engine is
    :class:`~mlglm.core.engines.blockdiag.objective_aux.AuxiliaryLoglik` (one grouping factor, Laplace and
    AGHQ; nested factors :mod:`mlglm.core.engines.nested.objective_aux`, crossed
    :mod:`mlglm.core.engines.crossed.objective_aux`). The normalising constants are the kernel's (``row_constants``), the start
    the engine's. Means, variances and draws of these models involve the zero part and
    are not offered through the one-predictor methods of :class:`Distribution`.
    """

    auxiliary = True
    statsmodels = None

    def _no(self, what):
        raise NotImplementedError(f"{what} is not available for the {self.label} family yet")

    def row_constants(self, y, m, freq=None, var=None) -> RowConstants:
        return self.kernels[self.default_link]().row_constants(y, weight_product(freq, var))

    def variance(self, mu, d, m):
        self._no("the variance function (Pearson residuals)")

    def unit_deviance(self, y, mu, m, d):
        self._no("the unit deviance (deviance residuals)")

    def draw(self, mu, rng, m, d, v):
        self._no("a draw from the mean alone (the zero part is needed: draw_rows)")

    def draw_rows(self, mu, pi, d, rng):  # pragma: no cover - abstract
        """New responses with count (or beta) mean ``mu``, zero-part probability ``pi``
        (None without a zero part) and dispersion ``d``."""
        raise NotImplementedError

    def log_scale_cv2(self, lam, d):
        self._no("a log-scale distribution variance (ICC)")


def _count_law(mu, theta):
    """scipy's Poisson (theta None) or NB2 (size theta) at means mu."""
    if theta is None:
        return stats.poisson(mu)
    return stats.nbinom(theta, theta / (theta + mu))


def _draw_count(mu, theta, rng):
    if theta is None:
        return rng.poisson(mu).astype(float)
    return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)


#: why the zero-inflated and hurdle families have no deviance residuals (the
#: NotImplementedError of ``unit_deviance``, the docs)
NO_ZERO_PART_DEVIANCE = (
    "deviance residuals are not defined for zero-inflated and hurdle models: the unit "
    "deviance 2[l(y; saturated) - l(y; fitted)] needs a saturated model, and with two "
    "predictors per row (the count mean and the zero part) saturating both fits every "
    "zero exactly, so a zero's deviance is -2 log Pr(y = 0) whatever the count part says "
    "and a positive count's mixes the zero part into the count model's deviance; there "
    "is no agreed convention (glmmTMB, pscl and countreg offer none either). Use "
    "resid_pearson ((y - E y) / sqrt(Var y) with the zero part, as glmmTMB's Pearson "
    "residuals) or resid_response (y - E y); simulate() gives draws for simulation-based "
    "residuals")


class _CountWithZeroPart(AuxiliaryDistribution):
    def unit_deviance(self, y, mu, m, d):
        raise NotImplementedError(NO_ZERO_PART_DEVIANCE)


class _ZeroInflated(_CountWithZeroPart):
    def draw_rows(self, mu, pi, d, rng):
        """A structural zero with probability pi, else a count of the count model."""
        y = _draw_count(mu, d, rng)
        return np.where(rng.uniform(size=np.shape(mu)) < pi, 0.0, y)


class _Hurdle(_CountWithZeroPart):
    def draw_rows(self, mu, pi, d, rng):
        """0 with probability pi, else a draw of the zero-truncated count model by its
        inverse distribution function on (F(0), 1)."""
        law = _count_law(mu, d)
        f0 = law.cdf(0)
        u = f0 + rng.uniform(size=np.shape(mu)) * (1.0 - f0)
        y = np.maximum(law.ppf(u), 1.0)
        return np.where(rng.uniform(size=np.shape(mu)) < pi, 0.0, y)


class ZeroInflatedPoissonDistribution(_ZeroInflated):
    """Zero-inflated Poisson: y = 0 with probability pi = expit(a), else Poisson(mu)
    (glmmTMB ``family = poisson()`` with ``ziformula``)."""

    name, label = "zero_inflated_poisson", "zero-inflated Poisson"
    aliases = ("zipoisson",)
    kernels = {"log": ZeroInflatedPoisson}
    default_link = "log"
    is_count = discrete = True
    zero_part = "inflation"


class ZeroInflatedNBDistribution(_ZeroInflated):
    """Zero-inflated NB2 (glmmTMB ``nbinom2()`` with ``ziformula``); theta estimated."""

    name, label = "zero_inflated_negative_binomial", "zero-inflated negative binomial"
    aliases = ("zinbinom2", "zinb2")
    kernels = {"log": ZeroInflatedNB2}
    default_link = "log"
    is_count = discrete = True
    zero_part = "inflation"
    dispersion_name = "theta"
    dispersion_description = "NB2: Var = mu + mu^2 / theta (count part)"


class TruncatedPoissonDistribution(_Hurdle):
    """Poisson hurdle: Pr(y = 0) = expit(a), positives zero-truncated Poisson (glmmTMB
    ``truncated_poisson()`` with ``ziformula``)."""

    name, label = "truncated_poisson", "truncated Poisson (hurdle)"
    aliases = ("hurdle_poisson",)
    kernels = {"log": HurdlePoisson}
    default_link = "log"
    is_count = discrete = True
    zero_part = "hurdle"


class TruncatedNBDistribution(_Hurdle):
    """NB2 hurdle (glmmTMB ``truncated_nbinom2()`` with ``ziformula``); theta estimated."""

    name, label = "truncated_negative_binomial", "truncated negative binomial (hurdle)"
    aliases = ("truncated_nbinom2", "hurdle_nb2", "hurdle_negative_binomial")
    kernels = {"log": HurdleNB2}
    default_link = "log"
    is_count = discrete = True
    zero_part = "hurdle"
    dispersion_name = "theta"
    dispersion_description = "NB2: Var = mu + mu^2 / theta (count part, before truncation)"


class BetaDistribution(AuxiliaryDistribution):
    """Beta, logit link, precision phi (glmmTMB ``beta_family()``): Var = mu (1 - mu) /
    (1 + phi), y strictly in (0, 1)."""

    name, label = "beta", "beta"
    aliases = ("beta_family",)
    kernels = {"logit": BetaLogit}
    default_link = "logit"
    link_hint = "the beta model is fitted with the logit link (glmmTMB's default)"
    unit_interval = True
    dispersion_name = "phi"
    dispersion_description = "beta precision: Var = mu (1 - mu) / (1 + phi)"

    def draw_rows(self, mu, pi, d, rng):
        return rng.beta(mu * d, (1.0 - mu) * d)

    def unit_deviance(self, y, mu, m, d):
        """2 [max_m l(y | m, phi) - l(y | mu, phi)] at the fitted precision phi = d
        (:func:`~mlglm.core.spec.families_beta.beta_unit_deviance`: the saturated mean
        per row is unique because l is strictly concave in the mean at fixed phi)."""
        return beta_unit_deviance(y, mu, self._needs(d))


BINOMIAL, POISSON, NEGATIVE_BINOMIAL, GAMMA, GAUSSIAN = (
    Binomial(), Poisson(), NegativeBinomial(), Gamma(), Gaussian())
NegativeBinomial.limit = POISSON
ZI_POISSON, ZI_NEGATIVE_BINOMIAL, TRUNCATED_POISSON, TRUNCATED_NEGATIVE_BINOMIAL, BETA = (
    ZeroInflatedPoissonDistribution(), ZeroInflatedNBDistribution(),
    TruncatedPoissonDistribution(), TruncatedNBDistribution(), BetaDistribution())
Poisson.zero_inflated = ZI_POISSON
NegativeBinomial.zero_inflated = ZI_NEGATIVE_BINOMIAL

#: the distributions by name (the plain kernels in eta alone)
DISTRIBUTIONS = {d.name: d for d in (BINOMIAL, POISSON, NEGATIVE_BINOMIAL, GAMMA, GAUSSIAN)}
#: the distributions whose kernels take auxiliary predictors (issue 23)
AUXILIARY_DISTRIBUTIONS = {d.name: d for d in (ZI_POISSON, ZI_NEGATIVE_BINOMIAL,
                                               TRUNCATED_POISSON, TRUNCATED_NEGATIVE_BINOMIAL,
                                               BETA)}
#: the family names a user types (zero inflation is ``poisson`` or ``negative_binomial``
#: with a ``ziformula``)
FAMILY_NAMES = tuple(DISTRIBUTIONS) + (TRUNCATED_POISSON.name,
                                       TRUNCATED_NEGATIVE_BINOMIAL.name, BETA.name)
_ALIASES = {a: d for d in (*DISTRIBUTIONS.values(), *AUXILIARY_DISTRIBUTIONS.values())
            for a in d.aliases}
#: (distribution, link) names of every pair with a row kernel (the GLMMs fitted)
KERNEL_PAIRS = tuple((d.name, link) for d in DISTRIBUTIONS.values()
                     for link, kernel in d.kernels.items() if kernel is not None)


def distribution_named(name: str) -> Distribution:
    """The distribution called ``name`` or one of its aliases (ValueError otherwise)."""
    key = name.strip().lower()
    found = DISTRIBUTIONS.get(key) or AUXILIARY_DISTRIBUTIONS.get(key) or _ALIASES.get(key)
    if found is None:
        raise ValueError(f"unknown family {name!r}; use one of {FAMILY_NAMES}")
    return found


# ----------------------------------------------------------------------- family
class Family:
    """A conditional distribution with a link (see the module docstring).

    Parameters
    ----------
    distribution : a :class:`Distribution` or its name (one of :data:`FAMILY_NAMES`).
    link : a :class:`Link` or its name (``"logit"``, ``"log"``, ``"inverse"``, ...);
        None: the distribution's default link.
    dispersion : a fixed dispersion on its own scale (negative binomial theta);
        None (default) estimates it for the families that have one.
    """

    def __init__(self, distribution, link=None, dispersion: float | None = None):
        dist = distribution if isinstance(distribution, Distribution) else \
            distribution_named(distribution)
        if link is None:
            link = dist.default_link
        link = link if isinstance(link, Link) else link_named(link.strip().lower())
        if link.name not in dist.kernels:
            ok = ", ".join(f"{d}/{lk}" for d, lk in KERNEL_PAIRS + (("gaussian", "identity"),))
            hint = f" ({dist.link_hint})" if dist.link_hint else ""
            raise ValueError(f"unsupported family/link {dist.name}/{link.name}{hint}; "
                             f"supported: {ok}")
        if dispersion is not None and not dist.dispersion_fixable:
            raise ValueError("a fixed dispersion is offered for the negative binomial only")
        self.distribution, self.link = dist, link
        self.fixed_dispersion = None if dispersion is None else float(dispersion)

    def __repr__(self):
        fixed = "" if self.fixed_dispersion is None else \
            f", {self.dispersion_name} fixed at {self.fixed_dispersion:g}"
        return f"Family({self.name}, {self.link_name}{fixed})"

    # ----------------------------------------------------------- what it is
    @property
    def name(self) -> str:
        """The distribution's name (``"binomial"``, ``"negative_binomial"``, ...)."""
        return self.distribution.name

    @property
    def label(self) -> str:
        """The distribution's name in a sentence (``"negative binomial"``)."""
        return self.distribution.label

    @property
    def link_name(self) -> str:
        return self.link.name

    @property
    def is_gaussian(self) -> bool:
        """The exact linear mixed model (profiled REML/ML, no quadrature)."""
        return self.distribution.is_gaussian

    @property
    def is_binomial(self) -> bool:
        """y successes out of m trials."""
        return self.distribution.is_binomial

    @property
    def is_count(self) -> bool:
        """y a count (Poisson, negative binomial)."""
        return self.distribution.is_count

    @property
    def has_dispersion(self) -> bool:
        """The distribution has a dispersion parameter (fixed or estimated)."""
        return self.distribution.has_dispersion

    @property
    def estimates_dispersion(self) -> bool:
        """A GLMM whose fit carries the log dispersion as a parameter."""
        return self.has_dispersion and not self.is_gaussian and self.fixed_dispersion is None

    @property
    def dispersion_name(self) -> str | None:
        """``"theta"`` (negative binomial), ``"scale"`` (Gamma phi, Gaussian sigma^2)."""
        return self.distribution.dispersion_name

    @property
    def dispersion_description(self) -> str:
        return self.distribution.dispersion_description

    @property
    def auxiliary(self) -> bool:
        """The kernel takes auxiliary predictors (zero-inflated, hurdle, beta)."""
        return self.distribution.auxiliary

    @property
    def zero_part(self) -> str | None:
        """"inflation", "hurdle" or None: the model has a zero part a = X_zi gamma."""
        return self.distribution.zero_part

    def with_zero_inflation(self) -> "Family":
        """The zero-inflated version of this family (``ziformula=`` on a Poisson or
        negative binomial); ValueError for a family without one."""
        zi = self.distribution.zero_inflated
        if zi is None:
            raise ValueError(f"the {self.label} family has no zero-inflated version; "
                             "ziformula= is for family='poisson' or 'negative_binomial' "
                             "(zero inflation) and 'truncated_poisson' or "
                             "'truncated_negative_binomial' (hurdle models)")
        if self.fixed_dispersion is not None:
            raise ValueError("a zero-inflated negative binomial estimates theta; a fixed "
                             "dispersion is not offered with ziformula=")
        return Family(zi, self.link)

    def nests_at_boundary(self, distribution) -> bool:
        """``distribution`` is this family's at the boundary of its estimated dispersion
        (a Poisson fit within a negative binomial one: 1 / theta = 0)."""
        return (self.estimates_dispersion and distribution is not None
                and distribution is self.distribution.limit)

    def scale(self, dispersion) -> float:
        """statsmodels' ``scale`` of a fit with this dispersion: sigma^2 (Gaussian), phi
        (Gamma), 1 for the families whose dispersion is not a scale (binomial, Poisson,
        negative binomial theta)."""
        return float(dispersion) if self.distribution.dispersion_is_scale else 1.0

    @staticmethod
    def dispersion_from_log(t) -> float:
        """theta or phi from the optimiser's coordinate t = log(dispersion)."""
        return float(np.exp(t))

    @staticmethod
    def log_dispersion(d) -> float:
        return float(np.log(d))

    # ------------------------------------------------------------- kernels
    def kernel(self, log_dispersion=None) -> Kernel:
        """The row-wise log-likelihood kernel of this distribution and link
        (:mod:`mlglm.core.spec.families`), bound to ``log_dispersion`` (or to the fixed
        dispersion, or to t = 0)."""
        cls = self.distribution.kernels[self.link.name]
        if cls is None:
            raise ValueError("the Gaussian model is fitted exactly; it has no GLMM kernel")
        if self.distribution.auxiliary:     # a kernel in (eta, a, t), bound by the engine
            return cls()
        if not cls.has_dispersion:
            return cls(self.distribution, self.link)
        if log_dispersion is None and self.fixed_dispersion is not None:
            log_dispersion = np.log(self.fixed_dispersion)
        return cls(self.distribution, self.link,
                   0.0 if log_dispersion is None else log_dispersion)

    def inverse_link(self, eta):
        """mu = g^{-1}(eta) (per trial for the binomial)."""
        return self.link.inverse(np.asarray(eta, dtype=float))

    def link_function(self, mu):
        """eta = g(mu)."""
        return self.link.link(np.asarray(mu, dtype=float))

    def mu_eta(self, eta):
        """d mu / d eta at eta."""
        return self.link.mu_eta(np.asarray(eta, dtype=float))

    # ------------------------------------------------ moments and residuals
    def _dispersion(self, dispersion):
        return self.fixed_dispersion if self.fixed_dispersion is not None else dispersion

    def variance(self, mu, dispersion=None, m=1.0):
        """Var(y | mu) of a row with m trials (binomial: successes; others m = 1)."""
        return self.distribution.variance(np.asarray(mu, dtype=float),
                                          self._dispersion(dispersion), m)

    def unit_deviance(self, y, mu, m=1.0, dispersion=None):
        """2 [l(y | mu = y) - l(y | mu)] of one row (0 log 0 = 0), as ``sm.GLM``'s
        deviance residuals use it (Gamma and Gaussian not divided by the scale)."""
        return self.distribution.unit_deviance(np.asarray(y, dtype=float),
                                               np.asarray(mu, dtype=float), m,
                                               self._dispersion(dispersion))

    def draw_rows(self, eta, a, rng, dispersion=None):
        """New responses of a zero-inflated, hurdle or beta family at linear predictors
        eta and zero-part predictors a (None without a zero part)."""
        mu = self.inverse_link(eta)
        pi = None if a is None else special.expit(np.asarray(a, dtype=float))
        return self.distribution.draw_rows(mu, pi, self._dispersion(dispersion), rng)

    def draw(self, mu, rng, m=1.0, dispersion=None, var_weights=None):
        """New responses with means mu (binomial: successes out of m trials).

        Negative binomial: Gamma-Poisson with shape theta; Gamma: shape
        v nu = v / phi and mean mu (v the variance weight); Gaussian:
        N(mu, sigma^2 / v).
        """
        v = 1.0 if var_weights is None else np.asarray(var_weights, dtype=float)
        return self.distribution.draw(np.asarray(mu, dtype=float), rng, m,
                                      self._dispersion(dispersion), v)

    # --------------------------------------------------------------- ICC
    def latent_variance(self):
        """(variance, as text) of the standard latent error of a binomial link: the
        response is a threshold of eta + e with e standard logistic (pi^2/3), normal
        (1) or Gumbel (pi^2/6), so the ICC on that scale uses it as the within variance."""
        return self.distribution.latent_variance(self.link)

    def distribution_variance(self, lam, dispersion=None, method="lognormal"):
        """(sigma^2_d, formula) on the log scale: the distribution-specific variance
        of Nakagawa, Johnson & Schielzeth (2017, J. R. Soc. Interface 14: 20170213),
        with lam the expected count for the count families, as the R packages
        ``insight``/``performance`` compute it: with cv^2 = 1/lam (Poisson),
        1/lam + 1/theta (negative binomial) or phi (Gamma), lognormal ln(1 + cv^2),
        delta cv^2, trigamma psi_1(1 / cv^2)."""
        if not self.link.log_scale:
            raise NotImplementedError(f"no log-scale distribution variance for the {self.name} "
                                      f"family with the {self.link} link")
        cv2, text = self.distribution.log_scale_cv2(lam, self._dispersion(dispersion))
        cv2 = float(cv2)
        if method == "lognormal":
            return float(np.log1p(cv2)), f"ln(1 + {text})"
        if method == "delta":
            return cv2, text
        if method == "trigamma":
            return float(special.polygamma(1, 1.0 / cv2)), f"trigamma(1 / ({text}))"
        raise ValueError("method must be 'lognormal', 'delta' or 'trigamma'")
