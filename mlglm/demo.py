"""``python -m mlglm demo``: the multilevel-models lecture, run in Python.

Walks through D. Barron's lecture "Multilevel Models" (Trinity Term 2018) on
the High School and Beyond data (7185 pupils in 160 schools): complete / no /
partial pooling, the null model and its ICC, the variance explained by school
mean SES, a random slope, the cross-level interaction model; then a logistic
GLMM (Bangladesh contraception survey, 1934 women in 60 districts) by the
Laplace approximation and by adaptive Gauss-Hermite quadrature, its
latent-scale ICC and a pooling comparison, ending with an effect plot; and a
three-level model (Chem97: pupils in schools in LEAs) with both ICCs. Each
step prints a short explanation, the numbers and the ``summary()``; figures
are written as PNG files when matplotlib is installed.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np
import pandas as pd

from .results.icc import icc, variance_explained
from .results.plotting import caterpillar, effect_plot
from .api.pooling import compare_pooling

__all__ = ["run_demo"]

_GLMM = "y ~ age + I(age**2) + urban + livch + (1 + urban | district)"
_GLMM_RI = "y ~ age + I(age**2) + urban + livch + (1 | district)"


def _sd(S, i):
    return float(np.sqrt(np.asarray(S, dtype=float)[i, i]))


class _Printer:
    def __init__(self, file):
        self.file = file

    def __call__(self, *lines):
        for line in lines:
            print(line, file=self.file)

    def head(self, title):
        self("", "=" * 78, title, "=" * 78)


def _save(fig, out, name, figures, say):
    import matplotlib.pyplot as plt
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    figures.append(path)
    say(f"[figure] {path}")


def run_demo(out="mlglm_demo_out", plots=True, file=None) -> dict:
    """Run the lecture walk-through; return the key numbers and the figure paths.

    Parameters
    ----------
    out : directory for the PNG figures (created if needed).
    plots : draw figures (skipped with a note if matplotlib is missing).
    file : text stream for the output (default ``sys.stdout``).
    """
    import mlglm

    say = _Printer(sys.stdout if file is None else file)
    t0 = time.perf_counter()
    figures: list[str] = []
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            plots = False
            say("note: matplotlib is not installed, so no figures are drawn "
                "(pip install 'mlglm[plot]'); the text output is complete.")
    if plots:
        os.makedirs(out, exist_ok=True)
    numbers: dict[str, float] = {}

    say("mlglm demo: Barron, 'Multilevel Models' (Trinity Term 2018), reproduced in Python.",
        "Numbers in [brackets] are the lecture's. mlglm's lmer fits match lme4's on these",
        "data (tests/reference/lmm_hsb.json).")
    hsb = mlglm.datasets.load_hsb()

    # ------------------------------------------------------------- pooling
    say.head("1. Complete, no and partial pooling (HSB: 7185 pupils, 160 schools)")
    say("Full pooling ignores the schools (one regression); no pooling fits one regression",
        "per school; a multilevel model sits in between: each school's line is pulled",
        "towards the average, more so for small schools.")
    pc = compare_pooling("mAch ~ cses", hsb, groups="school", re_formula="~cses")
    say(pc.summary())
    if plots:
        _save(pc.plot(kind="lines"), out, "pooling_lines_hsb.png", figures, say)
        _save(pc.plot(kind="shrinkage"), out, "pooling_shrinkage_hsb.png", figures, say)

    # ---------------------------------------------------------- null model
    say.head("2. Null model: lmer(mAch ~ 1 + (1 | school)), REML")
    r0 = mlglm.lmer("mAch ~ 1 + (1 | school)", hsb)
    say(str(r0.summary()))
    b0, se0 = float(r0.fe_params.iloc[0]), float(r0.bse_fe.iloc[0])
    tau0, sig0 = float(np.asarray(r0.cov_re)[0, 0]), float(r0.scale)
    ic0 = icc(r0)
    numbers.update(intercept=b0, sd_school=np.sqrt(tau0), sd_resid=np.sqrt(sig0),
                   tau00=tau0, sigma2=sig0, icc=ic0.value)
    say(f"Intercept {b0:.2f} (SE {se0:.2f})  [12.64 (0.24)]: the mean of the schools' means.",
        f"School SD {np.sqrt(tau0):.2f} [2.93], residual SD {np.sqrt(sig0):.2f} [6.26]; "
        f"variances tau00 = {tau0:.2f} [8.61], sigma^2 = {sig0:.2f} [39.15].",
        f"ICC = tau00 / (tau00 + sigma^2) = {tau0:.2f} / ({tau0:.2f} + {sig0:.2f}) = "
        f"{ic0.value:.2f}  [.18]",
        "More variation within schools than between them, but a fair amount of clustering.")

    # -------------------------------------------------------- meanses model
    say.head("3. School mean SES: lmer(mAch ~ meanses + (1 | school))")
    r1 = mlglm.lmer("mAch ~ meanses + (1 | school)", hsb)
    say(str(r1.summary()))
    ve = variance_explained(r0, r1)
    numbers.update(tau00_meanses=ve.between_full, explained=ve.prop_between,
                   icc_meanses=ve.icc_full.value)
    say(f"tau00 falls from {ve.between_reduced:.2f} to {ve.between_full:.2f} [2.64]: "
        f"({ve.between_reduced:.2f} - {ve.between_full:.2f}) / {ve.between_reduced:.2f} = "
        f"{ve.prop_between:.2f} [.69] of the between-school variance is explained by "
        "school mean SES.",
        f"Remaining ICC = {ve.between_full:.2f} / ({ve.between_full:.2f} + "
        f"{ve.within_full:.2f}) = {ve.icc_full.value:.2f}  [.06]", "", str(ve))

    # ------------------------------------------------------- random slope
    say.head("4. Random slope: lmer(mAch ~ cses + (1 + cses | school))")
    r2 = mlglm.lmer("mAch ~ cses + (1 + cses | school)", hsb)
    say(str(r2.summary()))
    S2 = np.asarray(r2.cov_re, dtype=float)
    numbers.update(cses=float(r2.fe_params["cses"]), tau00_slope=S2[0, 0], tau11=S2[1, 1],
                   tau01=S2[0, 1])
    say(f"cses effect {r2.fe_params['cses']:.2f} [2.19]: the within-school SES slope for the "
        "average school.",
        f"tau00 = {S2[0, 0]:.2f} [8.68] (intercepts), tau11 = {S2[1, 1]:.2f} [.69] (slopes), "
        f"tau01 = {S2[0, 1]:.2f} [.051]; SDs {_sd(S2, 0):.2f} and {_sd(S2, 1):.2f} [2.95, 0.83].",
        "With a random slope the ICC depends on cses; at cses = 0:", str(icc(r2)))

    # ------------------------------------------------- cross-level model
    say.head("5. Level-1 and level-2 variables: "
             "lmer(mAch ~ meanses * cses + sector * cses + (1 + cses | school))")
    r3 = mlglm.lmer("mAch ~ meanses * cses + sector * cses + (1 + cses | school)", hsb)
    say(str(r3.summary()))
    order = ["Intercept", "meanses", "cses", "sector[T.Catholic]", "meanses:cses",
             "sector[T.Catholic]:cses"]
    fe3 = r3.fe_params.reindex(order)
    S3 = np.asarray(r3.cov_re, dtype=float)
    numbers.update({f"full_{k}": float(v) for k, v in fe3.items()})
    numbers.update(full_sd0=_sd(S3, 0), full_sd1=_sd(S3, 1))
    say("Fixed effects in the lecture's order:",
        "  " + ", ".join(f"{k} {v:.2f}" for k, v in fe3.items()),
        "  [lecture: 12.11, 5.34, 2.94, 1.22, 1.04, -1.64; lme4 on these data: 12.13, 5.33, "
        "2.95, 1.23, 1.04, -1.64]",
        f"Random-effect SDs: intercept {_sd(S3, 0):.2f}, cses {_sd(S3, 1):.2f}  [1.54, 0.32]",
        "Schools with higher mean SES have steeper SES slopes (meanses:cses > 0); Catholic",
        "schools have flatter ones (sector:cses < 0).")

    # ---------------------------------------------------------- the GLMM
    say.head("6. A logistic GLMM: contraceptive use of 1934 women in 60 Bangladeshi districts")
    say("The lecture's nurses data are not bundled with mlglm; the Contraception data",
        "(mlmRev) take their place. glmer(" + _GLMM + ", family = binomial)")
    con = mlglm.datasets.load_contraception()
    t = time.perf_counter()
    g1 = mlglm.glmer(_GLMM, con, family="binomial")
    t_lap = time.perf_counter() - t
    t = time.perf_counter()
    g11 = mlglm.glmer(_GLMM, con, family="binomial", nagq=11)
    t_aghq = time.perf_counter() - t
    say(str(g1.summary()), "", "Laplace vs AGHQ (11 x 11 = 121 nodes per district):")
    say(_side_by_side(g1, g11, t_lap, t_aghq).to_string(float_format=lambda v: f"{v:.4f}"))
    numbers.update(llf_laplace=g1.llf, llf_aghq=g11.llf)
    say("Both log-likelihoods include every constant, so they are comparable. AGHQ",
        "integrates more accurately than the Laplace approximation; here the estimates differ",
        "only in the second or third decimal (districts hold 32 women on average).")

    t = time.perf_counter()
    ci = g1.intervals(method="profile")
    t_prof = time.perf_counter() - t
    numbers.update(profile_sd_urban=(ci.loc["sd(urban[T.Y])", "lower"],
                                     ci.loc["sd(urban[T.Y])", "upper"]))
    say("", f"Profile-likelihood 95% intervals ({t_prof:.1f} s; lme4's confint(method = "
        "\"profile\")):", ci.to_string(float_format=lambda v: f"{v:.4f}"),
        "The intervals for the SDs are asymmetric, as the likelihood is; a Wald interval for",
        "the urban slope variance (estimate +- 1.96 SE) would reach below zero.")
    mp = g1.marginal_params()
    say("", "Population-averaged (marginal) coefficients: the effect on the proportion of all",
        "women, averaging over districts, rather than within one district:",
        mp[["coef", "se", "conditional"]].to_string(float_format=lambda v: f"{v:.4f}"))

    say("", "ICC on the latent scale, random-intercept model glmer(" + _GLMM_RI + "):")
    g0 = mlglm.glmer(_GLMM_RI, con, family="binomial")
    icl = icc(g0, ci=True)
    numbers.update(icc_latent=icl.value, icc_latent_ci=icl.ci)
    say(str(icl))

    say("", "Pooling comparison for y ~ urban by district (random intercept and urban slope):")
    pcg = compare_pooling("y ~ urban", con, groups="district", family="binomial",
                          re_formula="~urban")
    numbers.update(pooling_failed=len(pcg.failed))
    say(pcg.summary(),
        "Districts where every woman is rural (or urban) cannot estimate the urban effect on",
        "their own, and all-0/all-1 outcomes separate; partial pooling still gives every",
        "district an estimate.")
    if plots:
        _save(caterpillar(g1), out, "caterpillar_contraception.png", figures, say)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _save(effect_plot(g1, "age"), out, "effect_age_contraception.png", figures, say)
        say("Effect plot: probability of contraceptive use against age (centred) for a rural",
            "woman with no living children in a typical district (b = 0), with 95% band.")
    _three_levels(say, numbers)
    seconds = time.perf_counter() - t0
    say("", f"demo finished in {seconds:.1f} s" + (f"; figures in {out}" if figures else ""))
    return {"numbers": numbers, "figures": figures, "seconds": seconds}


def _three_levels(say, numbers):
    """Section 7: pupils in schools in local education authorities (Chem97), two ICCs."""
    import mlglm
    say.head("7. Three levels: 31,022 pupils in 2,410 schools in 131 LEAs (Chem97)")
    say("The lecture's models extend to more levels by adding a random-effects term per",
        "level: lmer(score ~ gcsecnt + (1 | school) + (1 | lea)), ML. Schools are nested in",
        "local education authorities (each school code belongs to one LEA), so this is",
        "lme4's (1 | lea/school) as well.")
    chem = mlglm.datasets.load_chem97()
    t = time.perf_counter()
    r = mlglm.lmer("score ~ gcsecnt + (1 | school) + (1 | lea)", chem, reml=False)
    secs = time.perf_counter() - t
    say(str(r.summary()), f"(fitted in {secs:.2f} s; lme4 0.24 s, glmmTMB 1.4 s)")
    ic = mlglm.icc(r)
    tau_s = float(r.cov_re["school"].iloc[0, 0])
    tau_l = float(r.cov_re["lea"].iloc[0, 0])
    sig2 = float(r.scale)
    numbers.update(chem_tau_school=tau_s, chem_tau_lea=tau_l, chem_sigma2=sig2,
                   chem_icc_lea=ic["lea"], chem_icc_school=ic["school"])
    say("Two pupils in the same LEA but different schools share only the LEA effect;",
        "two pupils in the same school share both (Snijders & Bosker, ch. 4):",
        f"  same LEA:    tau_lea / total = {tau_l:.4f} / ({tau_s:.4f} + {tau_l:.4f} + "
        f"{sig2:.4f}) = {ic['lea']:.4f}",
        f"  same school: (tau_school + tau_lea) / total = {ic['school']:.4f}",
        "Almost all of the clustering is between schools; LEAs add little once schools are",
        "in the model.", "", str(ic))


def _side_by_side(a, b, ta, tb) -> pd.DataFrame:
    """Log-likelihood, fixed effects and random-effect SDs/correlation of two fits."""
    def col(r, secs):
        S = np.asarray(r.cov_re, dtype=float)
        names = list(r.model.data.exog_re_names)
        vals = {"log-likelihood": r.llf}
        vals.update({f"beta {k}": v for k, v in r.fe_params.items()})
        for i, nm in enumerate(names):
            vals[f"SD {nm}"] = _sd(S, i)
        if len(names) == 2:
            vals[f"corr({names[0]}, {names[1]})"] = S[0, 1] / (_sd(S, 0) * _sd(S, 1))
        vals["seconds"] = secs
        return pd.Series(vals)
    return pd.DataFrame({"Laplace": col(a, ta), f"AGHQ nagq={b.nagq}": col(b, tb)})
