"""Shared fixtures: reference JSON files, the bundled data sets, and the reference
models fitted once per session (fits are cached by case and nagq).

Reference numbers live in ``glmm_open.json`` (made by ``references.R``: lme4,
glmmTMB, GLMMadaptive on contraception, cbpp, grouseticks) and ``lmm_hsb.json``
(made by ``references_lmm.R``: lmer on High School and Beyond). They are looked
up in ``tests/reference/`` first, then in the project's ``../shared/reference/``
(DESIGN.md section 5); tests that need them are skipped when neither exists.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest
import statsmodels.api as sm

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # tests/oracle.py and tests/tolerances.py

import mlglm  # noqa: E402

REFERENCE_DIRS = (HERE / "reference", HERE.parent.parent / "shared" / "reference",
                  Path("/work/shared/reference"))


def reference_path(name: str) -> Path | None:
    """First existing copy of a reference file, or None."""
    for d in REFERENCE_DIRS:
        if (d / name).exists():
            return d / name
    return None


def _load_json(name):
    path = reference_path(name)
    if path is None:
        pytest.skip(f"reference file {name} not found in {[str(d) for d in REFERENCE_DIRS]}")
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="session")
def glmm_ref():
    """glmm_open.json (references.R, case set "open")."""
    return _load_json("glmm_open.json")


@pytest.fixture(scope="session")
def lmm_ref():
    """lmm_hsb.json (references_lmm.R)."""
    return _load_json("lmm_hsb.json")


# ------------------------------------------------------------------------------ data
@pytest.fixture(scope="session")
def contraception():
    return mlglm.datasets.load_contraception()


@pytest.fixture(scope="session")
def cbpp():
    return mlglm.datasets.load_cbpp()


@pytest.fixture(scope="session")
def grouseticks():
    return mlglm.datasets.load_grouseticks()


@pytest.fixture(scope="session")
def hsb():
    return mlglm.datasets.load_hsb()


# ----------------------------------------------------------- the four GLMM reference cases
#: our statsmodels-style spelling of the cases of references.R (same data preparation:
#: mlglm.datasets loaders mirror its prep(), factor levels in R's order)
REFERENCE_CASES = {
    # y ~ age + I(age^2) + urban + livch + (1 | district), binomial
    "contra_ri": dict(data="contraception", formula="y ~ age + I(age**2) + urban + livch",
                      groups="district", re_formula=None, family=sm.families.Binomial),
    # y ~ age + I(age^2) + urban + livch + (1 + urban | district), binomial
    "contra_rs": dict(data="contraception", formula="y ~ age + I(age**2) + urban + livch",
                      groups="district", re_formula="~urban", family=sm.families.Binomial),
    # cbind(incidence, size - incidence) ~ period + (1 | herd), binomial
    "cbpp_ri": dict(data="cbpp", formula="incidence + I(size - incidence) ~ period",
                    groups="herd", re_formula=None, family=sm.families.Binomial),
    # TICKS ~ YEAR + cHEIGHT + (1 | BROOD), poisson
    "grouse_ri": dict(data="grouseticks", formula="TICKS ~ YEAR + cHEIGHT", groups="BROOD",
                      re_formula=None, family=sm.families.Poisson),
}


@pytest.fixture(scope="session")
def reference_data(contraception, cbpp, grouseticks):
    return {"contraception": contraception, "cbpp": cbpp, "grouseticks": grouseticks}


@pytest.fixture(scope="session")
def reference_model(reference_data):
    """reference_model(case) -> the MixedGLM of that case (built once)."""
    cache = {}

    def get(case):
        if case not in cache:
            spec = REFERENCE_CASES[case]
            cache[case] = mlglm.MixedGLM.from_formula(
                spec["formula"], reference_data[spec["data"]], groups=spec["groups"],
                re_formula=spec["re_formula"], family=spec["family"]())
        return cache[case]

    return get


@pytest.fixture(scope="session")
def reference_fit(reference_model):
    """reference_fit(case, nagq) -> results; nagq=1 is Laplace, > 1 AGHQ. Fitted once."""
    cache = {}

    def get(case, nagq=1):
        key = (case, int(nagq))
        if key not in cache:
            model = reference_model(case)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if nagq == 1:
                    cache[key] = model.fit(method="laplace")
                else:
                    cache[key] = model.fit(method="aghq", nagq=int(nagq))
        return cache[key]

    return get


# ------------------------------------------------------------------- HSB (Gaussian) fits
def hsb_statsmodels_spec(lme4_formula: str):
    """(fixed formula, re_formula) of an lmm_hsb.json formula such as
    'mAch ~ cses + (1 + cses | school)'."""
    fixed, bar = lme4_formula.split(" + (", 1)
    terms = bar.split("|")[0].strip()
    re_formula = None if terms == "1" else "~" + terms.replace("1 + ", "")
    return fixed, re_formula


@pytest.fixture(scope="session")
def hsb_fit(hsb):
    """hsb_fit(key, route) for a key of lmm_hsb.json; route "lmer" (mlglm.lmer) or
    "statsmodels" (MixedGLM.from_formula(..., family=Gaussian()).fit(reml=...))."""
    cache = {}

    def get(key, formula, reml, route):
        ck = (key, route)
        if ck not in cache:
            if route == "lmer":
                cache[ck] = mlglm.lmer(formula, hsb, reml=reml)
            else:
                fixed, re_formula = hsb_statsmodels_spec(formula)
                model = mlglm.MixedGLM.from_formula(fixed, hsb, groups="school",
                                                    re_formula=re_formula,
                                                    family=sm.families.Gaussian())
                cache[ck] = model.fit(reml=reml)
        return cache[ck]

    return get


def pytest_report_header(config):
    found = [str(reference_path(n)) for n in ("glmm_open.json", "lmm_hsb.json")]
    return f"mlglm reference files: {', '.join(found)}"

