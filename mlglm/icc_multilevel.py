r"""ICCs and variance explained with several grouping factors (three-level and crossed).

With factors k = 1..T, variance components tau_k (the between-level variance of
factor k's effect at the chosen covariate values, :func:`mlglm.icc` rules) and
the within variance sigma_w^2 on the same scale (residual, latent or
distribution-specific, as for one factor), two observations that share the
level of factor k share the effects of k *and of every factor k is nested
in*. Their correlation is (Snijders & Bosker 2012, *Multilevel Analysis*, 2nd
ed., ch. 4; Hox 2010, sec. 2.3)

.. math:: \rho_k = \frac{\sum_{j \in \{k\} \cup \mathrm{outer}(k)} \tau_j}
                        {\sum_j \tau_j + \sigma^2_w} ,

e.g. pupils in classes in schools: same school (different class)
tau_s / (tau_s + tau_c + sigma^2), same class (tau_s + tau_c) / (...). With
crossed factors (subjects x items) outer(k) is empty: rho_k = tau_k / total,
and two observations sharing both a subject and an item correlate
(tau_subject + tau_item) / total.

Variance explained per level compares each component of two nested fits,
(tau_k,reduced - tau_k,full) / tau_k,reduced (Raudenbush & Bryk 2002,
eq. 4.12; Snijders & Bosker 2012, sec. 7.2 for the three-level case).

Intervals (``ci=True``) are percentile intervals over a parametric bootstrap
(:func:`mlglm.bootstrap.bootstrap`: new random effects for every factor, the
model refitted by the same method), the ICCs of every replicate computed by the
same rule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["MultilevelICC", "multilevel_icc", "MultilevelVarianceExplained",
           "multilevel_variance_explained"]


@dataclass(frozen=True)
class MultilevelICC:
    """ICCs of a fit with several grouping factors, one per factor.

    Attributes
    ----------
    table : DataFrame indexed by factor: ``icc``, ``shared`` (the factors whose
        effects two observations in one level share), ``between`` (the shared
        variance), ``total``.
    components : {factor: tau_k} and the within variance (key ``"within"``).
    method : the formula in words.   note : what was assumed.
    ci : optional {factor: (lower, upper)} with ``ci_method`` and ``level``.
    """

    table: pd.DataFrame
    components: dict
    method: str
    note: str = ""
    ci: dict | None = field(default=None)
    ci_method: str | None = None
    level: float | None = None

    def __getitem__(self, factor) -> float:
        return float(self.table.loc[factor, "icc"])

    @property
    def values(self) -> dict:
        return {k: float(v) for k, v in self.table["icc"].items()}

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self.values.items())
        return f"MultilevelICC({vals})"

    def __str__(self) -> str:
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


def _outer_factors(terms) -> dict:
    """{factor: [factors it is nested in]} from the terms' level codes."""
    from .core.terms import nests_in
    out = {}
    for t in terms:
        out[t.name] = [o.name for o in terms if o is not t and o.n_levels < t.n_levels
                       and nests_in(t, o)]
    return out


def _between(term, Sigma, at, adjusted):
    """tau_k of one term: z'Sigma z at the intercept (and ``at``), or averaged over rows."""
    names = list(term.column_names)
    if adjusted:
        Z = term.Z
        return float(np.mean(np.einsum("ij,jk,ik->i", Z, Sigma, Z)))
    z = np.array([1.0 if n == "Intercept" else 0.0 for n in names])
    for key, val in (at or {}).items():
        if key in names:
            z[names.index(key)] = float(val)
    return float(z @ Sigma @ z)


def _within(results, between_total, method, beta0):
    """Within variance on the scale of the components, and its description."""
    from .icc import _family, distribution_within
    fam = _family(results)
    if fam.is_gaussian:
        return float(results.scale), "sigma^2 (residual variance)"
    if fam.is_binomial:
        return fam.latent_variance()[0], f"latent error variance ({fam.link} link)"
    within, text, _, _ = distribution_within(results, fam, between_total, method, beta0)
    lam = ", lambda = exp(beta0 + sum tau / 2)" if fam.is_count else ""
    return within, (f"{fam.name} {method or 'lognormal'} {text}{lam} (Nakagawa et al. 2017, "
                    "log scale)")


def multilevel_icc(results, at=None, adjusted=False, method=None, beta0="mean", ci=False,
                   level=0.95, ci_method=None, n_boot=200, seed=None, n_jobs=1,
                   progress=None) -> MultilevelICC:
    r"""ICC of every grouping factor of a fit with several factors (module docstring).

    .. math:: \rho_k = \sum_{j \in \{k\} \cup \mathrm{outer}(k)} \tau_j
              / (\sum_j \tau_j + \sigma^2_w)

    Parameters
    ----------
    results : a fit with several grouping factors (``model.re_terms``).
    at, adjusted, method, beta0 : as in :func:`mlglm.icc`, applied to every factor:
        tau_k = z'Sigma_k z with z the intercept (and the ``at`` values of the
        factor's columns), or averaged over the observed rows (``adjusted``).
    ci : add percentile intervals from ``n_boot`` parametric-bootstrap refits
        (``seed``, ``n_jobs``, ``progress``); ``ci_method`` may be None or
        ``"bootstrap"`` (profile intervals need a one-factor fit).

    Returns
    -------
    MultilevelICC
    """
    point = _icc_point(results, at, adjusted, method, beta0)
    if not ci:
        return point
    if ci_method not in (None, "bootstrap"):
        raise ValueError("ICC intervals with several grouping factors are bootstrap "
                         "percentile intervals (ci_method='bootstrap')")
    from dataclasses import replace

    from .bootstrap import bootstrap
    boot = bootstrap(results, n=n_boot, seed=seed, progress=progress, n_jobs=n_jobs)
    vals = boot.apply(lambda r: pd.Series(_icc_point(r, at, adjusted, method, beta0).values))
    vals = vals.dropna()
    a = (1 - level) / 2
    out = {k: (float(vals[k].quantile(a)), float(vals[k].quantile(1 - a))) for k in vals.columns}
    return replace(point, ci=out, level=level,
                   ci_method=f"bootstrap percentile, {len(vals)} of {boot.n} refits")


