"""mlglm against the reference engines (DESIGN.md section 5; tolerances in tolerances.py).

GLMMs: ``glmm_open.json``, made by ``references.R`` (case set "open": lme4 1.1-31
glmer Laplace and nAGQ 7/25, glmmTMB Laplace, GLMMadaptive nAGQ 7/25 or 5/11) for

    contra_ri  y ~ age + I(age^2) + urban + livch + (1 | district)          binomial
    contra_rs  y ~ age + I(age^2) + urban + livch + (1 + urban | district)  binomial
    cbpp_ri    cbind(incidence, size - incidence) ~ period + (1 | herd)      binomial
    grouse_ri  TICKS ~ YEAR + cHEIGHT + (1 | BROOD)                          poisson

(a) our log-likelihood at each engine's reported parameters equals its logLik;
(b) our estimates are close to the best-converged reference;
(c) our maximised log-likelihood is never below an engine's (same method and nagq);
(d) our standard errors of the fixed effects agree with lme4's (or glmmTMB's, see there);
(e) the eight HSB linear mixed models of ``lmm_hsb.json`` (made by ``references_lmm.R``,
    lmer REML and ML) through ``mlglm.lmer`` and ``MixedGLM.from_formula(...,
    family=Gaussian())``.

Engine conventions found on the way (each is asserted below, not assumed):

* lme4's nAGQ > 1 ``logLik`` is the full log-likelihood MINUS THE SATURATED
  LOG-LIKELIHOOD (sum_i log p(y_i | mu_i = y_i / m_i)), not merely without the
  constants sum log C(m, y) / -sum log y! (its issue #567; DESIGN.md section 5 says
  "drops constants", which is not what the numbers show: see
  ``test_lme4_aghq_loglik_is_full_minus_saturated``). For Bernoulli rows the saturated
  log-likelihood is 0, so contra_ri's nAGQ > 1 values are full log-likelihoods.
* lme4's Laplace ``logLik`` is evaluated with its inner PIRLS stopped at the default
  ``tolPwrss = 1e-7``, which leaves it 6e-6 .. 3e-4 below the Laplace approximation at
  its own reported parameters (3.0e-6 relative for cbpp). Re-evaluated by lme4 itself
  with the PIRLS converged (``tolPwrss = 1e-14``; script ``LME4_TIGHT_PIRLS_R`` below)
  it agrees with ours to ~1e-12 relative.
* GLMMadaptive orients its q = 2 quadrature grid in b = Lambda u, not in u (DESIGN.md),
  so at nAGQ = 5 the two q = 2 rules differ by 5e-4 at the same parameters; they are
  the same rule for q = 1 and agree to 3e-8 at nAGQ = 11 (tests/test_oracle.py).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from conftest import reference_path

from tolerances import (FE_ATOL, LLF_AT_PARAMS_RTOL, LLF_MAX_SHORTFALL, LMM_AIC_RTOL,
                        LMM_FE_RTOL, LMM_LLF_RTOL, LMM_SE_RTOL, LMM_VC_RTOL, SD_ATOL, SE_RTOL)

# ------------------------------------------------------------------------ names
_FACTORS = ("urban", "livch", "period", "YEAR", "sector")
_SPECIAL = {"(Intercept)": "Intercept", "I(age^2)": "I(age ** 2)"}


def ours_name(lme4_name, our_names):
    """Our (patsy) column name for an lme4 coefficient name: "(Intercept)" -> "Intercept",
    "I(age^2)" -> "I(age ** 2)", "urbanY" -> "urban[T.Y]", "livch3+" -> "livch[T.3+]",
    "period2" -> "period[T.2]", "YEAR96" -> "YEAR[T.96]", and interactions term by term
    in any order ("cses:sectorCatholic" -> "sector[T.Catholic]:cses")."""
    def one(tok):
        if tok in _SPECIAL:
            return _SPECIAL[tok]
        for f in _FACTORS:
            if tok.startswith(f) and tok != f:
                return f"{f}[T.{tok[len(f):]}]"
        return tok
    want = frozenset(one(t) for t in lme4_name.split(":"))
    hits = [n for n in our_names if frozenset(n.split(":")) == want]
    assert len(hits) == 1, f"no unique match for {lme4_name!r} in {our_names}"
    return hits[0]


def in_our_order(model, named):
    """Values of an lme4-named dict in the order of model.exog_names."""
    names = list(model.exog_names)
    out = np.full(len(names), np.nan)
    for k, v in named.items():
        out[names.index(ours_name(k, names))] = v
    assert not np.isnan(out).any()
    return out


def engine_params(model, fit):
    """(fixed effects in our column order, vech(cov_re) row-major lower) of a JSON fit."""
    S = np.asarray(fit["cov_re"], dtype=float)
    return np.concatenate([in_our_order(model, fit["fixef"]), S[np.tril_indices(S.shape[0])]])


def saturated_loglik(model):
    """sum_i log p(y_i | mu_i = y_i / m_i), constants included (binomial or Poisson)."""
    y, m = model.endog, model.n_trials
    if model.family_name == "binomial":
        return float(np.sum(special.gammaln(m + 1) - special.gammaln(y + 1)
                            - special.gammaln(m - y + 1)
                            + special.xlogy(y, y / m) + special.xlogy(m - y, 1 - y / m)))
    return float(np.sum(special.xlogy(y, y) - y - special.gammaln(y + 1)))


def response_constants(model):
    """sum log C(m, y) (binomial) or -sum log y! (Poisson)."""
    y, m = model.endog, model.n_trials
    if model.family_name == "binomial":
        return float(np.sum(special.gammaln(m + 1) - special.gammaln(y + 1)
                            - special.gammaln(m - y + 1)))
    return float(-np.sum(special.gammaln(y + 1)))


def is_lme4_aghq(fit):
    return fit["engine"] == "lme4" and fit["nagq"] > 1


def comparable_loglik(model, fit):
    """The engine's logLik on our scale (full log-likelihood, every constant included)."""
    return fit["loglik"] + (saturated_loglik(model) if is_lme4_aghq(fit) else 0.0)


