"""Results of a MixedGLM fit: a statsmodels ``MixedLMResults`` done right for GLMMs.

``params`` = (fe_params, vech(cov_re)) with vech the row-major lower triangle
(MixedLM's order and names). ``cov_params()`` is the inverse observed
information: for binomial/Poisson fits the forward-difference Hessian of the
exact gradient in (beta, theta), mapped to (beta, vech Sigma) by the delta
method; for Gaussian fits the fixed-effect block is lme4's
sigma^2 (R_X'R_X)^{-1} and variance-component SEs are not reported (NaN; use
profile intervals). Every inherited Gaussian formula that would be wrong for
a GLMM (llf, aic/bic parameter count, fitted values, residuals, random
effects, summary, profile_re, string t_test) is replaced here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.base import wrapper as wrap
from statsmodels.base.model import LikelihoodModelResults
from statsmodels.regression.mixed_linear_model import MixedLMResults, MixedLMResultsWrapper
from statsmodels.tools._decorators import cache_readonly

from .core.families import get_family_link

__all__ = ["MixedGLMResults", "MixedGLMResultsWrapper", "FitOutcome", "build_results"]


@dataclass(frozen=True, eq=False)
class FitOutcome:
    """Everything a results object is built from (immutable)."""

    beta: np.ndarray
    Sigma: np.ndarray
    cov_params: np.ndarray       # (p + q(q+1)/2) square, on the (beta, vech Sigma) scale
    scale: float                 # 1 for binomial/Poisson, sigma^2 for Gaussian
    llf: float
    b: np.ndarray                # (G, q) conditional modes of the random effects
    b_cov: np.ndarray            # (G, q, q) conditional covariances
    method: str
    nagq: int | None
    converged: bool
    singular: np.ndarray         # bool per random-effect term
    record: object               # OptimizationRecord or the LMM fit summary
    n_params: int                # parameters counted by AIC/BIC
    reml_criterion: float | None = None
    theta: np.ndarray | None = None
    Sigmas: tuple = ()           # per term (several factors): Sigma_k
    bs: tuple = ()               # per term: (J_k, q_k) conditional modes
    b_covs: tuple = ()           # per term: (J_k, q_k, q_k) conditional covariances


def _vech_jacobian(Lambda, pattern):
    """d vech(Sigma) / d theta with Sigma = Lambda Lambda' (vech row-major lower) for a
    term's covariance pattern (a parameter filling several entries sums them)."""
    q = Lambda.shape[0]
    tr = np.tril_indices(q)
    J = np.zeros((len(tr[0]), pattern.n_theta))
    for r, c, l in zip(pattern.rows, pattern.cols, pattern.idx):
        E = np.zeros((q, q))
        E[r, c] = 1.0
        dS = E @ Lambda.T + Lambda @ E.T
        J[:, l] += dS[tr]
    return J


def build_results(model, fitted, method, nagq):
    """Package a core fit (FitState or LMMFit) as MixedGLMResults."""
    q, p = model.q, model.k_fe
    k = q * (q + 1) // 2
    if model.family_name == "gaussian":
        Sigma = np.asarray(fitted.cov_re, dtype=float)
        cov = np.full((p + k, p + k), np.nan)
        cov[:p, :p] = fitted.cov_beta
        cov[:p, p:] = cov[p:, :p] = 0.0
        out = FitOutcome(beta=fitted.beta, Sigma=Sigma, cov_params=cov, scale=float(fitted.sigma2),
                         llf=float(fitted.llf), b=fitted.b, b_cov=fitted.b_cov, method=method,
                         nagq=None, converged=bool(fitted.converged),
                         singular=np.atleast_1d(np.diag(fitted.Lambda) < 1e-4),
                         record=fitted, n_params=p + len(fitted.theta) + 1,
                         reml_criterion=fitted.reml_criterion, theta=fitted.theta,
                         Sigmas=(Sigma,), bs=(fitted.b,), b_covs=(fitted.b_cov,))
        return MixedGLMResultsWrapper(MixedGLMResults(model, out))
    st = fitted
    blocks = [_vech_jacobian(L, pat) for L, pat in zip(st.Lambdas, st.patterns)]
    n_vech = sum(B.shape[0] for B in blocks)
    J = np.zeros((p + n_vech, st.x.size))
    J[:p, :p] = np.eye(p)
    r = c = 0
    for B in blocks:
        J[p + r:p + r + B.shape[0], p + c:p + c + B.shape[1]] = B
        r, c = r + B.shape[0], c + B.shape[1]
    cov = J @ st.cov_x @ J.T
    # parameters held at the boundary have no Wald SE
    bad = ~st.free
    if bad.any():
        affected = np.any(np.abs(J[:, bad]) > 0, axis=1)
        cov[affected, :] = np.nan
        cov[:, affected] = np.nan
    Sigmas = tuple(L @ L.T for L in st.Lambdas)
    if getattr(model, "multi", False):
        singular = st.singular
    else:       # one flag per random effect (diagonal entry of Lambda), as before
        singular = np.abs(np.diag(st.Lambdas[0])) < 1e-4
    out = FitOutcome(beta=st.beta, Sigma=Sigmas[0], cov_params=cov, scale=1.0, llf=st.llf,
                     b=st.b[0], b_cov=st.b_cov[0], method=method, nagq=nagq,
                     converged=st.record.converged, singular=singular, record=st.record,
                     n_params=st.x.size, theta=st.theta, Sigmas=Sigmas, bs=tuple(st.b),
                     b_covs=tuple(st.b_cov))
    return MixedGLMResultsWrapper(MixedGLMResults(model, out))


