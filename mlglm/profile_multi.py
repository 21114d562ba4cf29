"""Profile-likelihood intervals for fits with several grouping factors.

The method is that of :mod:`mlglm.profile` (signed root zeta(c), maximisation
over the affine subspace a'w = c by BFGS in whitened coordinates, bracketing
and Brent's method; the same :class:`~mlglm.profile.Profiler`); what changes
is the parametrisation. Working coordinates are

    w = (beta [absent for "reml"], w_re, log sigma [Gaussian] or t [a GLMM's log dispersion]),

with w_re the natural-parameter coordinates of every term and covariance block
(:class:`~mlglm.core.natural_layout.NaturalLayout`: log s per effect -- per
tied block one -- and atanh of the canonical partial correlations within each
unstructured block). Every SD, the first correlation of every block, sigma and
every fixed effect is one coordinate; another correlation is profiled in a
layout whose block is permuted so that its pair comes first.

The log-likelihood l(w):

* binomial / Poisson: the fit's own objective (``model.objective(nagq)``; the
  several-factor Laplace approximation of
  :class:`~mlglm.core.laplace_multi.MultiLaplace`) at x = (beta, theta(w_re)),
  with its exact gradient chained through w: dl/dw_re = (dtheta/dw_re)' dl/dtheta
  (the Jacobian of the closed-form map by central differences);
* Gaussian: :func:`~mlglm.core.lmm_multi.multi_gaussian_loglik`, the unprofiled
  ML or REML log-likelihood at (beta, Lambda_k absolute, sigma^2), with the
  gradient by central differences (one blocked factorisation per value).
  Variance parameters are profiled on the fit's criterion (REML for a REML fit),
  fixed effects on the ML likelihood; ``criterion="ml"`` profiles everything on
  ML, which is what lme4's ``confint()`` does (its ``devfun2`` calls ``refitML``).

Boundaries as for one factor: an SD's lower limit is 0 when zeta at log s 20
below its estimate is still inside; a correlation's limit is +-1 when zeta at
+-0.9999 is.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .core.lmm_multi import multi_gaussian_loglik, multi_lmm_stats
from .core.errors import ModeFailure
from .core.natural_layout import NaturalLayout
from .profile import (Profiler, extra_names, fit_criterion, fit_loglik, profile_label,
                      profile_limits)

__all__ = ["multi_layout", "multi_natural_names", "multi_natural_values",
           "MultiLikelihoodProblem", "multi_profile_conf_int", "term_Sigmas"]


def multi_layout(model) -> NaturalLayout:
    """The identity layout of a model's random-effects terms."""
    return NaturalLayout([t.pattern for t in model.re_terms])


def term_Sigmas(results) -> list[np.ndarray]:
    """Sigma_k per term (absolute scale), in term order."""
    return [np.asarray(S, dtype=float) for S in results.outcome.Sigmas]


def _block_label(term, entry) -> str:
    names = [str(term.column_names[c]) for c in entry.effects]
    if len(names) == 1:
        return names[0]
    heads = {n.split("[", 1)[0] for n in names}     # vc's "key[col]" columns
    return heads.pop() if len(heads) == 1 and all("[" in n for n in names) else " + ".join(names)


def multi_natural_names(model) -> tuple[list[str], list[str]]:
    """(fixed-effect names, labels of the natural variance parameters in layout order):
    ``sd(effect | factor)`` (a tied block: ``sd(name | factor)``) and
    ``cor(effect_l, effect_k | factor)``."""
    fe = [str(n) for n in model.exog_names]
    out = []
    for e in multi_layout(model).entries:
        t = model.re_terms[e.term]
        if e.kind == "sd":
            out.append(f"sd({_block_label(t, e)} | {t.name})")
        else:
            k, l = e.effects
            out.append(f"cor({t.column_names[l]}, {t.column_names[k]} | {t.name})")
    return fe, out


def multi_natural_values(results) -> pd.Series:
    """Estimates: fixed effects, SDs and correlations per term[, sigma or the dispersion]."""
    model = results.model
    fe, re = multi_natural_names(model)
    vals = [np.asarray(results.fe_params, dtype=float),
            multi_layout(model).natural(term_Sigmas(results))]
    if model.fam.is_gaussian:
        vals.append([np.sqrt(results.scale)])
    elif model.fam.estimates_dispersion:
        vals.append([results.dispersion])
    return pd.Series(np.concatenate(vals), index=fe + re + extra_names(model))


