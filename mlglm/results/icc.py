r"""Intraclass correlations (ICC) and variance explained, for one grouping factor or several.

The ICC is the share of the total variance that lies between groups,

.. math::  \rho = \frac{\sigma^2_b}{\sigma^2_b + \sigma^2_w},

with :math:`\sigma^2_b` the between-group (random-effect) variance and
:math:`\sigma^2_w` the within-group variance on the same scale:

* Gaussian: :math:`\sigma^2_w = \sigma^2`, the residual variance, so
  :math:`\rho = \tau_{00} / (\tau_{00} + \sigma^2)`.
* Binomial, latent scale (the response is a threshold of a latent variable
  with a standard logistic, normal or Gumbel error): :math:`\sigma^2_w =
  \pi^2/3` (logit), 1 (probit), :math:`\pi^2/6` (cloglog).
* Poisson, negative binomial and Gamma, log link (Nakagawa, Johnson &
  Schielzeth 2017, *J. R. Soc. Interface* 14: 20170213; as the R packages
  ``insight``/``performance`` compute it): the distribution-specific variance
  on the log scale is :math:`\ln(1 + c)` (lognormal approximation, the
  default), :math:`c` (delta method) or :math:`\psi_1(1/c)` (trigamma), with
  the squared coefficient of variation :math:`c = 1/\lambda` (Poisson),
  :math:`1/\lambda + 1/\theta` (negative binomial NB2) or :math:`\phi` (Gamma,
  the scale = 1/shape), and :math:`\lambda = \exp(\beta_0 + \sigma^2_b / 2)`
  the expected count.

With random slopes the between-group variance depends on the random-effect
covariates: at a row with random-effect design :math:`z = (1, x_1, \dots)` it
is :math:`z'\Sigma z`. :func:`icc` evaluates it at ``at`` (default: every
random-effect covariate at 0, which gives :math:`\tau_{00}`), or with
``adjusted=True`` averages it over the observed rows,
:math:`\bar\sigma^2_b = n^{-1}\sum_i z_i'\Sigma z_i` (Johnson 2014, *Methods
Ecol. Evol.* 5: 944-946), which is the random-effect variance of Nakagawa et
al.'s adjusted ICC.

Several grouping factors k = 1..T (nested or crossed) each contribute such a
variance :math:`\tau_k` (the rules above, factor by factor), and the within
variance is taken at their sum. Two observations that share the level of
factor k share the effects of k *and of every factor k is nested in*, so their
correlation is (Snijders & Bosker 2012, *Multilevel Analysis*, 2nd ed., ch. 4;
Hox 2010, sec. 2.3)

.. math:: \rho_k = \frac{\sum_{j \in \{k\} \cup \mathrm{outer}(k)} \tau_j}
                        {\sum_j \tau_j + \sigma^2_w} ,

e.g. pupils in classes in schools: same school (different class)
tau_s / (tau_s + tau_c + sigma^2), same class (tau_s + tau_c) / (...). With
crossed factors (subjects x items) outer(k) is empty. One factor is the case
T = 1, :math:`\rho_1 = \rho`; :attr:`ICCResult.value` is
:math:`\sum_j \tau_j / (\sum_j \tau_j + \sigma^2_w)` in every case (the share of
all random effects; the correlation of two observations sharing every level).

:func:`variance_explained` gives the proportional reduction of each variance
component between two nested fits (Raudenbush & Bryk 2002, ch. 4; Snijders &
Bosker 2012, sec. 7.2 for the three-level case), e.g. (8.61 - 2.64) / 8.61 = .69
for adding school mean SES to the HSB null model.

Intervals (``ci=True``): a profile-likelihood interval where the ICC is a
monotone function of one profiled quantity (one factor), else percentile
intervals over a parametric bootstrap (:func:`mlglm.inference.bootstrap.bootstrap`), the
ICCs of every replicate computed by the same rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

from ..design import mixedlm_view as view
from ..inference.bootstrap import bootstrap
from ..core.spec.family import GAUSSIAN, Family
from ..core.spec.terms import nests_in
from ..design.factors import random_terms_text
from ..inference.profile import profile_direction

__all__ = ["ICCResult", "VarianceExplained", "icc", "variance_explained"]

#: approximations of the distribution-specific variance (count and Gamma families)
DISTRIBUTION_METHODS = ("lognormal", "delta", "trigamma")


@dataclass(frozen=True)
class ICCResult:
    """Intraclass correlations with the formula and the numbers behind them.

    Attributes
    ----------
    value : float
        The ICC, ``between / (between + within)``; with several grouping factors the
        sum of every factor's variance over the total (the correlation of two
        observations that share every level).
    method : str
        The formula computed, in words (e.g. ``"gaussian: tau00 / (tau00 + sigma^2)"``).
    components : Mapping[str, float]
        One factor: the between-group variance used (key ``"tau00"`` when it is the
        random-intercept variance, ``"between_variance"`` otherwise) first, the
        within-group variance second (``"sigma2"``, ``"latent_variance"`` or
        ``"distribution_variance"``), then for count families ``"lambda"`` and
        ``"beta0"`` (and the dispersion). Several: {factor: tau_k} and the within
        variance (key ``"within"``).
    note : str
        What was assumed (covariate values, which beta_0, ...).
    ci, ci_method, level : the interval (``ci=True``): ``(lower, upper)`` of the ICC
        for one factor, {factor: (lower, upper)} for several; how it was made.
    table : DataFrame indexed by factor: ``icc`` (:math:`\\rho_k`, module notes),
        ``shared`` (the factors whose effects two observations in one level share),
        ``between`` (the shared variance), ``total``. ``icc["school"]`` reads it.
    """

    value: float
    method: str
    components: Mapping[str, float] = field(default_factory=dict, hash=False)
    note: str = ""
    ci: tuple | dict | None = field(default=None, hash=False)
    ci_method: str | None = None
    level: float | None = None
    table: pd.DataFrame | None = field(default=None, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))

    def __reduce__(self):  # a mappingproxy does not pickle; rebuild from a dict
        return (type(self), (self.value, self.method, dict(self.components), self.note,
                             self.ci, self.ci_method, self.level, self.table))

    @property
    def _by_factor(self) -> bool:
        """Several factors: the table, not one number, is the result."""
        return self.table is not None and len(self.table) > 1

    @property
    def values(self) -> dict:
        """{factor: ICC}."""
        return {k: float(v) for k, v in self.table["icc"].items()}

    def __getitem__(self, factor) -> float:
        return float(self.table.loc[factor, "icc"])

    @property
    def between(self) -> float:
        """The between-group variance used (the sum over factors with several)."""
        if self._by_factor:
            return float(sum(v for k, v in self.components.items() if k != "within"))
        return next(iter(self.components.values()))

    @property
    def within(self) -> float:
        """The within-group variance used."""
        if self._by_factor:
            return self.components["within"]
        return list(self.components.values())[1]

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        if self._by_factor:
            vals = ", ".join(f"{k}={v:.4f}" for k, v in self.values.items())
            return f"ICCResult({vals})"
        comps = ", ".join(f"{k}={v:.6g}" for k, v in self.components.items())
        ci = "" if self.ci is None else (f", ci=({self.ci[0]:.4f}, {self.ci[1]:.4f}) "
                                         f"{self.ci_method}")
        return f"ICCResult(value={self.value:.4f}, method={self.method!r}, {comps}{ci})"

    def __str__(self) -> str:
        if self._by_factor:
            return self._str_by_factor()
        lines = [f"ICC = {self.value:.4f}   [{self.method}]"]
        if self.ci is not None:
            lines.append(f"  {100 * self.level:g}% CI [{self.ci[0]:.4f}, {self.ci[1]:.4f}] "
                         f"({self.ci_method})")
        lines += [f"  {k:<22s} {v:12.6g}" for k, v in self.components.items()]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)

    def _str_by_factor(self) -> str:
        lines = [f"Intraclass correlations   [{self.method}]"]
        for k, row in self.table.iterrows():
            ci = ""
            if self.ci is not None and k in self.ci:
                lo, hi = self.ci[k]
                ci = f"   {100 * self.level:g}% CI [{lo:.4f}, {hi:.4f}]"
            lines.append(f"  same {k:<20s} {row['icc']:.4f}   (shares: {row['shared']}){ci}")
        lines += [f"  {k:<25s} {v:12.6g}" for k, v in self.components.items()]
        if self.note:
            lines.append(f"  note: {self.note}")
        if self.ci_method:
            lines.append(f"  interval: {self.ci_method}")
        return "\n".join(lines)


@dataclass(frozen=True)
class VarianceExplained:
    r"""Proportional reduction of the variance components between two nested fits.

    ``prop_between = (between_reduced - between_full) / between_reduced`` and
    likewise ``prop_within`` (Raudenbush & Bryk 2002, eq. 4.12); the between
    variance is the sum over the grouping factors. Negative values mean the
    component grew. ``icc_full`` is the ICC remaining in the fuller model.

    ``table`` is indexed by component (each factor, then ``within``) with columns
    ``reduced``, ``full`` and ``explained`` = (reduced - full) / reduced (NaN for a
    factor only one of the fits has); ``ve["school"]`` reads it.
    """

    reduced_model: str
    full_model: str
    between_reduced: float
    between_full: float
    within_reduced: float
    within_full: float
    prop_between: float
    prop_within: float
    icc_reduced: ICCResult
    icc_full: ICCResult
    note: str = ""
    table: pd.DataFrame | None = field(default=None, repr=False, compare=False, hash=False)

    def __getitem__(self, component) -> float:
        return float(self.table.loc[component, "explained"])

    @property
    def _by_factor(self) -> bool:
        return self.table is not None and len(self.table) > 2

    def __repr__(self) -> str:
        if self._by_factor:
            return str(self)
        return (f"VarianceExplained(between={self.prop_between:.4f}, "
                f"within={self.prop_within:.4f}, remaining_icc={self.icc_full.value:.4f})")

    def __str__(self) -> str:
        if self._by_factor:
            txt = "Proportion of variance explained (reduction of each component)\n"
            txt += self.table.to_string(float_format=lambda v: f"{v:.4f}")
            return txt + (f"\nnote: {self.note}" if self.note else "")
        w = f"{'':<26s}{'reduced':>12s}{'full':>12s}{'explained':>12s}"
        rows = [
            f"{'between (' + _between_label(self.icc_full) + ')':<26s}{self.between_reduced:12.4f}"
            f"{self.between_full:12.4f}{self.prop_between:12.4f}",
            f"{'within (' + _within_label(self.icc_full) + ')':<26s}{self.within_reduced:12.4f}"
            f"{self.within_full:12.4f}{self.prop_within:12.4f}",
        ]
        lines = ["Proportion of variance explained (reduction of each component)",
                 f"  reduced: {self.reduced_model}", f"  full:    {self.full_model}", w, *rows,
                 f"ICC: reduced {self.icc_reduced.value:.4f}, remaining in full model "
                 f"{self.icc_full.value:.4f}"]
        if self.note:
            lines.append(f"note: {self.note}")
        return "\n".join(lines)


# ----------------------------------------------------------------- helpers
def _family(results):
    """The :class:`~mlglm.core.spec.family.Family` of an mlglm fit (Gaussian for a
    statsmodels MixedLM fit)."""
    model = results.model
    fam = getattr(model, "fam", None)
    if fam is not None:
        return fam
    name = type(model).__name__
    if name == "MixedLM":
        return Family(GAUSSIAN)
    raise TypeError(f"icc() needs an mlglm MixedGLM fit or a statsmodels MixedLM fit, got "
                    f"results of {name}")


@dataclass(frozen=True)
class _Factor:
    """One grouping factor as the ICC sees it: name, random-effects design Z, the names
    ``at=`` may use for its columns, Sigma, the column of its random intercept (None
    if it has none), and the term itself."""

    name: str
    Z: np.ndarray
    names: list
    Sigma: np.ndarray
    intercept: int | None
    term: object = None


def _intercept(names, Z) -> int | None:
    """The column of the random intercept: named so, else constant 1 in the rows."""
    if "Intercept" in names:
        return list(names).index("Intercept")
    for k in range(Z.shape[1]):
        if Z.shape[0] and np.all(Z[:, k] == 1.0):
            return k
    return None


def _factors(results) -> list[_Factor]:
    """The fit's grouping factors (one for a statsmodels ``MixedLM`` fit)."""
    model = results.model
    if getattr(model, "re_terms", None) is None:            # statsmodels' MixedLM
        terms, Sigmas, _, _ = view.statsmodels_term(results)
        effects = [list(t.column_names) for t in terms]
    else:
        terms, Sigmas = model.re_terms, results.outcome.Sigmas
        effects = [view.effect_labels(model, t) for t in terms]
    return [_Factor(t.name, t.Z, names, np.asarray(S, dtype=float),
                    _intercept(list(t.column_names), t.Z), t)
            for t, S, names in zip(terms, Sigmas, effects)]