def method_kw(fit):
    return dict(method="laplace") if fit["nagq"] == 1 else dict(method="aghq", nagq=fit["nagq"])


# ------------------------------------------------------- parametrisation from the JSON
CASES = ("contra_ri", "contra_rs", "cbpp_ri", "grouse_ri")


def _json(name):
    path = reference_path(name)
    if path is None:
        return None
    with open(path) as fh:
        return json.load(fh)


GLMM_JSON = _json("glmm_open.json")
LMM_JSON = _json("lmm_hsb.json")
_NO_JSON = pytest.mark.skip(reason="reference JSON not found")


def _fit_params():
    """Every fit of glmm_open.json except GLMMadaptive's contra_rs nAGQ = 5: its q = 2 grid
    is oriented in b, ours in u (DESIGN.md), a different rule at nAGQ = 5 (the two
    differ by 5e-4 at the same parameters; tests/test_oracle.py reproduces both). At
    nAGQ = 11 both rules have converged and the fit is compared."""
    if GLMM_JSON is None:
        return [pytest.param("contra_ri", 0, marks=_NO_JSON)]
    out = []
    for case in CASES:
        q = np.asarray(GLMM_JSON[case]["fits"][0]["cov_re"]).shape[0]
        for i, f in enumerate(GLMM_JSON[case]["fits"]):
            if f["engine"] == "GLMMadaptive" and q > 1 and f["nagq"] < 11:
                continue
            out.append(pytest.param(case, i, id=f"{case}-{f['engine']}-nagq{f['nagq']}"))
    return out


def _fit(case, i):
    return GLMM_JSON[case]["fits"][i]


