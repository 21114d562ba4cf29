"""The exact Gaussian LMM (one grouping factor) on sharded data: profiled (RE)ML from sums.

(Several nested factors: :mod:`mlglm.distributed.lmm_nested`.)

:mod:`mlglm.core.lmm` evaluates the profiled criterion from per-group
sufficient statistics (A_j = Z_j'Z_j, B_j = Z_j'X_j, Z_j'e_j) and the global
X'X, X'e, e'e, with e = y - X beta_ols. Here each shard keeps the statistics
of its own groups (:class:`LMMShard`); beta_ols is the global OLS fit (one
round of X'X, X'y before the statistics are formed, so e is the same shift
as in memory). At a given theta the criterion needs, besides p x p global
pieces, only sums over groups:

    S1 = sum_j R_ZX,j' R_ZX,j,   s2 = sum_j R_ZX,j' c_u,j,   s3 = sum_j |c_u,j|^2,
    log|L|^2 = sum_j 2 log det L_j,

(core.lmm's notation). Its gradient needs sum_j A_j Lambda P_j and
sum_j Zr_j u_j', where both u_j = a_j - D_j beta and Zr_j = c_j - E_j beta
are affine in the beta the driver computes afterwards (a_j = L_j^{-T} c_u,j,
D_j = L_j^{-T} R_ZX,j = P_j Lambda'B_j, c_j = Z_j'e_j - A_j Lambda a_j,
E_j = B_j - A_j Lambda D_j). So each shard returns the moments

    T1 = sum c_j a_j',  T2 = sum c_j (x) D_j,  T3 = sum E_j (x) a_j,  T4 = sum E_j (x) D_j

and the driver contracts them with beta (and, for REML, with
C = (R_X'R_X)^{-1}: its log|R_X|^2 term is -2 sum_j E_j C D_j'). One round
per evaluation, q^2 (p + 1)^2 numbers per shard, whatever the rows. The
optimiser is :func:`mlglm.core.lmm.lmm_fit`'s own (bracket + Brent for one
theta, BFGS + Newton polish otherwise) and the packaging its
:class:`~mlglm.core.record.CoreFit`.
"""
from __future__ import annotations

import numpy as np

from ..core.covariance import (theta_index, theta_is_diagonal_entry,
                               theta_to_Lambda)
from ..core.covpattern import diagonal as diagonal_pattern
from ..core.covpattern import unstructured
from ..core.layouts import ParamLayout
from ..core.lmm import _projected_grad_norm, gaussian_record
from ..core.record import SINGULAR_TOL, CoreFit, OptimizationRecord
from ..core.lmm_minimise import _minimise, _minimise_scalar
from ..core.smallmat import chol_and_inverse
from .shard import Shard

__all__ = ["LMMShard", "sharded_lmm_fit"]

LOG_2PI = np.log(2.0 * np.pi)