def _between(f: _Factor, at, adjusted):
    """(tau, key, description) of one factor: z'Sigma z at the random intercept and the
    ``at`` values of its columns, or averaged over the observed rows (``adjusted``)."""
    Sigma, names, k0 = f.Sigma, f.names, f.intercept
    if adjusted:
        v = float(np.mean(np.einsum("ij,jk,ik->i", f.Z, Sigma, f.Z)))
        if len(names) == 1 and k0 is not None:
            return v, "tau00", ("random intercept only: the averaged variance "
                                "mean_i(z_i' Sigma z_i) equals tau00")
        zn = ", ".join("1" if k == k0 else n for k, n in enumerate(names))
        return v, "between_variance", (
            "between-group variance averaged over the observed rows, mean_i(z_i' Sigma "
            f"z_i) with z_i = ({zn}) (Johnson 2014; Nakagawa et al. 2017 adjusted ICC)")
    z = np.zeros(len(names))
    if k0 is not None:
        z[k0] = 1.0
    for key, val in at.items():
        if key in names:
            z[names.index(key)] = float(val)
    v = float(z @ Sigma @ z)
    others = [n for k, n in enumerate(names) if k != k0]
    if k0 is not None and np.count_nonzero(z) == 1:
        if not others:
            return v, "tau00", "random intercept only: between-group variance tau00"
        return v, "tau00", (
            f"random slopes for {', '.join(others)}: between-group variance z' Sigma z at "
            f"{', '.join(f'{n} = 0' for n in others)}, i.e. tau00 (the ICC of rows at "
            "those values); pass at={...} for other values or adjusted=True for the "
            "average over the observed rows")
    zs = ", ".join(f"{z[k]:g}" if k == k0 else f"{n}={z[k]:g}" for k, n in enumerate(names))
    return v, "between_variance", f"between-group variance z' Sigma z at z = ({zs})"


