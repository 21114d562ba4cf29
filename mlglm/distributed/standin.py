"""A stand-in design for the driver's model object: a few rows with the data's moments.

The results object of a fit is a statsmodels results object whose ``model``
carries ``exog``, ``exog_re``, ``endog`` and ``offset``. The rows of a
sharded fit never come to the driver, yet some statistics the results
compute from those arrays are legitimate: the rank of X (residual degrees of
freedom), column standard deviations (the separation check), the mean of the
fixed linear predictor (the Poisson ICC), the mean of z_i' Sigma z_i (the
adjusted ICC). All of them are functions of the first and second moments of
the rows.

:func:`standin_rows` builds k = d + 1 rows W (d = number of columns of
v = (y, m, x, z, offset)) with exactly the data's mean mu and covariance S:
W = 1 mu' + sqrt(k) Q S^{1/2}, with Q (k x d) orthonormal and orthogonal to
1, so that 1'W / k = mu' and (W - 1 mu')'(W - 1 mu') / k = S. Any statistic
of the rows that depends on them only through mu and S is therefore exact
on the stand-in; anything else (a prediction per row, a residual) is not, and
the sharded results compute those on the cluster instead
(:mod:`mlglm.distributed.results`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["standin_rows"]


def standin_rows(total: np.ndarray, cross: np.ndarray, n: int) -> np.ndarray:
    """(d + 1, d) rows with mean total / n and covariance cross / n - mean mean'.

    ``total`` = sum_i v_i and ``cross`` = sum_i v_i v_i' over the n data rows.
    """
    d = total.shape[0]
    mu = total / n
    S = cross / n - np.outer(mu, mu)
    S = 0.5 * (S + S.T)
    w, V = np.linalg.eigh(S)
    root = (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T
    k = d + 1
    basis = np.column_stack([np.ones(k), np.eye(k)[:, :k - 1]])
    Q = np.linalg.qr(basis)[0][:, 1:]                 # orthonormal, orthogonal to 1
    W = mu[None, :] + np.sqrt(k) * Q @ root
    # columns constant in the data (an intercept, Bernoulli trials, no offset) are
    # exactly constant here too: code tests them with ==
    const = np.diag(S) <= 1e-14 * np.maximum(1.0, mu * mu)
    W[:, const] = mu[const]
    return W
