"""Natural parameters of the random-effects covariance: SDs and correlations.

Intervals are wanted for what users read off a fit -- the standard deviations
s_k = sqrt(Sigma_kk) and the correlations rho_kl -- not for the Cholesky
elements theta the optimiser works in. This module is the bridge:

    Lambda = diag(s) L_R,        Sigma = Lambda Lambda' = diag(s) R diag(s),

where L_R is the lower Cholesky factor of the correlation matrix R. L_R is
written with *canonical partial correlations* z_kl in (-1, 1) (k > l, row by
row):

    L_R[k, l] = z_kl sqrt(1 - sum_{m<l} L_R[k, m]^2),    L_R[k, k] = sqrt(1 - sum_{m<k} L_R[k, m]^2).

Every z in (-1, 1)^{q(q-1)/2} gives a valid correlation matrix and
z_10 = rho_10 exactly, so (log s, atanh z) is an unconstrained
parametrisation in which the first correlation is itself a coordinate;
profiling another correlation permutes the terms so that its pair comes
first. Lambda is lower triangular with a positive diagonal, i.e. it *is* the
Cholesky factor, and theta (column-major lower of Lambda) follows directly.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["cpc_to_corr_chol", "corr_chol_to_cpc", "natural_to_Lambda", "Lambda_to_natural",
           "correlations", "natural_vector", "Sigma_from_natural"]


def cpc_to_corr_chol(z, q: int) -> np.ndarray:
    """L_R from canonical partial correlations z (rows k = 1..q-1, l < k)."""
    z = np.asarray(z, dtype=float).tolist()     # scalar work: Python floats (per evaluation
    rows = [[1.0] + [0.0] * (q - 1)]              # of a profile likelihood, so kept cheap)
    i = 0
    for k in range(1, q):
        row, rest = [0.0] * q, 1.0
        for l in range(k):
            row[l] = z[i] * math.sqrt(rest)
            rest -= row[l] * row[l]
            i += 1
        row[k] = math.sqrt(max(rest, 0.0))
        rows.append(row)
    return np.array(rows)


def corr_chol_to_cpc(L) -> np.ndarray:
    """The inverse of :func:`cpc_to_corr_chol` (L_R with unit-norm rows)."""
    L = np.asarray(L, dtype=float)
    q = L.shape[0]
    z = []
    for k in range(1, q):
        rest = 1.0
        for l in range(k):
            z.append(L[k, l] / np.sqrt(rest) if rest > 0 else 0.0)
            rest -= L[k, l] ** 2
    return np.clip(np.array(z), -1.0, 1.0)


def natural_to_Lambda(log_s, atanh_z, q: int, diagonal: bool = False) -> np.ndarray:
    """Lambda = diag(exp(log_s)) L_R(tanh(atanh_z)) (diagonal: diag(exp(log_s)))."""
    s = np.exp(np.asarray(log_s, dtype=float))
    if diagonal or q == 1:
        return np.diag(s)
    return s[:, None] * cpc_to_corr_chol(np.tanh(atanh_z), q)


def Lambda_to_natural(Lambda, diagonal: bool = False, floor: float = 1e-300):
    """(s, z) of a lower-triangular Lambda: s_k = |row k|, z from diag(1/s) Lambda.

    Rows with s_k = 0 (a zero variance) get z = 0 for their correlations.
    """
    Lambda = np.asarray(Lambda, dtype=float)
    q = Lambda.shape[0]
    s = np.sqrt(np.sum(Lambda ** 2, axis=1))
    if diagonal or q == 1:
        return s, np.zeros(0)
    LR = np.where(s[:, None] > floor, Lambda / np.maximum(s, floor)[:, None], 0.0)
    LR[s <= floor, :] = np.eye(q)[s <= floor, :]
    return s, corr_chol_to_cpc(LR)


def correlations(Sigma) -> np.ndarray:
    """rho_kl = Sigma_kl / (s_k s_l) for k > l, row by row (NaN where an s is 0)."""
    Sigma = np.asarray(Sigma, dtype=float)
    s = np.sqrt(np.clip(np.diag(Sigma), 0, None))
    k, l = np.tril_indices(Sigma.shape[0], -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((s[k] > 0) & (s[l] > 0), Sigma[k, l] / (s[k] * s[l]), np.nan)


def natural_vector(beta, Sigma, correlated: bool, sigma=None) -> np.ndarray:
    """(beta, s_1..s_q, rho_kl for k > l if ``correlated``[, sigma]): what intervals
    and the bootstrap report."""
    Sigma = np.asarray(Sigma, dtype=float)
    parts = [np.asarray(beta, dtype=float), np.sqrt(np.clip(np.diag(Sigma), 0, None))]
    if correlated:
        parts.append(correlations(Sigma))
    if sigma is not None:
        parts.append([float(sigma)])
    return np.concatenate(parts)


def Sigma_from_natural(s, rho, q: int) -> np.ndarray:
    """Sigma = diag(s) R diag(s), R with the correlations rho (k > l, row by row;
    empty for uncorrelated effects)."""
    s = np.asarray(s, dtype=float)
    R = np.eye(q)
    if len(rho):
        k, l = np.tril_indices(q, -1)
        R[k, l] = R[l, k] = rho
    return s[:, None] * R * s[None, :]
