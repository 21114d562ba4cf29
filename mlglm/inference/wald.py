"""Linear hypotheses on the parameters for ``t_test``, ``wald_test``, ``f_test`` and
``wald_test_terms``.

A hypothesis R params = q is given as statsmodels takes it: a string over the
parameter names (``"x1 = 0, c[T.b] = c[T.c]"``), an array with one column per fixed
effect (padded with zeros over the variance parameters, as ``MixedLMResults`` does)
or per entry of ``params``, or a tuple (R, q). The Wald statistic needs R V R' with
V = ``cov_params()``. Some parameters have no Wald covariance -- the variance
components of Gaussian fits, parameters held at the boundary -- and their rows and
columns of V are NaN; a hypothesis that does not involve them gets V with those
rows and columns set to 0, so R V R' is exactly the fixed-effects computation
R_fe V_fe R_fe'. A hypothesis that does involve one is refused with the reason --
except a parameter the observed information does not determine (``se_missing``:
separation) or a fit without it (``fit(hessian=False)``): its test is NaN, as its
standard error is.
"""
from __future__ import annotations

import numpy as np
from patsy import DesignInfo
from statsmodels.stats.contrast import ContrastResults

__all__ = ["constraint", "covariance_for", "nan_wald_test"]


def constraint(results, r_matrix):
    """R (over ``params``) or the tuple (R, q) for a hypothesis given as statsmodels
    takes it (string, array over the fixed effects or over ``params``, or (R, q))."""
    names = list(results.model.data.param_names)
    k_fe, k = results.k_fe, len(names)
    if isinstance(r_matrix, str) or (isinstance(r_matrix, (list, tuple)) and r_matrix
                                     and all(isinstance(r, str) for r in r_matrix)):
        lc = DesignInfo(names).linear_constraint(r_matrix)
        return lc.coefs, lc.constants
    if isinstance(r_matrix, tuple):
        R, qv = np.atleast_2d(np.asarray(r_matrix[0], dtype=float)), r_matrix[1]
    else:
        R, qv = np.atleast_2d(np.asarray(r_matrix, dtype=float)), None
    if R.shape[1] == k_fe and k_fe != k:
        R = np.hstack([R, np.zeros((R.shape[0], k - k_fe))])
    if R.shape[1] != k:
        raise ValueError(f"the hypothesis has {R.shape[1]} columns; give one per fixed "
                         f"effect ({k_fe}) or one per parameter ({k})")
    return R if qv is None else (R, qv)


def covariance_for(results, hypothesis, cov_p=None):
    """V for the hypothesis: ``cov_p`` or ``cov_params()``, the rows and columns of
    parameters without a Wald covariance set to 0 when the hypothesis does not use
    them; ``ValueError`` when it does."""
    R = hypothesis[0] if isinstance(hypothesis, tuple) else hypothesis
    V = np.array(results.cov_params() if cov_p is None else cov_p, dtype=float)
    missing = ~np.isfinite(np.diag(V))
    if not missing.any():
        return V
    used = np.any(np.asarray(R) != 0, axis=0)
    names = np.asarray(results.model.data.param_names)
    # parameters whose SE the observed information does not give (separation, or
    # fit(hessian=False)) keep their NaN: the test's statistic and p-value are NaN
    nan_ok = np.isin(names.astype(str), list(getattr(results, "se_missing", []) or []))
    if getattr(results.optim, "information", "").startswith("not computed"):
        nan_ok[:] = True
    refused = missing & used & ~nan_ok
    if np.any(refused):
        raise ValueError(
            f"no Wald covariance for {', '.join(map(str, names[refused]))} (variance "
            "components of a Gaussian fit, or parameters at the boundary): test fixed "
            "effects only, and use res.intervals(method='profile') or a likelihood-ratio "
            "test (mlglm.anova) for variance components")
    zero = missing & ~(used & nan_ok)
    V[zero, :] = 0.0
    V[:, zero] = 0.0
    return V


def nan_wald_test(results, hypothesis, V, use_f, df_constraints=None):
    """A Wald test with NaN statistic and p-value when R V R' is not finite (the
    hypothesis involves a parameter without a standard error, see
    :func:`covariance_for`); None when it is finite (test as usual)."""
    R = np.atleast_2d(np.asarray(hypothesis[0] if isinstance(hypothesis, tuple)
                                 else hypothesis, dtype=float))
    used = np.any(R != 0, axis=0)
    if np.all(np.isfinite(V[np.ix_(used, used)])):
        return None
    J = int(df_constraints if df_constraints is not None else np.linalg.matrix_rank(R))
    if use_f:
        return ContrastResults(F=np.nan, df_denom=results.df_resid, df_num=J)
    return ContrastResults(statistic=np.nan, distribution="chi2", df_denom=J,
                           df_constraints=J)
