"""One adapter per engine.

Python engines (``mlglm``, ``glmm``, ``statsmodels``) are modules here with

    version() -> str
    prepare(case) -> None          # imports etc.; not timed
    fit(case, df) -> object        # the timed call: formula handling + fit
    extract(case, res) -> dict     # llf, fe_params, cov_re, converged, notes; not timed
    applicable(case) -> str|None   # None, or the reason the engine cannot fit this case

R engines (``lme4``, ``glmmTMB``) run ``fit_one.R`` through Rscript; their applicability rules
live in ``rpeers.py``.
"""
PYTHON_ENGINES = ("mlglm", "glmm", "statsmodels")
R_ENGINES = ("lme4", "glmmTMB")
ALL_ENGINES = PYTHON_ENGINES + R_ENGINES


def python_adapter(engine):
    import importlib

    mod = {"mlglm": "mlglm_engine", "glmm": "glmm_engine", "statsmodels": "statsmodels_engine"}[engine]
    return importlib.import_module(f"peers.{mod}")