# ============================== (a) log-likelihood at each engine's own parameters
# lme4's own Laplace deviance function at its reported estimates with the inner PIRLS
# converged (LME4_TIGHT_PIRLS_R below, lme4 1.1-31, same data and prep as references.R):
# -devfun(c(theta, fixef))/2 with glmerControl(tolPwrss = 1e-14).
LME4_LAPLACE_TIGHT_PIRLS = {
    "contra_ri": -1186.36429155508,
    "contra_rs": -1180.30514457139,
    "cbpp_ri": -92.02628620802,
    "grouse_ri": -989.037740535275,
}
LME4_TIGHT_PIRLS_R = r"""
suppressMessages(library(lme4)); dd <- "shared/data"   # the CSVs of export_data.R
rd <- function(n) read.csv(file.path(dd, paste0(n, ".csv")), stringsAsFactors = TRUE)
con <- rd("contraception"); con$district <- factor(con$district)
con$y <- as.integer(con$use == "Y"); con$livch <- factor(con$livch, levels = c("0","1","2","3+"))
cb <- rd("cbpp"); cb$herd <- factor(cb$herd); cb$period <- factor(cb$period)
gr <- rd("grouseticks"); gr$BROOD <- factor(gr$BROOD); gr$YEAR <- factor(gr$YEAR)
fits <- list(
  contra_ri = glmer(y ~ age + I(age^2) + urban + livch + (1 | district), con, binomial),
  contra_rs = glmer(y ~ age + I(age^2) + urban + livch + (1 + urban | district), con, binomial),
  cbpp_ri = glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, binomial),
  grouse_ri = glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD), gr, poisson))
for (nm in names(fits)) { m <- fits[[nm]]; pars <- c(getME(m, "theta"), fixef(m))
  dev <- update(m, devFunOnly = TRUE, control = glmerControl(tolPwrss = 1e-14))
  cat(nm, sprintf("%.15g", -dev(pars) / 2), "\n") }
# (with the default tolPwrss = 1e-7 the same call returns exactly logLik(m) of the JSON;
#  tolPwrss = 1e-10 is not yet enough for contra_ri, 1e-12 not for grouse_ri)
"""
# cases where lme4's default PIRLS (tolPwrss = 1e-7) leaves its Laplace logLik further
# below the converged value than LLF_AT_PARAMS_RTOL: cbpp_ri, 2.80e-4 = 3.0e-6 relative
LME4_LAPLACE_LOOSE_PIRLS = {"cbpp_ri"}

# lme4 Laplace refit of cbpp with the PIRLS converged (lme4 1.1-31, data/prep as references.R):
# m2 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cb, binomial,
#             control = glmerControl(tolPwrss = 1e-12))
# fixef(m2), VarCorr(m2)$herd, logLik(m2), sqrt(diag(vcov(m2)))
LME4_CBPP_LAPLACE_TIGHT_PIRLS = {
    "fixef": {"(Intercept)": -1.39853204367823, "period2": -0.992315880332837,
              "period3": -1.12866414695723, "period4": -1.58031559790539},
    "cov_re": [[0.412510609886922]],
    "loglik": -92.0262818745091,
    "se": {"(Intercept)": 0.2324733854, "period2": 0.3066414824, "period3": 0.3266375665,
           "period4": 0.4274378166},
}


@pytest.mark.parametrize("case, i", _fit_params())
def test_loglik_at_engine_parameters(reference_model, case, i):
    """glmm_open.json <case>.fits[i].loglik at .fixef and .cov_re (references.R)."""
    fit = _fit(case, i)
    model = reference_model(case)
    ours = model.loglike(engine_params(model, fit), **method_kw(fit))
    if fit["engine"] == "lme4" and fit["nagq"] == 1:
        tight = LME4_LAPLACE_TIGHT_PIRLS[case]
        assert ours == pytest.approx(tight, rel=LLF_AT_PARAMS_RTOL)
        # a loosely converged inner problem only loses likelihood
        assert ours >= fit["loglik"]
        if case in LME4_LAPLACE_LOOSE_PIRLS:
            return
    assert ours == pytest.approx(comparable_loglik(model, fit), rel=LLF_AT_PARAMS_RTOL)


def _lme4_aghq_params():
    if GLMM_JSON is None:
        return [pytest.param("cbpp_ri", 0, marks=_NO_JSON)]
    return [pytest.param(c, i, id=f"{c}-nagq{f['nagq']}") for c in CASES
            for i, f in enumerate(GLMM_JSON[c]["fits"]) if is_lme4_aghq(f)]


@pytest.mark.parametrize("case, i", _lme4_aghq_params())
def test_lme4_aghq_loglik_is_full_minus_saturated(reference_model, case, i):
    """lme4 nAGQ > 1 logLik (glmm_open.json <case>.fits[i].loglik) = our full log-likelihood
    at lme4's parameters minus the saturated log-likelihood. The brief's first guess,
    "minus the response constants" (sum log C(m, y), resp. -sum log y!), does not hold:
    cbpp_ri, ours - lme4 = -41.978 while sum log C(m, y) = +185.48; grouse_ri -465.50 vs
    -sum log y! = -5575.18."""
    fit = _fit(case, i)
    model = reference_model(case)
    ours = model.loglike(engine_params(model, fit), method="aghq", nagq=fit["nagq"])
    sat = saturated_loglik(model)
    assert ours - sat == pytest.approx(fit["loglik"], rel=LLF_AT_PARAMS_RTOL)
    if model.family_name == "poisson" or np.any(model.n_trials > 1):
        assert abs((ours - fit["loglik"]) - response_constants(model)) > 1.0


