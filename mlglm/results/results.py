"""Results of a MixedGLM fit: a statsmodels ``MixedLMResults`` done right for GLMMs.

``params`` = (fe_params, vech(cov_re)[, zero part][, dispersion]) with vech the
row-major lower triangle (MixedLM's order and names), the zero-part coefficients of
a zero-inflated or hurdle model (``zi_<name>``, also ``zi_params``) and, for a
negative binomial, Gamma or beta fit, the estimated dispersion last (``theta``,
``scale`` or ``phi``, named by the family). ``cov_params()`` is the inverse observed information: for GLMMs the
Hessian of the exact gradient in (beta, theta, t) by differences
(:mod:`mlglm.core.fit.information`), inverted over the directions the data determine
and mapped to (beta, vech Sigma, dispersion = e^t) by the delta method -- a
parameter without information (separation), held at the boundary, or of a
``fit(hessian=False)`` has NaN there, never 0 (``se_missing`` lists the first
kind); for Gaussian fits
the fixed-effect block is lme4's
sigma^2 (R_X'R_X)^{-1} and variance-component SEs are not reported (NaN; use
profile intervals). Every inherited Gaussian formula that would be wrong for
a GLMM (llf, aic/bic parameter count, fitted values, residuals, random
effects, summary, profile_re, string t_test) is replaced here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.base import wrapper as wrap
from statsmodels.base.model import LikelihoodModelResults
from statsmodels.regression.mixed_linear_model import MixedLMResults, MixedLMResultsWrapper
from statsmodels.tools._decorators import cache_readonly

from . import lme4api
from ..design import mixedlm_view as view
from ..inference.bootstrap import bootstrap
from ..inference.compare import compare_lr_test
from ..inference.ddf import anova_table, coef_table, ddf_conf_int, ddf_f_test, ddf_t_test
from ..inference.diagnostics import check_quadrature
from ..design.factors import variance_components
from ..design.fit_checks import collinearity
from .icc import icc
from ..inference.intervals import conf_int as intervals_table
from ..inference.intervals import params_conf_int, select_rows
from ..inference.marginal import marginal_params, simulate
from .pooling import compare_pooling_from_results
from .prediction import get_prediction, predict, predict_marginal
from .residuals import deviance_residuals, pearson_residuals, response_residuals
from .singular import describe_singular
from .summary import make_summary
from ..inference.wald import constraint, covariance_for, nan_wald_test

__all__ = ["MixedGLMResults", "MixedGLMResultsWrapper", "build_results"]


def build_results(model, fit):
    """The results object of a fitted model from the core's fit record
    (:class:`~mlglm.core.spec.record.CoreFit`), whatever engine made it."""
    return MixedGLMResultsWrapper(MixedGLMResults(model, fit))


class MixedGLMResults(MixedLMResults):
    """Results of :meth:`MixedGLM.fit`.

    Attributes beyond statsmodels' usual ones: ``method`` ("laplace", "aghq",
    "reml" or "ml"), ``nagq``, ``converged``, ``optim`` (the optimisation
    record), ``singular`` (per random-effect term), ``deviance`` (= -2 llf,
    not lme4's sum of deviance residuals), ``n_groups``, ``se_missing`` (the
    parameters whose standard errors the observed information does not determine:
    NaN, with a ``StandardErrorWarning`` and a note in the summary).

    ``vcomp`` holds the variances of the ``vc_formula`` entries in sorted key order
    (``k_vc`` of them), as statsmodels' ``MixedLMResults.vcomp``; they are also in
    ``cov_re`` and ``params`` (``"{key} Var"``; an entry that is a block of effects on
    ``groups``' own factor, such as ``{"slope": "0 + z"}``, sits in that factor's block
    there: ``"g slope Var"``, with structural zero covariances).

    One deliberate difference from statsmodels' ``MixedLM``: the variance and
    covariance entries of ``params`` (``"g Var"``, ``"g x x Cov"``, ``"key Var"``)
    are on the variance scale, equal to ``cov_re`` and ``vcomp``, for every family;
    statsmodels' ``MixedLM`` stores them divided by the residual variance
    (``cov_re / scale``). GLMMs have no residual variance to divide by, so one
    meaning serves every family; ``bse`` and ``conf_int()`` are on the same scale.
    """

    def __init__(self, model, fit):
        # params = (beta, vech Sigma_k per term, [the dispersion a GLMM estimates])
        params = np.concatenate([fit.beta] + [S[np.tril_indices(S.shape[0])]
                                              for S in fit.Sigmas] + [fit.zi])
        if model.fam.estimates_dispersion:
            params = np.concatenate([params, [fit.dispersion]])
        scale = model.fam.scale(fit.dispersion)
        LikelihoodModelResults.__init__(self, model, params,
                                        normalized_cov_params=fit.cov_params / scale,
                                        scale=scale)
        self.outcome = fit
        if not hasattr(self, "_cache"):
            self._cache = {}
        self.nobs = model.nobs
        if model.freq_weights is not None:       # a row counts f times, as sm.GLM counts it
            self.nobs = float(np.sum(model.freq_weights))
        self.df_resid = self.nobs - np.linalg.matrix_rank(model.exog)
        self.use_t = False
        self.k_fe = model.k_fe
        self.k_re = model.k_re
        self.k_re2 = model.k_re2
        self.fe_params = fit.beta
        self.cov_re = view.cov_re(model, fit.Sigmas)
        self.cov_re_unscaled = view.cov_re(model, [S / scale for S in fit.Sigmas])
        self.vcomp = variance_components(model, fit.Sigmas)
        self.k_vc = len(self.vcomp)
        self.method = fit.method
        self.nagq = fit.nagq
        self.reml = fit.method == "reml"
        self.converged = fit.converged
        self.optim = fit.record
        # one flag per theta on a diagonal of some Lambda_k (an SD factor at ~0)
        self.singular = fit.singular[model.re_terms.theta_on_diagonal()]
        self.n_groups = view.n_groups(model)
        self.family = model.family
        self.dispersion = fit.dispersion if model.fam.has_dispersion and not \
            model.fam.is_gaussian else None
        self.reml_criterion = fit.reml_criterion
        self.cov_pen = None
        self.freepat = None
        #: parameters whose standard error the observed information does not determine
        #: (NaN in bse, p-values and Wald intervals; see fit_checks.standard_error_note)
        names = list(model.data.param_names)
        self.se_missing = [] if fit.se_missing is None else \
            [str(names[i]) for i in np.flatnonzero(fit.se_missing)]

    def rebuild(self, model, fit):
        """A results object of this class for ``model`` and the core's fit record ``fit``
        (:class:`~mlglm.core.spec.record.CoreFit`), wrapped as ``fit()`` returns it: e.g. a
        bootstrap replicate's, for a copy of the model holding the replicate's response
        and its refit. Code below the results layer (inference) makes results objects
        through this method instead of importing this module."""
        return MixedGLMResultsWrapper(type(self)(model, fit))

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
        k = len(self.params) - int(self.model.fam.estimates_dispersion) - self.k_zi
        return np.sqrt(np.diag(self.cov_params())[self.k_fe:k])

    @property
    def k_zi(self) -> int:
        """Number of zero-part coefficients (0 without a zero part)."""
        return int(self.outcome.zi.size)

    @cache_readonly
    def zi_params(self):
        """The zero-part coefficients gamma (zero-inflated and hurdle models: the
        structural-zero, or zero, probability is expit(x_zi' gamma)), named as in
        ``params`` (``zi_<name>``); an empty Series without a zero part."""
        names = list(self.model.data.param_names)
        k = len(names) - int(self.model.fam.estimates_dispersion)
        return pd.Series(np.asarray(self.outcome.zi), index=names[k - self.k_zi:k],
                         dtype=float, name="zi_params")

    @cache_readonly
    def bse_dispersion(self):
        """SE of the estimated dispersion (negative binomial theta, Gamma scale) by the
        delta method from t = log(dispersion); None when it is not estimated."""
        if not self.model.fam.estimates_dispersion:
            return None
        return float(np.sqrt(np.asarray(self.cov_params())[-1, -1]))

    # ---------------------------------------------------------- random effects
    @cache_readonly
    def random_effects(self):
        """Conditional modes b_j per group: dict label -> Series (MixedLM's shape).

        With several grouping factors: dict factor -> DataFrame (levels x effects).
        """
        return view.random_effects(self.model, self.outcome.b)

    @cache_readonly
    def random_effects_cov(self):
        """Conditional covariances Lambda H_j^{-1} Lambda' (Laplace) per group
        (several factors: dict factor -> {level: DataFrame})."""
        return view.random_effects_cov(self.model, self.outcome.b_cov)

    @cache_readonly
    def separation(self):
        """A description of possible (quasi-)complete separation, or None (binomial).

        Flags fixed effects whose effect over one SD of their column exceeds
        10 on the logit scale (odds ratios beyond e^10 are estimates running
        off to infinity, not data) and rows fitted at probability 0 or 1
        (|eta| > 15) that agree with their response.
        """
        model = self.model
        if not model.fam.is_binomial or model.exog is None:
            return None
        X = np.asarray(model.exog, dtype=float)
        sd = X.std(axis=0)
        beta = np.asarray(self.outcome.beta)
        explained = self._collinearity[1]       # huge but cancelling: collinearity
        big = [str(n) for n, b, s in zip(model.exog_names, beta, sd)
               if s > 0 and abs(b) * s > 10 and str(n) not in explained]
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

    @cache_readonly
    def _collinearity(self):
        model = self.model
        if model.exog is None or model.exog.shape[1] < 2:
            return None, set()
        if getattr(model, "rows_on_driver", True):
            X = np.asarray(model.exog, dtype=float)
            cov = np.cov(X, rowvar=False, bias=True)
        else:       # a sharded fit: the data's moments, not the driver's stand-in rows
            mean, second = model._X_moments
            cov = np.asarray(second) - np.outer(mean, mean)
        huge = model.fam.is_binomial or model.fam.link.log_scale
        return collinearity(cov, self.outcome.beta,
                            [str(n) for n in model.exog_names], huge=huge)

    @cache_readonly
    def collinearity(self):
        """A description of near-collinear fixed-effect columns, or None
        (:func:`mlglm.design.fit_checks.collinearity`: the condition number of their
        correlation matrix, and huge coefficients that cancel)."""
        return self._collinearity[0]

    # ------------------------------------------------------------- prediction
    def singular_description(self) -> str:
        """Which variance parameters sit on the boundary, in words (per factor)."""
        return describe_singular(self)

    def predict(self, exog=None, which="mean", conditional=None, offset=None, exposure=None,
                transform=True, marginal=False, nagq=15, allow_new_levels=False):
        """Predicted means (``which="mean"``) or linear predictors (``"linear"``).

        Parameters
        ----------
        exog : None (the fit's rows), a DataFrame or a dict of columns (through the
            formula, same coding as the fit; for conditional predictions it must
            hold the group column) or an array of fixed-effects rows (population
            level, as statsmodels' ``MixedLM``: a random intercept needs no column).
        which : ``"mean"`` (per trial for binomial models) or ``"linear"``.
        conditional : population level by default (None: False unless
            ``allow_new_levels=True``), the random effects at 0, as statsmodels'
            ``MixedLMResults.predict``; True adds each
            row's group's conditional mode. (lme4's ``predict()`` is conditional by
            default, ``re.form = NULL``: pass ``conditional=True`` for its numbers.)
            The default is the same for every family, so a prediction does not change
            meaning with the family; for binomial and Poisson models it is the mean
            of a group whose random effects are 0 (statsmodels' ``BayesMixedGLM``
            predicts the same), not the mean over the population of groups, which
            is ``marginal=True``.
        offset, exposure : for new data. Unless given, the new DataFrame's own
            offset is used: the formula's ``offset(expr)`` terms, and the columns
            the model's ``offset=`` and ``exposure=`` named (``log`` of the
            latter), so a rate model predicts counts for the new rows' exposures.
        marginal : True gives population-averaged means, the random effects
            integrated out by quadrature with ``nagq`` points per dimension
            (:meth:`predict_marginal` adds standard errors).
        allow_new_levels : True asks for conditional predictions (it implies
            ``conditional=True``, as lme4's ``allow.new.levels = TRUE`` goes with
            its conditional default; with ``conditional=False`` it is an error):
            rows of groups the fit saw get their random effects, rows of a group
            it never saw the population level (random effects 0). False (default):
            a new group in a conditional prediction raises ``ValueError`` naming
            it. Labels are matched by value across dtypes (1 and "1" are the same
            group).

        Returns
        -------
        A Series with the DataFrame's index for DataFrame input, else an ndarray.
        """
        return predict(self, exog, which=which, conditional=conditional, offset=offset,
                       exposure=exposure, transform=transform, marginal=marginal, nagq=nagq,
                       allow_new_levels=allow_new_levels)

    def get_prediction(self, exog=None, which="mean", conditional=None, offset=None,
                       exposure=None, transform=True, allow_new_levels=False):
        """Predictions with standard errors and confidence intervals.

        Arguments as :meth:`predict` (``allow_new_levels=True`` implies
        ``conditional=True`` here too). The standard errors are by the delta method
        with the fixed-effects covariance and, for ``conditional=True``, the
        conditional covariance of the group's random effects and the movement of
        its mode with the fixed effects (see :mod:`mlglm.results.prediction`).

        Returns
        -------
        statsmodels ``PredictionResultsMean``: ``predicted_mean``, ``se_mean``,
        ``conf_int(alpha=0.05)`` and ``summary_frame(alpha=0.05)`` with columns
        ``mean``, ``mean_se``, ``mean_ci_lower``, ``mean_ci_upper``.
        """
        return get_prediction(self, exog, which=which, conditional=conditional, offset=offset,
                              exposure=exposure, transform=transform,
                              allow_new_levels=allow_new_levels)

    def predict_marginal(self, exog=None, offset=None, exposure=None, se=True, level=0.95,
                         nagq=15):
        """Population-averaged means E_b[g^{-1}(x'beta + z'b)] by quadrature, with
        delta-method standard errors and a Wald interval (DataFrame with columns
        ``mean``, ``se``, ``lower``, ``upper``)."""
        return predict_marginal(self, exog, offset=offset, exposure=exposure, se=se,
                                level=level, nagq=nagq)

    def simulate(self, n=1, seed=None, conditional=True):
        """New responses from the fitted model (see :func:`mlglm.inference.marginal.simulate`)."""
        return simulate(self, n=n, seed=seed, conditional=conditional)

    @cache_readonly
    def fittedvalues(self):
        """Conditional means g^{-1}(X beta + Z b + offset) (per trial for binomial)."""
        return self.predict(conditional=True)

    @cache_readonly
    def resid_response(self):
        """Response residuals y/m - fitted mean (per trial for binomial)."""
        return response_residuals(self)

    @cache_readonly
    def resid(self):
        """Response residuals y/m - fitted mean (``resid_response``)."""
        return self.resid_response

    @cache_readonly
    def resid_pearson(self):
        """(y - m mu) / sqrt(m V(mu)) with the family's variance function
        (Gaussian: (y - mu) / sigma; zero-inflated, hurdle, beta: (y - E y) / sqrt(Var y))."""
        return pearson_residuals(self)

    @cache_readonly
    def resid_deviance(self):
        """sign(y - m mu) sqrt(unit deviance) (see :mod:`mlglm.results.residuals`)."""
        return deviance_residuals(self)

    # ------------------------------------------------------------- inference
    @cache_readonly
    def df_model(self):
        """Estimated parameters (fixed effects, covariance parameters and, for Gaussian
        fits, the residual variance) minus the intercept: statsmodels' convention
        ``df_model + k_constant = df_modelwc``, the parameter count of aic/bic."""
        return self.outcome.n_params - int(getattr(self.model, "k_constant", 0))

    def t_test(self, r_matrix, cov_p=None, use_t=None, ddf=None):
        """Wald z-tests of linear hypotheses (strings such as ``"urban[T.Y] = 0"``,
        arrays over the fixed effects or over ``params``) -- see :mod:`mlglm.inference.wald`;
        ``ddf=`` (Gaussian fits): t tests with those df (:mod:`mlglm.inference.ddf`)."""
        R = constraint(self, r_matrix)
        if ddf is not None:
            return ddf_t_test(self, *(R if isinstance(R, tuple) else (R,)), ddf=ddf,
                              cov_p=cov_p)
        cov = covariance_for(self, R, cov_p)
        return LikelihoodModelResults.t_test(self, R, cov_p=cov, use_t=False)

    def wald_test(self, r_matrix, cov_p=None, invcov=None, use_f=None, df_constraints=None,
                  scalar=True, ddf=None):
        """Joint Wald test of linear hypotheses (chi-square; F with ``use_f=True``, as
        ``f_test`` does); ``wald_test_terms`` tests every formula term with it;
        ``ddf=`` (Gaussian fits): lmerTest's / pbkrtest's F test (:mod:`mlglm.inference.ddf`)."""
        R = constraint(self, r_matrix)
        if ddf is not None:
            return ddf_f_test(self, *(R if isinstance(R, tuple) else (R,)), ddf=ddf,
                              use_f=use_f is not False, cov_p=cov_p, invcov=invcov)
        cov = covariance_for(self, R, cov_p) if invcov is None else cov_p
        if invcov is None:
            nan_test = nan_wald_test(self, R, cov, bool(use_f), df_constraints)
            if nan_test is not None:
                return nan_test
        return LikelihoodModelResults.wald_test(self, R, cov_p=cov, invcov=invcov,
                                                use_f=bool(use_f), scalar=scalar,
                                                df_constraints=df_constraints)

    def f_test(self, r_matrix, cov_p=None, invcov=None, ddf=None):
        """F test of linear hypotheses (``wald_test(use_f=True)``); ``ddf=`` as there."""
        return self.wald_test(r_matrix, cov_p=cov_p, invcov=invcov, use_f=True, ddf=ddf)

    def coef_table(self, ddf="satterthwaite"):
        """lmerTest's fixed-effects table (``Estimate``, ``Std. Error``, ``df``, ``t value``,
        ``Pr(>|t|)``); ``ddf`` "satterthwaite", "kenward-roger" or "normal" (:mod:`mlglm.inference.ddf`)."""
        return coef_table(self, ddf)

    def anova(self, type=3, ddf="satterthwaite"):
        """lmerTest's F tests of the formula's terms, type 3, 2 or 1 (:mod:`mlglm.inference.ddf`); not
        :func:`mlglm.anova`, the likelihood-ratio comparison of several fits."""
        return anova_table(self, type=type, ddf=ddf)

    def conf_int(self, alpha=0.05, method="wald", cols=None, ddf=None, **kwargs):
        """Confidence intervals for ``params``, in statsmodels' shape.

        Parameters
        ----------
        alpha : 1 - coverage.
        method : ``"wald"`` (default; params -/+ z bse, as statsmodels),
            ``"profile"`` or ``"bootstrap"``.
        cols : the rows to return (statsmodels' older ``conf_int(alpha, cols)``):
            positions in ``params`` and/or its labels, e.g. ``cols=[1, 2]`` or
            ``cols=["age", "urban[T.Y]"]``; default every row. (A list given in
            ``method``'s place, ``conf_int(0.05, [1, 2])``, is taken as ``cols``.)
        ddf : Wald intervals of a Gaussian fit's fixed effects with t quantiles on
            ``"satterthwaite"`` or ``"kenward-roger"`` df (the latter with its
            adjusted SEs); ``None`` / ``"normal"``: z.
        **kwargs : for ``"profile"``/``"bootstrap"``, as :meth:`intervals`.

        Returns
        -------
        (k, 2) array of lower and upper limits, one row per ``params`` entry; through
        the results wrapper a DataFrame with columns 0 and 1 indexed like ``params``
        (so ``np.exp(res.conf_int())`` gives odds-ratio limits on a logit fit).
        Rows for variances (``"g Var"``) and covariances (``"g x x Cov"``): Wald limits
        from the delta-method SEs (NaN where there is none: Gaussian fits, parameters
        at the boundary); profile: the variance limits are the squared SD limits and
        covariances are NaN (only SDs and correlations are profiled); bootstrap:
        percentiles of the replicates' variances and covariances. The table with
        SDs, correlations and how each interval was made is :meth:`intervals`.
        """
        if not isinstance(method, str) and cols is None:    # statsmodels' (alpha, cols)
            method, cols = "wald", method
        if ddf is not None:
            if method != "wald":
                raise ValueError("ddf= is for Wald intervals (method='wald')")
            out = ddf_conf_int(self, alpha=alpha, ddf=ddf)
        else:
            out = params_conf_int(self, alpha=alpha, method=method, **kwargs)
        return out if cols is None else out[select_rows(self, cols)]

    def intervals(self, method="wald", level=0.95, which=None, n_boot=200, seed=None,
                  n_jobs=1, progress=None, boot=None, criterion=None):
        """Confidence intervals for fixed effects, random-effect SDs and correlations.

        Parameters
        ----------
        method : ``"wald"`` (SDs on the log scale, correlations on the atanh
            scale, labelled in the ``interval`` column), ``"profile"``
            (profile likelihood, lme4's ``confint(method="profile")``) or
            ``"bootstrap"`` (parametric bootstrap percentiles; ``n_boot``,
            ``seed``, ``n_jobs``, ``progress``, or a ready ``boot=``).
        level : coverage.
        which : optional row labels to keep (profile: to compute).
        criterion : profile, Gaussian REML fits: ``"ml"`` profiles on the ML
            likelihood as lme4's ``confint()`` does (default: the REML criterion
            for the variance parameters).

        Returns
        -------
        DataFrame indexed by parameter (fixed effects, ``sd(term)``,
        ``cor(a, b)``, and ``sigma`` for Gaussian fits; with several grouping
        factors ``sd(term | factor)`` and ``cor(a, b | factor)`` for every
        factor, one ``sd`` per tied block) with columns ``estimate``, ``lower``,
        ``upper``, ``interval``.
        """
        return intervals_table(self, level=level, method=method, which=which, n_boot=n_boot,
                        seed=seed, n_jobs=n_jobs, progress=progress, boot=boot,
                        criterion=criterion)

    def is_singular(self, tol=1e-4):
        """Whether the fit is on the boundary, as lme4's ``isSingular``: some diagonal
        element of the (relative, for Gaussian fits) covariance factor Lambda is below
        ``tol`` -- an SD estimated at 0 or a correlation at +-1."""
        theta = np.asarray(self.outcome.theta, dtype=float)
        on_diagonal = self.model.re_terms.theta_on_diagonal()
        return bool(np.any(np.abs(theta[on_diagonal]) < tol))

    def update(self, formula=None, eval_env=None, **changes):
        """Refit with a changed formula or settings, as lme4's ``update``
        (see :func:`mlglm.update`), e.g. ``res.update("~ . - x")``; names the
        original formula did not use resolve in the caller's namespace."""
        if eval_env is None:
            eval_env = 0
        if isinstance(eval_env, int) and eval_env >= 0:
            eval_env += 1             # this method's frame is one more on the stack
        return lme4api.update(self, formula, eval_env=eval_env, **changes)

    def remove_data(self):
        """statsmodels' ``remove_data``, after computing what ``conf_int()`` and
        ``summary()`` need from the data (they then work without it)."""
        self.bse, self.separation          # noqa: B018 - computed and cached
        LikelihoodModelResults.remove_data(self)

    def bootstrap(self, n=200, seed=None, progress=None, n_jobs=1):
        """Parametric bootstrap: simulate with new random effects (for every grouping
        factor), refit, n times (see :func:`mlglm.inference.bootstrap.bootstrap`); returns a
        ``BootstrapResult``."""
        return bootstrap(self, n=n, seed=seed, progress=progress, n_jobs=n_jobs)

    def marginal_params(self, nagq=15, level=0.95):
        """Population-averaged coefficients with SEs, by quadrature
        (see :func:`mlglm.inference.marginal.marginal_params`)."""
        self._not_with_auxiliary("population-averaged coefficients")
        return marginal_params(self, nagq=nagq, level=level)

    def profile_re(self, *args, **kwargs):
        raise NotImplementedError("use results.intervals(method='profile') for profile "
                                  "likelihood intervals of the random-effect SDs and "
                                  "correlations")

    def icc(self, **kwargs):
        """Intraclass correlation (see :func:`mlglm.icc`)."""
        return icc(self, **kwargs)

    def compare_lr_test(self, other, boundary=True):
        """Likelihood-ratio test against a nested fit (see :func:`mlglm.inference.compare.compare_lr_test`)."""
        return compare_lr_test(self, other, boundary=boundary)

    def check_quadrature(self, nagq=None, refit=True):
        """Refit / re-evaluate with more AGHQ points (see :func:`mlglm.check_quadrature`)."""
        return check_quadrature(self, nagq=nagq, refit=refit)

    def compare_pooling(self):
        """Complete / no / partial pooling for this fit (see :func:`mlglm.compare_pooling`)."""
        self._not_with_auxiliary("the pooling comparison")
        return compare_pooling_from_results(self)

    def _not_with_auxiliary(self, what):
        """Refuse ``what`` for zero-inflated, hurdle and beta fits (not built for their
        zero part and dispersion yet), saying so, instead of a wrong or cryptic answer."""
        fam = self.model.fam
        if fam.auxiliary:
            raise NotImplementedError(f"{what} is not available for {fam.label} models yet; "
                                      "Wald, profile and bootstrap intervals, predict(), "
                                      "simulate() and response and Pearson residuals (deviance "
                                      "residuals for the beta) are")

    def summary(self, alpha=0.05, ddf=None, **kwargs):
        """statsmodels ``Summary``: header, fixed effects, random effects.

        Gaussian fits show t tests with Satterthwaite df (lmerTest's default) unless
        ``ddf`` says ``"kenward-roger"`` or ``"normal"``; GLMMs show Wald z tests."""
        return make_summary(self, alpha=alpha, ddf=ddf)

    def _repr_html_(self):
        return self.summary().as_html()


class MixedGLMResultsWrapper(MixedLMResultsWrapper):
    _wrap_attrs = wrap.union_dicts(MixedLMResultsWrapper._wrap_attrs,
                                   {"resid_response": "rows", "resid_pearson": "rows",
                                    "resid_deviance": "rows"})
    # conf_int is wrapped below: statsmodels' "columns" wrapping labels every params row
    _wrap_methods = {k: v for k, v in MixedLMResultsWrapper._wrap_methods.items()
                     if k != "conf_int"}

    def conf_int(self, alpha=0.05, method="wald", cols=None, **kwargs):
        res = object.__getattribute__(self, "_results")
        if not isinstance(method, str) and cols is None:    # statsmodels' (alpha, cols)
            method, cols = "wald", method
        full = res.conf_int(alpha=alpha, method=method, **kwargs)
        out = res.model.data.wrap_output(full, how="columns")
        if cols is None:
            return out
        rows = select_rows(res, cols)
        return out.iloc[rows] if isinstance(out, pd.DataFrame) else out[rows]

    conf_int.__doc__ = MixedGLMResults.conf_int.__doc__

    def _repr_html_(self):
        return self._results._repr_html_()


wrap.populate_wrapper(MixedGLMResultsWrapper, MixedGLMResults)
