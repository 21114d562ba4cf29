"""The parametric bootstrap for fits with several grouping factors.

:mod:`mlglm.bootstrap` runs the replicates (seeds, workers, failures, the
:class:`~mlglm.bootstrap.BootstrapResult`); this module supplies what differs
with several factors. Replicate r draws new random effects for *every* factor,
b_k = (I_{J_k} (x) L_k) u_k with u_k ~ N(0, I) and L_k L_k' = Sigma_k-hat (term
order, one generator per replicate), and a response from the fitted family at
eta = offset + X beta-hat + sum_k Z_k b_k (Gaussian: plus N(0, sigma-hat^2) noise),
then refits by the same method:

* Gaussian: :func:`~mlglm.core.lmm_multi.multi_lmm_fit` (REML or ML as fitted),
  started at the fit's relative theta;
* binomial / Poisson: the model's own objective (``model.objective(nagq)``, on a
  copy of the model holding the replicate's response) maximised by
  :func:`~mlglm.core.optimize.fit_glmm` from the fit's (beta, theta).

What is kept per replicate is the natural parameter vector of
:func:`~mlglm.profile.natural_values` (fixed effects, SDs and
correlations per factor[, sigma]) and the refit's frozen state, from which
:func:`replicate_results` builds a real results object.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .core.optimize import fit_glmm
from .marginal import draw_random_effects, draw_response, fit_dispersion, term_factors
from .profile import natural_layout, term_Sigmas

__all__ = ["multi_spec", "multi_draw", "multi_refit", "replicate_results",
           "multi_replicate_params"]


def multi_spec(results) -> dict:
    """What a worker needs to simulate and refit (picklable), computed once."""
    model = results.model
    X = np.asarray(model.exog, float)
    beta = np.asarray(results.fe_params, float)
    offset = np.asarray(model.offset, float)
    Sigmas = term_Sigmas(results)
    gaussian = model.fam.is_gaussian
    spec = dict(multi=True, fam=model.fam, X=X, offset=offset,
                m=np.asarray(model.n_trials, float), terms=model.re_terms,
                eta_fixed=offset + X @ beta, Ls=term_factors(model.re_terms, Sigmas),
                dispersion=fit_dispersion(results), freq=model.freq_weights,
                var=model.var_weights, method=results.method, nagq=results.nagq or 1,
                layout=natural_layout(model), gaussian=gaussian)
    spec.update(problem=model.problem)
    if gaussian:
        spec.update(theta0=np.asarray(results.outcome.theta, float))
    else:
        spec.update(x0=model.theta_from_params(np.asarray(results.params)))
    return spec


def multi_draw(spec, rng) -> np.ndarray:
    """One response vector from the fitted model with new random effects for every factor."""
    from .factors import random_part
    bs = draw_random_effects(spec["terms"], spec["Ls"], rng)
    eta = spec["eta_fixed"] + random_part(spec["terms"], bs)
    return draw_response(spec["fam"], eta, rng, spec["m"], spec["dispersion"], spec["var"])


def multi_refit(spec, y):
    """(natural parameters, llf, converged, fit state) of the model refitted to y."""
    layout = spec["layout"]
    problem = spec["problem"].with_response(y)
    if spec["gaussian"]:
        f = problem.fit_lmm(reml=spec["method"] == "reml", theta0=spec["theta0"])
        vec = np.concatenate([f.beta, layout.natural(f.Sigmas), [np.sqrt(f.dispersion)]])
        return vec, float(f.llf), bool(f.converged), f
    obj = problem.objective(spec["nagq"])
    st = fit_glmm(obj, x0=spec["x0"])
    vec = np.concatenate([st.beta, layout.natural([L @ L.T for L in st.Lambdas])]
                         + ([] if st.log_dispersion is None else [[np.exp(st.log_dispersion)]]))
    return vec, float(st.llf), bool(st.record.converged), st


def replicate_results(results, y, fit):
    """The results object of a refit ``fit`` of the response ``y``: a copy of the model
    holding y, packaged as :meth:`MixedGLM.fit` packages it."""
    from .bootstrap import _model_with_response
    from .results import build_results
    return build_results(_model_with_response(results.model, y), fit)


def multi_replicate_params(boot) -> pd.DataFrame:
    """The replicates in the layout of ``params``: fixed effects and vech(Sigma_k) per
    factor (variances and covariances)[, the dispersion], one row per replicate."""
    model = boot.results.model
    p = model.k_fe
    layout = natural_layout(model)
    rows = []
    for v in boot.replicates.to_numpy(dtype=float):
        if np.isnan(v).all():             # a failed refit
            rows.append(np.full(len(model.data.param_names), np.nan))
            continue
        Sig = layout.Sigmas_from_natural(v[p:p + layout.dim])
        disp = [v[p + layout.dim:p + layout.dim + 1]] if model.fam.estimates_dispersion else []
        rows.append(np.concatenate([v[:p]] + [S[np.tril_indices(S.shape[0])] for S in Sig]
                                   + disp))
    return pd.DataFrame(rows, columns=list(model.data.param_names))
