"""Zero-inflated, hurdle and beta GLMMs: mlglm against glmmTMB, side by side (issue 23).

Usage: ``python benchmarks/zi_speed.py [--reps 7] [--large] [--out benchmarks/out/zi]``

Cases: the five references of ``tests/reference/zi_open.json`` (Salamanders ZIP, ZINB2,
NB2 hurdle, constant-inflation ZIP; the simulated beta GLMM) and, with ``--large``, a
simulated ZINB2 with 10^5 rows in 10^3 groups (``y ~ x1 + x2 + (1 | g)``, ``ziformula =
~ x1``; seed 23; the generator is :func:`large_zinb2`). glmmTMB runs first, in one
``Rscript benchmarks/zi_speed.R`` call (one thread, ``glmmTMBControl(parallel = 1)``),
then mlglm in this process with BLAS pinned to one thread. Times are the fit call
alone (formula handling included, data already in memory): glmmTMB's ``glmmTMB()``,
mlglm's ``glmer()`` (the fit with its observed information, i.e. standard errors,
as glmmTMB's ``sdreport``), median and minimum over the repetitions (mlglm after one
warm-up call, which pays the imports). The log-likelihoods are printed beside the times.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import mlglm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FAMILY = {"zipoisson": "poisson", "zinb2": "negative_binomial",
          "hurdle_nb2": "truncated_negative_binomial", "beta": "beta"}


def large_zinb2(seed=23, groups=1000, rows=100):
    """10^5-row ZINB2: eta = 0.5 + 0.4 x1 - 0.3 x2 + b, b ~ N(0, 0.6^2), theta = 1.5,
    logit pi = -1 + 0.8 x1."""
    rng = np.random.default_rng(seed)
    n = groups * rows
    g = np.repeat(np.arange(groups), rows)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    mu = np.exp(0.5 + 0.4 * x1 - 0.3 * x2 + rng.normal(0, 0.6, groups)[g])
    theta = 1.5
    y = rng.negative_binomial(theta, theta / (theta + mu))
    pi = 1 / (1 + np.exp(-(-1.0 + 0.8 * x1)))
    y = np.where(rng.uniform(size=n) < pi, 0, y)
    return pd.DataFrame({"y": y.astype(float), "x1": x1, "x2": x2, "g": [f"g{k}" for k in g]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "zi"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    refs = json.loads((ROOT / "tests" / "reference" / "zi_open.json").read_text())
    cases = []
    for name, ref in refs.items():
        csv = ROOT / ("mlglm/datasets/salamanders.csv" if ref["data"] == "salamanders.csv"
                      else "tests/reference/" + ref["data"])
        cases.append({"name": name, "csv": str(csv), "formula": ref["formula"],
                      "ziformula": ref["ziformula"], "family": ref["family"]})
    if args.large:
        big = large_zinb2()
        csv = out / "zinb2_1e5.csv"
        big.to_csv(csv, index=False)
        cases.append({"name": "zinb2_1e5_g1e3", "csv": str(csv),
                      "formula": "y ~ x1 + x2 + (1 | g)", "ziformula": "~ x1",
                      "family": "zinb2", "reps": 1})
    (out / "cases.json").write_text(json.dumps(cases, indent=1))
    subprocess.run(["Rscript", str(ROOT / "benchmarks" / "zi_speed.R"), str(out / "cases.json"),
                    str(out / "glmmtmb.json"), str(args.reps)], check=True)
    tmb = json.loads((out / "glmmtmb.json").read_text())
    rows = []
    for cs in cases:
        if cs["name"] == "zinb2_1e5_g1e3":
            data = pd.read_csv(cs["csv"], dtype={"g": str})
        elif cs["csv"].endswith("salamanders.csv"):
            data = mlglm.datasets.load_salamanders()
        else:
            data = pd.read_csv(cs["csv"], dtype={"g": str})
        zi = None if cs["ziformula"] == "~ 0" else cs["ziformula"]

        def fit():
            return mlglm.glmer(cs["formula"], data, family=FAMILY[cs["family"]], ziformula=zi)
        res = fit()                                     # warm-up (imports)
        reps = cs.get("reps", args.reps)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            res = fit()
            times.append(time.perf_counter() - t0)
        t = tmb[cs["name"]]
        rows.append({"case": cs["name"], "mlglm_median_s": float(np.median(times)),
                     "mlglm_min_s": float(np.min(times)), "glmmTMB_median_s": t["median"],
                     "glmmTMB_min_s": t["min"],
                     "ratio": float(np.median(times)) / t["median"],
                     "mlglm_llf": res.llf, "glmmTMB_llf": t["loglik"],
                     "llf_diff": res.llf - t["loglik"], "mlglm_converged": res.converged,
                     "glmmTMB_convergence": t["convergence"]})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / "zi_speed.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
