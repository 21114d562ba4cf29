"""Row kernels: the conditional log-likelihood of one observation and its derivatives in eta.

A kernel is the specialisation of a :class:`~mlglm.core.spec.family.Family` (one
distribution with one link) that the engines evaluate at every row and every
quadrature node; the family chooses it (:attr:`Distribution.kernels
<mlglm.core.spec.family.Distribution>`), nothing else does. Per row i it gives

* ``kernel(eta, y, m)``: log p(y | eta) - log_const, where ``log_const(y, m)``
  is the normalising constant of p(y | eta) that does not depend on eta
  (log C(m, y) for the binomial, -log y! for the Poisson), which the
  distribution gives and the objective adds once, not at every evaluation;
* ``derivatives(eta, y, m)``: d1 = dl/deta, d2 = -d2l/deta2 (the Newton weight)
  and, on request, d3 = d(d2)/deta, which the exact gradient of the Laplace
  and AGHQ objectives needs (the mode's curvature moves with the parameters);
* fused forms (``kernel_derivatives``, ``kernel_d1``, ``third``) that share the
  transcendental work between them: the inner loop of every engine.

All pairs offered are log-concave in eta (d2 > 0), so the inner Newton problem
for the conditional modes has a unique maximum. The binomial response y is the
number of successes out of m trials (m = 1 for Bernoulli rows). Derivatives use
the observed (not expected) information, so the Laplace approximation is the
true second-order expansion for every link.

Prior weights. Every kernel is linear in (y, m) jointly: a row with prior
weight w enters as (w y, w m), which multiplies its kernel and every
derivative by w (binomial: y successes of m trials; the other families take
m = 1, or w). So callers pass the weighted (y, m) and nothing else changes;
the constants, which are not linear in y, are computed from the raw response
and the weights by the distribution (:meth:`Kernel.row_constants`).

Dispersion. The negative binomial and the Gamma kernels
(:mod:`mlglm.core.spec.families_dispersion`) depend on a dispersion parameter; a
kernel object is bound to one value of its logarithm (``at(log_dispersion)``)
and also gives the derivatives in it (``dispersion_derivatives``), which the
exact gradients need.
"""
from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["Kernel", "RowConstants", "weight_product", "ETA_MAX", "logit_kernel_derivatives",
           "BinomialLogit", "BinomialProbit", "BinomialCloglog", "PoissonLog"]

ETA_MAX = 700.0  # exp(709) overflows; beyond this a Poisson mean is meaningless


class RowConstants:
    """The part of sum_i w_i log p(y_i | eta_i) that does not depend on eta.

    For families without a dispersion parameter it is one number, computed once;
    families with one override :meth:`value`, :meth:`derivative` and
    :meth:`per_row` (functions of the log dispersion t).
    """

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=float)
        self.total = float(np.sum(self.rows))

    def value(self, t=None) -> float:
        return self.total

    def derivative(self, t=None) -> float:
        return 0.0

    def per_row(self, t=None) -> np.ndarray:
        return self.rows