def _outer(factors) -> dict:
    """{factor: [factors it is nested in]} from the terms' level codes."""
    terms = [f.term for f in factors]
    return {t.name: [o.name for o in terms if o is not t and o.n_levels < t.n_levels
                     and nests_in(t, o)] for t in terms}


def _fe(results):
    fe = getattr(results, "fe_params")
    names = list(getattr(fe, "index", results.model.exog_names[:len(fe)]))
    return np.asarray(fe, dtype=float), names


def _poisson_lambda(results, between, beta0):
    beta, names = _fe(results)
    if beta0 == "intercept":
        if "Intercept" not in names:
            raise ValueError("beta0='intercept' needs an 'Intercept' fixed effect; use "
                             "beta0='mean'")
        b0 = beta[names.index("Intercept")]
        desc = ("beta0 = the intercept (the log mean at all covariates = 0)")
    elif beta0 == "mean":
        model = results.model
        eta = np.asarray(model.exog, dtype=float) @ beta
        off = getattr(model, "offset", None)
        if off is not None:
            eta = eta + np.asarray(off, dtype=float)
        b0 = float(np.mean(eta))
        desc = ("beta0 = the mean of the fixed linear predictor X beta (+ offset) over the "
                "observed rows (equals the intercept when covariates are centred); "
                "beta0='intercept' uses the intercept")
    else:
        raise ValueError("beta0 must be 'mean' or 'intercept'")
    return float(b0), float(np.exp(b0 + between / 2.0)), desc