# ========================================================= (b) estimates, (c) maxima
def _fits_at(case, nagq, engines):
    """The JSON fits of ``engines`` at this nagq."""
    return [f for f in GLMM_JSON[case]["fits"] if f["nagq"] == nagq and f["engine"] in engines]


def _case_nagq_params():
    if GLMM_JSON is None:
        return [pytest.param("contra_ri", 1, marks=_NO_JSON)]
    out = []
    for c in CASES:
        for nagq in sorted({f["nagq"] for f in GLMM_JSON[c]["fits"]}):
            out.append(pytest.param(c, nagq, id=f"{c}-nagq{nagq}"))
    return out


@pytest.mark.parametrize("case", CASES)
def test_laplace_estimates_match_best_reference(reference_model, reference_fit, case):
    """Fixed effects within FE_ATOL and random-effect SDs within SD_ATOL of the
    best-converged Laplace reference (highest logLik of lme4 / glmmTMB in glmm_open.json;
    glmmTMB in all four cases)."""
    if GLMM_JSON is None:
        pytest.skip("reference JSON not found")
    model = reference_model(case)
    res = reference_fit(case, 1)
    assert res.converged
    fits = _fits_at(case, 1, ("lme4", "glmmTMB"))
    best = max(fits, key=lambda f: f["loglik"])
    assert best["engine"] == "glmmTMB"
    fe = in_our_order(model, best["fixef"])
    np.testing.assert_allclose(np.asarray(res.fe_params), fe, rtol=0, atol=FE_ATOL)
    sd_ref = np.sqrt(np.diag(np.asarray(best["cov_re"])))
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(res.cov_re))), sd_ref, rtol=0,
                               atol=SD_ATOL)
    # lme4 too (DESIGN.md section 5 names lme4 Laplace fits; its contra fits carry
    # convergence notes but are within these tolerances). For cbpp, lme4's default PIRLS
    # tolerance moves its optimum by 5.7e-4 in period4: compared with lme4 refitted with
    # the PIRLS converged instead (LME4_CBPP_LAPLACE_TIGHT_PIRLS).
    lme4 = next(f for f in fits if f["engine"] == "lme4")
    if case in LME4_LAPLACE_LOOSE_PIRLS:
        lme4 = LME4_CBPP_LAPLACE_TIGHT_PIRLS
        assert res.llf >= lme4["loglik"] - LLF_MAX_SHORTFALL
    np.testing.assert_allclose(np.asarray(res.fe_params), in_our_order(model, lme4["fixef"]),
                               rtol=0, atol=FE_ATOL)
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(res.cov_re))),
                               np.sqrt(np.diag(np.asarray(lme4["cov_re"]))), rtol=0,
                               atol=SD_ATOL)


@pytest.mark.parametrize("case, nagq", [("contra_ri", 7), ("contra_ri", 25), ("cbpp_ri", 7),
                                        ("cbpp_ri", 25), ("grouse_ri", 7), ("grouse_ri", 25)])
def test_aghq_estimates_match_best_reference_q1(reference_model, reference_fit, case, nagq):
    """q = 1 AGHQ: estimates vs the engine with the highest logLik at the same nAGQ
    (lme4 in all six; GLMMadaptive's grouse nAGQ = 7 fit stops 0.33 lower)."""
    if GLMM_JSON is None:
        pytest.skip("reference JSON not found")
    model = reference_model(case)
    res = reference_fit(case, nagq)
    assert res.converged
    fits = _fits_at(case, nagq, ("lme4", "GLMMadaptive"))
    best = max(fits, key=lambda f: comparable_loglik(model, f))
    np.testing.assert_allclose(np.asarray(res.fe_params), in_our_order(model, best["fixef"]),
                               rtol=0, atol=FE_ATOL)
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(res.cov_re))),
                               np.sqrt(np.diag(np.asarray(best["cov_re"]))), rtol=0,
                               atol=SD_ATOL)