class Kernel:
    """Base class: the row kernel of one distribution with one link.

    The kernel is made by its family (:meth:`mlglm.core.spec.family.Family.kernel`) and
    knows it: what does not depend on eta (the constants, the start, the dispersion's
    moments) the distribution answers, the mean function the link; subclasses give
    the log-likelihood in eta and its derivatives, fused for speed.
    """

    #: the kernel depends on a dispersion parameter (bound by :meth:`at`)
    has_dispersion = False
    log_dispersion = None

    def __init__(self, distribution, link):
        self.distribution, self.link = distribution, link

    def at(self, log_dispersion) -> "Kernel":
        """The kernel at a dispersion (families without one: itself)."""
        return self

    def rows(self, sl) -> "Kernel":
        """The kernel for the rows ``sl`` of the data (a chunk of groups): itself; a
        kernel bound to per-row predictors slices them."""
        return self

    # ---------------------------------- what the distribution and the link answer
    def inverse_link(self, eta):
        """mu = g^{-1}(eta) (:class:`~mlglm.core.spec.family.Link`)."""
        return self.link.inverse(eta)

    def log_const(self, y, m):
        """The part of log p(y | eta) without eta, per row."""
        return self.distribution.log_const(y, m)

    def row_constants(self, y, m, freq=None, var=None) -> "RowConstants":
        """sum_i w_i log_const(y_i, m_i), w = freq x var (the raw y and m)."""
        return self.distribution.row_constants(y, m, freq, var)

    def start_response(self, y, m):
        """A transform of the raw response on the linear-predictor scale, for the
        least-squares start of the GLM fit (:func:`mlglm.core.fit.glm_fit.glm_start`)."""
        return self.distribution.start_response(y, m, self.link)

    def dispersion_moments(self, y, mu, w) -> np.ndarray:
        """The row sums behind the dispersion's start (distributions with one)."""
        return self.distribution.dispersion_moments(y, mu, w)

    def dispersion_from_moments(self, moments, p) -> float:
        """The log dispersion from :meth:`dispersion_moments` (p fixed effects)."""
        return self.distribution.dispersion_from_moments(moments, p)

    # ------------------------------------------------------------ in eta
    def kernel(self, eta, y, m):  # pragma: no cover - abstract
        raise NotImplementedError

    def derivatives(self, eta, y, m, third=False):  # pragma: no cover - abstract
        raise NotImplementedError

    def kernel_d1(self, eta, y, m):
        """(kernel, d1) together; subclasses fuse them to share transcendental work
        (the AGHQ node evaluations spend most of their time here)."""
        return self.kernel(eta, y, m), self.derivatives(eta, y, m)[0]

    def kernel_derivatives(self, eta, y, m):
        """(kernel, d1, d2) together, for the Newton iteration of the modes;
        subclasses share the transcendental work between them."""
        return (self.kernel(eta, y, m),) + tuple(self.derivatives(eta, y, m))

    def third(self, eta, y, m, d1, d2):
        """d3 at eta given d1 and d2 there (subclasses reuse them)."""
        return self.derivatives(eta, y, m, third=True)[2]

    def loglik(self, eta, y, m):
        """Full per-row log-likelihood, constants included."""
        return self.kernel(eta, y, m) + self.log_const(y, m)

    def __repr__(self):
        return f"Kernel({self.distribution.name}, {self.link.name})"


def logit_kernel_derivatives(eta, y, m):
    """(kernel, d1, d2) of the binomial logit kernel (:class:`BinomialLogit`): y successes
    of m trials at log-odds eta. The negative binomial kernel is this one at shifted
    arguments (:mod:`mlglm.core.spec.families_dispersion`)."""
    # e = exp(-|eta|) gives log(1 + e^eta) = max(eta, 0) + log1p(e),
    # mu = 1/(1+e) (eta >= 0) or e/(1+e) (eta < 0), and mu(1-mu) = e/(1+e)^2,
    # all without overflow and with one exp and one log1p per row. Written
    # in place: on long vectors fresh temporaries (page faults) cost as much
    # as the arithmetic.
    # A scalar m == 1 (Bernoulli rows, see GroupedData.m_rows) skips the three
    # multiplications by m.
    unit = np.ndim(m) == 0 and m == 1.0
    e = np.abs(eta)
    np.negative(e, out=e)
    np.exp(e, out=e)
    kernel = np.log1p(e)
    kernel += np.maximum(eta, 0.0)
    if not unit:
        kernel *= m
    np.subtract(y * eta, kernel, out=kernel)
    r = e + 1.0
    np.reciprocal(r, out=r)
    mu = r.copy()
    np.multiply(e, r, out=mu, where=eta < 0)
    d2 = e
    d2 *= r
    d2 *= r
    if not unit:
        d2 *= m
        mu *= m
    np.subtract(y, mu, out=mu)
    return kernel, mu, d2


class BinomialLogit(Kernel):
    """Binomial, logit link: l = y eta - m log(1 + e^eta) + log C(m, y).

    d1 = y - m mu, d2 = m mu (1 - mu), d3 = d2 (1 - 2 mu), mu = expit(eta).
    """

    kernel_derivatives = staticmethod(logit_kernel_derivatives)

    def kernel(self, eta, y, m):
        return y * eta - m * np.logaddexp(0.0, eta)

    def derivatives(self, eta, y, m, third=False):
        mu = special.expit(eta)
        d2 = m * mu * (1.0 - mu)
        d1 = y - m * mu
        if third:
            return d1, d2, d2 * (1.0 - 2.0 * mu)
        return d1, d2

    def kernel_d1(self, eta, y, m):
        return self.kernel_derivatives(eta, y, m)[:2]

    def third(self, eta, y, m, d1, d2):
        # d3 = d2 (1 - 2 mu) with m mu = y - d1; rows of zero weight (m = 0) have d2 = 0
        if np.ndim(m) == 0:
            return d2 * (1.0 - 2.0 * (y - d1) / m)
        mu = np.divide(y - d1, m, out=np.zeros_like(d2), where=m > 0)
        return d2 * (1.0 - 2.0 * mu)


