r"""Zero-inflated and hurdle count kernels (Poisson and NB2, log link), as glmmTMB has them.

The interface (fields, signs, weights, the safe curvature) is that of
:mod:`mlglm.core.spec.families_auxiliary`. The parametrisation is glmmTMB's
(``glmmTMB.cpp``; checked through ``tests/zi_oracle.py``, which reproduces glmmTMB 1.1.5's
fits in ``tests/reference/zi_open.json``), so numbers port one to one:

* the zero part a = x_zi' gamma with pi = expit(a);
* zero inflation (``family=poisson()`` / ``nbinom2()`` with a ``ziformula``): with
  probability pi the response is a structural zero, otherwise it follows the count
  model f(y | mu, theta);
* hurdle (``truncated_poisson()`` / ``truncated_nbinom2()`` with a ``ziformula``):
  Pr(y = 0) = pi, and a positive y follows the zero-truncated count model
  f(y) / (1 - f(0));
* mu = exp(eta); NB2: Var y = mu + mu^2 / theta, t = log theta.

The count model. Write c(y) = log f(y | eta, t) minus its constants (-log y! for
both, and lgamma(y + theta) - lgamma(theta) for NB2, which does not depend on
eta and vanishes at y = 0; the distribution's row constants, as for the plain
kernels), and c0 = c(0) = log f(0) (no constant: exact), with the derivatives
in eta c', c'', c''' and in t c_t, c'_t, c''_t:

* Poisson: c = y eta - mu, c' = y - mu, c'' = c''' = -mu; c0 = -mu; no t.
  Fisher information in eta I_c = mu.
* NB2 (e = eta - t, p = expit(e) = mu / (mu + theta), M = y + theta,
  s = log(1 + e^e)): c = y e - M s, c' = y - M p, c'' = -M p (1 - p),
  c''' = c'' (1 - 2 p); c_t = -c' - theta s, c'_t = M p (1 - p) - theta p,
  c''_t = M p (1 - p) (1 - 2 p) - theta p (1 - p); at y = 0 (M = theta):
  c0 = -theta s = theta log(theta / (theta + mu)). I_c = theta p.

Zero inflation (softplus(a) = log(1 + e^a), so log pi = a - softplus(a) and
log(1 - pi) = -softplus(a)):

* y > 0:  l = -softplus(a) + c(y). The eta and t derivatives are the count
  model's; dl/da = -pi; the mixed derivatives in (eta, a) are 0.
* y = 0:  l = log(pi + (1 - pi) f0) = logaddexp(a, c0) - softplus(a). With
  r = expit(c0 - a) = (1 - pi) f0 / Pr(y = 0) (the probability that the zero
  came from the count model):

      l'   = r c0'
      l''  = r c0'' + r (1 - r) c0'^2
      l''' = r c0''' + 3 r (1 - r) c0' c0'' + r (1 - r)(1 - 2 r) c0'^3
      dl/da = (1 - r) - pi,    d l'/da = -r (1 - r) c0',
      d l''/da = -r (1 - r) [c0'' + (1 - 2 r) c0'^2]
      dl/dt = r c0_t,          d l'/dt = r (1 - r) c0_t c0' + r c0'_t,
      d l''/dt = r (1 - r) c0_t c0'' + r c0''_t + r (1 - r)(1 - 2 r) c0_t c0'^2
                 + 2 r (1 - r) c0' c0'_t.

  l'' can be positive (r (1 - r) c0'^2 > -r c0''), which is why the
  conditional log-likelihood is not concave in eta.
* Fisher information in eta: I = (1 - pi) [I_c - (1 - r) f0 c0'^2] (Lambert 1992
  for the Poisson: (1 - pi) mu [1 - pi mu e^-mu / Pr(y = 0)]).

Hurdle:

* y = 0:  l = log pi = a - softplus(a); dl/da = 1 - pi; nothing depends on eta or t.
* y > 0:  l = -softplus(a) + c(y) + g, g = -log(1 - f0) = -log(-expm1(c0)), and
  dl/da = -pi. With q = f0 / (1 - f0) = e^c0 / (-expm1(c0)) (dq/dc0 = q (1 + q)) and
  u = q c0' the derivatives of g are written so that q (large when mu is small)
  only ever multiplies a small factor:

      g'   = u
      g''  = q c0'' + u (c0' + u)
      g''' = q c0''' + 3 (q c0'')(c0' + u) + u (c0' + u)(c0' + 2 u)
      g_t  = w,  w = q c0_t
      g'_t = w (c0' + u) + q c0'_t
      g''_t = w (1 + q) c0'' + q c0''_t + w (c0' + u)(c0' + 2 u) + 2 (q c0'_t)(c0' + u)

  (from q (1 + q) c0'^2 = u (c0' + u) and q (1 + q)(1 + 2 q) c0'^3 = u (c0' + u)(c0' + 2 u)).
* Fisher information in eta: (1 - pi) Var_trunc(dc/deta) = (1 - pi) [I_c (1 + q)
  - u (c0' + u)] (truncated Poisson: (1 - pi) times the truncated variance of y).

Numerics: every log of a sum is a logaddexp or a softplus; log(1 - f0) is
log(-expm1(c0)); mu = exp(eta) is evaluated with eta within +-ETA_MAX (as the
Poisson kernel), and for NB2 e = eta - t within +-ETA_MAX, so c0 < 0 and q stays
finite (c0 is also kept at or below -1e-300 before log(-expm1(c0)) and q). Where mu is
tiny (below about 1e-8) the hurdle's g'' and g''' cancel to an absolute accuracy
of about 1e-16 (their exact values are of order mu).

Prediction scale (glmmTMB's ``predict(type = "response")`` and ``"zprob"``):
:meth:`ZeroCountKernel.mean` is E y = (1 - pi) mu (zero inflation) or
(1 - pi) mu / (1 - f0) (hurdle); :meth:`ZeroCountKernel.zero_prob` is
Pr(y = 0) = pi + (1 - pi) f0 (zero inflation) or pi (hurdle);
:meth:`ZeroCountKernel.variance` is Var y (Pearson residuals).
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .families import ETA_MAX, RowConstants
from .families_auxiliary import AuxDerivatives, AuxiliaryKernel, softplus
from .families_dispersion import NBConstants

__all__ = ["ZeroCountKernel", "ZeroInflatedPoisson", "ZeroInflatedNB2", "HurdlePoisson",
           "HurdleNB2", "CountPieces", "poisson_pieces", "nb2_pieces", "ZERO_KERNELS"]

_C0_MAX = -1e-300   # log f(0) is kept below this before log(-expm1(c0)) and q


class CountPieces:
    """The count model's kernel c(y) and its derivatives at one (eta, t) per row
    (module docstring): ``c, c1, c2, c3`` in eta (true signs, not the engines' weights),
    ``c_t, c1_t, c2_t`` in t (None for the Poisson), ``info`` the Fisher information
    I_c in eta and ``mu`` the mean."""

    __slots__ = ("c", "c1", "c2", "c3", "c_t", "c1_t", "c2_t", "info", "mu")

    def __init__(self, c, c1, c2, c3, c_t, c1_t, c2_t, info, mu):
        self.c, self.c1, self.c2, self.c3 = c, c1, c2, c3
        self.c_t, self.c1_t, self.c2_t = c_t, c1_t, c2_t
        self.info, self.mu = info, mu


def poisson_pieces(eta, y, t=None, with_zero=False):
    """:class:`CountPieces` of the Poisson, log link: c = y eta - mu, mu = e^eta; with
    ``with_zero`` the pair (pieces at y, pieces at y = 0), sharing the exponential."""
    mu = np.exp(np.clip(eta, -ETA_MAX, ETA_MAX))
    at_y = CountPieces(y * eta - mu, y - mu, -mu, -mu, None, None, None, mu, mu)
    if not with_zero:
        return at_y
    return at_y, CountPieces(-mu, -mu, -mu, -mu, None, None, None, mu, mu)


def nb2_pieces(eta, y, t, with_zero=False):
    """:class:`CountPieces` of NB2, log link, t = log theta (module docstring); with
    ``with_zero`` the pair (pieces at y, pieces at y = 0), sharing expit and softplus."""
    theta = np.exp(t)
    e = np.clip(eta - t, -ETA_MAX, ETA_MAX)
    p = special.expit(e)
    s = softplus(e)
    w = p * (1.0 - p)
    one_2p = 1.0 - 2.0 * p
    tw, tp, ts = theta * w, theta * p, theta * s
    mu = theta * np.exp(e)

    def at(y):
        M = y + theta
        c1 = y - M * p
        c2 = -M * w
        c3 = c2 * one_2p
        return CountPieces(y * e - M * s, c1, c2, c3, -c1 - ts, M * w - tp, -c3 - tw, tp, mu)

    return (at(y), at(0.0)) if with_zero else at(y)


class ZeroCountKernel(AuxiliaryKernel):
    """A zero-inflated or hurdle count kernel (module docstring).

    Subclasses set ``pieces`` (:func:`poisson_pieces` or :func:`nb2_pieces`),
    ``hurdle`` and ``has_dispersion``.
    """

    link_name = "log"
    has_zero_part = True
    counts = True
    hurdle = False
    pieces = staticmethod(poisson_pieces)

    # ------------------------------------------------------------ constants
    def log_const(self, y, t=None):
        """-log y! (Poisson); NB2 adds lgamma(y + theta) - lgamma(theta) (0 at y = 0)."""
        y = np.asarray(y, dtype=float)
        out = -special.gammaln(y + 1.0)
        if self.has_dispersion:
            theta = np.exp(t)
            out = out + special.gammaln(y + theta) - special.gammaln(theta)
        return out

    def row_constants(self, y, w=None) -> RowConstants:
        """sum_i w_i log_const(y_i) as the engines take it (a function of t for NB2)."""
        if self.has_dispersion:
            return NBConstants(y, w)
        rows = -special.gammaln(np.asarray(y, dtype=float) + 1.0)
        return RowConstants(rows if w is None else w * rows)

    # ------------------------------------------------------------ derivatives
    def derivatives(self, eta, y, a=None, t=None, third=True, auxiliary=True) -> AuxDerivatives:
        self._check(a, t)
        eta = np.asarray(eta, dtype=float)
        y = np.asarray(y, dtype=float)
        a = np.asarray(a, dtype=float)
        zero = y == 0
        py, p0 = self.pieces(eta, y, t, with_zero=True)
        if self.hurdle:
            return self._hurdle(eta, y, a, t, zero, py, p0, third, auxiliary)
        return self._inflated(eta, y, a, t, zero, py, p0, third, auxiliary)

    def _inflated(self, eta, y, a, t, zero, py, p0, third, auxiliary):
        sa = softplus(a)
        c0, c01 = p0.c, p0.c1
        r = special.expit(c0 - a)
        rr = r * (1.0 - r)
        # products are formed left to right from r (1 - r) c0', which is small wherever
        # c0' is huge (r ~ e^{-mu}), so nothing overflows for eta up to ETA_MAX
        R1 = rr * c01
        one_2r = 1.0 - 2.0 * r
        K = np.where(zero, np.logaddexp(a, c0) - sa, py.c - sa)
        d1 = np.where(zero, r * c01, py.c1)
        d2 = -np.where(zero, r * p0.c2 + R1 * c01, py.c2)
        out = dict(K=K, d1=d1, d2=d2)
        if third:
            l3 = r * p0.c3 + 3.0 * R1 * p0.c2 + R1 * c01 * c01 * one_2r
            out["d3"] = -np.where(zero, l3, py.c3)
        if auxiliary:
            pi = special.expit(a)
            out["K_a"] = np.where(zero, (1.0 - r) - pi, -pi)
            out["d1_a"] = np.where(zero, -R1, 0.0)
            out["d2_a"] = np.where(zero, rr * p0.c2 + R1 * c01 * one_2r, 0.0)
            if self.has_dispersion:
                Rt = rr * p0.c_t
                out["K_t"] = np.where(zero, r * p0.c_t, py.c_t)
                out["d1_t"] = np.where(zero, Rt * c01 + r * p0.c1_t, py.c1_t)
                l2t = (Rt * p0.c2 + Rt * c01 * c01 * one_2r + r * p0.c2_t
                       + 2.0 * R1 * p0.c1_t)
                out["d2_t"] = -np.where(zero, l2t, py.c2_t)
        return AuxDerivatives(**{k: np.broadcast_to(v, K.shape) if v is not None else v
                                 for k, v in out.items()})

    def _hurdle(self, eta, y, a, t, zero, py, p0, third, auxiliary):
        sa = softplus(a)
        c0 = np.minimum(p0.c, _C0_MAX)
        c01, c02 = p0.c1, p0.c2
        q = np.exp(c0) / -np.expm1(c0)
        u = q * c01
        cu = c01 + u
        qc2 = q * c02
        g = -np.log(-np.expm1(c0))
        K = np.where(zero, a - sa, py.c - sa + g)
        d1 = np.where(zero, 0.0, py.c1 + u)
        d2 = np.where(zero, 0.0, -(py.c2 + qc2 + u * cu))
        out = dict(K=K, d1=d1, d2=d2)
        if third:
            g3 = q * p0.c3 + 3.0 * qc2 * cu + u * cu * (c01 + 2.0 * u)
            out["d3"] = np.where(zero, 0.0, -(py.c3 + g3))
        if auxiliary:
            pi = special.expit(a)
            out["K_a"] = np.where(zero, 1.0 - pi, -pi)
            out["d1_a"] = np.zeros_like(K)
            out["d2_a"] = np.zeros_like(K)
            if self.has_dispersion:
                w = q * p0.c_t
                qc1t = q * p0.c1_t
                g1t = w * cu + qc1t
                g2t = (w * (c02 + qc2) + q * p0.c2_t + w * cu * (c01 + 2.0 * u)
                       + 2.0 * qc1t * cu)
                out["K_t"] = np.where(zero, 0.0, py.c_t + w)
                out["d1_t"] = np.where(zero, 0.0, py.c1_t + g1t)
                out["d2_t"] = np.where(zero, 0.0, -(py.c2_t + g2t))
        return AuxDerivatives(**{k: np.broadcast_to(v, K.shape) if v is not None else v
                                 for k, v in out.items()})

    # ------------------------------------------------------------ safe curvature
    def fisher(self, eta, a=None, t=None):
        """E[(dl/deta)^2] under the model at (eta, a, t), per row (module docstring)."""
        self._check(a, t)
        eta = np.asarray(eta, dtype=float)
        a = np.asarray(a, dtype=float)
        p0 = self.pieces(eta, 0.0, t)
        one_minus_pi = special.expit(-a)
        c01 = p0.c1
        if self.hurdle:
            c0 = np.minimum(p0.c, _C0_MAX)
            q = np.exp(c0) / -np.expm1(c0)
            u = q * c01
            info = p0.info * (1.0 + q) - u * (c01 + u)
        else:
            r = special.expit(p0.c - a)
            info = p0.info - (1.0 - r) * np.exp(p0.c) * c01 * c01
        return np.maximum(one_minus_pi * info, 0.0)

    # ------------------------------------------------------------ prediction scale
    def count_mean(self, eta, t=None):
        """mu = e^eta, the mean of the (untruncated) count model."""
        return np.exp(np.minimum(np.asarray(eta, dtype=float), ETA_MAX))

    def zero_prob(self, eta, a, t=None):
        """Pr(y = 0): pi + (1 - pi) f0 (zero inflation) or pi (hurdle)."""
        self._check(a, t)
        a = np.asarray(a, dtype=float)
        if self.hurdle:
            return special.expit(a) + 0.0 * np.asarray(eta, dtype=float)
        c0 = self.pieces(np.asarray(eta, dtype=float), 0.0, t).c
        return np.exp(np.logaddexp(a, c0) - softplus(a))

    def mean(self, eta, a, t=None):
        """E y: (1 - pi) mu (zero inflation) or (1 - pi) mu / (1 - f0) (hurdle)."""
        self._check(a, t)
        a = np.asarray(a, dtype=float)
        eta = np.asarray(eta, dtype=float)
        mu = self.count_mean(eta, t)
        if not self.hurdle:
            return special.expit(-a) * mu
        c0 = np.minimum(self.pieces(eta, 0.0, t).c, _C0_MAX)
        return special.expit(-a) * mu / -np.expm1(c0)

    def variance(self, eta, a, t=None):
        """Var y: with V_c = mu (+ mu^2 / theta) the count model's variance and pi =
        expit(a), (1 - pi)(V_c + pi mu^2) (zero inflation) or (1 - pi)(V_c + mu^2) /
        (1 - f0) - (E y)^2 (hurdle: the zero-truncated moments)."""
        self._check(a, t)
        a = np.asarray(a, dtype=float)
        eta = np.asarray(eta, dtype=float)
        mu = self.count_mean(eta, t)
        vc = mu + mu * mu / np.exp(t) if self.has_dispersion else mu
        keep = special.expit(-a)
        if not self.hurdle:
            return keep * (vc + special.expit(a) * mu * mu)
        tail = -np.expm1(np.minimum(self.pieces(eta, 0.0, t).c, _C0_MAX))
        mean = keep * mu / tail
        return keep * (vc + mu * mu) / tail - mean * mean


class ZeroInflatedPoisson(ZeroCountKernel):
    """Zero-inflated Poisson, log link (glmmTMB ``poisson()`` with ``ziformula``)."""

    name = "zipoisson"


class ZeroInflatedNB2(ZeroCountKernel):
    """Zero-inflated NB2, log link, t = log theta (glmmTMB ``nbinom2()`` with ``ziformula``)."""

    name = "zinbinom2"
    has_dispersion = True
    pieces = staticmethod(nb2_pieces)


class HurdlePoisson(ZeroCountKernel):
    """Poisson hurdle, log link (glmmTMB ``truncated_poisson()`` with ``ziformula``)."""

    name = "truncated_poisson"
    hurdle = True


class HurdleNB2(ZeroCountKernel):
    """NB2 hurdle, log link, t = log theta (glmmTMB ``truncated_nbinom2()`` with ``ziformula``)."""

    name = "truncated_nbinom2"
    hurdle = True
    has_dispersion = True
    pieces = staticmethod(nb2_pieces)


#: the kernels by glmmTMB family name
ZERO_KERNELS = {k.name: k for k in (ZeroInflatedPoisson, ZeroInflatedNB2, HurdlePoisson,
                                    HurdleNB2)}
