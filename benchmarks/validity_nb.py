"""Overdispersed counts: coverage of 95% Wald intervals for the fixed effects when the
counts are negative binomial, fitted by the negative binomial GLMM and by the Poisson GLMM.

    python benchmarks/validity_nb.py [--reps 100] [--out benchmarks/VALIDITY.md]

Each data set is ``mlglm.datasets.simulate_glmm("negative_binomial", ...)`` with seed
0..reps-1 (reproducible): 60 groups x 15 rows, ``y ~ x1 + x2 + (1 | g)``, beta = (0.5,
0.4, -0.3), random-intercept variance 0.3 and NB2 theta = 1.5 (Var = mu + mu^2 / 1.5,
about three times the Poisson variance at the mean count). Both models are fitted by the
Laplace approximation; coverage is the share of estimate +- 1.96 SE containing the truth,
per coefficient and pooled over the three, with its Monte Carlo SE
sqrt(c (1 - c) / intervals). The Poisson model puts the overdispersion into the random
intercept, which it cannot absorb within groups: its SEs of the row-level slopes are too
small. The figures are written into VALIDITY.md between the markers of this script.
"""
from __future__ import annotations

import argparse
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mlglm
from mlglm.datasets import simulate_glmm

BETA = np.array([0.5, 0.4, -0.3])
TAU = 0.3
THETA = 1.5
DESIGN = dict(n_groups=60, group_size=15)
FAMILIES = ("negative_binomial", "poisson")
START, END = "<!-- validity_nb:start -->", "<!-- validity_nb:end -->"


def one_replicate(seed):
    """{family: (covered (3,), estimates (3,), theta-hat or nan)} for one data set."""
    sim = simulate_glmm("negative_binomial", DESIGN["n_groups"], DESIGN["group_size"], BETA,
                        TAU, seed=seed, dispersion=THETA)
    out = {}
    for fam in FAMILIES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = mlglm.glmer(sim.formula, sim.data, family=fam)
        b, se = np.asarray(res.fe_params), np.asarray(res.bse_fe)
        out[fam] = (np.abs(b - BETA) <= 1.96 * se, b,
                    res.dispersion if res.dispersion is not None else np.nan, res.converged)
    return out


def run(reps):
    """Per family: coverage per coefficient and pooled, mean estimates, theta-hat."""
    cov = {f: [] for f in FAMILIES}
    est = {f: [] for f in FAMILIES}
    theta = []
    conv = {f: 0 for f in FAMILIES}
    for seed in range(reps):
        r = one_replicate(seed)
        for f in FAMILIES:
            cov[f].append(r[f][0])
            est[f].append(r[f][1])
            conv[f] += bool(r[f][3])
        theta.append(r["negative_binomial"][2])
    summary = {}
    for f in FAMILIES:
        c = np.asarray(cov[f], dtype=float)
        pooled = c.mean()
        summary[f] = dict(per_coef=c.mean(axis=0), pooled=pooled,
                          mc_se=np.sqrt(pooled * (1 - pooled) / c.size),
                          mean=np.asarray(est[f]).mean(axis=0), converged=conv[f])
    summary["theta_mean"] = float(np.mean(theta))
    summary["theta_median"] = float(np.median(theta))
    return summary


def markdown(summary, reps, seconds):
    names = ["Intercept", "x1", "x2"]
    rows = []
    for f in FAMILIES:
        s = summary[f]
        for k, n in enumerate(names):
            rows.append((f, n, BETA[k], s["mean"][k], s["per_coef"][k]))
        rows.append((f, "pooled (3 x reps)", np.nan, np.nan, s["pooled"]))
    table = pd.DataFrame(rows, columns=["fitted family", "parameter", "true", "mean estimate",
                                        "coverage 95%"])
    lines = [START, "", "## Overdispersed counts: negative binomial vs Poisson GLMM", "",
             f"`python benchmarks/validity_nb.py --reps {reps}` ({seconds:.0f} s on the "
             "project machine). Counts drawn from a negative binomial GLMM "
             f"(`simulate_glmm`, seeds 0..{reps - 1}): {DESIGN['n_groups']} groups x "
             f"{DESIGN['group_size']} rows, `y ~ x1 + x2 + (1 | g)`, beta = "
             f"({', '.join(f'{b:g}' for b in BETA)}), random-intercept variance {TAU}, "
             f"theta = {THETA}; both models fitted by Laplace. Coverage of estimate +- 1.96 "
             "SE.", "",
             "| fitted family | parameter | true | mean estimate | coverage 95% |",
             "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        true = "" if np.isnan(r["true"]) else f"{r['true']:.3f}"
        mean = "" if np.isnan(r["mean estimate"]) else f"{r['mean estimate']:.3f}"
        lines.append(f"| {r['fitted family']} | {r['parameter']} | {true} | {mean} | "
                     f"{r['coverage 95%']:.3f} |")
    nb, po = summary["negative_binomial"], summary["poisson"]
    lines += ["", f"Pooled coverage: negative binomial {nb['pooled']:.3f} (Monte Carlo SE "
              f"{nb['mc_se']:.3f}), Poisson {po['pooled']:.3f} (SE {po['mc_se']:.3f}). "
              f"theta-hat: mean {summary['theta_mean']:.2f}, median "
              f"{summary['theta_median']:.2f} (true {THETA}); converged fits: "
              f"{nb['converged']}/{reps} (NB), {po['converged']}/{reps} (Poisson).", "", END]
    return "\n".join(lines)


def write_section(path, text):
    """Replace this script's section of ``path`` (or append it)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _m: text, old) if pattern.search(old) else \
        old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "VALIDITY.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = run(args.reps)
    text = markdown(summary, args.reps, time.perf_counter() - t0)
    print(text)
    write_section(args.out, text)


if __name__ == "__main__":
    main()
