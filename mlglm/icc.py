r"""Intraclass correlation (ICC) and variance explained for two-level models.

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

:func:`variance_explained` gives the proportional reduction of each variance
component between two nested fits (Raudenbush & Bryk 2002, ch. 4), e.g.
(8.61 - 2.64) / 8.61 = .69 for adding school mean SES to the HSB null model.

Fits with several grouping factors (nested or crossed) get one ICC per factor
and the variance explained per level: :mod:`mlglm.icc_multilevel`, which
:func:`icc` and :func:`variance_explained` hand them to.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = ["ICCResult", "VarianceExplained", "icc", "variance_explained"]

#: approximations of the distribution-specific variance (count and Gamma families)
DISTRIBUTION_METHODS = ("lognormal", "delta", "trigamma")


@dataclass(frozen=True)
class ICCResult:
    """An intraclass correlation with the formula and the numbers behind it.

    Attributes
    ----------
    value : float
        The ICC, ``between / (between + within)``.
    method : str
        The formula computed, in words (e.g. ``"gaussian: tau00 / (tau00 + sigma^2)"``).
    components : Mapping[str, float]
        The between-group variance used (key ``"tau00"`` when it is the
        random-intercept variance, ``"between_variance"`` otherwise) first, the
        within-group variance second (``"sigma2"``, ``"latent_variance"`` or
        ``"distribution_variance"``), then for Poisson ``"lambda"`` and ``"beta0"``.
    note : str
        What was assumed (covariate values, which beta_0, ...).
    """

    value: float
    method: str
    components: Mapping[str, float] = field(default_factory=dict, hash=False)
    note: str = ""
    ci: tuple | None = None
    ci_method: str | None = None
    level: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "components", MappingProxyType(dict(self.components)))

    def __reduce__(self):  # a mappingproxy does not pickle; rebuild from a dict
        return (type(self), (self.value, self.method, dict(self.components), self.note,
                             self.ci, self.ci_method, self.level))

    @property
    def between(self) -> float:
        """The between-group variance used (first component)."""
        return next(iter(self.components.values()))

    @property
    def within(self) -> float:
        """The within-group variance used (second component)."""
        return list(self.components.values())[1]

    def __float__(self) -> float:
        return float(self.value)

    def __repr__(self) -> str:
        comps = ", ".join(f"{k}={v:.6g}" for k, v in self.components.items())
        ci = "" if self.ci is None else (f", ci=({self.ci[0]:.4f}, {self.ci[1]:.4f}) "
                                         f"{self.ci_method}")
        return f"ICCResult(value={self.value:.4f}, method={self.method!r}, {comps}{ci})"

    def __str__(self) -> str:
        lines = [f"ICC = {self.value:.4f}   [{self.method}]"]
        if self.ci is not None:
            lines.append(f"  {100 * self.level:g}% CI [{self.ci[0]:.4f}, {self.ci[1]:.4f}] "
                         f"({self.ci_method})")
        lines += [f"  {k:<22s} {v:12.6g}" for k, v in self.components.items()]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


@dataclass(frozen=True)
class VarianceExplained:
    r"""Proportional reduction of the variance components between two nested fits.

    ``prop_between = (between_reduced - between_full) / between_reduced`` and
    likewise ``prop_within`` (Raudenbush & Bryk 2002, eq. 4.12). Negative
    values mean the component grew. ``icc_full`` is the ICC remaining in the
    fuller model.
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

    def __repr__(self) -> str:
        return (f"VarianceExplained(between={self.prop_between:.4f}, "
                f"within={self.prop_within:.4f}, remaining_icc={self.icc_full.value:.4f})")

    def __str__(self) -> str:
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
    """The :class:`~mlglm.core.family.Family` of an mlglm fit (Gaussian for a
    statsmodels MixedLM fit)."""
    from .core.family import GAUSSIAN, Family
    model = results.model
    fam = getattr(model, "fam", None)
    if fam is not None:
        return fam
    name = type(model).__name__
    if name == "MixedLM":
        return Family(GAUSSIAN)
    raise TypeError(f"icc() needs an mlglm MixedGLM fit or a statsmodels MixedLM fit, got "
                    f"results of {name}")