def distribution_within(results, fam, between, method, beta0):
    """(within variance, its formula, extra components, description) of a count or
    Gamma fit on the log scale (:meth:`~mlglm.core.spec.family.Family.distribution_variance`),
    lambda = exp(beta0 + between / 2) for the count families."""
    method = "lognormal" if method is None else method
    if method not in DISTRIBUTION_METHODS:
        raise ValueError(f"{fam.name} ICC: method must be one of {list(DISTRIBUTION_METHODS)}")
    if not fam.link.log_scale:
        raise NotImplementedError(f"the {fam.name} ICC approximations need the log link "
                                  f"(Nakagawa et al. 2017); this fit has the {fam.link} link")
    extra, desc = {}, ""
    lam = None
    if fam.is_count:
        b0, lam, desc = _poisson_lambda(results, between, beta0)
        extra = {"lambda": lam, "beta0": b0}
    if fam.has_dispersion:
        extra[fam.dispersion_name] = float(results.dispersion)
    within, text = fam.distribution_variance(lam, results.dispersion, method)
    return within, text, extra, desc


def _within(results, family, between, method, beta0):
    """(within variance, key, formula text, extra components, description) on the scale
    of the between variances (``between``: their sum, for lambda)."""
    if family.is_gaussian:
        if method not in (None, "gaussian"):
            raise ValueError(f"method {method!r} is not available for Gaussian models")
        return float(results.scale), "sigma2", "sigma^2", {}, ""
    if family.is_binomial:
        if method not in (None, "latent"):
            raise ValueError(f"binomial ICC: method must be 'latent', got {method!r}")
        within, text = family.latent_variance()
        return within, "latent_variance", text, {}, ""
    within, text, extra, desc = distribution_within(results, family, between, method, beta0)
    return within, "distribution_variance", text, extra, desc