class LMMShard(Shard):
    """A shard of a Gaussian model: its groups' sufficient statistics."""

    def __init__(self, part, spec):
        super().__init__(part, spec)
        model, self._model = self._model, None
        self.rows = None
        if self.empty:
            return
        self._y = np.asarray(model.endog, float) - np.asarray(model.offset, float)
        self._X = np.asarray(model.exog, float)
        self._Z = np.asarray(model.exog_re, float)
        self._codes = np.asarray(model.group_codes, np.intp)
        self.G = int(model.n_groups)

    def group_zwx(self, beta, labels, b, dispersion, scale):
        """Z_j'X_j / sigma^2 per group of this shard (the Gaussian working weights are
        1/sigma^2): (this shard's labels, (G_s, q, p)); see ``Shard.group_zwx``."""
        if self.empty:
            return None
        from ..prediction import group_cross
        w = np.full(self._X.shape[0], 1.0 / scale)
        return self.info.levels[0], group_cross(self._X, self._Z, self._codes, w, self.G)

    def ols_pieces(self):
        """(X'X, X'y) for the global OLS shift."""
        if self.empty:
            return None
        return self._X.T @ self._X, self._X.T @ self._y

    def prepare(self, beta_ols):
        """Per-group statistics of e = y - X beta_ols; returns this shard's (X'e, e'e).

        Every later call passes beta_ols again and the statistics are formed
        here if this copy of the shard lacks them (a shard rebuilt from the
        source after a lost worker), so no call depends on an earlier one
        having run on the same copy.
        """
        if self.empty:
            return None
        X, Z, codes = self._X, self._Z, self._codes
        e = self._y - X @ beta_ols
        order = np.argsort(codes, kind="stable")
        sizes = np.bincount(codes, minlength=self.G)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        Zs = Z[order]
        rows = Zs[:, :, None] * np.concatenate([Zs, X[order], e[order, None]], axis=1)[:, None, :]
        W = np.add.reduceat(rows, starts, axis=0)
        q, p = Z.shape[1], X.shape[1]
        self.A, self.B = W[:, :, :q].copy(), W[:, :, q:q + p].copy()
        self.Ze = W[:, :, q + p].copy()
        self._beta_ols = np.array(beta_ols, dtype=float)
        return X.T @ e, float(e @ e)

    def _pls(self, theta, diagonal, beta_ols):
        if getattr(self, "_beta_ols", None) is None or not np.array_equal(self._beta_ols,
                                                                          beta_ols):
            self.prepare(beta_ols)
        q = self.A.shape[1]
        Lam = theta_to_Lambda(theta, q, diagonal)
        H = np.matmul(Lam.T, self.A) @ Lam
        H[:, np.arange(q), np.arange(q)] += 1.0
        L, Linv = chol_and_inverse(H)
        RZX = Linv @ (Lam.T @ self.B)                            # (G, q, p)
        cu = (Linv @ (self.Ze @ Lam)[:, :, None])[:, :, 0]       # (G, q)
        LinvT = np.swapaxes(Linv, 1, 2)
        a = (LinvT @ cu[:, :, None])[:, :, 0]                    # u_j = a_j - D_j beta
        D = LinvT @ RZX
        return Lam, L, Linv, RZX, cu, a, D

    def pieces(self, theta, diagonal, beta_ols):
        """The sums of the module docstring at theta (None for an empty shard)."""
        if self.empty:
            return None
        Lam, L, Linv, RZX, cu, a, D = self._pls(theta, diagonal, beta_ols)
        P = np.swapaxes(Linv, 1, 2) @ Linv
        ALam = self.A @ Lam
        c = self.Ze - (ALam @ a[:, :, None])[:, :, 0]
        E = self.B - ALam @ D
        return {"S1": np.einsum("gqp,gqk->pk", RZX, RZX), "s2": np.einsum("gqp,gq->p", RZX, cu),
                "s3": float(np.sum(cu * cu)),
                "ldL2": 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum()),
                "GA": (ALam @ P).sum(axis=0), "T1": np.einsum("gr,gs->rs", c, a),
                "T2": np.einsum("gr,gsk->rsk", c, D), "T3": np.einsum("grk,gs->rks", E, a),
                "T4": np.einsum("grk,gsl->rksl", E, D)}

    def effects(self, theta, diagonal, beta_ols, beta_e, sigma2):
        """(b_j, b_cov_j) of this shard's groups at theta and beta."""
        if self.empty:
            return None
        Lam, L, Linv, RZX, cu, a, D = self._pls(theta, diagonal, beta_ols)
        u = a - D @ beta_e
        LL = Lam @ np.swapaxes(Linv, 1, 2)
        return u @ Lam.T, sigma2 * LL @ np.swapaxes(LL, 1, 2)


def _sum(parts, key):
    return sum(p[key] for p in parts)


