"""Is the quadrature adequate? The check every AGHQ fit makes, and ``nagq="auto"``.

Both talk to the objective only through its interface (:class:`~mlglm.core.fit.objective.
MarginalLoglik` is one): ``nagq``, ``p``, ``with_nagq(K)`` (the same model with K points
per dimension), ``__call__(x)``, ``value_and_gradient(x)``, ``random_sds(x)`` and ``u``
(the modes of its last evaluation, handed to the objective with more points as its warm
start), and to a fit through :class:`~mlglm.core.spec.record.CoreFit` (``x``, ``llf``,
``hessian``, ``cov_x``, ``free``). Nothing here knows how the integral is laid out, so
the same code serves every objective with that interface: one grouping factor
(:class:`~mlglm.core.engines.blockdiag.objective.MarginalLoglik`) and nested factors
(:class:`~mlglm.core.engines.nested.objective.NestedObjective`, where K points per dimension are taken at
every level).

**The check at the optimum** (:func:`check_at_optimum`). With x_hat the estimates at K
points per dimension, one more evaluation at K' = K + 2 gives the log-likelihood shift
d = llf_K'(x_hat) - llf_K(x_hat). When |d| >= ``GRADIENT_TRIGGER`` the gradient g' of
the K' objective at x_hat is taken as well, and one Newton step with the observed
information I of the fit predicts where the K' fit would land,

    dx = I^{-1} g'    (over the free parameters),

so the movement of each fixed effect in units of its standard error and the relative
movement of each random-effect SD (and of an estimated dispersion) are known without
refitting (to first order: where the posteriors are far from normal the K and K' surfaces
differ in shape and the step overshoots the refit, 1.6 against 0.34 SE on binary data with
an intercept SD of 8 at nagq 7; for moderate variances it agrees with the refit to a few
per cent, and the verdicts agree: tests/test_quadrature_adequacy.py). The fit is
adequate when both are below the tolerances of :func:`mlglm.check_quadrature`
(``SE_FRACTION``, ``SD_RELATIVE``), the criterion that function applies after
refitting, *and* the shift itself is below ``LLF_WARN``; without a usable observed
information, when the shift is below ``LLF_TOL`` (its criterion without a refit).

Why the shift counts too. Two more points is a local look: where the error of the rule
falls slowly with K (binary data, random-intercept SD 8, 7 rows per subject), K -> K + 2
moves the estimates little although K -> 101 moves them a lot. On 20 such data sets at
K = 11 the step predicted moves of 0.03-0.09 SE and 0.4-2.3% in an SD on 7 of them, while
nagq = 101 moved the intercept SD by 8-10%; the log-likelihood at the estimates shifted by
0.56-0.96 there (0.24-3.1 in absolute value on all 20). On the reference fits
(Contraception, cbpp, grouseticks, the negative binomial and Gamma references, nested
grouseticks; nagq 5-25) the shift is at most 0.021 (grouseticks at nagq 5): ``LLF_WARN`` =
0.1 lies between the two. Cost: one value at (K + 2)^q nodes per group, plus one gradient
only on data where the shift is not negligible, 4-8% of a fit (Contraception at nagq 11:
2.3 ms of 41 ms with a random intercept, 13 ms of 270-290 ms with a random slope).

**nagq = "auto"** (:func:`fit_auto`). Fits with K from :func:`auto_schedule` in turn,
each warm-started from the previous estimates (and whitened by its information),
until two consecutive fits agree: |llf change| < ``AUTO_LLF_TOL`` and every free
parameter of x = (beta, theta) moved by less than ``AUTO_SE_FRACTION`` of its
standard error. The last fit is returned; its K is the nagq reported.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..numerics.quadrature import grid_problem

__all__ = ["AdequacyCheck", "AutoRecord", "check_at_optimum", "fit_auto", "auto_schedule",
           "check_points", "LLF_TOL", "LLF_WARN", "SE_FRACTION", "SD_RELATIVE", "AUTO_LLF_TOL",
           "AUTO_SE_FRACTION", "GRADIENT_TRIGGER"]

#: check_quadrature's tolerances: a fixed effect may move by this fraction of its SE ...
SE_FRACTION = 0.1
#: ... a random-effect SD by this fraction of itself ...
SD_RELATIVE = 0.05
#: ... and, without a refit, the log-likelihood at the estimates by this.
LLF_TOL = 0.01
#: The fit-time check also calls the quadrature inadequate when nagq + 2 points move the
#: log-likelihood at the estimates by this much (see the module notes).
LLF_WARN = 0.1
#: the check computes the gradient at K' only when the llf shift reaches this
GRADIENT_TRIGGER = 1e-4
#: nagq="auto" stops when consecutive fits differ by less than this in llf ...
AUTO_LLF_TOL = 1e-3
#: ... and every free parameter by less than this fraction of its standard error
AUTO_SE_FRACTION = 0.01


def check_points(nagq: int) -> int:
    """Points per dimension of the fit-time check: the next rule of the same parity."""
    return int(nagq) + 2


def auto_schedule(q: int, max_points: int) -> list[int]:
    """Points per dimension tried by nagq="auto" for q random effects.

    Odd K (a node at the mode), steps of about 30% in K. q = 1 up to 201; q = 2 up to
    101 (10^4 nodes per group: on binary data with an intercept SD of 8, 41 points
    per dimension still left the estimates 0.05-0.24 log-likelihood units short of
    the best ones, benchmarks/QUADRATURE.md); q = 3 up to 21; more effects up to
    about 2 x 10^4 nodes; never beyond ``max_points`` nodes per group.
    """
    if q == 1:
        ks = [5, 9, 15, 25, 41, 61, 101, 151, 201]
    elif q == 2:
        ks = [5, 7, 11, 15, 21, 27, 35, 41, 51, 61, 81, 101]
    elif q == 3:
        ks = [3, 5, 7, 9, 11, 15, 21]
    else:
        ks = [k for k in (3, 5, 7, 9, 11) if k ** q <= 20_000] or [3]
    return [k for k in ks if k ** q <= max_points] or [ks[0]]


@dataclass(frozen=True)
class AdequacyCheck:
    """One evaluation with more points at the estimates of a fit (see the module notes).

    llf_shift : llf at nagq_check minus llf at nagq, both at the estimates.
    fe_shift_se : largest predicted |change of a fixed effect| / SE (NaN if the shift
        was below GRADIENT_TRIGGER, so no gradient was taken; 0 moves assumed).
    sd_shift_rel : largest predicted |change of a random-effect SD| / SD (or of an
        estimated dispersion, relative to itself).
    adequate : the predicted moves are below SE_FRACTION and SD_RELATIVE and
        |llf_shift| < LLF_WARN (:attr:`estimates_stable`, :attr:`llf_stable`); True
        when the check was skipped (nothing found, nothing looked at).
    skipped : why the check was not made ("" if it was): its nagq_check points per
        dimension are beyond the limits of :func:`~mlglm.core.numerics.quadrature.grid_problem`.
    """

    nagq: int
    nagq_check: int
    llf: float
    llf_check: float
    fe_shift_se: float
    sd_shift_rel: float
    adequate: bool
    skipped: str = ""

    @property
    def llf_shift(self) -> float:
        return self.llf_check - self.llf

    @property
    def estimates_stable(self) -> bool:
        """The predicted moves are below check_quadrature's refit tolerances (NaN: no
        gradient was needed, nothing moves)."""
        return not (self.fe_shift_se >= SE_FRACTION or self.sd_shift_rel >= SD_RELATIVE)

    @property
    def llf_stable(self) -> bool:
        return bool(abs(self.llf_shift) < LLF_WARN)

    def verdict(self) -> str:
        """A few words for the summary header."""
        if self.skipped:
            return "not checked"
        return f"{'adequate' if self.adequate else 'NOT adequate'} (vs nagq={self.nagq_check})"

    def describe(self) -> str:
        """One sentence for the notes under the summary."""
        if self.skipped:
            return (f"Quadrature check skipped: the check would use nagq={self.nagq_check}, "
                    f"and {self.skipped}")
        moved = ("the estimates would not move measurably" if not np.isfinite(self.fe_shift_se)
                 else f"the fixed effects would move by up to {self.fe_shift_se:.2g} SE and the "
                 f"random-effect SDs by up to {self.sd_shift_rel:.1%}")
        return (f"Quadrature check: with nagq={self.nagq_check} at the estimates the "
                f"log-likelihood changes by {self.llf_shift:+.2g} and {moved}: "
                f"{'adequate' if self.adequate else 'NOT adequate'}")

    def advice(self) -> str:
        """What to do about an inadequate fit."""
        moves = (f"the fixed effects would move by up to {self.fe_shift_se:.2g} SE and the "
                 f"random-effect SDs by up to {self.sd_shift_rel:.1%}")
        if self.estimates_stable:
            what = (f"the AGHQ log-likelihood is not stable in the number of points: with "
                    f"nagq={self.nagq_check} (instead of {self.nagq}) it changes by "
                    f"{self.llf_shift:+.2g} at the estimates (" + moves + " with these two "
                    "points, further with more)")
        else:
            what = (f"the AGHQ estimates are not stable in the number of points: with nagq="
                    f"{self.nagq_check} (instead of {self.nagq}) " + moves)
        return (what + "; refit with nagq='auto' (raises nagq until the estimates settle) "
                f"or a larger nagq such as {2 * self.nagq + 1}")


@dataclass(frozen=True)
class AutoRecord:
    """The path of nagq="auto": one row per fit (nagq, llf, |llf change|, largest move
    of a parameter in SE units; NaN for the first), and whether it settled."""

    path: tuple
    settled: bool

    @property
    def nagq(self) -> int:
        return int(self.path[-1][0])

    def describe(self) -> str:
        ks = " -> ".join(str(int(r[0])) for r in self.path)
        how = "settled" if self.settled else "did NOT settle (largest nagq tried)"
        return (f"nagq='auto': {ks}, {how} (stops when llf changes < {AUTO_LLF_TOL:g} and "
                f"every parameter < {AUTO_SE_FRACTION:g} SE)")


def _standard_errors(state):
    se = np.sqrt(np.clip(np.diag(state.cov_x), 0.0, None))
    return np.where(state.free & (se > 0), se, np.nan)


def _grid_problem_of(obj, K: int) -> str:
    """:func:`~mlglm.core.numerics.quadrature.grid_problem` for ``obj``'s random effects with K
    points per dimension (nested factors: every level's effects; the largest
    top-level group's rows)."""
    terms = obj.terms
    q = sum(t.q for t in terms) if terms.kind == "nested" else max(t.q for t in terms)
    rows = max((int(np.bincount(np.asarray(t.codes)).max()) for t in terms
                if np.size(t.codes)), default=None)
    return grid_problem(K, q, rows)


def check_at_optimum(obj, state) -> AdequacyCheck:
    """The fit-time quadrature check of ``state`` (fitted with ``obj``); see module notes."""
    K = int(obj.nagq)
    Kc = check_points(K)
    problem = _grid_problem_of(obj, Kc)
    if problem:             # nothing allocated: the fit stands, the check is skipped
        return AdequacyCheck(nagq=K, nagq_check=Kc, llf=float(state.llf), llf_check=np.nan,
                             fe_shift_se=np.nan, sd_shift_rel=np.nan, adequate=True,
                             skipped=problem.removesuffix("; lower nagq"))
    finer = obj.with_nagq(Kc)
    u_fit = obj.u             # the modes at the estimates (the same class: the same layout)
    finer.u = u_fit
    x = state.x
    llf_c = finer(x)
    shift = llf_c - state.llf
    fe, sd = np.nan, np.nan
    adequate = True
    idx = np.flatnonzero(state.free)
    Hf = state.hessian[np.ix_(idx, idx)]
    if not np.all(np.isfinite(Hf)):
        # no usable observed information: judge by the log-likelihood alone, as
        # check_quadrature(refit=False) does
        adequate = bool(abs(shift) < LLF_TOL)
    elif abs(shift) >= GRADIENT_TRIGGER:
        finer.u = u_fit
        _, g = finer.value_and_gradient(x)
        dx = np.zeros_like(x)
        # the Newton step over the parameters with a standard error: cov_x is the inverse
        # information over the directions the data determine (NaN along the others)
        ok = state.free & np.isfinite(np.diag(state.cov_x))
        dx[ok] = state.cov_x[np.ix_(ok, ok)] @ g[ok]
        se = _standard_errors(state)
        # the fixed effects of the mean and of a zero part (zero-inflated, hurdle)
        coef = np.r_[np.arange(obj.p), np.arange(x.size)[obj.param_layout.zi_slice]]
        fe = float(np.nanmax(np.abs(dx[coef]) / se[coef])) if coef.size else 0.0
        sd0 = obj.random_sds(x)
        sd1 = obj.random_sds(x + dx)
        rel = np.abs(sd1 - sd0) / np.maximum(sd0, 1e-8)
        if getattr(obj, "n_disp", 0):       # log dispersion last: relative change of exp(t)
            rel = np.append(rel, np.expm1(abs(dx[-1])))
        sd = float(np.max(rel)) if rel.size else 0.0
        adequate = bool(fe < SE_FRACTION and sd < SD_RELATIVE and abs(shift) < LLF_WARN)
    return AdequacyCheck(nagq=K, nagq_check=Kc, llf=float(state.llf), llf_check=float(llf_c),
                         fe_shift_se=fe, sd_shift_rel=sd, adequate=adequate)


def fit_auto(obj, fit, schedule, x0=None):
    """nagq="auto": the CoreFit of the last fit (see the module notes), its record
    carrying the path (``auto``, an :class:`AutoRecord`) and the fit-time check at
    its nagq (``quadrature_check``).

    ``schedule`` : the points per dimension to try, in order (:func:`auto_schedule`).
    ``fit(obj, x0=None, information=None)`` fits one objective: the first call
    from the caller's start, the later ones warm-started with the previous
    estimates (and modes) and whitened by the previous fit (its observed information).
    """
    ks = [int(k) for k in schedule]
    cur_obj = obj.with_nagq(ks[0])
    prev = fit(cur_obj, x0=x0)
    path = [(ks[0], prev.llf, np.nan, np.nan)]
    settled = len(ks) == 1
    for K in ks[1:]:
        nxt = obj.with_nagq(K)
        nxt.u = cur_obj.u
        cur = fit(nxt, x0=prev.x, information=prev)
        d_llf = abs(cur.llf - prev.llf)
        se = _standard_errors(prev)
        moved = np.abs(cur.x - prev.x) / se
        d_x = float(np.nanmax(moved)) if np.any(np.isfinite(moved)) else 0.0
        path.append((K, cur.llf, d_llf, d_x))
        prev, cur_obj = cur, nxt
        if d_llf < AUTO_LLF_TOL and d_x < AUTO_SE_FRACTION:
            settled = True
            break
    chk = check_at_optimum(cur_obj, prev)
    record = replace(prev.record, auto=AutoRecord(tuple(path), settled), quadrature_check=chk)
    return replace(prev, record=record)