# --------------------------------------------------------------- the ICC
def icc(results, at=None, adjusted=False, method=None, beta0="mean", ci=False, level=0.95,
        ci_method=None, n_boot=200, seed=None, n_jobs=1, progress=None) -> ICCResult:
    r"""Intraclass correlation(s) of a fit: one per grouping factor (module notes).

    .. math::  \rho_k = \sum_{j \in \{k\} \cup \mathrm{outer}(k)} \tau_j
               / (\sum_j \tau_j + \sigma^2_w), \qquad
               \rho = \sigma^2_b / (\sigma^2_b + \sigma^2_w) \text{ for one factor}

    Parameters
    ----------
    results : MixedGLMResults or statsmodels MixedLMResults
        A fitted random-intercept or random-slope model.
    at : dict, optional
        Random-effect column name -> value (e.g. ``{"cses": 1.0}``). The
        between-group variance of a factor is :math:`z'\Sigma z` with z = (1, at...);
        columns not given are 0, so the default is :math:`\tau_{00}`.
    adjusted : bool
        Average the between-group variance over the observed rows,
        :math:`n^{-1} \sum_i z_i'\Sigma z_i` (Johnson 2014), as in Nakagawa et
        al.'s (2017) adjusted ICC (fixed-effect variance not in the
        denominator). Same as the default for random-intercept models.
    method : str, optional
        Gaussian: ``"gaussian"``. Binomial: ``"latent"`` (default; within
        variance pi^2/3, 1 or pi^2/6 for logit, probit, cloglog). Poisson,
        negative binomial, Gamma (log link): ``"lognormal"`` (default)
        ``ln(1 + c)``, ``"delta"`` ``c`` or ``"trigamma"`` ``psi'(1/c)``, c = 1/lambda,
        1/lambda + 1/theta or the Gamma scale (module docstring).
    beta0 : {"mean", "intercept"}
        Count families only: the beta_0 in :math:`\lambda = \exp(\beta_0 +
        \sigma^2_b/2)` -- the mean of the fixed linear predictor over the
        observed rows (default) or the intercept (covariates at 0).
    ci : bool
        Add a ``level`` confidence interval (mlglm fits only).
    ci_method : {None, "profile", "bootstrap"}
        ``"profile"``: when the ICC is a monotone function of one profiled
        quantity -- one grouping factor, tau00 for binomial fits (latent scale),
        tau00 / sigma^2 for Gaussian fits -- the profile-likelihood interval of
        that quantity, mapped through the formula (exact for the interval, no delta
        method). ``"bootstrap"``: percentile interval of every ICC over ``n_boot``
        parametric-bootstrap refits (``seed``, ``n_jobs``, ``progress``; see
        :func:`mlglm.inference.bootstrap.bootstrap`); works for every case. Default:
        profile where it applies, else bootstrap (``ci_method`` on the result
        says which was used).

    Returns
    -------
    ICCResult
        ``value``, ``method`` (the formula), ``components``, ``note``, ``table``
        (one row per factor; ``result["school"]`` is that factor's ICC), and
        ``ci``, ``ci_method``, ``level`` when ``ci=True``.
    """
    point = _icc_point(results, at, adjusted, method, beta0)
    if not ci:
        return point
    return _with_interval(point, results, dict(at=at, adjusted=adjusted, method=method,
                                               beta0=beta0),
                          level, ci_method, dict(n=n_boot, seed=seed, n_jobs=n_jobs,
                                                 progress=progress))


