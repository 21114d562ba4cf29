"""Confidence intervals for fixed effects, random-effect SDs and correlations.

``results.intervals(method=...)`` (the table with SDs, correlations and how each
interval was made) dispatches to :func:`conf_int`; ``results.conf_int(method=...)``
(statsmodels' shape: one row per ``params`` entry, columns lower and upper) to
:func:`params_conf_int`. Methods:

* ``"wald"`` -- estimate +- z SE. Fixed effects on their own scale. SDs and
  correlations are not symmetric quantities, so their Wald intervals are
  built on the scales where the normal approximation is sensible and
  transformed back: log s (so the interval stays positive) and Fisher's
  atanh(rho) (so it stays inside (-1, 1)); the SEs come from ``cov_params()``
  (on vech Sigma) by the delta method,
  se(log s_k) = se(Sigma_kk) / (2 Sigma_kk) and
  d atanh(rho_kl) = [dSigma_kl / (s_k s_l) - rho (dSigma_kk / 2Sigma_kk + dSigma_ll / 2Sigma_ll)] / (1 - rho^2).
  The ``interval`` column says which. The dispersion of a negative binomial or
  Gamma fit (``theta``, ``scale``) is on the log scale too, se(log d) = se(d) / d.
  For Gaussian fits (whose ``cov_params()``
  has no variance-component block) the SEs on those scales come from the
  observed information of the REML/ML criterion in (log s, atanh z, log sigma).
* ``"profile"`` -- :mod:`mlglm.profile`.
* ``"bootstrap"`` -- percentile intervals of :mod:`mlglm.bootstrap`.

Fits with several grouping factors go to :mod:`mlglm.intervals_multi` (Wald)
and :mod:`mlglm.profile_multi` (profile): the same scales and methods over every
SD and correlation of every factor.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .profile import natural_names, natural_values, profile_conf_int

__all__ = ["wald_conf_int", "conf_int", "params_conf_int", "select_rows"]

_NA = "no Wald SE (use method='profile')"


def _vech_pos(q):
    """(k, l) -> position in vech (row-major lower triangle)."""
    rows, cols = np.tril_indices(q)
    return {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows, cols))}


def _gaussian_variance_se(results):
    """SEs of (log s_k, atanh rho_kl, log sigma) for a Gaussian fit, from the observed
    information of the fit's criterion (REML or ML) in working coordinates
    (:class:`~mlglm.profile.LikelihoodProblem`), by central differences of the
    exact likelihood, mapped to every correlation by a numerical Jacobian."""
    from .core.natural import correlations, natural_to_Lambda
    from .profile import LikelihoodProblem, fit_criterion, observed_information
    q = results.model.q
    prob = LikelihoodProblem(results, np.arange(q), fit_criterion(results))
    w = prob.pack(results.fe_params, results.cov_re, results.scale)
    H = observed_information(prob, w)
    cov_w = np.linalg.inv(H)
    diag = results.model.diagonal or q == 1

    def nat(v):
        _, log_s, a, log_sigma = prob.unpack(v)
        Lam = natural_to_Lambda(log_s, a, q, diag)
        rho = np.zeros(0) if diag else correlations(Lam @ Lam.T)
        return np.concatenate([log_s, np.arctanh(np.clip(rho, -1 + 1e-15, 1 - 1e-15)),
                               [log_sigma]])
    return delta_method_se(nat, w, cov_w)


def delta_method_se(nat, w, cov_w) -> np.ndarray:
    """Delta-method SEs of nat(w): sqrt(diag(J cov_w J')) with the Jacobian J of ``nat``
    by central differences (steps 1e-6 relative; nat is a cheap closed form)."""
    J = np.empty((nat(w).size, w.size))
    for i in range(w.size):
        e = np.zeros_like(w)
        e[i] = 1e-6 * max(1.0, abs(w[i]))
        J[:, i] = (nat(w + e) - nat(w - e)) / (2 * e[i])
    return np.sqrt(np.clip(np.diag(J @ cov_w @ J.T), 0, None))


def wald_conf_int(results, level=0.95) -> pd.DataFrame:
    """Wald intervals; SDs on the log scale, correlations on the atanh scale."""
    model = results.model
    p, q = model.k_fe, model.q
    z = stats.norm.ppf(0.5 + level / 2.0)
    est = natural_values(results)
    fe, sd, cor = natural_names(results)
    cov = np.asarray(results.cov_params(), dtype=float)
    params = np.asarray(results.params, dtype=float)
    pos = _vech_pos(q)
    rows = []
    for i, name in enumerate(fe):
        se = np.sqrt(cov[i, i])
        rows.append((name, est[name] - z * se, est[name] + z * se, "Wald"))
    Sigma = np.asarray(results.cov_re, dtype=float)
    if model.fam.is_gaussian:
        se_nat = _gaussian_variance_se(results)
        labels = ["Wald, log scale"] * q + ["Wald, atanh scale"] * len(cor) + ["Wald, log scale"]
        centre = np.concatenate([np.log(est[sd].to_numpy()), np.arctanh(est[cor].to_numpy()),
                                 [np.log(est["sigma"])]])
        back = [np.exp] * q + [np.tanh] * len(cor) + [np.exp]
        for name, c, se, f, lab in zip(sd + cor + ["sigma"], centre, se_nat, back, labels):
            rows.append((name, f(c - z * se), f(c + z * se), lab))
        return _frame(rows, est, level)
    for k, name in enumerate(sd):
        j = p + pos[(k, k)]
        var = Sigma[k, k]
        se_log = np.sqrt(cov[j, j]) / (2 * var) if var > 0 else np.nan
        c = np.log(est[name]) if var > 0 else np.nan
        rows.append((name, np.exp(c - z * se_log), np.exp(c + z * se_log),
                     "Wald, log scale" if np.isfinite(se_log) else _NA))
    kk, ll = np.tril_indices(q, -1)
    for (k, l), name in zip(zip(kk, ll), cor):
        rho = est[name]
        g = np.zeros(params.size)
        s2k, s2l = Sigma[k, k], Sigma[l, l]
        if s2k > 0 and s2l > 0 and abs(rho) < 1:
            g[p + pos[(k, l)]] = 1.0 / np.sqrt(s2k * s2l)
            g[p + pos[(k, k)]] = -rho / (2 * s2k)
            g[p + pos[(l, l)]] = -rho / (2 * s2l)
            g /= 1 - rho ** 2
            idx = np.flatnonzero(g)
            se = np.sqrt(g[idx] @ cov[np.ix_(idx, idx)] @ g[idx])
            c = np.arctanh(rho)
            lo, hi = np.tanh(c - z * se), np.tanh(c + z * se)
        else:
            lo = hi = np.nan
        rows.append((name, lo, hi, "Wald, atanh scale" if np.isfinite(lo) else _NA))
    zi_rows, est = _zero_part_rows(results, est, z, cov)
    rows += zi_rows + _dispersion_rows(results, est, z)
    return _frame(rows, est, level)


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


def _dispersion_rows(results, est, z):
    """The Wald row of an estimated dispersion (last in params), on the log scale."""
    fam = results.model.fam
    if not fam.estimates_dispersion:
        return []
    name, d = fam.dispersion_name, float(results.dispersion)
    se_log = results.bse_dispersion / d
    return [(name, d * np.exp(-z * se_log), d * np.exp(z * se_log), "Wald, log scale")]


def _frame(rows, est, level):
    out = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                       columns=["lower", "upper", "interval"])
    out.insert(0, "estimate", est.reindex(out.index).to_numpy())
    out.attrs["level"] = level
    return out


def conf_int(results, level=0.95, method="wald", which=None, n_boot=200, seed=None,
             n_jobs=1, progress=None, boot=None, criterion=None) -> pd.DataFrame:
    """Intervals for fixed effects, SDs, correlations (and sigma), by ``method``."""
    multi = getattr(results.model, "multi", False)
    if method == "wald":
        if multi:
            from .intervals_multi import multi_wald_conf_int
            out = multi_wald_conf_int(results, level)
        else:
            out = wald_conf_int(results, level)
    elif method == "profile":
        if multi:
            from .profile_multi import multi_profile_conf_int
            return multi_profile_conf_int(results, level=level, which=which, criterion=criterion)
        return profile_conf_int(results, level=level, which=which, criterion=criterion)
    elif method == "bootstrap":
        if boot is None:
            from .bootstrap import bootstrap
            boot = bootstrap(results, n=n_boot, seed=seed, progress=progress, n_jobs=n_jobs)
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
    """(k, 2) limits for ``params`` = (fixed effects, vech Sigma), by ``method``.

    ``"wald"``: params -/+ z bse (statsmodels' ``conf_int``). ``"profile"``: the
    fixed effects' profile limits; a variance's limits are its SD's squared (the
    map is monotone, so they are the variance's profile limits); covariances NaN.
    ``"bootstrap"``: percentiles of each entry of ``params`` over the replicates.
    ``options`` go to :func:`conf_int` (``boot``, ``n_boot``, ``seed``, ...).
    """
    from statsmodels.base.model import LikelihoodModelResults
    if method == "wald":
        if options:
            raise TypeError(f"conf_int(method='wald') takes only alpha; got {', '.join(options)}")
        return np.asarray(LikelihoodModelResults.conf_int(results, alpha), dtype=float)
    model = results.model
    level = 1 - alpha
    if method == "bootstrap":
        boot = options.pop("boot", None)
        if boot is None:
            from .bootstrap import bootstrap
            boot = bootstrap(results, n=options.pop("n_boot", 200), **options)
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
    rich = conf_int(results, level=level, method="profile", **options)
    if getattr(model, "multi", False):
        from .intervals_multi import multi_params_rows
        return multi_params_rows(results, rich)
    fe, sd, _ = natural_names(results)
    p, q = model.k_fe, model.q
    out = np.full((len(results.params), 2), np.nan)
    out[:p] = rich.loc[fe, ["lower", "upper"]].to_numpy(dtype=float)
    pos = _vech_pos(q)
    for k, name in enumerate(sd):
        out[p + pos[(k, k)]] = rich.loc[name, ["lower", "upper"]].to_numpy(dtype=float) ** 2
    if model.fam.estimates_dispersion:        # the dispersion is itself profiled
        out[-1] = rich.loc[model.fam.dispersion_name, ["lower", "upper"]].to_numpy(dtype=float)
    return out