class BinomialProbit(Kernel):
    """Binomial, probit link: l = y log Phi(eta) + (m - y) log Phi(-eta) + log C(m, y).

    With the inverse Mills ratio r(x) = phi(x)/Phi(x) and k(x) = r(x)(x + r(x))
    (so r' = -k): d1 = y r(eta) - (m-y) r(-eta), d2 = y k(eta) + (m-y) k(-eta),
    d3 = y k'(eta) - (m-y) k'(-eta) with k' = r (1 - k) - k (x + r).
    Mills ratios are formed as exp(log phi - log Phi) so the tails stay finite.
    """

    def kernel(self, eta, y, m):
        return y * special.log_ndtr(eta) + (m - y) * special.log_ndtr(-eta)

    @staticmethod
    def _mills(x):
        r = np.exp(-0.5 * x * x - 0.5 * np.log(2 * np.pi) - special.log_ndtr(x))
        k = r * (x + r)
        return r, k

    def derivatives(self, eta, y, m, third=False):
        rp, kp = self._mills(eta)
        rn, kn = self._mills(-eta)
        d1 = y * rp - (m - y) * rn
        d2 = y * kp + (m - y) * kn
        if third:
            kp1 = rp * (1.0 - kp) - kp * (eta + rp)
            kn1 = rn * (1.0 - kn) - kn * (-eta + rn)
            return d1, d2, y * kp1 - (m - y) * kn1
        return d1, d2


class BinomialCloglog(Kernel):
    """Binomial, complementary log-log link: mu = 1 - exp(-e^eta).

    l = y log(1 - e^{-s}) - (m - y) s + log C(m, y), s = e^eta. With
    r(s) = s / (e^s - 1) (= s e^{-s}/(1 - e^{-s})): d1 = y r - (m - y) s,
    d2 = -y dr + (m - y) s and d3 = -y ddr + (m - y) s, where dr = dr/deta =
    r (1 - s) - r^2 and ddr = dr (1 - s) - r s - 2 r dr: written in r and s
    only, so nothing overflows for large s.
    """

    def kernel(self, eta, y, m):
        s = np.exp(np.minimum(eta, ETA_MAX))
        # log mu = log(1 - e^{-s}); for s -> 0 it is log s - s/2 = eta - s/2, which
        # stays finite where s underflows (eta < -745) and log(-expm1(-s)) would be -inf
        with np.errstate(divide="ignore"):
            log_mu = np.where(eta < -30.0, eta - s / 2, np.log(-np.expm1(-s)))
        return y * log_mu - (m - y) * s

    def derivatives(self, eta, y, m, third=False):
        s = np.exp(np.minimum(eta, ETA_MAX))
        # r = s/(e^s - 1) = s e^{-s} / (1 - e^{-s}); for tiny s use the series 1 - s/2.
        e = -np.expm1(-s)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(s > 1e-8, s * np.exp(-s) / np.where(e > 0, e, 1.0), 1.0 - s / 2)
        # d r / d eta = s dr/ds = r (1 - s) - r^2  (since dr/ds = r/s - r - r^2/s)
        dr = r * (1.0 - s) - r * r
        d1 = y * r - (m - y) * s
        d2 = -y * dr + (m - y) * s
        if third:
            # d/deta of dr: d(r(1-s) - r^2) = dr (1 - s) - r s - 2 r dr
            ddr = dr * (1.0 - s) - r * s - 2.0 * r * dr
            return d1, d2, -y * ddr + (m - y) * s
        return d1, d2


class PoissonLog(Kernel):
    """Poisson, log link: l = y eta - m e^eta - log y!; d1 = y - m mu, d2 = d3 = m mu.

    ``m`` is the prior weight (1 for unweighted rows, then passed as the scalar 1.0
    and skipped; exposure enters through the offset).
    """

    @staticmethod
    def _mean(eta, m):
        mu = np.exp(np.minimum(eta, ETA_MAX))
        return mu if np.ndim(m) == 0 and m == 1.0 else m * mu

    def kernel(self, eta, y, m):
        return y * eta - self._mean(eta, m)

    def derivatives(self, eta, y, m, third=False):
        mu = self._mean(eta, m)
        if third:
            return y - mu, mu, mu
        return y - mu, mu

    def kernel_d1(self, eta, y, m):
        mu = self._mean(eta, m)
        return y * eta - mu, y - mu

    def kernel_derivatives(self, eta, y, m):
        mu = self._mean(eta, m)
        return y * eta - mu, y - mu, mu

    def third(self, eta, y, m, d1, d2):
        return d2


def weight_product(freq, var):
    """freq x var, either of which may be None (None when both are)."""
    if freq is None:
        return None if var is None else np.asarray(var, dtype=float)
    return np.asarray(freq, dtype=float) if var is None else np.asarray(freq) * np.asarray(var)
