"""Kernels with a dispersion parameter: negative binomial (NB2) and Gamma.

Each kernel object is bound to one value t of the log dispersion (``at(t)``),
the coordinate the optimiser sees; the derivatives in t that the exact
gradients need come from :meth:`dispersion_derivatives` (per row, in eta's
kernel) and from the :class:`~mlglm.core.spec.families.RowConstants` of the
distribution (the part of the log-likelihood without eta: :class:`NBConstants`,
:class:`GammaConstants`, chosen by :mod:`mlglm.core.spec.family`). As for
every kernel (:mod:`mlglm.core.spec.families`), (y, m) are the response and the
prior weight multiplied by the row's weight w.

Negative binomial, NB2, log link, t = log theta (Var y = mu + mu^2 / theta):

    l = y eta - (y + theta) log(theta + mu) + theta log theta
        + lgamma(y + theta) - lgamma(theta) - lgamma(y + 1),

which with e = eta - t and p = expit(e) = mu / (theta + mu) is the binomial
logit kernel at e with y successes out of M = y + theta trials:

    l = [y e - M log(1 + e^e)] + [lgamma(y + theta) - lgamma(theta)] - lgamma(y + 1),

so d1 = y - M p, d2 = M p (1 - p) > 0 (log-concave in eta), d3 = d2 (1 - 2p),
computed without overflow by the logit code. With weights, M = y + theta m.
In t (d p / dt = -p (1 - p), d M / dt = theta m):

    dK/dt = -d1 - theta m log(1 + e^e),   d d1/dt = d2 - theta m p,
    d d2/dt = theta m p (1 - p) - d3,
    d/dt [lgamma(y + theta) - lgamma(theta)] = theta [psi(y + theta) - psi(theta)].

Gamma, t = log phi with phi = 1 / nu the dispersion (Var y = phi mu^2, nu the
shape; statsmodels' ``scale``, lme4's sigma^2, glmmTMB's sigma^2):

    l = nu [-y / mu - log mu] + nu log(nu y) - lgamma(nu) - log y.

log link (mu = e^eta): K = -nu (y e^-eta + m eta), d1 = nu (y e^-eta - m),
d2 = nu y e^-eta, d3 = -d2. Inverse link (mu = 1 / eta, eta > 0): K = nu (m
log eta - y eta), d1 = nu (m / eta - y), d2 = nu m / eta^2, d3 = -2 d2 / eta;
for eta <= 0 there is no density (K = -inf, derivatives 0), which the mode
iteration's step halving and the quadrature weights handle. Both are
log-concave in eta. K is nu times a function of eta, so dK/dt = -K,
d d1/dt = -d1, d d2/dt = -d2. A variance weight v gives the row the shape
v nu (so the constant nu_i log(nu_i y) - lgamma(nu_i) - log y uses nu_i = v nu),
a frequency weight f multiplies the row's log-likelihood, as ``sm.GLM`` defines them.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .families import ETA_MAX, Kernel, RowConstants, logit_kernel_derivatives

__all__ = ["DispersedKernel", "NegativeBinomialLog", "GammaLog", "GammaInverse", "NBConstants",
           "GammaConstants"]


class DispersedKernel(Kernel):
    """A kernel bound to a log dispersion t."""

    has_dispersion = True

    def __init__(self, distribution, link, log_dispersion: float = 0.0):
        super().__init__(distribution, link)
        self.log_dispersion = float(log_dispersion)

    def at(self, log_dispersion) -> "DispersedKernel":
        if log_dispersion is None or float(log_dispersion) == self.log_dispersion:
            return self
        return type(self)(self.distribution, self.link, log_dispersion)

    def __repr__(self):
        return (f"Kernel({self.distribution.name}, {self.link.name}, "
                f"log_dispersion={self.log_dispersion!r})")

    def kernel(self, eta, y, m):
        return self.kernel_derivatives(eta, y, m)[0]

    def kernel_d1(self, eta, y, m):
        return self.kernel_derivatives(eta, y, m)[:2]

    def derivatives(self, eta, y, m, third=False):
        _, d1, d2 = self.kernel_derivatives(eta, y, m)
        return (d1, d2, self.third(eta, y, m, d1, d2)) if third else (d1, d2)


class NegativeBinomialLog(DispersedKernel):
    """NB2 with log link, t = log theta (module docstring)."""

    @property
    def theta(self) -> float:
        return float(np.exp(self.log_dispersion))

    def _trials(self, y, m):
        return y + self.theta * m

    def kernel_derivatives(self, eta, y, m):
        return logit_kernel_derivatives(eta - self.log_dispersion, y, self._trials(y, m))

    def third(self, eta, y, m, d1, d2):
        return d2 * (1.0 - 2.0 * special.expit(eta - self.log_dispersion))

    def dispersion_derivatives(self, eta, y, m, d1, d2, d3):
        """(dK/dt, d d1/dt, d d2/dt) per row."""
        e = eta - self.log_dispersion
        p = special.expit(e)
        tm = self.theta * m
        dK = -d1 - tm * np.logaddexp(0.0, e)
        return dK, d2 - tm * p, tm * p * (1.0 - p) - d3

    def kernel_ddisp(self, eta, y, m):
        """(K, d1, dK/dt) at many points (the quadrature nodes): with a = e^-|e|,
        log(1 + e^e) = max(e, 0) + log1p(a) and p = 1/(1 + a) (e >= 0) or a/(1 + a),
        one exp and one log1p per point for all three."""
        e = eta - self.log_dispersion
        a = np.exp(-np.abs(e))
        L = np.log1p(a)
        L += np.maximum(e, 0.0)
        r = 1.0 / (1.0 + a)
        p = np.where(e >= 0, r, a * r)
        tm = self.theta * m
        M = y + tm
        d1 = y - M * p
        return y * e - M * L, d1, -d1 - tm * L


class NBConstants(RowConstants):
    """sum_i w_i [lgamma(y_i + theta) - lgamma(theta) - lgamma(y_i + 1)], evaluated over
    the distinct counts (a count data set has few), with its derivative in t = log theta."""

    def __init__(self, y, w):
        y = np.asarray(y, dtype=float)
        self.y, self.w = y, w
        self.values, inverse = np.unique(y, return_inverse=True)
        self.counts = np.bincount(inverse.reshape(-1), weights=w, minlength=self.values.size)
        self.fixed = float(-(self.counts @ special.gammaln(self.values + 1)))

    def value(self, t=None) -> float:
        theta = np.exp(t)
        return self.fixed + float(self.counts @ (special.gammaln(self.values + theta)
                                                 - special.gammaln(theta)))

    def derivative(self, t=None) -> float:
        theta = np.exp(t)
        return float(theta * (self.counts @ (special.digamma(self.values + theta)
                                             - special.digamma(theta))))

    def per_row(self, t=None) -> np.ndarray:
        theta = np.exp(t)
        rows = special.gammaln(self.y + theta) - special.gammaln(theta) - special.gammaln(self.y + 1)
        return rows if self.w is None else self.w * rows


class _GammaKernel(DispersedKernel):
    """Gamma kernels, t = log phi (module docstring)."""

    @property
    def shape(self) -> float:
        return float(np.exp(-self.log_dispersion))

    def dispersion_derivatives(self, eta, y, m, d1, d2, d3):
        return -self.kernel(eta, y, m), -d1, -d2

    def kernel_ddisp(self, eta, y, m):
        K, d1, _ = self.kernel_derivatives(eta, y, m)
        return K, d1, -K


class GammaLog(_GammaKernel):
    """Gamma, log link (module docstring)."""

    def kernel_derivatives(self, eta, y, m):
        nu = self.shape
        r = y * np.exp(np.minimum(-eta, ETA_MAX))                 # y / mu
        d2 = nu * r
        mterm = eta if np.ndim(m) == 0 and m == 1.0 else m * eta
        return -(d2 + nu * mterm), d2 - nu * m, d2

    def third(self, eta, y, m, d1, d2):
        return -d2


#: Gamma with the inverse link, outside its domain: the Newton derivatives are those of
#: the kernel's quadratic extension from eta = _DOMAIN_EDGE / y (GammaInverse).
_DOMAIN_EDGE = 0.01


class GammaInverse(_GammaKernel):
    """Gamma, inverse link (module docstring)."""

    def kernel_derivatives(self, eta, y, m):
        """K, dK/deta, -d2K/deta2; outside the domain (eta <= 0: a mean 1 / eta <= 0)
        K = -inf (no density), and the derivatives are those of the kernel's quadratic
        extension from eta_i = _DOMAIN_EDGE / y_i (near the edge of the domain, where
        the log barrier of K is steep: 1 / y_i is the row's own saturated value), which point
        back into the domain: a Newton iteration for the conditional modes started
        outside (the outer optimiser's trial points can put the fixed part of eta
        below 0 on some row, which the random effects may still lift) then steps
        into it instead of stalling on a flat -inf."""
        nu = self.shape
        ok = eta > 0
        e = eta if ok.all() else np.where(ok, eta, 1.0)
        inv = 1.0 / e
        K = nu * (m * np.log(e) - y * e)
        d1 = nu * (m * inv - y)
        d2 = nu * m * inv * inv
        if not ok.all():                 # mean 1 / eta <= 0: no density there
            bad = ~ok
            mb = np.broadcast_to(m, K.shape)
            K = np.where(bad & (mb > 0), -np.inf, K)
            # K(eps) + K'(eps)(eta - eps) + K''(eps)(eta - eps)^2 / 2 at eps = 0.01 / y:
            # d1 = nu (m (2 eps - eta) / eps^2 - y) > 0, d2 = nu m / eps^2 (a row alone
            # would step to eta ~ 2 eps)
            yb = np.broadcast_to(y, K.shape)
            eps = _DOMAIN_EDGE / yb
            d1 = np.where(bad, nu * (mb * (2.0 * eps - eta) / eps ** 2 - yb), d1)
            d2 = np.where(bad, nu * mb / eps ** 2, d2)
        return K, d1, d2

    def third(self, eta, y, m, d1, d2):
        return -2.0 * d2 / np.where(eta > 0, eta, 1.0)

    def kernel_ddisp(self, eta, y, m):
        # where eta <= 0 there is no density (K = -inf, a quadrature weight of 0): dK/dt 0
        K, d1, _ = self.kernel_derivatives(eta, y, m)
        return K, d1, np.where(np.isneginf(K), 0.0, -K)


class GammaConstants(RowConstants):
    """sum_i f_i [nu_i log(nu_i y_i) - lgamma(nu_i) - log y_i], nu_i = v_i nu, nu = e^-t;
    without variance weights a function of nu and two sums computed once."""

    def __init__(self, y, freq, var):
        y = np.asarray(y, dtype=float)
        self.f = np.ones_like(y) if freq is None else np.asarray(freq, dtype=float)
        self.v = None if var is None or np.all(np.asarray(var) == 1.0) else \
            np.asarray(var, dtype=float)
        self.logy = np.log(y)
        self.sum_f = float(self.f.sum())
        self.sum_flogy = float(self.f @ self.logy)

    def _rows(self, t):
        nu = np.exp(-t) * self.v
        return self.f * (nu * (np.log(nu) + self.logy) - special.gammaln(nu) - self.logy), nu

    def value(self, t=None) -> float:
        if self.v is not None:
            return float(self._rows(t)[0].sum())
        nu = np.exp(-t)
        return (self.sum_f * (nu * np.log(nu) - special.gammaln(nu))
                + (nu - 1.0) * self.sum_flogy)

    def derivative(self, t=None) -> float:
        # d/dt with d nu_i / dt = -nu_i: -f nu_i [log(nu_i y) + 1 - psi(nu_i)]
        if self.v is not None:
            nu = np.exp(-t) * self.v
            return float(-(self.f * nu) @ (np.log(nu) + self.logy + 1.0 - special.digamma(nu)))
        nu = np.exp(-t)
        return -nu * (self.sum_f * (np.log(nu) + 1.0 - special.digamma(nu)) + self.sum_flogy)

    def per_row(self, t=None) -> np.ndarray:
        if self.v is not None:
            return self._rows(t)[0]
        nu = np.exp(-t)
        return self.f * (nu * (np.log(nu) + self.logy) - special.gammaln(nu) - self.logy)
