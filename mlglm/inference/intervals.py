"""Confidence intervals for fixed effects, random-effect SDs and correlations.

``results.intervals(method=...)`` (the table with SDs, correlations and how each
interval was made) dispatches to :func:`conf_int`; ``results.conf_int(method=...)``
(statsmodels' shape: one row per ``params`` entry, columns lower and upper) to
:func:`params_conf_int`. The rows are those of
:func:`~mlglm.inference.profile.natural_values`: fixed effects, then per random-effects term
the SD of every effect (one per tied block) and the correlations within every
unstructured block, then sigma (Gaussian) or the estimated dispersion. Methods:

* ``"wald"`` -- estimate +- z SE. Fixed effects on their own scale. SDs and
  correlations are not symmetric quantities, so their Wald intervals are
  built on the scales where the normal approximation is sensible and
  transformed back: log s (so the interval stays positive) and Fisher's
  atanh(rho) (so it stays inside (-1, 1)). The ``interval`` column says which.
  The SEs on those scales:

  - GLMMs: from ``cov_params()`` (the inverse observed information on
    (beta, vech Sigma_k per term)) by the delta method, per term,
    se(log s_i) = se(Sigma_ii) / (2 Sigma_ii) (a tied block: any of its equal
    variances) and
    d atanh(rho_il) = [dSigma_il / (s_i s_l) - rho (dSigma_ii / 2Sigma_ii + dSigma_ll / 2Sigma_ll)] / (1 - rho^2);
    the dispersion of a negative binomial or Gamma fit (``theta``, ``scale``) on
    the log scale too, se(log d) = se(d) / d;
  - Gaussian fits (``cov_params()`` has no variance-component block): the
    observed information of the fit's criterion (REML or ML) in the working
    coordinates of :class:`~mlglm.inference.profile.LikelihoodProblem`, mapped to
    (log s, atanh rho, log sigma) by a numerical Jacobian.

  Where there is no SE (a parameter at the boundary: an SD of 0, a correlation
  of +-1) the row is NaN and says so.
* ``"profile"`` -- :mod:`mlglm.inference.profile`.
* ``"bootstrap"`` -- percentile intervals of the parametric bootstrap
  (``results.bootstrap``, :mod:`mlglm.inference.bootstrap`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.base.model import LikelihoodModelResults

from .profile import (LikelihoodProblem, fit_criterion, natural_layout, natural_names,
                      natural_values, observed_information, profile_conf_int, term_Sigmas)

__all__ = ["wald_conf_int", "conf_int", "params_conf_int", "select_rows", "vech_positions",
           "delta_method_se", "interval_frame"]

_NA = "no Wald SE (use method='profile')"


def vech_positions(model) -> list[dict]:
    """Per term, {(r, c): position in ``params``} of its vech(Sigma_k) entries (r >= c)."""
    out, i = [], model.k_fe
    for t in model.re_terms:
        rows, cols = np.tril_indices(t.q)
        out.append({(int(r), int(c)): i + j for j, (r, c) in enumerate(zip(rows, cols))})
        i += rows.size
    return out


def delta_method_se(nat, w, cov_w) -> np.ndarray:
    """Delta-method SEs of nat(w): sqrt(diag(J cov_w J')) with the Jacobian J of ``nat``
    by central differences (steps 1e-6 relative; nat is a cheap closed form)."""
    J = np.empty((nat(w).size, w.size))
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = 1e-6 * max(1.0, abs(w[i]))
        J[:, i] = (nat(w + e) - nat(w - e)) / (2 * e[i])
    return np.sqrt(np.clip(np.diag(J @ cov_w @ J.T), 0, None))


def _gaussian_se(results) -> np.ndarray:
    """SEs of (log s, atanh rho per layout entry, log sigma) of a Gaussian fit from the
    observed information of its criterion in working coordinates."""
    layout = natural_layout(results.model)
    prob = LikelihoodProblem(results, layout, fit_criterion(results))
    w = prob.start(results)
    cov_w = np.linalg.inv(observed_information(prob, w))
    is_sd = np.array([e.kind == "sd" for e in layout.entries])

    def nat(v):
        _, w_re, log_sigma = prob.unpack(v)
        vals = layout.natural([L @ L.T for L in layout.Lambdas(w_re, triangular=False)])
        vals = np.where(is_sd, np.log(np.maximum(vals, 1e-300)),
                        np.arctanh(np.clip(vals, -1 + 1e-15, 1 - 1e-15)))
        return np.concatenate([vals, [log_sigma]])
    return delta_method_se(nat, w, cov_w)


def _glmm_se(results, layout, cov) -> np.ndarray:
    """SEs of (log s, atanh rho) per layout entry from ``cov_params()`` by the delta
    method (module docstring); NaN at the boundary."""
    Sigmas = term_Sigmas(results)
    pos = vech_positions(results.model)
    out = np.full(layout.dim, np.nan)
    for j, e in enumerate(layout.entries):
        S, P = Sigmas[e.term], pos[e.term]
        if e.kind == "sd":
            k = e.effects[0]
            if S[k, k] > 0:
                out[j] = np.sqrt(cov[P[(k, k)], P[(k, k)]]) / (2 * S[k, k])
            continue
        k, l = e.effects
        if not (S[k, k] > 0 and S[l, l] > 0):
            continue
        rho = S[k, l] / np.sqrt(S[k, k] * S[l, l])
        if abs(rho) >= 1:
            continue
        g = np.zeros(cov.shape[0])
        g[P[(k, l)]] = 1.0 / np.sqrt(S[k, k] * S[l, l])
        g[P[(k, k)]] = -rho / (2 * S[k, k])
        g[P[(l, l)]] = -rho / (2 * S[l, l])
        g /= 1 - rho ** 2
        idx = np.flatnonzero(g)
        out[j] = np.sqrt(g[idx] @ cov[np.ix_(idx, idx)] @ g[idx])
    return out


def wald_conf_int(results, level=0.95) -> pd.DataFrame:
    """Wald intervals (module docstring) with the rows of
    :func:`~mlglm.inference.profile.natural_values`; SDs on the log scale, correlations on the
    atanh scale."""
    model = results.model
    z = stats.norm.ppf(0.5 + level / 2.0)
    est = natural_values(results)
    fe, re, _ = natural_names(model)
    layout = natural_layout(model)
    cov = np.asarray(results.cov_params(), dtype=float)
    rows = []
    for i, name in enumerate(fe):
        se = np.sqrt(cov[i, i])
        rows.append((name, est[name] - z * se, est[name] + z * se, "Wald"))
    se = _gaussian_se(results) if model.fam.is_gaussian else _glmm_se(results, layout, cov)
    for e, name, se_j in zip(layout.entries, re, se):
        rows.append(_transformed(name, est[name], se_j, z, e.kind))
    zi_rows, est = _zero_part_rows(results, est, z, cov)
    rows += zi_rows
    if model.fam.is_gaussian:
        rows.append(_transformed("sigma", est["sigma"], se[-1], z, "sd"))
    elif model.fam.estimates_dispersion:        # the dispersion, last in params
        name, d = model.fam.dispersion_name, float(results.dispersion)
        rows.append(_transformed(name, d, results.bse_dispersion / d, z, "sd"))
    return interval_frame(rows, est, level)


def _zero_part_rows(results, est, z, cov):
    """(Wald rows, estimates with them) of the zero-part coefficients (zero-inflated and
    hurdle fits), on their own (logit) scale."""
    zi = results.zi_params
    if not len(zi):
        return [], est
    names = list(results.model.data.param_names)
    rows = []
    for name, value in zi.items():
        i = names.index(name)
        se = np.sqrt(cov[i, i])
        rows.append((name, value - z * se, value + z * se, "Wald"))
    return rows, pd.concat([est, zi])


def _transformed(name, value, se, z, kind):
    """(name, lower, upper, label) on the log (SD, sigma, dispersion) or atanh
    (correlation) scale; NaN and ``_NA`` without an SE or at the boundary."""
    f, finv, label = ((np.log, np.exp, "Wald, log scale") if kind == "sd" else
                      (np.arctanh, np.tanh, "Wald, atanh scale"))
    ok = np.isfinite(se) and (value > 0 if kind == "sd" else abs(value) < 1)
    if not ok:
        return (name, np.nan, np.nan, _NA)
    c = f(value)
    return (name, finv(c - z * se), finv(c + z * se), label)


def interval_frame(rows, est, level) -> pd.DataFrame:
    """The intervals table from rows (label, lower, upper, how) and the estimates."""
    out = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                       columns=["lower", "upper", "interval"])
    out.insert(0, "estimate", est.reindex(out.index).to_numpy())
    out.attrs["level"] = level
    return out


def conf_int(results, level=0.95, method="wald", which=None, n_boot=200, seed=None,
             n_jobs=1, progress=None, boot=None, criterion=None) -> pd.DataFrame:
    """Intervals for fixed effects, SDs, correlations (and sigma), by ``method``."""
    if method == "wald":
        out = wald_conf_int(results, level)
    elif method == "profile":
        return profile_conf_int(results, level=level, which=which, criterion=criterion)
    elif method == "bootstrap":
        if boot is None:
            boot = results.bootstrap(n=n_boot, seed=seed, progress=progress, n_jobs=n_jobs)
        out = boot.conf_int(level)
    else:
        raise ValueError("method must be 'wald', 'profile' or 'bootstrap'")
    if which is not None:
        missing = [w for w in which if w not in out.index]
        if missing:
            raise ValueError(f"unknown parameter(s) {missing}; choose from {list(out.index)}")
        out = out.loc[list(which)]
    return out


def select_rows(results, cols) -> np.ndarray:
    """Positions in ``params`` of ``cols`` (positions and/or labels of ``params``)."""
    names = [str(n) for n in results.model.data.param_names]
    k = len(names)
    out = []
    for c in np.atleast_1d(np.asarray(cols, dtype=object)):
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not -k <= int(c) < k:
                raise IndexError(f"cols: position {int(c)} is outside params' {k} rows")
            out.append(int(c) % k)
        elif str(c) in names:
            out.append(names.index(str(c)))
        else:
            raise KeyError(f"cols: {c!r} is not a params label; labels are {names}")
    return np.asarray(out, dtype=np.intp)


def params_conf_int(results, alpha=0.05, method="wald", **options) -> np.ndarray:
    """(k, 2) limits for ``params`` = (fixed effects, vech Sigma_k per term[, dispersion]),
    by ``method``.

    ``"wald"``: params -/+ z bse (statsmodels' ``conf_int``). ``"profile"``: the
    fixed effects' profile limits; a variance's limits are its SD's squared (the
    map is monotone, so they are the variance's profile limits; every effect of a
    tied block); covariances NaN; the dispersion is profiled itself.
    ``"bootstrap"``: percentiles of each entry of ``params`` over the replicates.
    ``options`` go to :func:`conf_int` (``boot``, ``n_boot``, ``seed``, ...).
    """
    if method == "wald":
        if options:
            raise TypeError(f"conf_int(method='wald') takes only alpha; got {', '.join(options)}")
        return np.asarray(LikelihoodModelResults.conf_int(results, alpha), dtype=float)
    model = results.model
    if method == "bootstrap":
        boot = options.pop("boot", None)
        if boot is None:
            boot = results.bootstrap(n=options.pop("n_boot", 200), **options)
        elif options:
            raise TypeError(f"with boot= given, {', '.join(options)} have no effect")
        reps = boot.replicate_params().dropna()
        return np.column_stack([reps.quantile(alpha / 2).to_numpy(),
                                reps.quantile(1 - alpha / 2).to_numpy()])
    if method != "profile":
        raise ValueError("method must be 'wald', 'profile' or 'bootstrap'")
    if "which" in options:
        raise TypeError("which= selects rows of res.intervals(); conf_int() has every "
                        "params row")
    rich = conf_int(results, level=1 - alpha, method="profile", **options)
    fe, re, _ = natural_names(model)
    pos = vech_positions(model)
    out = np.full((len(model.data.param_names), 2), np.nan)
    out[:len(fe)] = rich.loc[fe, ["lower", "upper"]].to_numpy(dtype=float)
    for e, name in zip(natural_layout(model).entries, re):
        if e.kind == "sd":
            lim = rich.loc[name, ["lower", "upper"]].to_numpy(dtype=float) ** 2
            for k in e.effects:
                out[pos[e.term][(k, k)]] = lim
    names = list(model.data.param_names)
    for name in results.zi_params.index:          # a zero part's coefficients, as they are
        out[names.index(name)] = rich.loc[name, ["lower", "upper"]].to_numpy(dtype=float)
    if model.fam.estimates_dispersion:           # the dispersion is itself profiled
        out[-1] = rich.loc[model.fam.dispersion_name, ["lower", "upper"]].to_numpy(dtype=float)
    return out