def _with_interval(point, results, icc_args, level, ci_method, boot_args) -> ICCResult:
    """``point`` with a profile or bootstrap interval (see :func:`icc`)."""
    if not hasattr(results, "outcome"):
        raise TypeError("ICC intervals need an mlglm fit (profile/bootstrap refit the model); "
                        "refit with mlglm.lmer/glmer or MixedGLM")
    family = _family(results)
    factors = _factors(results)
    k0 = factors[0].intercept
    can_profile = (len(factors) == 1 and "tau00" in point.components and k0 is not None
                   and (family.is_binomial or family.is_gaussian))
    if ci_method is None:
        ci_method = "profile" if can_profile else "bootstrap"
    if ci_method == "profile":
        if not can_profile:
            raise ValueError("a profile interval needs an ICC that is a function of tau00 "
                             "alone (one grouping factor, binomial or Gaussian, between "
                             "variance tau00); use ci_method='bootstrap'")

        def direction(problem):
            a = np.zeros(problem.dim)
            a[problem.n_beta + k0] = 1.0             # log s_0
            if problem.n_sigma:
                a[-1] = -1.0                         # - log sigma (Gaussian)
            return a
        _, lo, hi = profile_direction(results, direction, level, lower_shift=20.0)
        within = point.within if family.is_binomial else 1.0

        def to_icc(c):        # c = log s0 (binomial) or log(s0 / sigma) (Gaussian)
            v = np.exp(2 * c)
            return v / (v + within)
        lo_v = 0.0 if lo is None else float(to_icc(lo))
        hi_v = 1.0 if not np.isfinite(hi) else float(to_icc(hi))
        return replace(point, ci=(lo_v, hi_v), ci_method="profile", level=level)
    if ci_method != "bootstrap":
        raise ValueError("ci_method must be 'profile' or 'bootstrap'")
    boot = bootstrap(results, **boot_args)
    vals = boot.apply(lambda r: pd.Series(_icc_point(r, **icc_args).values))
    if isinstance(vals, pd.Series):            # every refit failed
        vals = pd.DataFrame({k: vals for k in point.values})
    vals = vals.dropna()
    a = (1 - level) / 2
    out = {k: (float(vals[k].quantile(a)), float(vals[k].quantile(1 - a))) for k in vals.columns}
    return replace(point, ci=next(iter(out.values())) if len(out) == 1 else out, level=level,
                   ci_method=f"bootstrap percentile, {len(vals)} of {boot.n} refits")


def _z(f: _Factor, at) -> np.ndarray:
    """The factor's random-effects design at its intercept and the ``at`` values."""
    z = np.zeros(len(f.names))
    if f.intercept is not None:
        z[f.intercept] = 1.0
    for key, val in at.items():
        if key in f.names:
            z[f.names.index(key)] = float(val)
    return z


