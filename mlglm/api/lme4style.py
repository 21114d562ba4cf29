"""lme4-style front door: ``glmer`` and ``lmer`` with bar formulas.

``glmer("y ~ x + (1 + x | g)", data, family="binomial", nagq=1)`` parses the
bar term (:mod:`mlglm.design.formula`), builds the same :class:`~mlglm.api.models.MixedGLM`
a statsmodels user would build with ``groups=`` and ``re_formula=``, and fits
it (:mod:`mlglm.design.lme4_front` does the work, for any model class, so that a fit's
``update`` can rebuild its own model without importing this front door). ``nagq``
follows lme4: 1 is Laplace, K > 1 is K-point AGHQ per dimension (here also for
random slopes); lme4's spellings ``nAGQ=`` and ``REML=`` are accepted too.
"""
from __future__ import annotations

from ..design.formula_env import capture
from ..design.lme4_front import glmer_fit, lmer_fit
from .models import MixedGLM

__all__ = ["glmer", "lmer"]


def glmer(formula, data, family="binomial", nagq=1, link=None, subset=None, offset=None,
          exposure=None, n_trials=None, missing="none", nAGQ=None, REML=None, weights=None,
          freq_weights=None, var_weights=None, control=None, eval_env=None, ziformula=None,
          **fit_kwargs):
    """Fit a GLMM written in lme4's syntax, e.g. ``"y ~ x + (1 + x | g)"``.

    Parameters
    ----------
    family : "binomial" | "poisson" | "negative_binomial" (NB2, theta estimated by ML
        jointly with everything else -- not lme4's alternating ``glmer.nb``) |
        "gamma" (inverse link, as R's ``Gamma()``; ``link="log"``) | a statsmodels
        family object | glmmTMB's "truncated_poisson", "truncated_negative_binomial"
        (hurdle models, with ``ziformula``) and "beta" (``beta_family()``: logit link,
        precision phi estimated; y strictly in (0, 1)).
    ziformula : glmmTMB's zero part, e.g. ``"~ spp + mined"``, ``"~ 1"`` (constant),
        ``"~ 0"`` or None (none): with "poisson" or "negative_binomial" a zero-inflated
        model, Pr(structural zero) = expit(x_zi' gamma); with a truncated family a
        hurdle, Pr(y = 0) = expit(x_zi' gamma). glmmTMB's parametrisation, so the
        numbers port one to one; the coefficients are ``zi_<name>`` in ``params`` and
        ``res.zi_params``. Laplace and AGHQ with one grouping factor, Laplace with
        several.
    nagq, nAGQ : 1 for the Laplace approximation (default, as lme4), K > 1 for
        K-point adaptive Gauss-Hermite quadrature per random-effect dimension,
        "auto" to raise K until the estimates settle (see :meth:`MixedGLM.fit`)
        (``nAGQ`` is lme4's spelling of the same argument).
    link : link name for string families ("logit", "probit", "cloglog", "log").
    subset, offset, exposure, n_trials, missing : as MixedGLM.from_formula.
    weights : lme4's prior weights (a column name or an array): for the binomial,
        the number of trials of a proportion response (lme4: a 0/1 or proportion
        response y with weights w is y w successes out of w trials), i.e.
        ``n_trials=``; for the other families, multipliers of each row's
        log-likelihood (as lme4's and glmmTMB's log-likelihoods use them), i.e.
        ``freq_weights=``.
    freq_weights, var_weights : as MixedGLM (``sm.GLM``'s meaning).
    REML : accepted as False only: GLMMs are fitted by maximum likelihood.
    control : lme4's ``glmerControl()`` options as a dict: ``{"optCtrl": {"maxfun":
        n}}`` (or ``maxit``, ``maxeval``) is honoured as ``maxiter=n``; every other
        option (``optimizer``, ``check.*``, ...) is refused with the reason.
    eval_env : where names in the formula that are not columns resolve (statsmodels'
        keyword): by default the caller's namespace; see :mod:`mlglm.design.formula_env`.
    **fit_kwargs : passed to :meth:`MixedGLM.fit`; a misspelt keyword is an
        error with a did-you-mean.

    A ``cbind(successes, failures)`` response and ``offset(expr)`` terms are
    accepted as in R, and so are R's ``log(x)``, ``exp(x)``, ``sqrt(x)``,
    ``factor(x)`` (``as.factor(x)``), ``scale(x)`` and a few more
    (:data:`mlglm.design.formula_env.R_FUNCTIONS`) where your namespace does not define
    the name.
    """
    return glmer_fit(MixedGLM, formula, data, family=family, nagq=nagq, link=link, subset=subset,
                     offset=offset, exposure=exposure, n_trials=n_trials, missing=missing,
                     nAGQ=nAGQ, REML=REML, weights=weights, freq_weights=freq_weights,
                     var_weights=var_weights, control=control,
                     namespace=capture(eval_env, depth=1), ziformula=ziformula, **fit_kwargs)


def lmer(formula, data, reml=True, subset=None, offset=None, missing="none", REML=None,
         weights=None, freq_weights=None, var_weights=None, control=None, eval_env=None,
         **fit_kwargs):
    """Fit a linear mixed model written in lme4's syntax by REML (default) or ML.

    ``REML=`` is lme4's spelling of ``reml=``; ``offset(expr)`` terms are accepted
    as in R; a misspelt keyword is an error with a did-you-mean. ``weights=`` is
    lme4's (Var e_i = sigma^2 / w_i): ``var_weights=``; ``freq_weights=`` counts a
    row f times (column names or arrays). ``control=`` (lme4's ``lmerControl()``
    options as a dict) is refused with the reason for each option: the profiled
    criterion is minimised to convergence by mlglm's own optimiser, so none of them
    has a counterpart. Names in the formula resolve as in :func:`glmer`
    (``eval_env=``, R's ``log``, ``factor``, ... ).
    """
    return lmer_fit(MixedGLM, formula, data, reml=reml, subset=subset, offset=offset,
                    missing=missing, REML=REML, weights=weights, freq_weights=freq_weights,
                    var_weights=var_weights, control=control,
                    namespace=capture(eval_env, depth=1), **fit_kwargs)
