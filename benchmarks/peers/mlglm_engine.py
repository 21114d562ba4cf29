"""mlglm through its lme4-style public API: ``mlglm.glmer`` / ``mlglm.lmer`` (DESIGN.md §2)."""
import numpy as np


def version():
    import mlglm

    return getattr(mlglm, "__version__", "unknown")


def applicable(case, slow_peers=False):
    return None


def prepare(case):
    import mlglm  # noqa: F401  (import cost is not part of the fit)


def fit(case, df):
    import mlglm

    formula = case.patsy_formula("mlglm")
    if case.kind == "lmm":
        return mlglm.lmer(formula, df, reml=case.reml)
    return mlglm.glmer(formula, df, family=case.family, nagq=case.nagq)


def extract(case, res):
    fe = getattr(res, "fe_params", None)
    out = {
        "llf": float(res.llf),
        "fe_params": {str(k): float(v) for k, v in fe.items()} if hasattr(fe, "items") else
        (None if fe is None else [float(v) for v in np.ravel(fe)]),
        "cov_re": _cov(getattr(res, "cov_re", None)),
        "converged": None if getattr(res, "converged", None) is None else bool(res.converged),
        "method": str(getattr(res, "method", "")),
        "nagq": getattr(res, "nagq", None),
    }
    if out["nagq"] is not None:
        out["nagq"] = int(out["nagq"])
    if getattr(res, "dispersion", None) is not None:       # NB theta, Gamma scale
        out["dispersion"] = float(res.dispersion)
    return out


def _cov(cov_re):
    """Covariance of the random effects: one matrix, or {factor: matrix} for several factors."""
    if cov_re is None:
        return None
    if isinstance(cov_re, dict):
        return {str(k): np.asarray(v, float).tolist() for k, v in cov_re.items()}
    return np.asarray(cov_re, float).tolist()
