r"""The beta kernel, logit link, as glmmTMB's ``beta_family()`` has it.

Interface: :mod:`mlglm.core.spec.families_auxiliary` (no zero part; the log
precision t = log phi is the auxiliary coordinate). Parametrisation of Ferrari
and Cribari-Neto (2004, J. Appl. Stat. 31:799-815), as glmmTMB and betareg use
it: y in (0, 1), mean mu = expit(eta), precision phi = e^t, shapes A = mu phi and
B = (1 - mu) phi, Var y = mu (1 - mu) / (1 + phi); glmmTMB's ``sigma()`` of a beta
fit is phi.

    log p(y) = lgamma(phi) - lgamma(A) - lgamma(B) + (A - 1) log y + (B - 1) log(1 - y)
             = K + C,
    K = A y* - lgamma(A) - lgamma(B),            y* = log(y / (1 - y)),
    C = lgamma(phi) + phi log(1 - y) - log y - log(1 - y)   (no eta: the row constants).

With v = mu (1 - mu) = d mu / d eta, v' = v (1 - 2 mu), v'' = v [(1 - 2 mu)^2 - 2 v],
D = y* - psi(A) + psi(B) (E D = 0), T1 = psi_1(A) + psi_1(B) and
T2 = psi_2(A) - psi_2(B) (psi_k the polygamma functions; dD/dmu = -phi T1,
dT1/dmu = phi T2):

    l'   = phi v D
    l''  = -phi^2 T1 v^2 + phi D v'
    l''' = -phi^3 T2 v^3 - 3 phi^2 T1 v v' + phi D v''

and in t (dA/dt = A, dB/dt = B):

    dK/dt = phi mu y* - A psi(A) - B psi(B),      D_t = -A psi_1(A) + B psi_1(B),
    T1_t = A psi_2(A) + B psi_2(B),
    d l'/dt = phi v (D + D_t),
    d l''/dt = -(2 T1 + T1_t) phi^2 v^2 + phi v' (D + D_t),
    dC/dt = phi [psi(phi) + log(1 - y)].

l'' > 0 happens (D v' can dominate), so the kernel is not concave in eta; its
Fisher information in eta, E(l')^2 = phi^2 T1 v^2 > 0, is the safe curvature.

eta is held within +-BETA_ETA_MAX = 30 (mu within about 1e-13 of 0 and 1):
beyond, psi_2 of the small shape overflows while v^3 underflows; a beta mean
that close to a bound is outside any sensible model, and the kernel is flat
there.
"""
from __future__ import annotations

import numpy as np
from scipy import special

from .families import RowConstants
from .families_auxiliary import AuxDerivatives, AuxiliaryKernel

__all__ = ["BetaLogit", "BetaConstants", "BETA_ETA_MAX", "beta_unit_deviance"]

BETA_ETA_MAX = 30.0


def _beta_row_loglik(y, mu, phi):
    """log p(y | mu, phi) per row (module docstring), every constant included."""
    a, b = mu * phi, (1.0 - mu) * phi
    return (special.gammaln(phi) - special.gammaln(a) - special.gammaln(b)
            + (a - 1.0) * np.log(y) + (b - 1.0) * np.log1p(-y))


def beta_unit_deviance(y, mu, phi, iterations: int = 200) -> np.ndarray:
    """d_i = 2 [max_m log p(y_i | m, phi) - log p(y_i | mu_i, phi)] >= 0 per row: the
    unit deviance against the saturated model (a mean per row) at the fitted precision.

    At fixed phi, l(m) = log p(y | m, phi) is strictly concave in m
    (l'' = -phi^2 [psi_1(m phi) + psi_1((1 - m) phi)] < 0) and l'(m) = phi [y* -
    psi(m phi) + psi((1 - m) phi)] (y* = logit y) decreases from +inf to -inf on (0, 1),
    so the saturated mean m~ (l'(m~) = 0, i.e. psi(m~ phi) - psi((1 - m~) phi) = y*) is
    unique; it is found by bisection in logit m, vectorised over rows, to the float
    resolution. (m~ is close to y but not equal to it, the more so the smaller phi;
    betareg's ``residuals(type = "deviance")`` puts m = y and takes the absolute value of a
    difference that can then be negative.)
    """
    y = np.asarray(y, dtype=float)
    mu = np.asarray(mu, dtype=float)
    ystar = special.logit(y)
    lo = np.full(y.shape, -BETA_ETA_MAX - 10.0)
    hi = np.full(y.shape, BETA_ETA_MAX + 10.0)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        m = special.expit(mid)
        up = special.digamma(m * phi) - special.digamma((1.0 - m) * phi) < ystar
        lo = np.where(up, mid, lo)
        hi = np.where(up, hi, mid)
        if np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(mid))):
            break
    m_sat = special.expit(0.5 * (lo + hi))
    d = 2.0 * (_beta_row_loglik(y, m_sat, phi) - _beta_row_loglik(y, mu, phi))
    return np.maximum(d, 0.0)