@pytest.mark.parametrize("case, nagq", _case_nagq_params())
def test_maximised_loglik_not_below_any_engine(reference_model, reference_fit, case, nagq):
    """Our maximum (same method, same nagq; q = 2 AGHQ fitted with GLMMadaptive's nAGQ 5
    and 11) is never below an engine's logLik (glmm_open.json, on the full scale) by more
    than LLF_MAX_SHORTFALL."""
    model = reference_model(case)
    res = reference_fit(case, nagq)
    assert res.converged
    assert res.method == ("laplace" if nagq == 1 else "aghq")
    assert res.nagq == nagq
    for fit in GLMM_JSON[case]["fits"]:
        if fit["nagq"] != nagq:
            continue
        theirs = comparable_loglik(model, fit)
        assert res.llf >= theirs - LLF_MAX_SHORTFALL, (fit["engine"], res.llf, theirs)
    # and our maximum is a maximum of our own objective at our own estimates
    assert model.loglike(np.asarray(res.params), **method_kw({"nagq": nagq})) == \
        pytest.approx(res.llf, rel=1e-10)


# ================================================================ (d) standard errors
# lme4's cbpp Laplace SEs differ from glmmTMB's by 0.6-1.3 %: its Hessian is a finite
# difference of the deviance evaluated with the loosely converged PIRLS (tolPwrss = 1e-7,
# see LME4_TIGHT_PIRLS_R). Refitted with glmerControl(tolPwrss = 1e-12), lme4 gives
# sqrt(diag(vcov(m))) = 0.2324733854 0.3066414824 0.3266375665 0.4274378166
# [(Intercept), period2, period3, period4] (LME4_CBPP_LAPLACE_TIGHT_PIRLS["se"]),
# glmmTMB's to 2e-6 relative. So for cbpp the
# better-converged glmmTMB fit (higher logLik, -92.0262818647616 vs -92.0265663895303)
# is the reference; the tolerance is not loosened.
SE_REFERENCE_ENGINE = {"contra_ri": "lme4", "contra_rs": "lme4", "cbpp_ri": "glmmTMB",
                       "grouse_ri": "lme4"}


@pytest.mark.parametrize("case", CASES)
def test_fixed_effect_standard_errors_laplace(reference_model, reference_fit, case):
    """bse_fe within SE_RTOL of the reference engine's sqrt(diag(vcov)) (glmm_open.json
    <case>.fits[engine, laplace].se)."""
    if GLMM_JSON is None:
        pytest.skip("reference JSON not found")
    model = reference_model(case)
    res = reference_fit(case, 1)
    engine = SE_REFERENCE_ENGINE[case]
    fit = next(f for f in GLMM_JSON[case]["fits"] if f["engine"] == engine and f["nagq"] == 1)
    np.testing.assert_allclose(np.asarray(res.bse_fe), in_our_order(model, fit["se"]),
                               rtol=SE_RTOL)
    if case == "cbpp_ri":
        tight_se = in_our_order(model, LME4_CBPP_LAPLACE_TIGHT_PIRLS["se"])
        np.testing.assert_allclose(np.asarray(res.bse_fe), tight_se, rtol=SE_RTOL)


@pytest.mark.parametrize("case, nagq", [("contra_ri", 25), ("cbpp_ri", 25), ("grouse_ri", 25)])
def test_fixed_effect_standard_errors_aghq_q1(reference_model, reference_fit, case, nagq):
    """bse_fe of the AGHQ fits vs lme4 nAGQ = 25 (glmm_open.json, lme4 fits[nagq=25].se)."""
    if GLMM_JSON is None:
        pytest.skip("reference JSON not found")
    model = reference_model(case)
    res = reference_fit(case, nagq)
    fit = next(f for f in GLMM_JSON[case]["fits"] if f["engine"] == "lme4" and f["nagq"] == nagq)
    np.testing.assert_allclose(np.asarray(res.bse_fe), in_our_order(model, fit["se"]),
                               rtol=SE_RTOL)


# ===================================================================== (e) HSB, lmer
# lme4's default optimiser for lmer (nloptwrap/BOBYQA, ftol_abs = 1e-8 on the deviance)
# stops early along flat directions of three of the eight models: their JSON estimates
# sit slightly below the optimum (our llf is higher by 4e-8 .. 4.3e-7), off by up to
# 1.7e-3 relative in a variance component and 1.8e-5 in a fixed effect. For those
# quantities the JSON comparison is replaced by lmer refitted with a tight optimiser
# (LMER_TIGHT_R, lme4 1.1-31), at the same tolerances; every model is also checked
# against that refit. The JSON's llf, AIC, sigma^2 and SEs are checked for all eight.
LMM_JSON_NOT_CONVERGED = {"slope_ml": {"cov_re"}, "full_reml": {"fixef", "cov_re"},
                          "full_ml": {"cov_re"}}