def _re_names(results) -> list[str]:
    model = results.model
    names = getattr(model.data, "exog_re_names", None)
    if names is None:
        names = [f"re{k}" for k in range(np.asarray(results.cov_re).shape[0])]
    return list(names)


def _intercept_index(results) -> int | None:
    """Column of the random-effect design that is constant 1 (the random intercept)."""
    Z = getattr(results.model, "exog_re", None)
    if Z is None:
        return 0
    Z = np.asarray(Z, dtype=float)
    for k in range(Z.shape[1]):
        if np.all(Z[:, k] == 1.0):
            return k
    return None


def _between_variance(results, at, adjusted):
    """(variance, key, description) of the between-group variance used."""
    Sigma = np.atleast_2d(np.asarray(results.cov_re, dtype=float))
    q = Sigma.shape[0]
    names = _re_names(results)
    k0 = _intercept_index(results)
    if adjusted and at is not None:
        raise ValueError("give either at= (variance at chosen covariate values) or "
                         "adjusted=True (variance averaged over the observed rows), not both")
    if adjusted:
        Z = np.asarray(results.model.exog_re, dtype=float)
        v = float(np.mean(np.einsum("ij,jk,ik->i", Z, Sigma, Z)))
        if q == 1 and k0 is not None:
            desc = ("random intercept only: the averaged variance mean_i(z_i' Sigma z_i) "
                    "equals tau00")
            return v, "tau00", desc
        zn = ", ".join("1" if k == k0 else n for k, n in enumerate(names))
        desc = ("between-group variance averaged over the observed rows, mean_i(z_i' Sigma "
                f"z_i) with z_i = ({zn}) (Johnson 2014; Nakagawa et al. 2017 adjusted ICC)")
        return v, "between_variance", desc
    at = {} if at is None else dict(at)
    unknown = [k for k in at if k not in names]
    if unknown:
        raise ValueError(f"at= names {unknown} are not random-effect columns; "
                         f"use some of {names}")
    z = np.zeros(q)
    if k0 is not None:
        z[k0] = 1.0
    for key, val in at.items():
        z[names.index(key)] = float(val)
    if not np.any(z):
        raise ValueError("the model has no random intercept, so the between-group variance "
                         f"at all covariates 0 is 0; give at= values for {names}")
    v = float(z @ Sigma @ z)
    others = [n for k, n in enumerate(names) if k != k0]
    if k0 is not None and np.count_nonzero(z) == 1:
        if not others:
            return v, "tau00", "random intercept only: between-group variance tau00"
        desc = (f"random slopes for {', '.join(others)}: between-group variance z' Sigma z at "
                f"{', '.join(f'{n} = 0' for n in others)}, i.e. tau00 (the ICC of rows at "
                "those values); pass at={...} for other values or adjusted=True for the "
                "average over the observed rows")
        return v, "tau00", desc
    zs = ", ".join(f"{z[k]:g}" if k == k0 else f"{n}={z[k]:g}" for k, n in enumerate(names))
    return v, "between_variance", f"between-group variance z' Sigma z at z = ({zs})"


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


