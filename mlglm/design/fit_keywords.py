"""statsmodels' ``fit()`` keywords on a MixedGLM: accepted, or refused with the reason.

Code written for ``MixedLM.fit`` or ``GLM.fit`` passes keywords that mean nothing
for mlglm's fit (the optimiser, its tolerances and the covariance estimator are
fixed: BFGS with the exact gradient finished by Newton steps, convergence judged
on the gradient and the Newton decrement, the observed information). Each such
keyword is either harmless and accepted, with what it does here, or refused
with a ``TypeError`` that says why -- never silently dropped. A keyword statsmodels
does not know either gets a did-you-mean.
"""
from __future__ import annotations

from .data_checks import unexpected_keywords

__all__ = ["ACCEPTED", "REFUSED", "check_fit_keywords"]

#: keyword -> what it does in mlglm (accepted)
ACCEPTED = {
    "disp": "True prints one line on the outcome of the optimisation",
    "full_output": "no effect: the optimisation record is always kept (res.optim)",
    "do_cg": "no effect: MixedLM's switch to conjugate gradients; mlglm's optimiser is fixed",
    "niter_sa": "0 only (MixedLM's default): mlglm needs no annealing steps",
    "cov_type": "'nonrobust' only: the observed information",
    "use_t": "False only: Wald z statistics, as lme4's glmer",
}

#: keyword -> why it is refused
REFUSED = {
    "fe_pen": "penalised fits are not available in mlglm",
    "cov_pen": "penalised fits are not available in mlglm",
    "free": "fits with some parameters held fixed are not available; profile intervals "
            "are res.intervals(method='profile')",
    "callback": "the optimiser runs inside mlglm's core and calls nothing back",
    "retall": "the optimiser's iterates are not kept (res.optim records the outcome)",
    "gtol": "convergence is judged by mlglm's own criteria (max |gradient| < 1e-3 and a "
            "Newton decrement < 1e-6, see res.optim), not the optimiser's tolerance",
    "cov_kwds": "robust covariances are not available: cov_params() is the inverse "
                "observed information",
    "optimizer": "the optimiser is fixed (BFGS with the exact gradient, then Newton steps)",
}

#: statsmodels optimiser names that MixedLM.fit takes as method=
OPTIMIZERS = {"bfgs", "lbfgs", "cg", "nm", "powell", "newton", "ncg", "basinhopping",
              "minimize"}


def check_fit_keywords(kwargs: dict, method, own: tuple) -> dict:
    """The accepted statsmodels keywords of ``kwargs`` as a dict, after refusing
    the others (``TypeError`` with the reason, or a did-you-mean over ``own``
    and the statsmodels keywords) and a statsmodels optimiser name as ``method``."""
    if isinstance(method, (list, tuple)) or (isinstance(method, str)
                                            and method.lower() in OPTIMIZERS):
        raise TypeError(f"method={method!r} names a statsmodels optimiser; in mlglm method= "
                        "is the likelihood: 'laplace' or 'aghq' (GLMMs), 'reml' or 'ml' "
                        "(Gaussian). " + REFUSED["optimizer"])
    out = {}
    for key, value in kwargs.items():
        if key in REFUSED:
            raise TypeError(f"fit(): {key}= is not supported: {REFUSED[key]}")
        if key not in ACCEPTED:
            unexpected_keywords("fit", [key], list(own) + list(ACCEPTED))
        if key == "niter_sa" and value not in (0, None):
            raise TypeError(f"fit(): niter_sa={value!r} is not supported: {ACCEPTED[key]}")
        if key == "cov_type" and value not in ("nonrobust", None):
            raise TypeError(f"fit(): cov_type={value!r} is not supported: {ACCEPTED[key]}")
        if key == "use_t" and value:
            raise TypeError(f"fit(): use_t=True is not supported: {ACCEPTED[key]}")
        out[key] = value
    return out