def _icc_point(results, at, adjusted, method, beta0) -> MultilevelICC:
    """The ICCs themselves (see :func:`multilevel_icc`)."""
    model = results.model
    terms = model.re_terms
    if adjusted and at is not None:
        raise ValueError("give either at= (variance at chosen covariate values) or "
                         "adjusted=True (variance averaged over the observed rows), not both")
    known = {n for t in terms for n in t.column_names}
    unknown = [k for k in (at or {}) if k not in known]
    if unknown:
        raise ValueError(f"at= names {unknown} are not random-effect columns; use some of "
                         f"{sorted(known)}")
    tau = {t.name: _between(t, np.asarray(S, dtype=float), at, adjusted)
           for t, S in zip(terms, results.outcome.Sigmas)}
    total_between = sum(tau.values())
    within, wdesc = _within(results, total_between, method, beta0)
    outer = _outer_factors(terms)
    total = total_between + within
    rows = {}
    for t in terms:
        shared = [t.name] + outer[t.name]
        b = sum(tau[s] for s in shared)
        rows[t.name] = {"icc": b / total, "shared": " + ".join(shared), "between": b,
                        "total": total}
    table = pd.DataFrame.from_dict(rows, orient="index")
    comps = dict(tau)
    comps["within"] = within
    note = ("between variances at the random intercepts" if not adjusted and not at
            else "between variances at the given covariate values" if at
            else "between variances averaged over the observed rows")
    return MultilevelICC(table, comps, f"sum of shared tau / (sum of tau + {wdesc})",
                         note + "; a factor's ICC includes the factors it is nested in")


@dataclass(frozen=True)
class MultilevelVarianceExplained:
    """Proportional reduction of every variance component between two nested fits.

    ``table`` is indexed by component (each factor, then ``within``) with columns
    ``reduced``, ``full`` and ``explained`` = (reduced - full) / reduced (NaN for a
    factor only one of the fits has). ``icc_reduced`` and ``icc_full`` are the two
    fits' :class:`MultilevelICC`.
    """

    table: pd.DataFrame
    note: str = ""
    icc_reduced: MultilevelICC | None = field(default=None, repr=False)
    icc_full: MultilevelICC | None = field(default=None, repr=False)

    def __getitem__(self, component) -> float:
        return float(self.table.loc[component, "explained"])

    def __str__(self) -> str:
        txt = "Proportion of variance explained (reduction of each component)\n"
        txt += self.table.to_string(float_format=lambda v: f"{v:.4f}")
        return txt + (f"\nnote: {self.note}" if self.note else "")

    __repr__ = __str__


def multilevel_variance_explained(reduced, full, at=None, adjusted=False):
    r"""Per-level proportional reduction of the variance components,

    .. math:: R^2_k = (\tau_{k,\mathrm{red}} - \tau_{k,\mathrm{full}}) / \tau_{k,\mathrm{red}}

    for every factor k and for the within variance (module docstring); the
    components are those of :func:`multilevel_icc` (``at``, ``adjusted``).
    """
    from .icc import _family
    fr, ff = _family(reduced), _family(full)
    if fr.distribution is not ff.distribution:
        raise ValueError(f"the two fits have different families "
                         f"({', '.join(sorted({fr.name, ff.name}))})")
    if reduced.model.nobs != full.model.nobs:
        raise ValueError("the fits use different numbers of rows; variance components are "
                         "only comparable on the same data")
    a = multilevel_icc(reduced, at=at, adjusted=adjusted)
    b = multilevel_icc(full, at=at, adjusted=adjusted)
    keys = list(dict.fromkeys([k for k in a.components if k != "within"]
                              + [k for k in b.components if k != "within"] + ["within"]))
    rows = {k: {"reduced": a.components.get(k, np.nan), "full": b.components.get(k, np.nan)}
            for k in keys}
    table = pd.DataFrame.from_dict(rows, orient="index")
    with np.errstate(divide="ignore", invalid="ignore"):
        table["explained"] = (table["reduced"] - table["full"]) / table["reduced"]
    notes = []
    if not fr.is_gaussian:
        notes.append("on the latent/distribution scale the within variance is fixed by the "
                     "family (Hox 2010, sec. 6.5)")
    only = [k for k in keys if k not in a.components or k not in b.components]
    if only:
        notes.append(f"{', '.join(only)} in one fit only (explained: NaN)")
    methods = {getattr(reduced, "method", None), getattr(full, "method", None)}
    if "reml" in methods and len(methods) > 1:
        notes.append("the fits mix REML and ML estimates")
    return MultilevelVarianceExplained(table, "; ".join(notes), a, b)