def _icc_point(results, at, adjusted, method, beta0) -> ICCResult:
    """The ICCs themselves (see :func:`icc`)."""
    family = _family(results)
    factors = _factors(results)
    if adjusted and at is not None:
        raise ValueError("give either at= (variance at chosen covariate values) or "
                         "adjusted=True (variance averaged over the observed rows), not both")
    at = {} if at is None else dict(at)
    known = list(dict.fromkeys(n for f in factors for n in f.names))
    unknown = [k for k in at if k not in known]
    if unknown:
        raise ValueError(f"at= names {unknown} are not random-effect columns; "
                         f"use some of {known}")
    if not adjusted and not any(np.any(_z(f, at)) for f in factors):
        raise ValueError("the model has no random intercept, so the between-group variance "
                         f"at all covariates 0 is 0; give at= values for {known}")
    parts = {f.name: _between(f, at, adjusted) for f in factors}
    tau = {k: p[0] for k, p in parts.items()}
    between = sum(tau.values())
    within, wkey, wtext, extra, wdesc = _within(results, family, between, method, beta0)
    outer = _outer(factors)
    total = between + within
    rows = {}
    for f in factors:
        shared = [f.name] + outer[f.name]
        b = sum(tau[s] for s in shared)
        rows[f.name] = {"icc": b / total, "shared": " + ".join(shared), "between": b,
                        "total": total}
    table = pd.DataFrame.from_dict(rows, orient="index")
    value = between / (between + within)
    if len(factors) > 1:
        return ICCResult(value, _method_by_factor(family, method, wtext),
                         {**tau, "within": within}, _note_by_factor(at, adjusted),
                         table=table)
    _, bkey, bdesc = parts[factors[0].name]
    b_txt = "tau00" if bkey == "tau00" else "sigma_b^2"
    link = family.link
    if family.is_gaussian:
        text = f"gaussian: {b_txt} / ({b_txt} + sigma^2)"
        note = bdesc + "."
    elif family.is_binomial:
        text = f"binomial latent scale ({link}): {b_txt} / ({b_txt} + {wtext})"
        note = (bdesc + f"; latent error variance {wtext} ({link} link), so the ICC is on "
                "the latent scale.")
    else:
        lam_txt = f", lambda = exp(beta0 + {b_txt}/2)" if family.is_count else ""
        text = (f"{family.name} {method or 'lognormal'}, log scale (Nakagawa et al. 2017): "
                f"{b_txt} / ({b_txt} + {wtext}){lam_txt}")
        note = bdesc + (f"; {wdesc}." if wdesc else ".")
    return ICCResult(value, text, {bkey: between, wkey: within, **extra}, note, table=table)


def _method_by_factor(family, method, wtext) -> str:
    """The formula of several factors' ICCs, in words."""
    if family.is_gaussian:
        within = "sigma^2 (residual variance)"
    elif family.is_binomial:
        within = f"latent error variance ({family.link} link)"
    else:
        lam = ", lambda = exp(beta0 + sum tau / 2)" if family.is_count else ""
        within = (f"{family.name} {method or 'lognormal'} {wtext}{lam} (Nakagawa et al. "
                  "2017, log scale)")
    return f"sum of shared tau / (sum of tau + {within})"


def _note_by_factor(at, adjusted) -> str:
    where = ("between variances averaged over the observed rows" if adjusted
             else "between variances at the given covariate values" if at
             else "between variances at the random intercepts")
    return where + "; a factor's ICC includes the factors it is nested in"


# ----------------------------------------------------- variance explained
def _between_label(r: ICCResult) -> str:
    return "tau00" if "tau00" in r.components else "sigma_b^2"


def _within_label(r: ICCResult) -> str:
    key = list(r.components)[1]
    return {"sigma2": "sigma^2", "latent_variance": "latent",
            "distribution_variance": "distribution"}[key]


