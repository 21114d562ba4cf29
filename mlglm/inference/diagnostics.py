"""Is the quadrature good enough? Refit or re-evaluate with more points.

Laplace (nAGQ = 1) can be biased for binary data in small groups, and even
AGHQ needs enough points per dimension. :func:`check_quadrature` answers the
question directly for a fitted model: it evaluates the log-likelihood at the
current estimates with more points (cheap) and, by default, refits with
them, and reports how much the log-likelihood, the fixed effects (in units of
their standard errors) and the random-effect SDs move. No peer offers this;
lme4 users compare nAGQ values by hand (and only for scalar random effects).
With nested grouping factors the check integrates every level (nested AGHQ).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Changes below these count as "adequate": fixed effects in units of their
# standard errors (SE_FRACTION), random-effect SDs relative to themselves
# (SD_RELATIVE), and (without a refit) the log-likelihood at the estimates, in
# absolute terms (LLF_TOL). The same numbers judge the check every AGHQ fit
# makes at its optimum (mlglm.core.fit.adequacy).
from ..core.fit.adequacy import LLF_TOL, SD_RELATIVE, SE_FRACTION
from ..core.engines.nested.objective import quadrature_dimension

__all__ = ["QuadratureCheck", "check_quadrature"]


@dataclass(frozen=True)
class QuadratureCheck:
    """Outcome of :func:`check_quadrature`.

    table : one row per number of points (the fit's own first): log-likelihood
        at the fit's estimates, refitted log-likelihood, largest change of a
        fixed effect in SE units, largest relative change of a random-effect SD.
    adequate : True when every comparison is below the tolerances.
    """

    table: pd.DataFrame
    adequate: bool
    advice: str

    def __repr__(self):
        return (f"Quadrature check ({'adequate' if self.adequate else 'NOT adequate'})\n"
                f"{self.table.to_string()}\n{self.advice}")


def _default_points(res):
    q = quadrature_dimension(res.model.re_terms)      # every nested level is integrated
    k = res.nagq or 1
    if q >= 3:
        return [max(k + 2, 3), max(k + 4, 5)]
    return sorted({max(k * 2 + 1, 5), max(k * 2 + 1, 5) + 6})


def _sds(res) -> np.ndarray:
    """Random-effect SDs of every term (``cov_re`` is a dict of frames with several)."""
    cov = res.cov_re
    mats = cov.values() if isinstance(cov, dict) else [cov]
    return np.concatenate([np.sqrt(np.diag(np.asarray(S, dtype=float))) for S in mats])


def check_quadrature(res, nagq=None, refit=True) -> QuadratureCheck:
    """Compare a GLMM fit with AGHQ fits using more points.

    The "max rel d SD" column also counts the relative change of an estimated
    dispersion (negative binomial theta, Gamma scale).

    Parameters
    ----------
    res : MixedGLMResults from ``method="laplace"`` or ``"aghq"``.
    nagq : points per dimension to compare with (default: two larger values).
    refit : also refit with each number of points (otherwise only the
        log-likelihood at the current estimates is re-evaluated).
    """
    model = res.model
    if model.fam.is_gaussian:
        raise ValueError("Gaussian fits are exact; there is no quadrature to check")
    if nagq is None:
        points = _default_points(res)
    else:
        points = [nagq] if np.ndim(nagq) == 0 else list(nagq)
        if not all(isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1
                   for k in points):
            raise ValueError(f"nagq must be an integer >= 1 or a list of them, got {nagq!r}")
        points = [int(k) for k in points]
    k0 = res.nagq or 1
    se = np.asarray(res.bse_fe)
    sd0 = _sds(res)
    rows = [{"nagq": k0, "llf at estimates": res.llf, "llf refit": res.llf,
             "max |d fe| / SE": 0.0, "max rel d SD": 0.0}]
    ok = True
    for k in points:
        llf_at = model.loglike(np.asarray(res.params), method="aghq", nagq=k)
        row = {"nagq": k, "llf at estimates": llf_at, "llf refit": np.nan,
               "max |d fe| / SE": np.nan, "max rel d SD": np.nan}
        if not refit:
            ok &= abs(llf_at - res.llf) < LLF_TOL
        else:
            other = model.fit(method="aghq", nagq=k, start_params=np.asarray(res.params))
            sd = _sds(other)
            dfe = np.max(np.abs(np.asarray(other.fe_params) - np.asarray(res.fe_params)) / se)
            dsd = np.max(np.abs(sd - sd0) / np.maximum(sd0, 1e-8))
            if model.fam.estimates_dispersion:   # NB theta / Gamma scale: as an SD would move
                dsd = max(dsd, abs(other.dispersion - res.dispersion) / res.dispersion)
            row.update({"llf refit": other.llf, "max |d fe| / SE": dfe, "max rel d SD": dsd})
            ok &= dfe < SE_FRACTION and dsd < SD_RELATIVE
        rows.append(row)
    table = pd.DataFrame(rows).set_index("nagq")
    shift = table["llf at estimates"].iloc[-1] - res.llf
    if ok:
        advice = ("More quadrature points move the estimates by less than "
                  f"{SE_FRACTION} SE (SDs by < {SD_RELATIVE:.0%}): the approximation is adequate "
                  "for the estimates.")
        if abs(shift) >= LLF_TOL:
            advice += (f" The log-likelihood itself shifts by {shift:+.3f}; compare models by "
                       "LR tests only within one approximation.")
    else:
        advice = (f"The estimates move with more points: use method='aghq' with "
                  f"nagq='auto' (raises nagq until the estimates settle) or nagq={points[-1]} "
                  "(or more) for this model.")
    return QuadratureCheck(table=table, adequate=bool(ok), advice=advice)
