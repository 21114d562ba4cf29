"""Speed of the small-sample df (issue 24): Satterthwaite and Kenward-Roger, mlglm
against lmerTest and pbkrtest.

    OPENBLAS_NUM_THREADS=1 python benchmarks/ddf_speed.py [--reps 20] [--r]

Cases (the data simulated here with fixed seeds; ``--r`` writes them to a temporary
directory and runs ``ddf_speed.R`` on them):

* hsb_full: the lecture's full model, ``mAch ~ meanses * cses + sector * cses +
  (1 + cses | school)`` (7,185 rows, 160 schools), REML;
* one_1e5: 10^5 rows, 1,000 groups x 100 rows, ``y ~ x1 + x2 + (1 + x1 | g)``;
* nested_1e5: 10^5 rows, 100 schools x 10 classes x 100 pupils,
  ``y ~ x + (1 + x | school) + (1 | school:class)``;
* crossed_1e5: 10^5 rows, 1,000 subjects x 100 items, every pair once,
  ``y ~ x + (1 | subject) + (1 | item)`` (one connected block of 1,100 random effects).

mlglm's timings start from a fitted results object with its cache emptied:
``satt`` = ``res.coef_table("satterthwaite")`` (the level-space quantities, the exact
Jacobian and Hessian, the table), ``kr`` = ``res.coef_table("kenward-roger")`` likewise,
``anova3`` = ``res.anova()`` (type III hypotheses from the formula's terms and their
F tests). Medians and minima of ``--reps`` repetitions (one for the 10^5-row cases'
R side). The load average is printed: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mlglm

HERE = Path(__file__).resolve().parent

CASES = {
    "hsb_full": "mAch ~ meanses * cses + sector * cses + (1 + cses | school)",
    "one_1e5": "y ~ x1 + x2 + (1 + x1 | g)",
    "nested_1e5": "y ~ x + (1 + x | school) + (1 | school:class)",
    "crossed_1e5": "y ~ x + (1 | subject) + (1 | item)",
}


def data(name):
    rng = np.random.default_rng(24)
    if name == "hsb_full":
        hsb = mlglm.datasets.load_hsb()
        hsb["sector"] = hsb["sector"].astype(str)
        return hsb
    if name == "one_1e5":
        g = np.repeat(np.arange(1000), 100)
        x1, x2 = rng.normal(size=(2, g.size))
        b = rng.normal(size=(1000, 2)) * [1.0, 0.3]
        y = 1 + 0.5 * x1 - 0.2 * x2 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=g.size)
        return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})
    if name == "nested_1e5":
        school = np.repeat(np.arange(100), 1000)
        cls = np.repeat(np.arange(1000), 100)
        x = rng.normal(size=school.size)
        b = rng.normal(size=(100, 2)) * [1.0, 0.3]
        y = 1 + 0.5 * x + b[school, 0] + b[school, 1] * x + 0.5 * rng.normal(size=1000)[cls] \
            + rng.normal(size=school.size)
        return pd.DataFrame({"y": y, "x": x, "school": school, "class": cls % 10})
    subject = np.repeat(np.arange(1000), 100)
    item = np.tile(np.arange(100), 1000)
    x = rng.normal(size=subject.size)
    y = 1 + 0.5 * x + rng.normal(size=1000)[subject] + 0.7 * rng.normal(size=100)[item] \
        + rng.normal(size=subject.size)
    return pd.DataFrame({"y": y, "x": x, "subject": subject, "item": item})


def timed(f, reps):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), float(np.min(ts))


def run_python(reps):
    out = {}
    for name, formula in CASES.items():
        d = data(name)
        k = reps if name == "hsb_full" else max(3, reps // 5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit_t = timed(lambda: mlglm.lmer(formula, d), 1 if len(d) > 20000 else k)
            res = mlglm.lmer(formula, d)

        def fresh(ddf):
            for key in [k_ for k_ in res._cache if k_.startswith("_ddf")]:
                del res._cache[key]
            return res.coef_table(ddf)

        def anova():
            for key in [k_ for k_ in res._cache if k_.startswith("_ddf")]:
                del res._cache[key]
            return res.anova()
        r = {"n": len(d), "fit": fit_t, "satt": timed(lambda: fresh("satterthwaite"), k),
             "kr": timed(lambda: fresh("kenward-roger"), k), "anova3": timed(anova, k),
             "satt_df": fresh("satterthwaite")["df"].to_dict(),
             "kr_df": fresh("kenward-roger")["df"].to_dict()}
        out[name] = r
        print(f"{name}: n={r['n']} fit {r['fit'][0]:.3f} s, Satterthwaite "
              f"{1e3 * r['satt'][0]:.1f} ms (min {1e3 * r['satt'][1]:.1f}), Kenward-Roger "
              f"{1e3 * r['kr'][0]:.1f} ms, anova {1e3 * r['anova3'][0]:.1f} ms", flush=True)
    return out


def run_r(reps):
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            csv = "hsb.csv" if name == "hsb_full" else f"{name}.csv"
            data(name).to_csv(Path(tmp) / csv, index=False)
        out = Path(tmp) / "r.json"
        subprocess.run(["Rscript", str(HERE / "ddf_speed.R"), tmp, str(out), str(reps)],
                       check=True)
        return json.loads(out.read_text())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--r", action="store_true", help="also time lmerTest and pbkrtest")
    args = ap.parse_args(argv)
    print("load average", os.getloadavg())
    py = run_python(args.reps)
    result = {"python": py}
    if args.r:
        result["r"] = run_r(min(args.reps, 5))
        print(json.dumps(result["r"], indent=1))
    print("load average", os.getloadavg())
    print(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