def describe_model(results) -> str:
    """The model of a fit as an lme4-style formula, e.g. ``mAch ~ cses + (1 + cses | school)``."""
    model = results.model
    fixed = getattr(model, "formula", None) or "<arrays>"
    if getattr(model, "re_terms", None) is not None:
        return f"{fixed} + {random_terms_text(model)}"
    f = _factors(results)[0]                                 # statsmodels' MixedLM
    group = getattr(model, "group_name", None) or f.name
    terms = ["1" if k == f.intercept else n for k, n in enumerate(f.names)]
    if f.intercept is None:
        terms = ["0"] + terms
    return f"{fixed} + ({' + '.join(terms)} | {group})"


def _variances(r: ICCResult) -> dict:
    """{factor: its between variance, ..., "within": the within variance}."""
    if r._by_factor:
        return dict(r.components)
    return {r.table.index[0]: r.between, "within": r.within}


def variance_explained(reduced, full, at=None, adjusted=False) -> VarianceExplained:
    r"""Proportional reduction of the variance components from ``reduced`` to ``full``.

    .. math::  R^2_b = (\sigma^2_{b,\mathrm{reduced}} - \sigma^2_{b,\mathrm{full}})
               / \sigma^2_{b,\mathrm{reduced}}

    for the between variance (the sum over the grouping factors), for every factor's
    own variance :math:`\tau_k` and for the within-group variance (Raudenbush & Bryk
    2002, eq. 4.12; Snijders & Bosker 2012, sec. 7.2). For the HSB data, the null
    model's tau00 = 8.61 drops to 2.64 with school mean SES: (8.61 - 2.64) / 8.61 =
    .69 of the between-school variance explained, and the remaining ICC is 2.64 /
    (2.64 + 39.16) = .06.

    Parameters
    ----------
    reduced, full : fitted results (same data, same family), ``full`` with more
        predictors. The between-group variances are taken as in :func:`icc`
        (``at``, ``adjusted``).

    Returns
    -------
    VarianceExplained
        The components of both fits, the proportions explained (``table``: per
        component), both ICCs, and the compared models' formulas.
    """
    fr, ff = _family(reduced), _family(full)
    if fr.distribution is not ff.distribution:
        raise ValueError(f"the two fits have different families ({fr.name}, {ff.name})")
    if reduced.model.nobs != full.model.nobs:
        raise ValueError(f"the fits use different numbers of rows ({reduced.model.nobs}, "
                         f"{full.model.nobs}); variance components are only comparable on "
                         "the same data")
    ir = icc(reduced, at=at, adjusted=adjusted)
    if_ = icc(full, at=at, adjusted=adjusted)
    a, b = _variances(ir), _variances(if_)
    keys = list(dict.fromkeys([k for k in a if k != "within"] + [k for k in b if k != "within"]
                              + ["within"]))
    table = pd.DataFrame.from_dict({k: {"reduced": a.get(k, np.nan), "full": b.get(k, np.nan)}
                                    for k in keys}, orient="index")
    with np.errstate(divide="ignore", invalid="ignore"):
        table["explained"] = (table["reduced"] - table["full"]) / table["reduced"]
    notes = []
    if not fr.is_gaussian:
        notes.append("on the latent/distribution scale the within-group variance is fixed by "
                     "the family, so the between-group proportion is affected by rescaling "
                     "when level-1 predictors are added (Hox 2010, sec. 6.5)")
    only = [k for k in keys if k not in a or k not in b]
    if only:
        notes.append(f"{', '.join(only)} in one fit only (explained: NaN)")
    methods = {getattr(reduced, "method", None), getattr(full, "method", None)}
    if "reml" in methods and len(methods) > 1:
        notes.append("the fits mix REML and ML estimates")
    bw_r, bw_f = ir.between, if_.between
    wi_r, wi_f = ir.within, if_.within
    return VarianceExplained(
        reduced_model=describe_model(reduced), full_model=describe_model(full),
        between_reduced=bw_r, between_full=bw_f, within_reduced=wi_r, within_full=wi_f,
        prop_between=(bw_r - bw_f) / bw_r if bw_r > 0 else float("nan"),
        prop_within=(wi_r - wi_f) / wi_r if wi_r > 0 else float("nan"),
        icc_reduced=ir, icc_full=if_, note="; ".join(notes), table=table)