# --------------------------------------------------------------- the ICC
def icc(results, at=None, adjusted=False, method=None, beta0="mean", ci=False, level=0.95,
        ci_method=None, n_boot=200, seed=None, n_jobs=1, progress=None) -> ICCResult:
    r"""Intraclass correlation of a two-level fit.

    .. math::  \rho = \sigma^2_b / (\sigma^2_b + \sigma^2_w)

    Parameters
    ----------
    results : MixedGLMResults or statsmodels MixedLMResults
        A fitted random-intercept or random-slope model (one grouping factor; for
        several, one ICC per factor: see Returns).
    at : dict, optional
        Random-effect column name -> value (e.g. ``{"cses": 1.0}``). The
        between-group variance is :math:`z'\Sigma z` with z = (1, at...);
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
        quantity -- tau00 for binomial fits (latent scale), tau00 / sigma^2
        for Gaussian fits -- the profile-likelihood interval of that quantity,
        mapped through the formula (exact for the interval, no delta method).
        ``"bootstrap"``: percentile interval of the ICC over ``n_boot``
        parametric-bootstrap refits (``seed``, ``n_jobs``, ``progress``; see
        :func:`mlglm.bootstrap.bootstrap`); works for every case. Default:
        profile where it applies, else bootstrap (``ci_method`` on the result
        says which was used).

    Returns
    -------
    ICCResult
        ``value``, ``method`` (the formula), ``components``, ``note``, and
        ``ci``, ``ci_method``, ``level`` when ``ci=True``.

        With several grouping factors a
        :class:`~mlglm.icc_multilevel.MultilevelICC`: one ICC per factor (same
        school, same class: the factor's variance plus that of every factor it
        is nested in, over the total), intervals by the bootstrap.
    """
    if getattr(results.model, "multi", False):
        from .icc_multilevel import multilevel_icc
        return multilevel_icc(results, at=at, adjusted=adjusted, method=method, beta0=beta0,
                              ci=ci, level=level, ci_method=ci_method, n_boot=n_boot,
                              seed=seed, n_jobs=n_jobs, progress=progress)
    point = _icc_point(results, at, adjusted, method, beta0)
    if not ci:
        return point
    return _with_interval(point, results, dict(at=at, adjusted=adjusted, method=method,
                                               beta0=beta0),
                          level, ci_method, dict(n=n_boot, seed=seed, n_jobs=n_jobs,
                                                 progress=progress))


def _with_interval(point, results, icc_args, level, ci_method, boot_args) -> ICCResult:
    """``point`` with a profile or bootstrap interval (see :func:`icc`)."""
    from dataclasses import replace
    if not hasattr(results, "outcome"):
        raise TypeError("ICC intervals need an mlglm fit (profile/bootstrap refit the model); "
                        "refit with mlglm.lmer/glmer or MixedGLM")
    family = _family(results)
    k0 = _intercept_index(results)
    can_profile = ("tau00" in point.components and k0 is not None
                   and (family.is_binomial or family.is_gaussian))
    if ci_method is None:
        ci_method = "profile" if can_profile else "bootstrap"
    if ci_method == "profile":
        if not can_profile:
            raise ValueError("a profile interval needs an ICC that is a function of tau00 "
                             "alone (binomial or Gaussian, between variance tau00); use "
                             "ci_method='bootstrap'")
        from .profile import profile_direction

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
    from .bootstrap import bootstrap
    boot = bootstrap(results, **boot_args)
    vals = boot.apply(lambda r: _icc_point(r, **icc_args).value).dropna()
    a = (1 - level) / 2
    return replace(point, ci=(float(vals.quantile(a)), float(vals.quantile(1 - a))),
                   ci_method=f"bootstrap percentile, {len(vals)} of {boot.n} refits",
                   level=level)


