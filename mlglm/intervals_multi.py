"""Wald intervals and ``conf_int`` rows for fits with several grouping factors.

The scales are those of :mod:`mlglm.intervals`: fixed effects on their own
scale, SDs on the log scale, correlations on Fisher's atanh scale, transformed
back. The SEs:

* binomial / Poisson: from ``cov_params()`` (inverse observed information on
  (beta, vech Sigma_k per term)) by the delta method, per term k,
  se(log s_i) = se(Sigma_k,ii) / (2 Sigma_k,ii) (a tied block: any of its equal
  variances) and
  d atanh(rho_il) = [dSigma_il / (s_i s_l)
                     - rho (dSigma_ii / 2Sigma_ii + dSigma_ll / 2Sigma_ll)] / (1 - rho^2);
* Gaussian (``cov_params()`` has no variance block): the observed information of
  the fit's criterion (REML or ML) in the working coordinates
  (:class:`~mlglm.profile_multi.MultiLikelihoodProblem`), mapped to
  (log s, atanh rho, log sigma) by a numerical Jacobian.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .intervals import delta_method_se
from .profile_multi import multi_layout, multi_natural_names, multi_natural_values, term_Sigmas

__all__ = ["multi_wald_conf_int", "vech_positions", "multi_params_rows"]

_NA = "no Wald SE (use method='profile')"


def vech_positions(model) -> list[dict]:
    """Per term, {(r, c): position in ``params``} of its vech(Sigma_k) entries (r >= c)."""
    out, i = [], model.k_fe
    for t in model.re_terms:
        rows, cols = np.tril_indices(t.q)
        out.append({(int(r), int(c)): i + j for j, (r, c) in enumerate(zip(rows, cols))})
        i += rows.size
    return out


def _gaussian_se(results):
    """SEs of (log s, atanh rho per layout entry, log sigma) from the observed
    information of the fit's criterion in working coordinates."""
    from .profile import fit_criterion, observed_information
    from .profile_multi import MultiLikelihoodProblem
    layout = multi_layout(results.model)
    prob = MultiLikelihoodProblem(results, layout, fit_criterion(results))
    w = prob.pack(results.fe_params, term_Sigmas(results), results.scale)
    cov_w = np.linalg.inv(observed_information(prob, w))
    kinds = np.array([e.kind for e in layout.entries])

    def nat(v):
        _, w_re, log_sigma = prob.unpack(v)
        vals = layout.natural([L @ L.T for L in layout.Lambdas(w_re)])
        vals = np.where(kinds == "sd", np.log(np.maximum(vals, 1e-300)),
                        np.arctanh(np.clip(vals, -1 + 1e-15, 1 - 1e-15)))
        return np.concatenate([vals, [log_sigma]])
    return delta_method_se(nat, w, cov_w)


def multi_wald_conf_int(results, level=0.95) -> pd.DataFrame:
    """Wald intervals (module docstring) with the rows of
    :func:`~mlglm.profile_multi.multi_natural_values`."""
    model = results.model
    z = stats.norm.ppf(0.5 + level / 2.0)
    est = multi_natural_values(results)
    fe, re = multi_natural_names(model)
    layout = multi_layout(model)
    cov = np.asarray(results.cov_params(), dtype=float)
    rows = []
    for i, name in enumerate(fe):
        se = np.sqrt(cov[i, i])
        rows.append((name, est[name] - z * se, est[name] + z * se, "Wald"))
    if model.fam.is_gaussian:
        se_nat = _gaussian_se(results)
        for j, (e, name) in enumerate(zip(layout.entries, re)):
            rows.append(_transformed(name, est[name], se_nat[j], z, e.kind))
        rows.append(_transformed("sigma", est["sigma"], se_nat[-1], z, "sd"))
        return _frame(rows, est, level)
    Sigmas = term_Sigmas(results)
    pos = vech_positions(model)
    for e, name in zip(layout.entries, re):
        S, P = Sigmas[e.term], pos[e.term]
        if e.kind == "sd":
            k = e.effects[0]
            j = P[(k, k)]
            var = S[k, k]
            se = np.sqrt(cov[j, j]) / (2 * var) if var > 0 else np.nan
            rows.append(_transformed(name, est[name], se, z, "sd"))
            continue
        k, l = e.effects
        rho = est[name]
        se = np.nan
        if S[k, k] > 0 and S[l, l] > 0 and abs(rho) < 1:
            g = np.zeros(cov.shape[0])
            g[P[(k, l)]] = 1.0 / np.sqrt(S[k, k] * S[l, l])
            g[P[(k, k)]] = -rho / (2 * S[k, k])
            g[P[(l, l)]] = -rho / (2 * S[l, l])
            g /= 1 - rho ** 2
            idx = np.flatnonzero(g)
            se = np.sqrt(g[idx] @ cov[np.ix_(idx, idx)] @ g[idx])
        rows.append(_transformed(name, rho, se, z, "cor"))
    from .intervals import _dispersion_rows, _zero_part_rows
    zi_rows, est = _zero_part_rows(results, est, z, cov)
    rows += zi_rows + _dispersion_rows(results, est, z)
    return _frame(rows, est, level)


def _transformed(name, value, se, z, kind):
    """(name, lower, upper, label) on the log (SD) or atanh (correlation) scale."""
    f, finv, label = ((np.log, np.exp, "Wald, log scale") if kind == "sd" else
                      (np.arctanh, np.tanh, "Wald, atanh scale"))
    ok = np.isfinite(se) and (value > 0 if kind == "sd" else abs(value) < 1)
    if not ok:
        return (name, np.nan, np.nan, _NA)
    c = f(value)
    return (name, finv(c - z * se), finv(c + z * se), label)


def _frame(rows, est, level):
    out = pd.DataFrame([r[1:] for r in rows], index=[r[0] for r in rows],
                       columns=["lower", "upper", "interval"])
    out.insert(0, "estimate", est.reindex(out.index).to_numpy())
    out.attrs["level"] = level
    return out


def multi_params_rows(results, rich: pd.DataFrame) -> np.ndarray:
    """(k, 2) ``conf_int`` rows from an intervals table: fixed effects as they are, a
    variance's limits the squared limits of its SD (every effect of a tied block),
    covariances NaN."""
    model = results.model
    fe, re = multi_natural_names(model)
    layout = multi_layout(model)
    pos = vech_positions(model)
    out = np.full((len(model.data.param_names), 2), np.nan)
    out[:len(fe)] = rich.loc[fe, ["lower", "upper"]].to_numpy(dtype=float)
    for e, name in zip(layout.entries, re):
        if e.kind == "sd" and name in rich.index:
            lim = rich.loc[name, ["lower", "upper"]].to_numpy(dtype=float) ** 2
            for k in e.effects:
                out[pos[e.term][(k, k)]] = lim
    name = model.fam.dispersion_name
    if model.fam.estimates_dispersion and name in rich.index:   # profiled itself
        out[-1] = rich.loc[name, ["lower", "upper"]].to_numpy(dtype=float)
    return out
