"""The PyPI package ``glmm`` (Rust core, PyO3 bindings).

Call: ``glmm.fit(df, "y ~ x + (1 + x | g)", family, nagq=K, reml=..., satterthwaite=False,
anova_test="Wald")``.  Two defaults are switched off because they compute things no other engine
here computes inside the fit: lmerTest-style Satterthwaite df for Gaussian models, and
``anova_test="auto"``, which for a Poisson GLMM refits the model once per fixed term to store
likelihood-ratio tables.  Threads: the Rust core uses rayon, pinned by RAYON_NUM_THREADS=1.
"""
import numpy as np

MAX_NAGQ = 25   # glmm: odd nagq 1..25, q <= 3 random effects, single grouping factor
MAX_Q_AGQ = 3


def version():
    from importlib.metadata import version as v

    return v("glmm")


def applicable(case, slow_peers=False):
    if case.nagq > 1 and case.q > MAX_Q_AGQ:
        return f"glmm AGHQ is limited to q <= {MAX_Q_AGQ} random effects per group"
    if case.nagq > MAX_NAGQ:
        return f"glmm nagq is limited to {MAX_NAGQ}"
    return None


def prepare(case):
    import glmm  # noqa: F401


def fit(case, df):
    import glmm

    kw = dict(nagq=case.nagq, satterthwaite=False, anova_test="Wald")
    if case.kind == "lmm":
        kw["reml"] = case.reml
    family = {"negative_binomial": "negativebinomial"}.get(case.family, case.family)
    return glmm.fit(df, case.lme4_formula("glmm"), family, **kw)


def extract(case, r):
    notes = []
    if int(r.nagq) != int(case.nagq):
        notes.append(f"glmm used nagq={r.nagq}, not {case.nagq}")
    if r.warnings:
        notes += [str(w) for w in r.warnings][:5]
    # varcorr[0] is the vech-packed (column-major lower triangle) covariance of the first grouping
    sd, corr = r.stddev_corr(0)
    sd = np.asarray(sd, float)
    cov = np.asarray(corr, float) * np.outer(sd, sd)
    return {
        "llf": float(r.loglik),
        "fe_params": {n: float(b) for n, b in zip(r.names, r.beta)},
        "cov_re": cov.tolist(),
        "converged": bool(r.converged),
        "nagq": int(r.nagq),
        "reml": bool(r.reml),
        "n_eval": int(r.n_eval),
        "notes": notes,
        **({"dispersion": float(r.dispersion)} if case.family == "negative_binomial" else {}),
    }