def distribution_within(results, fam, between, method, beta0):
    """(within variance, its formula, extra components, description) of a count or
    Gamma fit on the log scale (:meth:`~mlglm.core.family.Family.distribution_variance`),
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


def _icc_point(results, at, adjusted, method, beta0) -> ICCResult:
    """The ICC itself (see :func:`icc`)."""
    family = _family(results)
    fam, link = family.name, family.link
    between, bkey, bdesc = _between_variance(results, at, adjusted)
    b_txt = "tau00" if bkey == "tau00" else "sigma_b^2"
    if family.is_gaussian:
        if method not in (None, "gaussian"):
            raise ValueError(f"method {method!r} is not available for Gaussian models")
        within = float(results.scale)
        value = between / (between + within)
        return ICCResult(value, f"gaussian: {b_txt} / ({b_txt} + sigma^2)",
                         {bkey: between, "sigma2": within}, bdesc + ".")
    if family.is_binomial:
        if method not in (None, "latent"):
            raise ValueError(f"binomial ICC: method must be 'latent', got {method!r}")
        within, text = family.latent_variance()
        value = between / (between + within)
        return ICCResult(value, f"binomial latent scale ({link}): {b_txt} / ({b_txt} + "
                         f"{text})", {bkey: between, "latent_variance": within},
                         bdesc + f"; latent error variance {text} "
                         f"({link} link), so the ICC is on the latent scale.")
    within, text, extra, ldesc = distribution_within(results, family, between, method, beta0)
    method = "lognormal" if method is None else method
    value = between / (between + within)
    lam_txt = f", lambda = exp(beta0 + {b_txt}/2)" if family.is_count else ""
    return ICCResult(value, f"{fam} {method}, log scale (Nakagawa et al. 2017): {b_txt} / "
                     f"({b_txt} + {text}){lam_txt}",
                     {bkey: between, "distribution_variance": within, **extra},
                     bdesc + (f"; {ldesc}." if ldesc else "."))


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
    if getattr(model, "multi", False):
        from .factors import random_terms_text
        return f"{fixed} + {random_terms_text(model)}"
    names = _re_names(results)
    k0 = _intercept_index(results)
    group = getattr(model, "group_name", None) or (names[k0] if k0 is not None else "group")
    terms = ["1" if k == k0 else n for k, n in enumerate(names)]
    if k0 is None:
        terms = ["0"] + terms
    return f"{fixed} + ({' + '.join(terms)} | {group})"


def variance_explained(reduced, full, at=None, adjusted=False) -> VarianceExplained:
    r"""Proportional reduction of the variance components from ``reduced`` to ``full``.

    .. math::  R^2_b = (\sigma^2_{b,\mathrm{reduced}} - \sigma^2_{b,\mathrm{full}})
               / \sigma^2_{b,\mathrm{reduced}}

    and likewise for the within-group variance (Raudenbush & Bryk 2002, eq.
    4.12). For the HSB data, the null model's tau00 = 8.61 drops to 2.64 with
    school mean SES: (8.61 - 2.64) / 8.61 = .69 of the between-school
    variance explained, and the remaining ICC is 2.64 / (2.64 + 39.16) = .06.

    Parameters
    ----------
    reduced, full : fitted results (same data, same family), ``full`` with more
        predictors. The between-group variance is taken as in :func:`icc`
        (``at``, ``adjusted``).

    Returns
    -------
    VarianceExplained
        The components of both fits, the proportions explained, both ICCs,
        and the compared models' formulas. With several grouping factors a
        :class:`~mlglm.icc_multilevel.MultilevelVarianceExplained`: the
        reduction of every factor's variance and of the within variance.
    """
    if any(getattr(r.model, "multi", False) for r in (reduced, full)):
        from .icc_multilevel import multilevel_variance_explained
        return multilevel_variance_explained(reduced, full, at=at, adjusted=adjusted)
    fr, ff = _family(reduced), _family(full)
    if fr.distribution is not ff.distribution:
        raise ValueError(f"the two fits have different families ({fr.name}, {ff.name})")
    ir = icc(reduced, at=at, adjusted=adjusted)
    if_ = icc(full, at=at, adjusted=adjusted)
    if reduced.model.nobs != full.model.nobs:
        raise ValueError(f"the fits use different numbers of rows ({reduced.model.nobs}, "
                         f"{full.model.nobs}); variance components are only comparable on "
                         "the same data")
    bw_r, bw_f = ir.between, if_.between
    wi_r, wi_f = ir.within, if_.within
    note = ""
    if not fr.is_gaussian:
        note = ("on the latent/distribution scale the within-group variance is fixed by the "
                "family, so the between-group proportion is affected by rescaling when "
                "level-1 predictors are added (Hox 2010, sec. 6.5)")
    methods = {getattr(reduced, "method", None), getattr(full, "method", None)}
    if "reml" in methods and len(methods) > 1:
        note = (note + "; " if note else "") + "the fits mix REML and ML estimates"
    return VarianceExplained(
        reduced_model=describe_model(reduced), full_model=describe_model(full),
        between_reduced=bw_r, between_full=bw_f, within_reduced=wi_r, within_full=wi_f,
        prop_between=(bw_r - bw_f) / bw_r if bw_r > 0 else float("nan"),
        prop_within=(wi_r - wi_f) / wi_r if wi_r > 0 else float("nan"),
        icc_reduced=ir, icc_full=if_, note=note)