class MultiLikelihoodProblem:
    """l(w) in working coordinates for one layout (see the module docstring).

    Parameters
    ----------
    results : a fit with several grouping factors.
    layout : NaturalLayout (identity or permuted for one correlation).
    criterion : ``"glmm"``, ``"ml"`` or ``"reml"``.
    """

    def __init__(self, results, layout: NaturalLayout, criterion: str):
        model = results.model
        self.layout = layout
        self.criterion = criterion
        self.p = model.k_fe
        self.n_beta = 0 if criterion == "reml" else self.p
        # one trailing coordinate: log sigma (Gaussian) or the log dispersion t (GLMM)
        self.n_sigma = 0 if criterion == "glmm" and not model.fam.estimates_dispersion else 1
        self.dim = self.n_beta + layout.dim + self.n_sigma
        self.terms = model.re_terms
        if criterion == "glmm":
            self.obj = model.objective(results.nagq or 1)
        else:
            self.stats = multi_lmm_stats(np.asarray(model.endog, float) - model.offset,
                                         np.asarray(model.exog, float), model.re_terms,
                                         plan=model.problem.plan, freq=model.freq_weights,
                                         var=model.var_weights)

    def unpack(self, w):
        w = np.asarray(w, dtype=float)
        beta = w[:self.n_beta]
        w_re = w[self.n_beta:self.n_beta + self.layout.dim]
        log_sigma = w[-1] if self.n_sigma else 0.0
        return beta, w_re, log_sigma

    def pack(self, beta, Sigmas, sigma2=None, min_sd=1e-5) -> np.ndarray:
        """w of (beta, Sigma_k per term (absolute), sigma^2)."""
        parts = [np.asarray(beta, float)[:self.n_beta], self.layout.to_working(Sigmas, min_sd)]
        if self.n_sigma:
            parts.append([np.log(sigma2) if self.criterion == "glmm" else 0.5 * np.log(sigma2)])
        return np.concatenate(parts)

    def _x(self, beta, theta, w):
        """x = (beta, theta[, t]) of the objective."""
        return np.concatenate([beta, theta] + ([w[-1:]] if self.n_sigma else []))

    def value(self, w) -> float:
        beta, w_re, log_sigma = self.unpack(w)
        theta = self.layout.theta(w_re)
        if self.criterion == "glmm":
            try:
                return float(self.obj(self._x(beta, theta, w)))
            except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
                return -np.inf
        beta = beta if self.n_beta else np.zeros(self.p)
        return multi_gaussian_loglik(beta, self.terms.Lambdas(theta), np.exp(2 * log_sigma),
                                     self.stats, reml=self.criterion == "reml")

    def value_and_gradient(self, w):
        """(l, dl/dw): exact gradient chained through w (GLMMs), central differences
        (Gaussian)."""
        w = np.asarray(w, dtype=float)
        if self.criterion != "glmm":
            f0 = self.value(w)
            g = np.empty_like(w)
            for i in range(w.size):
                h = 1e-5 * max(1.0, abs(w[i]))
                e = np.zeros_like(w)
                e[i] = h
                g[i] = (self.value(w + e) - self.value(w - e)) / (2 * h)
            return f0, g
        beta, w_re, _ = self.unpack(w)
        try:
            f, gx = self.obj.value_and_gradient(self._x(beta, self.layout.theta(w_re), w))
        except (ModeFailure, np.linalg.LinAlgError, FloatingPointError):
            return -np.inf, np.zeros_like(w)
        J = self.layout.theta_jacobian(w_re)
        k = J.shape[0]
        return f, np.concatenate([gx[:self.p], J.T @ gx[self.p:self.p + k], gx[self.p + k:]])


def _start(problem, results):
    sigma2 = None
    if problem.n_sigma:
        sigma2 = results.dispersion if problem.criterion == "glmm" else results.scale
    return problem.pack(results.fe_params, term_Sigmas(results), sigma2)


def multi_profile_conf_int(results, level=0.95, which=None, criterion=None) -> pd.DataFrame:
    """Profile-likelihood intervals for a fit with several grouping factors: the
    arguments and the returned table are those of :func:`mlglm.profile.profile_conf_int`
    (rows: fixed effects, ``sd(effect | factor)``, ``cor(a, b | factor)``, ``sigma``)."""
    model = results.model
    gaussian = model.fam.is_gaussian
    extra = extra_names(model)           # ["sigma"], [dispersion name] or []
    z_crit = stats.norm.ppf(0.5 + level / 2.0)
    fe, re = multi_natural_names(model)
    labels = fe + re + extra
    wanted = None if which is None else set(which)
    if wanted is not None and wanted - set(labels):
        raise ValueError(f"unknown parameter(s) {sorted(wanted - set(labels))}; choose from "
                         f"{labels}")
    want = (lambda name: wanted is None or name in wanted)
    if criterion not in (None, "ml", "reml"):
        raise ValueError("criterion must be None, 'ml' or 'reml'")
    var_crit = fit_criterion(results)
    if gaussian and criterion is not None:
        if criterion == "reml" and results.method != "reml":
            raise ValueError("criterion='reml' needs a REML fit")
        var_crit = criterion
    estimates = multi_natural_values(results)
    rows, n_fits = {}, 0

    def run(layout, crit, jobs):
        nonlocal n_fits
        if not jobs:
            return
        prob = MultiLikelihoodProblem(results, layout, crit)
        prof = Profiler(prob, _start(prob, results), fit_loglik(results, crit))
        for name, idx, kind in jobs:
            if idx < 0:
                idx += prob.dim
            elif kind != "beta":
                idx += prob.n_beta
            lo, hi = profile_limits(prof, idx, kind, z_crit)
            rows[name] = (float(estimates[name]), lo, hi, profile_label(crit))
        n_fits += prof.n_fits

    ident = multi_layout(model)
    jobs = [] if gaussian else [(n, i, "beta") for i, n in enumerate(fe) if want(n)]
    permuted = []
    for j, (e, name) in enumerate(zip(ident.entries, re)):
        if not want(name):
            continue
        idx = ident.index_of(j)
        if idx is not None:
            jobs.append((name, idx, e.kind))
        else:
            permuted.append((j, name))
    if extra and want(extra[0]):
        jobs.append((extra[0], -1, "sigma"))     # log sigma or log dispersion: exp back
    run(ident, var_crit, jobs)
    for j, name in permuted:
        layout, idx = ident.permuted_for(j)
        run(layout, var_crit, [(name, idx, "cor")])
    if gaussian:
        run(ident, "ml", [(n, i, "beta") for i, n in enumerate(fe) if want(n)])
    order = [n for n in labels if n in rows]
    out = pd.DataFrame([rows[n] for n in order], index=order,
                       columns=["estimate", "lower", "upper", "interval"])
    out.attrs["criterion"] = var_crit
    out.attrs["n_fits"] = n_fits
    out.attrs["level"] = level
    return out