def build_results_multi(model, fitted, method, nagq=None):
    """Package a fit with several grouping factors (core ``MultiLMMFit``)."""
    p = model.k_fe
    k = sum(t.q * (t.q + 1) // 2 for t in model.re_terms)
    cov = np.full((p + k, p + k), np.nan)
    cov[:p, :p] = fitted.cov_beta
    cov[:p, p:] = cov[p:, :p] = 0.0
    Sig = tuple(np.asarray(S, float) for S in fitted.cov_re)
    out = FitOutcome(beta=fitted.beta, Sigma=Sig[0], cov_params=cov, scale=float(fitted.sigma2),
                     llf=float(fitted.llf), b=fitted.b[0], b_cov=fitted.b_cov[0], method=method,
                     nagq=nagq, converged=bool(fitted.converged),
                     singular=np.asarray(fitted.singular), record=fitted,
                     n_params=fitted.n_params, reml_criterion=fitted.reml_criterion,
                     theta=fitted.theta, Sigmas=Sig, bs=tuple(fitted.b),
                     b_covs=tuple(fitted.b_cov))
    return MixedGLMResultsWrapper(MixedGLMResults(model, out))


class MixedGLMResults(MixedLMResults):
    """Results of :meth:`MixedGLM.fit`.

    Attributes beyond statsmodels' usual ones: ``method`` ("laplace", "aghq",
    "reml" or "ml"), ``nagq``, ``converged``, ``optim`` (the optimisation
    record), ``singular`` (per random-effect term), ``deviance`` (= -2 llf,
    not lme4's sum of deviance residuals), ``n_groups``.
    """

    def __init__(self, model, outcome: FitOutcome):
        if getattr(model, "multi", False):
            params = np.concatenate([outcome.beta] + [S[np.tril_indices(S.shape[0])]
                                                      for S in outcome.Sigmas])
        else:
            params = np.concatenate([outcome.beta, outcome.Sigma[np.tril_indices(model.q)]])
        LikelihoodModelResults.__init__(self, model, params,
                                        normalized_cov_params=outcome.cov_params / outcome.scale,
                                        scale=outcome.scale)
        self.outcome = outcome
        if not hasattr(self, "_cache"):
            self._cache = {}
        self.nobs = model.nobs
        self.df_resid = self.nobs - np.linalg.matrix_rank(model.exog)
        self.use_t = False
        self.k_fe = model.k_fe
        self.k_re = model.k_re
        self.k_re2 = model.k_re2
        self.k_vc = 0
        self.fe_params = outcome.beta
        if getattr(model, "multi", False):
            from .multifactor import cov_re_dict
            self.cov_re = cov_re_dict(model.re_terms, outcome.Sigmas)
            self.cov_re_unscaled = {k: v / outcome.scale for k, v in self.cov_re.items()}
        else:
            self.cov_re = outcome.Sigma
            self.cov_re_unscaled = outcome.Sigma / outcome.scale
        self.vcomp = np.array([])
        self.method = outcome.method
        self.nagq = outcome.nagq
        self.reml = outcome.method == "reml"
        self.converged = outcome.converged
        self.optim = outcome.record
        self.singular = outcome.singular
        self.n_groups = ({t.name: t.n_levels for t in model.re_terms}
                         if getattr(model, "multi", False) else model.n_groups)
        self.family = model.family
        self.reml_criterion = outcome.reml_criterion
        self.cov_pen = None
        self.freepat = None

    # ---------------------------------------------------------------- scalars
    @cache_readonly
    def llf(self):
        """Log-likelihood with every normalising constant (REML log-likelihood for
        REML fits, = -REMLcrit/2 as lme4 reports)."""
        return self.outcome.llf

    @cache_readonly
    def deviance(self):
        """-2 llf (NOT lme4's ``deviance()``, which sums deviance residuals)."""
        return -2.0 * self.llf

    @cache_readonly
    def df_modelwc(self):
        return self.outcome.n_params

    @cache_readonly
    def aic(self):
        """-2 llf + 2 k, k = fixed effects + covariance parameters (+1 for sigma^2)."""
        return -2.0 * self.llf + 2.0 * self.outcome.n_params

    @cache_readonly
    def bic(self):
        """-2 llf + k log(nobs), as lme4 (n = number of observations)."""
        return -2.0 * self.llf + np.log(self.nobs) * self.outcome.n_params

    @cache_readonly
    def bse_fe(self):
        return np.sqrt(np.diag(self.cov_params())[:self.k_fe])

    @cache_readonly
    def bse_re(self):
        """Delta-method SEs of the variances/covariances (unreliable near zero)."""
        return np.sqrt(np.diag(self.cov_params())[self.k_fe:])

    # ---------------------------------------------------------- random effects
    @cache_readonly
    def random_effects(self):
        """Conditional modes b_j per group: dict label -> Series (MixedLM's shape).

        With several grouping factors: dict factor -> DataFrame (levels x effects).
        """
        if self.model.multi:
            from .multifactor import random_effects_dict
            return random_effects_dict(self.model.re_terms, self.outcome.bs)
        names = self.model.data.exog_re_names
        return {g: pd.Series(self.outcome.b[j], index=names)
                for j, g in enumerate(self.model.group_labels)}

    @cache_readonly
    def random_effects_cov(self):
        """Conditional covariances Lambda H_j^{-1} Lambda' (Laplace) per group
        (several factors: dict factor -> {level: DataFrame})."""
        if self.model.multi:
            from .multifactor import random_effects_cov_dict
            return random_effects_cov_dict(self.model.re_terms, self.outcome.b_covs)
        names = self.model.data.exog_re_names
        return {g: pd.DataFrame(self.outcome.b_cov[j], index=names, columns=names)
                for j, g in enumerate(self.model.group_labels)}

    @cache_readonly
    def separation(self):
        """A description of possible (quasi-)complete separation, or None (binomial).

        Flags fixed effects whose effect over one SD of their column exceeds
        10 on the logit scale (odds ratios beyond e^10 are estimates running
        off to infinity, not data) and rows fitted at probability 0 or 1
        (|eta| > 15) that agree with their response.
        """
        model = self.model
        if model.family_name != "binomial" or model.exog is None:
            return None
        X = np.asarray(model.exog, dtype=float)
        sd = X.std(axis=0)
        beta = np.asarray(self.outcome.beta)
        big = [str(n) for n, b, s in zip(model.exog_names, beta, sd) if s > 0 and abs(b) * s > 10]
        eta = self.predict(which="linear", conditional=True)
        y, m = model.endog, model.n_trials
        extreme = int(np.sum(((eta > 15) & (y == m)) | ((eta < -15) & (y == 0))))
        if not big and extreme == 0:
            return None
        parts = []
        if big:
            parts.append(f"huge coefficients for {', '.join(big)}")
        if extreme:
            parts.append(f"{extreme} rows fitted at probability 0 or 1")
        return "; ".join(parts) + " (estimates and SEs of those terms are not meaningful)"

    # ------------------------------------------------------------- prediction
    def singular_description(self) -> str:
        """Which variance parameters sit on the boundary, in words."""
        model = self.model
        if not model.multi:
            names = [str(n) for n, s in zip(model.data.exog_re_names, self.singular) if s]
            return f"the SD of {', '.join(names)} is estimated at 0"
        parts, i = [], 0
        for t in model.re_terms:
            diag_theta = t.pattern.theta_on_diagonal
            for j, is_diag in enumerate(diag_theta):
                if is_diag and self.singular[i + j]:
                    parts.append(t.name)
                    break
            i += t.n_theta
        return ("the covariance matrix of the random effects of " + ", ".join(parts)
                + " is estimated as singular (a zero SD or a correlation of +-1)")

    def _linear_predictor(self, X, Z, codes, offset, conditional):
        eta = X @ self.outcome.beta + offset
        if conditional and self.model.multi:
            from .multifactor import random_part
            return eta + (random_part(self.model.re_terms, self.outcome.bs) if Z is None
                          else random_part(self.model.re_terms, self.outcome.bs, Z, codes))
        if conditional:
            b = np.zeros((Z.shape[0], Z.shape[1]))
            known = codes >= 0
            b[known] = self.outcome.b[codes[known]]
            eta = eta + np.einsum("nq,nq->n", Z, b)
        return eta

    def _mean(self, eta):
        if self.model.family_name == "gaussian":
            return eta
        return get_family_link(self.model.family_name, self.model.link_name).inverse_link(eta)

    def predict(self, exog=None, which="mean", conditional=True, offset=None, exposure=None,
                transform=True, marginal=False, nagq=15, **kwargs):
        """Predicted means (``which="mean"``) or linear predictors (``"linear"``).

        ``conditional=True`` uses each group's conditional mode (groups not seen
        in the fit get b = 0); ``conditional=False`` is the population level at
        b = 0; ``marginal=True`` is the population-averaged mean, the random
        effects integrated out by quadrature with ``nagq`` points per dimension
        (see :meth:`predict_marginal` for standard errors). ``exog`` may be a
        DataFrame (through the formula, same coding) holding the group column;
        binomial means are probabilities per trial.
        """
        model = self.model
        if which not in ("mean", "linear"):
            raise ValueError("which must be 'mean' or 'linear'")
        if marginal:
            if which != "mean":
                raise ValueError("marginal=True averages means; use which='mean'")
            return self.predict_marginal(exog, offset=offset, exposure=exposure, se=False,
                                         nagq=nagq)["mean"].to_numpy()
        if model.multi:
            X, _, off = self._design(exog, offset, exposure, transform, re=False)
            Zs = codes = None
            if exog is not None and conditional:
                from .multifactor import new_data_design
                Zs, codes, unseen = new_data_design(model, exog)
            eta = self._linear_predictor(X, Zs, codes, off, conditional)
            return eta if which == "linear" else self._mean(eta)
        X, Z, off = self._design(exog, offset, exposure, transform)
        codes = model.group_codes if exog is None else -np.ones(X.shape[0], dtype=np.intp)
        if exog is not None and conditional:
            gname = getattr(model, "group_name", None)
            if not isinstance(exog, pd.DataFrame) or gname not in exog.columns:
                raise ValueError("conditional predictions on new data need the group column "
                                 f"{gname!r} in the DataFrame; or pass conditional=False")
            codes = pd.Index(model.group_labels).get_indexer(exog[gname]).astype(np.intp)
        eta = self._linear_predictor(X, Z, codes, off, conditional)
        return eta if which == "linear" else self._mean(eta)

    def _design(self, exog, offset=None, exposure=None, transform=True, re=True):
        """(X, Z, offset) for the fit's rows (exog=None) or new data through the formula
        (Z is None when ``re`` is False)."""
        model = self.model
        if exog is None:
            return (np.asarray(model.exog, float),
                    np.asarray(model.exog_re, float) if re else None, model.offset)
        if (transform and isinstance(exog, pd.DataFrame)
                and getattr(model, "formula", None) is not None):
            X = np.asarray(self._transform_predict_exog(exog, transform=True)[0], dtype=float)
        else:
            X = np.asarray(exog, dtype=float)
        off = np.zeros(X.shape[0]) if offset is None else np.asarray(offset, dtype=float)
        if exposure is not None:
            off = off + np.log(np.asarray(exposure, dtype=float))
        return X, (self._re_design(X) if re else None), off

    def predict_marginal(self, exog=None, offset=None, exposure=None, se=True, level=0.95,
                         nagq=15):
        """Population-averaged means E_b[g^{-1}(x'beta + z'b)] by quadrature, with
        delta-method standard errors and a Wald interval (DataFrame)."""
        from scipy import stats
        from .marginal import marginal_predict
        X, Z, off = self._design(exog, offset, exposure)
        mu, sd = marginal_predict(self, X, Z, off, nagq=nagq, se=se)
        out = pd.DataFrame({"mean": mu})
        if se:
            crit = stats.norm.ppf(0.5 + level / 2)
            out["se"] = sd
            out["lower"] = mu - crit * sd
            out["upper"] = mu + crit * sd
        return out

    def simulate(self, n=1, seed=None, conditional=True):
        """New responses from the fitted model (see :func:`mlglm.marginal.simulate`)."""
        from .marginal import simulate
        return simulate(self, n=n, seed=seed, conditional=conditional)

    def _re_design(self, X):
        model = self.model
        names = list(model.exog_names)
        cols = []
        gname = getattr(model, "group_name", "Group")
        for nm in model.data.exog_re_names:
            key = "Intercept" if nm in (gname, "Group") else nm
            if key not in names:
                raise NotImplementedError(
                    f"random-effect column {nm!r} is not a fixed-effect column, so it cannot be "
                    "built for new data; include it in the fixed part")
            cols.append(names.index(key))
        return X[:, cols]

    @cache_readonly
    def fittedvalues(self):
        """Conditional means g^{-1}(X beta + Z b + offset) (per trial for binomial)."""
        return self.predict(conditional=True)

    @cache_readonly
    def resid(self):
        """Response residuals y/m - fitted mean (per trial for binomial)."""
        return self.model.endog / self.model.n_trials - self.fittedvalues

    @cache_readonly
    def resid_pearson(self):
        """(y - m mu) / sqrt(m V(mu)) with the family's variance function."""
        mu = self.fittedvalues
        m = self.model.n_trials
        fam = self.model.family_name
        if fam == "gaussian":
            return (self.model.endog - mu) / np.sqrt(self.scale)
        var = m * mu * (1 - mu) if fam == "binomial" else mu
        return (self.model.endog - m * mu) / np.sqrt(var)

    # ------------------------------------------------------------- inference
    def _fe_constraint(self, r_matrix):
        if isinstance(r_matrix, str) or (isinstance(r_matrix, (list, tuple))
                                        and r_matrix and isinstance(r_matrix[0], str)):
            from patsy import DesignInfo
            lc = DesignInfo(list(self.model.exog_names)).linear_constraint(r_matrix)
            R, qv = lc.coefs, lc.constants
        elif isinstance(r_matrix, tuple):
            R, qv = np.atleast_2d(r_matrix[0]), np.asarray(r_matrix[1])
        else:
            R, qv = np.atleast_2d(np.asarray(r_matrix, dtype=float)), None
        if R.shape[1] == self.k_fe:
            R = np.hstack([R, np.zeros((R.shape[0], len(self.params) - self.k_fe))])
        return R if qv is None else (R, qv)

    def t_test(self, r_matrix, use_t=None, **kwargs):
        """Wald z-tests of linear hypotheses on the fixed effects (strings accepted,
        e.g. ``"urban[T.Y] = 0"``)."""
        return LikelihoodModelResults.t_test(self, self._fe_constraint(r_matrix), use_t=False,
                                             **kwargs)

    def wald_test(self, r_matrix, use_f=False, scalar=True, **kwargs):
        """Joint Wald chi-square test on the fixed effects (strings accepted)."""
        return LikelihoodModelResults.wald_test(self, self._fe_constraint(r_matrix), use_f=use_f,
                                                scalar=scalar, **kwargs)

    def conf_int(self, alpha=0.05, cols=None, method="wald", level=None, which=None,
                 n_boot=200, seed=None, n_jobs=1, progress=None, boot=None, criterion=None):
        """Confidence intervals for fixed effects, random-effect SDs and correlations.

        Parameters
        ----------
        alpha : 1 - coverage (statsmodels' argument); ``level`` overrides it.
        method : ``"wald"`` (SDs on the log scale, correlations on the atanh
            scale, labelled in the ``interval`` column), ``"profile"``
            (profile likelihood, lme4's ``confint(method="profile")``) or
            ``"bootstrap"`` (parametric bootstrap percentiles; ``n_boot``,
            ``seed``, ``n_jobs``, ``progress``, or a ready ``boot=``).
        which : optional row labels to keep (profile: to compute).
        criterion : profile, Gaussian REML fits: ``"ml"`` profiles on the ML
            likelihood as lme4's ``confint()`` does (default: the REML criterion
            for the variance parameters).

        Returns
        -------
        DataFrame indexed by parameter (fixed effects, ``sd(term)``,
        ``cor(a, b)``, and ``sigma`` for Gaussian fits) with columns
        ``estimate``, ``lower``, ``upper``, ``interval``.
        """
        from .intervals import conf_int
        if cols is not None:
            raise TypeError("cols= is not supported; use which=[names]")
        level = 1 - alpha if level is None else level
        return conf_int(self, level=level, method=method, which=which, n_boot=n_boot,
                        seed=seed, n_jobs=n_jobs, progress=progress, boot=boot,
                        criterion=criterion)

    def bootstrap(self, n=200, seed=None, progress=None, n_jobs=1):
        """Parametric bootstrap: simulate with new random effects, refit, n times
        (see :func:`mlglm.bootstrap.bootstrap`); returns a ``BootstrapResult``."""
        from .bootstrap import bootstrap
        return bootstrap(self, n=n, seed=seed, progress=progress, n_jobs=n_jobs)

    def marginal_params(self, nagq=15, level=0.95):
        """Population-averaged coefficients with SEs, by quadrature
        (see :func:`mlglm.marginal.marginal_params`)."""
        from .marginal import marginal_params
        return marginal_params(self, nagq=nagq, level=level)

    def profile_re(self, *args, **kwargs):
        raise NotImplementedError("use results.conf_int(method='profile') for profile "
                                  "likelihood intervals of the random-effect SDs and "
                                  "correlations")

    def icc(self, **kwargs):
        """Intraclass correlation (see :func:`mlglm.icc`)."""
        from .icc import icc
        return icc(self, **kwargs)

    def compare_lr_test(self, other, boundary=True):
        """Likelihood-ratio test against a nested fit (see :func:`mlglm.compare.compare_lr_test`)."""
        from .compare import compare_lr_test
        return compare_lr_test(self, other, boundary=boundary)

    def check_quadrature(self, nagq=None, refit=True):
        """Refit / re-evaluate with more AGHQ points (see :func:`mlglm.check_quadrature`)."""
        from .diagnostics import check_quadrature
        return check_quadrature(self, nagq=nagq, refit=refit)

    def compare_pooling(self):
        """Complete / no / partial pooling for this fit (see :func:`mlglm.compare_pooling`)."""
        from .pooling import compare_pooling_from_results
        return compare_pooling_from_results(self)

    def summary(self, alpha=0.05, **kwargs):
        """statsmodels ``Summary``: header, fixed effects, random effects."""
        from .summary import make_summary
        return make_summary(self, alpha=alpha)

    def _repr_html_(self):
        return self.summary().as_html()


_MULTI_RAW = frozenset({"cov_re", "cov_re_unscaled", "bse_re"})


class MixedGLMResultsWrapper(MixedLMResultsWrapper):
    _wrap_attrs = MixedLMResultsWrapper._wrap_attrs
    # conf_int returns its own labelled DataFrame
    _wrap_methods = {k: v for k, v in MixedLMResultsWrapper._wrap_methods.items()
                     if k != "conf_int"}

    def _repr_html_(self):
        return self._results._repr_html_()

    def __getattribute__(self, name):
        # with several factors cov_re is a dict per factor, and the variance part of
        # params is labelled by param_names: statsmodels' one-factor labels do not apply
        if name in _MULTI_RAW:
            res = object.__getattribute__(self, "_results")
            if getattr(res.model, "multi", False):
                val = getattr(res, name)
                if name == "bse_re":
                    return pd.Series(val, index=res.model.data.param_names[res.k_fe:])
                return val
        return super().__getattribute__(name)

    def conf_int(self, *args, **kwargs):
        return self._results.conf_int(*args, **kwargs)

    conf_int.__doc__ = MixedGLMResults.conf_int.__doc__


wrap.populate_wrapper(MixedGLMResultsWrapper, MixedGLMResults)