class BetaConstants(RowConstants):
    """sum_i w_i [lgamma(phi) + phi log(1 - y_i) - log y_i - log(1 - y_i)] as a function of
    t = log phi, with its derivative (module docstring); two sums computed once."""

    def __init__(self, y, w=None):
        y = np.asarray(y, dtype=float)
        self.w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
        self.log1my = np.log1p(-y)
        self.logy = np.log(y)
        self.sum_w = float(self.w.sum())
        self.sum_wlog1my = float(self.w @ self.log1my)
        self.fixed = float(-(self.w @ (self.logy + self.log1my)))

    def value(self, t=None) -> float:
        phi = np.exp(t)
        return self.fixed + self.sum_w * float(special.gammaln(phi)) + phi * self.sum_wlog1my

    def derivative(self, t=None) -> float:
        phi = np.exp(t)
        return float(phi * (self.sum_w * special.digamma(phi) + self.sum_wlog1my))

    def per_row(self, t=None) -> np.ndarray:
        phi = np.exp(t)
        return self.w * (special.gammaln(phi) + phi * self.log1my - self.logy - self.log1my)


class BetaLogit(AuxiliaryKernel):
    """Beta, logit link, t = log phi (module docstring)."""

    name = "beta"
    link_name = "logit"
    has_dispersion = True

    def log_const(self, y, t=None):
        y = np.asarray(y, dtype=float)
        phi = np.exp(t)
        log1my = np.log1p(-y)
        return special.gammaln(phi) + phi * log1my - np.log(y) - log1my

    def row_constants(self, y, w=None) -> BetaConstants:
        return BetaConstants(y, w)

    @staticmethod
    def _shapes(eta, t):
        eta = np.clip(np.asarray(eta, dtype=float), -BETA_ETA_MAX, BETA_ETA_MAX)
        phi = np.exp(t)
        mu = special.expit(eta)
        one_mu = special.expit(-eta)
        return phi, mu, one_mu, mu * phi, one_mu * phi

    def derivatives(self, eta, y, a=None, t=None, third=True, auxiliary=True) -> AuxDerivatives:
        self._check(a, t)
        y = np.asarray(y, dtype=float)
        phi, mu, one_mu, A, B = self._shapes(eta, t)
        ystar = np.log(y) - np.log1p(-y)
        psiA, psiB = special.digamma(A), special.digamma(B)
        K = A * ystar - special.gammaln(A) - special.gammaln(B)
        v = mu * one_mu
        v1 = v * (one_mu - mu)
        D = ystar - psiA + psiB
        p1A, p1B = special.polygamma(1, A), special.polygamma(1, B)
        T1 = p1A + p1B
        d1 = phi * v * D
        d2 = phi * phi * T1 * v * v - phi * D * v1
        out = dict(K=K, d1=d1, d2=d2)
        if third or auxiliary:
            p2A, p2B = special.polygamma(2, A), special.polygamma(2, B)
        if third:
            v2 = v * ((one_mu - mu) ** 2 - 2.0 * v)
            T2 = p2A - p2B
            out["d3"] = phi * (phi * phi * T2 * v ** 3 + 3.0 * phi * T1 * v * v1 - D * v2)
        if auxiliary:
            Dt = D - A * p1A + B * p1B          # D + D_t
            T1t = A * p2A + B * p2B
            out["K_t"] = phi * mu * ystar - A * psiA - B * psiB
            out["d1_t"] = phi * v * Dt
            out["d2_t"] = (2.0 * T1 + T1t) * phi * phi * v * v - phi * v1 * Dt
        return AuxDerivatives(**out)

    def fisher(self, eta, a=None, t=None):
        """phi^2 [psi_1(A) + psi_1(B)] v^2 per row (module docstring)."""
        self._check(a, t)
        phi, mu, one_mu, A, B = self._shapes(eta, t)
        v = mu * one_mu
        return phi * phi * (special.polygamma(1, A) + special.polygamma(1, B)) * v * v

    def mean(self, eta, a=None, t=None):
        """E y = mu = expit(eta)."""
        return special.expit(np.asarray(eta, dtype=float))

    def variance(self, eta, a=None, t=None):
        """Var y = mu (1 - mu) / (1 + phi)."""
        mu = special.expit(np.asarray(eta, dtype=float))
        return mu * (1.0 - mu) / (1.0 + np.exp(t))
