"""Zero-inflated NB2 GLMM with a random intercept: bias and coverage of 95% Wald intervals
(issue 23).

    python benchmarks/validity_zi.py [--reps 200] [--nagq 1] [--out benchmarks/VALIDITY.md]

Each data set (``simulate(seed)``, seeds 0..reps-1, ``np.random.default_rng``): 60 groups x
15 rows; x1, x2, z standard normal per row; b_g ~ N(0, SD^2), SD = 0.55;
mu = exp(0.5 + 0.4 x1 - 0.3 x2 + b_g); NB2 counts with theta = 1.5; each row is a
structural zero with probability expit(-1 + 0.8 z) (27% on average). Fitted by
``glmer("y ~ x1 + x2 + (1 | g)", family="negative_binomial", ziformula="~ z")`` (Laplace,
or AGHQ with ``--nagq``). Reported per parameter: mean estimate, bias, the Monte Carlo SE of
the bias, the coverage of estimate +- 1.96 SE (fixed effects of both parts; the SD's and
theta's Wald intervals on the log scale, from ``intervals()``) with its Monte Carlo SE
sqrt(c (1 - c) / reps). The figures are written into VALIDITY.md between this script's
markers.
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

BETA = np.array([0.5, 0.4, -0.3])
GAMMA = np.array([-1.0, 0.8])
SD = 0.55
THETA = 1.5
GROUPS, ROWS = 60, 15
START, END = "<!-- validity_zi:start -->", "<!-- validity_zi:end -->"
NAMES = ["Intercept", "x1", "x2", "zi_Intercept", "zi_z", "sd(Intercept)", "theta"]
TRUTH = np.r_[BETA, GAMMA, SD, THETA]


def simulate(seed):
    """One data set (module docstring)."""
    rng = np.random.default_rng(seed)
    n = GROUPS * ROWS
    g = np.repeat(np.arange(GROUPS), ROWS)
    x1, x2, z = rng.normal(size=(3, n))
    mu = np.exp(BETA[0] + BETA[1] * x1 + BETA[2] * x2 + rng.normal(0, SD, GROUPS)[g])
    y = rng.negative_binomial(THETA, THETA / (THETA + mu)).astype(float)
    structural = rng.uniform(size=n) < 1 / (1 + np.exp(-(GAMMA[0] + GAMMA[1] * z)))
    y[structural] = 0.0
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "z": z, "g": [f"g{k}" for k in g]})


def one_replicate(seed, nagq):
    """(estimates, lower, upper, converged) in the order of NAMES."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("y ~ x1 + x2 + (1 | g)", simulate(seed), family="negative_binomial",
                          ziformula="~ z", nagq=nagq)
    iv = res.intervals().loc[NAMES]
    return (iv["estimate"].to_numpy(), iv["lower"].to_numpy(), iv["upper"].to_numpy(),
            bool(res.converged))


def run(reps, nagq):
    est, lo, hi, conv = [], [], [], 0
    for seed in range(reps):
        e, a, b, c = one_replicate(seed, nagq)
        est.append(e)
        lo.append(a)
        hi.append(b)
        conv += c
    est, lo, hi = map(np.asarray, (est, lo, hi))
    covered = (lo <= TRUTH) & (TRUTH <= hi)
    cov = covered.mean(axis=0)
    return pd.DataFrame({"true": TRUTH, "mean estimate": est.mean(axis=0),
                         "bias": est.mean(axis=0) - TRUTH,
                         "bias MC SE": est.std(axis=0, ddof=1) / np.sqrt(reps),
                         "coverage 95%": cov, "coverage MC SE": np.sqrt(cov * (1 - cov) / reps)},
                        index=NAMES), conv


def markdown(table, conv, reps, nagq, seconds):
    how = "Laplace" if nagq == 1 else f"AGHQ, nagq = {nagq}"
    lines = [START, "", "## Zero-inflated NB2 GLMM: bias and Wald coverage (issue 23)", "",
             f"`python benchmarks/validity_zi.py --reps {reps} --nagq {nagq}` ({seconds:.0f} s "
             f"on the project machine; {how}). {reps} data sets (seeds 0..{reps - 1}): "
             f"{GROUPS} groups x {ROWS} rows, mu = exp(0.5 + 0.4 x1 - 0.3 x2 + b), SD(b) = "
             f"{SD}, NB2 theta = {THETA}, structural zeros with probability expit(-1 + 0.8 z); "
             "fitted with `ziformula=\"~ z\"`. Coverage of the 95% Wald intervals (the SD and "
             "theta on the log scale).", "",
             "| parameter | true | mean estimate | bias (MC SE) | coverage 95% (MC SE) |",
             "|---|---:|---:|---:|---:|"]
    for name, r in table.iterrows():
        lines.append(f"| {name} | {r['true']:.3f} | {r['mean estimate']:.3f} | "
                     f"{r['bias']:+.4f} ({r['bias MC SE']:.4f}) | {r['coverage 95%']:.3f} "
                     f"({r['coverage MC SE']:.3f}) |")
    lines += ["", f"Converged fits: {conv}/{reps}.", "", END]
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
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--nagq", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "VALIDITY.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    table, conv = run(args.reps, args.nagq)
    text = markdown(table, conv, args.reps, args.nagq, time.perf_counter() - t0)
    print(text)
    write_section(args.out, text)


if __name__ == "__main__":
    main()
