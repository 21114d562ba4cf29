"""statsmodels: ``MixedLM`` (Gaussian; ML or REML) and ``Binomial/PoissonBayesMixedGLM.fit_vb``
(GLMMs).

The Bayes GLMMs are *not* maximum likelihood: they are mean-field variational Bayes with
independent random effects (no intercept-slope correlation) and N(0, 2^2)/N(0, 1) priors, so their
"llf" is reported as NaN, and their covariance is the diagonal exp(2 * posterior mean of log SD).
Their random-effects design is built here as a scipy.sparse matrix (one block of G columns per
random-effect term) because ``from_formula(vc_formulas={"g": "0 + C(g)"})`` builds the
n x G indicator matrix densely in patsy first (80 GB at 10^6 rows and 10^4 groups).  Building it is
part of the timed fit, as formula handling is for the other engines.
"""
import numpy as np


def version():
    import statsmodels

    return statsmodels.__version__


#: BayesMixedGLM.fit_vb did not finish within 900 s on 10^5 rows / 1,000 groups (2 cores, BFGS
#: over ~4,000 variational parameters), so 10^6 rows run only with --slow-peers.
SLOW_ROWS = 10**6


def applicable(case, slow_peers=False):
    if case.multi:
        if case.kind != "lmm":
            return "statsmodels has no ML GLMM with several grouping factors"
        if not case.vc:
            return ("statsmodels MixedLM: crossed factors need one group holding every row, "
                    "with dense per-group matrices (infeasible at this size)")
        return None
    if case.kind == "lmm":
        return None
    if case.nrows is not None and case.nrows >= SLOW_ROWS and not slow_peers:
        return ("statsmodels BayesMixedGLM.fit_vb did not finish in 900 s at 10^5 rows "
                "(use --slow-peers)")
    if case.method != "laplace":
        return "statsmodels has no adaptive Gauss-Hermite quadrature (BayesMixedGLM is VB/MAP)"
    if case.lhs.startswith("cbind"):
        return "BinomialBayesMixedGLM takes 0/1 responses only (no successes/failures)"
    return None


def prepare(case):
    import patsy  # noqa: F401
    import scipy.sparse  # noqa: F401
    import statsmodels.api  # noqa: F401
    from statsmodels.genmod import bayes_mixed_glm  # noqa: F401


def fit(case, df):
    if case.multi:
        import numpy as np
        from statsmodels.regression.mixed_linear_model import MixedLM
        groups, re_formula, vcs = case.vc
        g = np.ones(len(df)) if groups == "ONE" else groups
        model = MixedLM.from_formula(case.patsy_formula("statsmodels", with_re=False), data=df,
                                     groups=g, re_formula=re_formula, vc_formula=dict(vcs))
        return model.fit(reml=case.reml)
    if case.kind == "lmm":
        from statsmodels.regression.mixed_linear_model import MixedLM

        re_formula = None if case.re.strip() == "1" else f"~{case.re}"
        model = MixedLM.from_formula(case.patsy_formula("statsmodels", with_re=False), data=df,
                                     groups=case.group, re_formula=re_formula)
        return model.fit(reml=case.reml)
    return _fit_bayes(case, df)


def _fit_bayes(case, df):
    import patsy
    import scipy.sparse as sp
    from statsmodels.genmod.bayes_mixed_glm import BinomialBayesMixedGLM, PoissonBayesMixedGLM

    y, X = patsy.dmatrices(case.patsy_formula("statsmodels", with_re=False), df,
                           return_type="dataframe")
    Z = patsy.dmatrix(f"~ {case.re}", df, return_type="dataframe")
    codes, levels = _codes(df[case.group])
    n, G = len(codes), len(levels)
    rows = np.arange(n)
    blocks, ident, vcp_names = [], [], []
    for k, col in enumerate(Z.columns):
        blocks.append(sp.csr_array((Z[col].to_numpy(float), (rows, codes)), shape=(n, G)))
        ident.append(np.full(G, k))
        vcp_names.append(f"{case.group}:{col}")
    exog_vc = sp.hstack(blocks, format="csr")
    cls = BinomialBayesMixedGLM if case.family == "binomial" else PoissonBayesMixedGLM
    model = cls(y.iloc[:, 0].to_numpy(float), X, exog_vc, np.concatenate(ident),
                fep_names=list(X.columns), vcp_names=vcp_names)
    res = model.fit_vb(rng=0)
    res._bench_fe_names = list(X.columns)
    return res


def _codes(s):
    import pandas as pd

    codes, levels = pd.factorize(s, sort=True)
    return codes, levels


def extract(case, res):
    if case.kind == "lmm":
        fe = res.fe_params
        return {
            "llf": float(res.llf),
            "fe_params": {str(k): float(v) for k, v in fe.items()},
            "cov_re": np.asarray(res.cov_re, float).tolist(),
            "converged": bool(res.converged),
            "notes": [] if res.converged else ["MixedLM reports converged=False"],
        }
    r = res.optim_retvals
    notes = ["VB (not ML): llf not evaluated; independent random effects"]
    if not r.success:
        notes.append(f"VB optimiser: {r.message}")
    vcp = np.asarray(res.vcp_mean, float)
    return {
        "llf": float("nan"),
        "fe_params": {n: float(v) for n, v in zip(res._bench_fe_names, res.fe_mean)},
        "cov_re": np.diag(np.exp(2 * vcp)).tolist(),
        "converged": bool(r.success),
        "notes": notes,
    }
