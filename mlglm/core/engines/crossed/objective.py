"""Laplace approximation for a GLMM with several grouping factors, and its exact gradient.

With u stacking the terms (u_k, J_k x q_k, spherical: u ~ N(0, I)),
eta = o + X beta + sum_k Z_k Lambda_k u_k and
h(u) = sum_i l(y_i | eta_i) - |u|^2/2, the Laplace approximation is

    log L = h(u_hat) - (1/2) log|H|,    H = Lambda'Z'WZ Lambda + I,  W = diag(d2),

at the joint mode u_hat (the factors are coupled, so there is no per-group
split as with one factor). The mode is found by Newton's method (penalised
IRLS, lme4's PIRLS with beta fixed): g = Lambda'Z'd1 - u, step H^{-1} g with
H factorised blockwise (:mod:`mlglm.core.engines.crossed.blocked`: the largest factor block
diagonal, the rest dense), halving the whole step until h does not decrease,
warm-started from the previous evaluation and converged to max|step| < 1e-10.

Exact gradient (the formulas of :mod:`mlglm.core.engines.blockdiag.laplace` with the per-group
inverse P_j replaced by Sigma = H^{-1}): with a_i = Lambda'z_i (one block per
term), leverage s_i = a_i' Sigma a_i, c_i = d3_i s_i, v = Sigma Lambda'Z'c,

    d/dbeta       = X' [d1 - (c - d2 (a'v)) / 2]
    d/dLambda_k   = sum_l [ (Z'd1)_l u_l' - [M Lambda Sigma]_ll
                    - ((Z'c)_l u_l' + (Z'd1)_l v_l' - (M Lambda v)_l u_l') / 2 ]  (levels l of k)

with M = Z'WZ. s_i needs Sigma only on the blocks where rows have non-zeros --
the pattern of Z'Z -- which the blocked factor's selected inverse gives; every
other term is a pass over the rows or one solve. The log dispersion t of a
negative binomial or Gamma family, which enters only the kernel, has the
one-factor formula of :mod:`mlglm.core.engines.blockdiag.laplace` with these s_i and a_i'v:
d/dt = sum_i [dK_i/dt - (s_i d d2_i/dt + (a_i'v) d d1_i/dt) / 2] (plus the
derivative of the eta-free constants).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .blocked import BlockedFactor
from .crossprod import CrossPlan, diag_blocks_M_Lambda_Sigma, level_sums
from ...spec.families import Kernel
from ...spec.errors import ModeFailure
from ...fit.objective import Objective
from ...spec.terms import ReTerms

__all__ = ["MultiModes", "multi_modes", "MultiLaplace"]


@dataclass(frozen=True, eq=False)
class MultiModes:
    """State at the joint conditional mode.

    u : per-term (J_k, q_k) modes.   eta, d1, d2 : (n,) at the mode.
    cross : Cross (Z'WZ) at the mode.   factor : BlockedFactor of H there.
    h : sum of the kernels minus |u|^2 / 2.   iterations : Newton steps.
    """

    u: tuple
    eta: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    kernel_sum: float
    h: float
    cross: object
    factor: BlockedFactor
    iterations: int


def _to_blocked(plan, u):
    st = plan.st
    u1 = u[st.first]
    uD = np.concatenate([u[k].reshape(-1) for k in st.dense]) if st.dense else np.zeros(0)
    return u1, uD


def _from_blocked(plan, u1, uD):
    st = plan.st
    out = [None] * len(plan.terms)
    out[st.first] = u1
    for k, off in zip(st.dense, st.offsets):
        t = plan.terms[k]
        out[k] = uD[off:off + t.size].reshape(t.n_levels, t.q)
    return tuple(out)


def _to_blocked_multi(plan, per_term, k):
    """Blocked (x1 (J1, q1, k), xD (N_D, k)) from per-term (J_k, q_k, k) arrays."""
    st = plan.st
    x1 = per_term[st.first]
    xD = np.concatenate([per_term[j].reshape(-1, k) for j in st.dense]) if st.dense else \
        np.zeros((0, k))
    return x1, xD


def _zsums(t, w):
    """Z_k'w per level, (J_k, q_k); a random intercept's by one bincount (no product
    with its column of ones)."""
    if t.intercept_only:
        return np.bincount(t.codes, weights=w, minlength=t.n_levels)[:, None]
    return level_sums(t.codes, t.n_levels, t.Z, w)


def _random_part(terms, Lams, u):
    """sum_k z_ik' Lambda_k u_k[level]: the random part of eta for every row."""
    out = None
    for t, L, uk in zip(terms, Lams, u):
        if t.q == 1:                                      # b_k = lambda u_k; z_i b_k[level]
            part = np.take(uk[:, 0] * L[0, 0], t.codes)
            if not t.intercept_only:
                part *= t.Z[:, 0]
        else:
            part = (t.Z * (uk @ L.T)[t.codes]).sum(axis=1)
        out = part if out is None else out + part
    return out


def _grad_u(terms, Lams, u, d1):
    """Lambda'Z'd1 - u, per term."""
    return tuple(_zsums(t, d1) @ L - uk
                 for t, L, uk in zip(terms, Lams, u))


def _mode_criterion(fl, terms, Lams, y, m, eta_fixed):
    """u -> (eta, d1, d2, sum_i l_i, h(u)) with h(u) = sum_i l_i(eta_i) - |u|^2 / 2, the
    penalised criterion the mode iterations maximise (the row kernel and its first two
    derivatives in eta in one fused call)."""
    def at(u):
        eta = eta_fixed + _random_part(terms, Lams, u)
        ker, d1, d2 = fl.kernel_derivatives(eta, y, m)
        ks = float(ker.sum())
        return eta, d1, d2, ks, ks - 0.5 * sum(float(np.sum(a * a)) for a in u)
    return at


def multi_modes(fl: Kernel, plan: CrossPlan, y, m, eta_fixed, Lams, u0=None,
                tol: float = 1e-10, maxiter: int = 60) -> MultiModes:
    """Maximise h(u) jointly over every term's random effects (module docstring)."""
    terms = plan.terms
    u = tuple(np.zeros((t.n_levels, t.q)) for t in terms) if u0 is None else \
        tuple(np.array(a, dtype=float) for a in u0)

    at = _mode_criterion(fl, terms, Lams, y, m, eta_fixed)
    eta, d1, d2, ks, h = at(u)
    step_size, full = np.inf, True
    for it in range(maxiter + 1):
        cx = plan.cross(d2)
        f = BlockedFactor(plan.st, *cx.scaled(Lams))
        if step_size < tol or (step_size < np.sqrt(tol) and full):
            return MultiModes(u, eta, d1, d2, ks, h, cx, f, it)
        grad = _grad_u(terms, Lams, u, d1)
        if it == 0 and np.sqrt(sum(float(np.sum(g * g)) for g in grad)) < tol:
            # a (predicted) start already at the mode: H >= I, so the Newton step
            # would be shorter than |g| < tol, the stopping rule's threshold
            return MultiModes(u, eta, d1, d2, ks, h, cx, f, it)
        g1, gD = _to_blocked(plan, grad)
        s1, sD = f.solve(g1, gD)
        step = _from_blocked(plan, s1, sD)
        t = 1.0
        for _ in range(40):
            u_try = tuple(a + t * s for a, s in zip(u, step))
            trial = at(u_try)
            if trial[4] >= h - 1e-12 * (1.0 + abs(h)):
                break
            t *= 0.5
        else:
            raise ModeFailure("the joint conditional modes did not improve along the Newton step")
        u = u_try
        eta, d1, d2, ks, h = trial
        step_size = t * max(float(np.max(np.abs(s))) if s.size else 0.0 for s in step)
        full = t == 1.0
    raise ModeFailure(f"the joint conditional modes did not converge in {maxiter} Newton steps")


class MultiLaplace(Objective):
    """The Laplace log-likelihood of x = (beta, theta) for several grouping factors.

    Parameters
    ----------
    fl : Kernel.   y, m, X, offset : response, trials, design, offset (rows
    in any order).   terms : ReTerms.   plan : optional CrossPlan.
    freq, var : prior weights (frequency, variance) or None.
    estimate_dispersion : for a kernel with a dispersion, whether x carries its
        log (the last slot) or the kernel's own value is held fixed.

    The optimiser's side of the seam (:class:`~mlglm.core.fit.objective.Objective`):
    ``value_and_gradient(x)``, ``p``, ``n_theta``, ``nagq``; ``u`` holds the modes
    of the last evaluation (the warm start of the next), ``state`` the
    :class:`MultiModes` there.
    """

    nagq = 1
    #: the joint conditional modes (a subclass for kernels that are not log-concave
    #: takes the safeguarded iteration)
    _find_modes = staticmethod(multi_modes)

    def __init__(self, fl: Kernel, y, m, X, offset, terms: ReTerms,
                 plan: CrossPlan | None = None, freq=None, var=None,
                 estimate_dispersion=True):
        self.fl = fl
        self.n_disp = int(bool(fl.has_dispersion and estimate_dispersion))
        self.y_obs = np.asarray(y, dtype=float)
        self.m_obs = np.asarray(m, dtype=float)
        self.freq = None if freq is None else np.asarray(freq, dtype=float)
        self.var = None if var is None else np.asarray(var, dtype=float)
        w = self.freq if self.var is None else (
            self.var if self.freq is None else self.freq * self.var)
        self.weights = w
        # the kernels' arguments: (w y, w m) (mlglm.core.spec.families)
        self.y = self.y_obs if w is None else w * self.y_obs
        m = self.m_obs if w is None else w * self.m_obs
        self.m_rows = 1.0 if bool(np.all(m == 1.0)) else m
        self.m = m
        self.X = np.asfortranarray(np.asarray(X, dtype=float))
        self.offset = np.asarray(offset, dtype=float)
        self.terms = terms
        self.plan = CrossPlan(terms) if plan is None else plan
        self.p = self.X.shape[1]
        self.n_theta = terms.n_theta
        self.constants = fl.row_constants(self.y_obs, self.m_obs, self.freq, self.var)
        self.log_const = self.constants.value(fl.log_dispersion)
        self.u = None
        self.state = None
        self._pred = None
        self.n_evals = 0

    def laplace(self) -> "MultiLaplace":
        return self

    def _constants(self, x) -> float:
        return self.constants.value(self.param_layout.log_dispersion(x)) if self.n_disp \
            else self.log_const

    def beta_information(self, x) -> np.ndarray:
        """X'WX - (Lambda'Z'WX)' H^{-1} (Lambda'Z'WX) at the modes at x."""
        st = self.modes(x)
        beta, theta = self.split(x)
        Lams = self.terms.Lambdas(theta)
        self._set_state(st, beta, Lams)
        XW = self.X * st.d2[:, None]
        info = self.X.T @ XW
        B = []
        for t, L in zip(self.terms, Lams):
            rows = (t.Z[:, :, None] * XW[:, None, :]).reshape(XW.shape[0], -1)
            ZWX = level_sums(t.codes, t.n_levels, rows).reshape(t.n_levels, t.q, self.p)
            B.append(np.einsum("ra,jrp->jap", L, ZWX))            # Lambda_k' Z_k'WX
        B1, BD = _to_blocked_multi(self.plan, B, self.p)
        F1, FD = st.factor.solve(B1, BD)
        info -= np.einsum("jap,jak->pk", B1, F1) + BD.T @ FD
        return info

    def theta_curvature(self, x0):
        """For scalar terms without a dispersion parameter: each term alone as a one-way
        model with the working weights W at the modes, -d^2 log L / d theta_k^2 ~
        2 sum_l w_l^2 / theta_k^2 with w_l = a_l theta_k^2 / (1 + a_l theta_k^2) and
        a_l = (Z_k'WZ_k)_ll (the Fisher information of a one-way model in theta_k,
        Gaussian with unit residual variance). VerbAgg: the same BFGS path without the
        preconditioner's two extra gradients. None otherwise."""
        if self.n_disp or any(t.q != 1 for t in self.terms) or self.state is None:
            return None
        st, plan = self.state, self.plan
        theta = self.split(x0)[1]
        a = [None] * len(self.terms)
        a[plan.st.first] = st.cross.A11[:, 0, 0]
        diag = np.diagonal(st.cross.ADD)
        for k, off in zip(plan.st.dense, plan.st.offsets):
            a[k] = diag[off:off + self.terms[k].n_levels]
        out = []
        for ak, th in zip(a, theta):
            t2 = th * th
            if not t2 > 0:
                return None
            w = ak * t2 / (1.0 + ak * t2)
            out.append(max(2.0 * float(w @ w) / t2, 1e-8))
        return np.array(out)

    def random_effects(self):
        """(Lambdas, b, b_cov) per term at the last evaluation (Laplace covariances)."""
        st = self.state
        Lams = self._pred[2]
        S11, _, SDD = st.factor.selected_inverse()
        plan = self.plan
        Sig = [None] * len(self.terms)
        Sig[plan.st.first] = S11
        for k, off in zip(plan.st.dense, plan.st.offsets):
            t = self.terms[k]
            idx = off + np.arange(t.n_levels)[:, None] * t.q + np.arange(t.q)[None, :]
            Sig[k] = SDD[idx[:, :, None], idx[:, None, :]]
        b = tuple(uk @ L.T for uk, L in zip(st.u, Lams))
        b_cov = tuple(np.einsum("ra,jab,cb->jrc", L, S, L) for L, S in zip(Lams, Sig))
        return tuple(Lams), b, b_cov

    def modes(self, x, u0=None) -> MultiModes:
        beta, theta = self.split(x)
        Lams = self.terms.Lambdas(theta)
        return self._find_modes(self.kernel_at(x), self.plan, self.y, self.m_rows,
                                self.offset + self.X @ beta, Lams, self.u if u0 is None else u0)

    def __call__(self, x) -> float:
        """The Laplace log-likelihood at x, every constant included."""
        self.n_evals += 1
        st = self.modes(x)
        beta, theta = self.split(x)
        self._set_state(st, beta, self.terms.Lambdas(theta))
        return st.h - 0.5 * st.factor.logdet + self._constants(x)

    def value_and_gradient(self, x):
        """(log L, d log L / dx) with the exact gradient."""
        x = np.asarray(x, dtype=float)
        again = self._repeated(x)
        if again is not None:
            return again
        self.n_evals += 1
        beta, theta = self.split(x)
        Lams = self.terms.Lambdas(theta)
        fl = self.kernel_at(x)
        st = self._find_modes(fl, self.plan, self.y, self.m_rows,
                              self.offset + self.X @ beta, Lams, self._predicted_modes(beta, Lams))
        self._set_state(st, beta, Lams)
        value = st.h - 0.5 * st.factor.logdet + self._constants(x)
        grad = self._gradient(st, Lams, fl)
        if self.n_disp:
            grad[-1] += self.constants.derivative(self.param_layout.log_dispersion(x))
        self._remember(x, value, grad)
        return value, grad

    def _set_state(self, st: MultiModes, beta, Lams) -> None:
        """The modes and their evaluation at (beta, Lambdas): the warm start of the
        next evaluation and the base of :meth:`_predicted_modes`."""
        self.u, self.state = st.u, st
        self._pred = (st, beta, Lams)

    def anchor(self):
        return (self.u, self.state, self._pred)

    def restore(self, token) -> None:
        self.u, self.state, self._pred = token

    def _predicted_modes(self, beta, Lams):
        """Warm start for the modes at a new x: the last modes moved to first order.

        By the implicit function theorem at the last mode u (g(u) = Lambda'Z'd1 - u = 0),
        du = H^{-1} dg with dg_k = dLambda_k'(Z_k'd1) - Lambda_k'Z_k'W (X dbeta + Z dLambda u)
        (W = diag(d2), since d d1 / d eta = -d2): one pass over the rows and one solve
        with the factor already at hand, which usually saves a Newton step. Used only
        when the warm start is this object's own last mode (not one the driver reset,
        e.g. for finite differences, which restart from a fixed point).
        """
        pred = self._pred
        if pred is None or self.u is not pred[0].u:
            return self.u
        st, beta0, Lams0 = pred
        dLams = [L - L0 for L, L0 in zip(Lams, Lams0)]
        r = self.X @ (beta - beta0) + _random_part(self.terms, dLams, st.u)
        Wr = st.d2 * r
        dg = tuple(_zsums(t, st.d1) @ dL
                   - _zsums(t, Wr) @ L0
                   for t, dL, L0 in zip(self.terms, dLams, Lams0))
        du = _from_blocked(self.plan, *st.factor.solve(*_to_blocked(self.plan, dg)))
        return tuple(u + d for u, d in zip(st.u, du))

    # ------------------------------------------------------------ gradient
    def _gradient(self, st: MultiModes, Lams, fl):
        g_beta, g_theta, s, av, d3 = self._gradient_parts(st, Lams, fl)
        if not self.n_disp:
            return np.concatenate([g_beta] + g_theta)
        dK, dd1, dd2 = fl.dispersion_derivatives(st.eta, self.y, self.m_rows, st.d1, st.d2, d3)
        g_t = float(np.sum(dK) - 0.5 * (s @ dd2 + av @ dd1))
        return np.concatenate([g_beta] + g_theta + [[g_t]])

    def _gradient_parts(self, st: MultiModes, Lams, fl):
        """(g_beta, [g_theta per term], s, a'v, d3): the gradient in beta and theta and the
        per-row leverage s_i, a_i'v and d3_i, from which the gradient in a parameter that
        enters only the kernel (a log dispersion, a zero-part predictor) is one dot
        product over the rows (module docstring)."""
        terms, plan = self.terms, self.plan
        sel = st.factor.selected_inverse()
        s = self._leverage(Lams, sel)
        d3 = fl.third(st.eta, self.y, self.m_rows, st.d1, st.d2)
        c = d3 * s
        Zc = [_zsums(t, c) for t in terms]
        Zd1 = [_zsums(t, st.d1) for t in terms]
        r1, rD = _to_blocked(plan, tuple(z @ L for z, L in zip(Zc, Lams)))
        v1, vD = st.factor.solve(r1, rD)
        v = _from_blocked(plan, v1, vD)
        av = _random_part(terms, Lams, v)                  # a_i'v = z_i' Lambda v
        r = st.d1 - 0.5 * (c - st.d2 * av)
        g_beta = self.X.T @ r
        Lv = _to_blocked(plan, tuple(vk @ L.T for vk, L in zip(v, Lams)))
        w = _from_blocked(plan, *st.cross.matvec(*Lv))      # M Lambda v per term
        S = diag_blocks_M_Lambda_Sigma(st.cross, Lams, sel)
        g_theta = []
        for t, uk, vk, zc, zd, wk, Sk in zip(terms, st.u, v, Zc, Zd1, w, S):
            E = lambda a, b: np.einsum("jr,jc->rc", a, b)   # noqa: E731
            gL = E(zd, uk) - Sk - 0.5 * (E(zc, uk) + E(zd, vk) - E(wk, uk))
            g_theta.append(t.pattern.gradient(gL))
        return g_beta, g_theta, s, av, d3

    def _leverage(self, Lams, sel):
        """s_i = a_i' Sigma a_i from the selected inverse (module docstring)."""
        plan, terms = self.plan, self.terms
        st_ = plan.st
        S11, Y, SDD = sel
        first = st_.first
        t1, L1 = terms[first], Lams[first]
        A1 = t1.Z @ L1                                      # a_i1' = z_i1' Lambda_1
        Q = S11[t1.codes]
        s = np.einsum("nr,nrc,nc->n", A1, Q, A1) if t1.q > 1 else A1[:, 0] ** 2 * Q[:, 0, 0]
        if not st_.N_D:
            return s
        if t1.q == 1 and all(terms[k].q == 1 for k in st_.dense):
            return s + self._leverage_scalar(Lams, Y, SDD, A1[:, 0])
        Ab = {}
        for k, off in zip(st_.dense, st_.offsets):
            t = terms[k]
            Ad = t.Z @ Lams[k]
            idx = off + t.codes[:, None] * t.q + np.arange(t.q)[None, :]
            Ab[k] = (Ad, idx)
            blk = SDD[idx[:, :, None], idx[:, None, :]]
            s += np.einsum("nr,nrc,nc->n", Ad, blk, Ad)
        Yb = st_.gather_D1(Y)
        for cp, Yd in zip(st_.pairs, Yb):
            Ad, _ = Ab[cp.term]
            s += 2.0 * np.einsum("nr,nrc,nc->n", Ad, Yd[cp.row_pair], A1)
        dense = st_.dense
        for i, k in enumerate(dense):
            for k2 in dense[i + 1:]:
                Ad, ia = Ab[k]
                Ae, ib = Ab[k2]
                blk = SDD[ia[:, :, None], ib[:, None, :]]
                s += 2.0 * np.einsum("nr,nrc,nc->n", Ad, blk, Ae)
        return s

    def _leverage_scalar(self, Lams, Y, SDD, a1):
        """The dense terms' share of s_i when every term is scalar: a_ik = lambda_k z_ik,
        s_i += sum_k a_ik^2 Sigma_DD[c_ik, c_ik] + 2 a_ik a_i1 Sigma_D1[pair(i)]
        + 2 sum_{k<l} a_ik a_il Sigma_DD[c_ik, c_il] -- the general case's products
        on 1 x 1 blocks, written elementwise."""
        plan, terms = self.plan, self.terms
        st_ = plan.st
        s = 0.0
        Ab = {}
        for k, off in zip(st_.dense, st_.offsets):
            t = terms[k]
            lam = Lams[k][0, 0]
            a = lam if t.intercept_only else t.Z[:, 0] * lam     # a scalar broadcasts
            c = off + t.codes
            Ab[k] = (a, c)
            s = s + a * a * SDD[c, c]
        Yb = st_.gather_D1(Y)
        for cp, Yd in zip(st_.pairs, Yb):
            a, _ = Ab[cp.term]
            s = s + 2.0 * a * Yd[cp.row_pair, 0, 0] * a1
        dense = st_.dense
        for i, k in enumerate(dense):
            for k2 in dense[i + 1:]:
                a, ca = Ab[k]
                e, cb = Ab[k2]
                s = s + 2.0 * a * e * SDD[ca, cb]
        return s