LMER_TIGHT_R = r"""
suppressMessages(library(lme4))
hsb <- read.csv("shared/data/hsb.csv", stringsAsFactors = TRUE)
hsb$school <- factor(hsb$school); hsb$sector <- factor(hsb$sector, levels = c("Public", "Catholic"))
forms <- list(null = mAch ~ 1 + (1 | school), meanses = mAch ~ meanses + (1 | school),
              slope = mAch ~ cses + (1 + cses | school),
              full = mAch ~ meanses * cses + sector * cses + (1 + cses | school))
ctrl <- lmerControl(optimizer = "nloptwrap", optCtrl = list(ftol_abs = 1e-15, ftol_rel = 1e-15,
                    xtol_abs = 1e-12, xtol_rel = 1e-12, maxeval = 1e5))
for (nm in names(forms)) for (reml in c(TRUE, FALSE)) {
  m <- lmer(forms[[nm]], hsb, REML = reml, control = ctrl); vc <- as.matrix(VarCorr(m)$school)
  f <- function(x) sprintf("%.15g", x)
  cat(paste0(nm, if (reml) "_reml" else "_ml"), "loglik", f(as.numeric(logLik(m))),
      "sigma2", f(sigma(m)^2), "cov_re", f(vc[lower.tri(vc, diag = TRUE)]),
      "fixef", f(fixef(m)), "se", f(sqrt(diag(as.matrix(vcov(m))))), "\n") }
"""
_FULL = ["(Intercept)", "meanses", "cses", "sectorCatholic", "meanses:cses",
         "cses:sectorCatholic"]
# output of LMER_TIGHT_R; cov_re is vech (row-major lower == R's column-major lower.tri)
LMER_TIGHT = {
    "null_reml": dict(loglik=-23558.3967417747, sigma2=39.1483219909597,
                      cov_re=[8.61402375661669], fixef={"(Intercept)": 12.6369738131835},
                      se={"(Intercept)": 0.244393547012952}),
    "null_ml": dict(loglik=-23557.9051122588, sigma2=39.1483996187924,
                    cov_re=[8.5534643192886], fixef={"(Intercept)": 12.6370697820601},
                    se={"(Intercept)": 0.243617135338882}),
    "meanses_reml": dict(loglik=-23480.6457440431, sigma2=39.1570772579268,
                         cov_re=[2.63887807991371],
                         fixef={"(Intercept)": 12.684609418225, "meanses": 5.86353866947373},
                         se={"(Intercept)": 0.149289996628865, "meanses": 0.361471146403662}),
    "meanses_ml": dict(loglik=-23479.5576476124, sigma2=39.1573159086899,
                       cov_re=[2.59335388258103],
                       fixef={"(Intercept)": 12.6849113571867, "meanses": 5.8629221718993},
                       se={"(Intercept)": 0.148327516644777, "meanses": 0.359138496720232}),
    "slope_reml": dict(loglik=-23357.1170248294, sigma2=36.7002001134667,
                       cov_re=[8.68096748733694, 0.0467917965630812, 0.693988900113654],
                       fixef={"(Intercept)": 12.6361930683409, "cses": 2.19319629726251},
                       se={"(Intercept)": 0.244503760993891, "cses": 0.128258658189401}),
    "slope_ml": dict(loglik=-23355.4894281332, sigma2=36.7000440203745,
                     cov_re=[8.62039484692225, 0.0465385248337519, 0.678244559770678],
                     fixef={"(Intercept)": 12.636284739362, "cses": 2.19315167949144},
                     se={"(Intercept)": 0.243727557974662, "cses": 0.127847384653852}),
    "full_reml": dict(loglik=-23251.831434063, sigma2=36.7211555457067,
                      cov_re=[2.37957943903334, 0.191826063944351, 0.101215535148205],
                      fixef=dict(zip(_FULL, [12.1279307638933, 5.33287430731858,
                                             2.94504051724683, 1.2265786802046,
                                             1.03923208275412, -1.64267435400661])),
                      se=dict(zip(_FULL, [0.19928952311476, 0.369163762208975,
                                          0.155598995378744, 0.306269476190371,
                                          0.298894407360663, 0.23977764027601]))),
    "full_ml": dict(loglik=-23248.2143954011, sigma2=36.7211817441005,
                    cov_re=[2.31666507338715, 0.18754077273426, 0.065074597301671],
                    fixef=dict(zip(_FULL, [12.1279367883764, 5.33168540413648,
                                           2.94565566035907, 1.22685834914764,
                                           1.04273296627855, -1.64395597846653])),
                    se=dict(zip(_FULL, [0.197390897418854, 0.365544072248748,
                                        0.153997350883325, 0.303252715131156,
                                        0.296029289270272, 0.237344599013571]))),
}
ROUTES = ("lmer", "statsmodels")