def sharded_lmm_fit(shards, placement, n, p, q, reml=True, diagonal=False, gtol=1e-8,
                    progress=None) -> CoreFit:
    """Fit the one-factor Gaussian LMM on the shards (module docstring)."""
    ols = [o for o in shards.map("ols_pieces", what="OLS shift") if o is not None]
    XtX = np.sum([o[0] for o in ols], axis=0)
    beta_ols = np.linalg.solve(XtX, np.sum([o[1] for o in ols], axis=0))
    prep = [o for o in shards.map("prepare", beta_ols, what="sufficient statistics")
            if o is not None]
    Xte = np.sum([o[0] for o in prep], axis=0)
    ete = float(sum(o[1] for o in prep))
    r_idx, c_idx = theta_index(q, diagonal)
    count = [0]
    recent = {}

    def solve(theta):
        theta = np.asarray(theta, float).ravel()
        key = theta.tobytes()
        if key in recent:
            return recent[key]
        count[0] += 1
        parts = [o for o in shards.map("pieces", theta, diagonal, beta_ols, what="REML criterion")
                 if o is not None]
        RXt = np.linalg.cholesky(XtX - _sum(parts, "S1"))
        RXinv = np.linalg.inv(RXt).T
        cbeta = RXinv.T @ (Xte - _sum(parts, "s2"))
        beta = RXinv @ cbeta
        r2 = ete - _sum(parts, "s3") - cbeta @ cbeta
        ldL2, ldRX2 = _sum(parts, "ldL2"), 2.0 * float(np.log(np.diag(RXt)).sum())
        m = n - p if reml else n
        crit = ldL2 + (ldRX2 if reml else 0.0) + m * (1.0 + LOG_2PI + np.log(r2 / m))
        dev_ml = ldL2 + n * (1.0 + LOG_2PI + np.log(r2 / n))
        T2, T3, T4 = _sum(parts, "T2"), _sum(parts, "T3"), _sum(parts, "T4")
        ZrU = (_sum(parts, "T1") - T2 @ beta - np.einsum("rks,k->rs", T3, beta)
               + np.einsum("rksl,k,l->rs", T4, beta, beta))
        dLam = 2.0 * _sum(parts, "GA") - (2.0 * m / r2) * ZrU
        if reml:
            C = RXinv @ RXinv.T
            dLam -= 2.0 * np.einsum("rksl,kl->rs", T4, C)
        hit = (float(crit), dLam[r_idx, c_idx], (beta, r2, RXinv, float(dev_ml)))
        if len(recent) >= 4:
            del recent[next(iter(recent))]
        recent[key] = hit
        if progress is not None:
            progress("REML criterion" if reml else "ML criterion", -crit / 2.0)
        return hit

    def fg(theta):
        f, g, _ = solve(theta)
        return f, g.copy()

    on_diag = theta_is_diagonal_entry(q, diagonal)
    theta0 = on_diag.astype(float)
    found = _minimise_scalar(theta0, fg) if theta0.size == 1 else None
    theta, message = found if found is not None else _minimise(theta0, fg, gtol)
    pattern = diagonal_pattern(q) if diagonal else unstructured(q)
    theta = pattern.canonical(theta)
    crit, grad, (beta_e, r2, RXinv, dev_ml) = solve(theta)
    grad_norm = _projected_grad_norm(theta, grad, np.where(on_diag, 0.0, -np.inf))
    sigma2 = r2 / (n - p if reml else n)
    Lam = pattern.Lambda(theta)
    b, b_cov = np.zeros((placement.n_levels(0), q)), np.zeros((placement.n_levels(0), q, q))
    for s, o in enumerate(shards.map("effects", theta, diagonal, beta_ols, beta_e, sigma2,
                                     what="random effects")):
        if o is not None:
            idx = placement.index[s][0]
            b[idx], b_cov[idx] = o
    record = OptimizationRecord(
        optimizer="profiled (RE)ML, exact gradient", n_evals=count[0], n_iter=0,
        message=message, grad_norm=grad_norm, newton_decrement=np.nan, hessian_pd=False,
        converged=bool(grad_norm <= gtol * (1.0 + abs(crit))))
    return gaussian_record(
        reml=reml, layout=ParamLayout(p, theta.size), beta=beta_ols + beta_e, theta=theta,
        patterns=(pattern,), Lambdas=(Lam,), sigma2=float(sigma2),
        cov_beta=sigma2 * RXinv @ RXinv.T, criterion=crit, deviance_ml=dev_ml, b=(b,),
        b_cov=(b_cov,), singular=on_diag & (theta < SINGULAR_TOL), record=record)