def _hsb_params():
    if LMM_JSON is None:
        return [pytest.param("null_reml", "lmer", marks=_NO_JSON)]
    return [pytest.param(k, r, id=f"{k}-{r}") for k in LMM_JSON for r in ROUTES]


def _vech(S):
    S = np.atleast_2d(np.asarray(S, dtype=float))
    return S[np.tril_indices(S.shape[0])]


@pytest.mark.parametrize("key, route", _hsb_params())
def test_hsb_against_lmer_json(hsb_fit, key, route):
    """lmm_hsb.json <key> (references_lmm.R): fixef, cov_re, sigma2, loglik, se, aic."""
    ref = LMM_JSON[key]
    res = hsb_fit(key, ref["formula"], ref["reml"], route)
    model = res.model
    assert res.converged
    assert res.method == ("reml" if ref["reml"] else "ml")
    assert res.llf == pytest.approx(ref["loglik"], rel=LMM_LLF_RTOL)
    assert res.llf >= ref["loglik"] - 1e-8 * abs(ref["loglik"])
    assert res.aic == pytest.approx(ref["aic"], rel=LMM_AIC_RTOL)
    assert res.scale == pytest.approx(ref["sigma2"], rel=LMM_VC_RTOL)
    np.testing.assert_allclose(np.asarray(res.bse_fe), in_our_order(model, ref["se"]),
                               rtol=LMM_SE_RTOL)
    skip = LMM_JSON_NOT_CONVERGED.get(key, set())
    if "fixef" not in skip:
        np.testing.assert_allclose(np.asarray(res.fe_params), in_our_order(model, ref["fixef"]),
                                   rtol=LMM_FE_RTOL)
    if "cov_re" not in skip:
        np.testing.assert_allclose(_vech(res.cov_re), _vech(ref["cov_re"]), rtol=LMM_VC_RTOL)
    if ref["reml"]:
        assert -2 * res.llf == pytest.approx(ref["reml_criterion"], rel=LMM_LLF_RTOL)


@pytest.mark.parametrize("key, route", _hsb_params())
def test_hsb_against_tightly_converged_lmer(hsb_fit, key, route):
    """LMER_TIGHT[key] (LMER_TIGHT_R, lme4 with a tight optimiser): every estimate."""
    ref = LMM_JSON[key]
    tight = LMER_TIGHT[key]
    res = hsb_fit(key, ref["formula"], ref["reml"], route)
    model = res.model
    np.testing.assert_allclose(np.asarray(res.fe_params), in_our_order(model, tight["fixef"]),
                               rtol=LMM_FE_RTOL)
    np.testing.assert_allclose(_vech(res.cov_re), tight["cov_re"], rtol=LMM_VC_RTOL)
    assert res.scale == pytest.approx(tight["sigma2"], rel=LMM_VC_RTOL)
    assert res.llf == pytest.approx(tight["loglik"], rel=LMM_LLF_RTOL)
    np.testing.assert_allclose(np.asarray(res.bse_fe), in_our_order(model, tight["se"]),
                               rtol=LMM_SE_RTOL)


@pytest.mark.parametrize("key", list(LMER_TIGHT))
def test_hsb_routes_agree(hsb_fit, key):
    """mlglm.lmer and MixedGLM.from_formula(..., Gaussian()).fit(reml=) are one model."""
    if LMM_JSON is None:
        pytest.skip("reference JSON not found")
    ref = LMM_JSON[key]
    a = hsb_fit(key, ref["formula"], ref["reml"], "lmer")
    b = hsb_fit(key, ref["formula"], ref["reml"], "statsmodels")
    assert list(a.params.index) == list(b.params.index)
    np.testing.assert_allclose(np.asarray(a.params), np.asarray(b.params), rtol=1e-10)
    assert a.llf == pytest.approx(b.llf, rel=1e-12)
    assert a.scale == pytest.approx(b.scale, rel=1e-10)
