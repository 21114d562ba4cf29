"""Speed of the nested engine: AGHQ and Laplace fits, and Laplace against MultiLaplace.

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/nested_speed.py [--reps 3]

Binary data, ``y ~ x + (1 | community/family)`` (SDs 2 and 1), 2 children per family:

* whole fits through ``glmer`` (formula handling, Laplace stage, AGHQ stage, observed
  information): nested AGHQ with nagq = 11 and nested Laplace, on 10^4 rows in 1,000
  communities of 5 families (the target of issue #12: AGHQ under 10 s);
* the Laplace objective (value and exact gradient at one point, warm modes) by the
  nested tree engine and by the several-factor blocked engine ``MultiLaplace``, and the
  same fit (``fit_glmm``) by each, on structures from few large communities to many
  small ones (MultiLaplace factorises the communities' block densely: 3,000 communities
  is already a 3,000 x 3,000 dense Cholesky per Newton step, and memory grows with its
  square, so larger cases are left out).

Medians of ``--reps`` repetitions; the load average is printed because the project
machine is shared.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd

import mlglm
from mlglm.core.spec.family import Family
from mlglm.core.engines.crossed.objective import MultiLaplace
from mlglm.core.engines.nested.objective import NestedObjective
from mlglm.core.fit.optimize import fit_glmm


def simulate(n_comm, n_fam, n_child=2, seed=0):
    rng = np.random.default_rng(seed)
    fam = np.repeat(np.arange(n_comm * n_fam), n_child)
    comm = fam // n_fam
    x = rng.normal(size=fam.size)
    eta = (-0.5 + x + 2.0 * rng.normal(size=n_comm)[comm]
           + rng.normal(size=n_comm * n_fam)[fam])
    y = (rng.random(fam.size) < 1 / (1 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "community": comm, "family": fam % n_fam})


def median_time(f, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return float(np.median(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    env = os.environ
    print(f"load average at start: {os.getloadavg()}; threads: OPENBLAS="
          f"{env.get('OPENBLAS_NUM_THREADS')} OMP={env.get('OMP_NUM_THREADS')}")
    warnings.simplefilter("ignore")
    d = simulate(1000, 5)
    formula = "y ~ x + (1 | community/family)"
    for nagq in (1, 11):
        res = mlglm.glmer(formula, d, family="binomial", nagq=nagq)
        secs = median_time(lambda: mlglm.glmer(formula, d, family="binomial", nagq=nagq),
                           args.reps)
        print(f"glmer nagq={nagq:2d}, {len(d):,} rows, 1,000 communities: {secs:.2f} s "
              f"(llf {res.llf:.4f}; {', '.join(res.optim.stages)})")
    fl = Family("binomial", "logit").kernel()
    rows = []
    for n_comm, n_fam in ((10, 500), (100, 50), (1000, 5), (3000, 5)):
        d = simulate(n_comm, n_fam)
        model = mlglm.glmer(formula, d, family="binomial", hessian=False).model
        args_ = (fl, model.endog, model.n_trials, model.exog, model.offset, model.re_terms)
        x = np.array([-0.5, 1.0, 2.0, 1.0])
        row = {"rows": len(d), "communities": n_comm, "families": n_comm * n_fam}
        for name, make in (("nested", lambda: NestedObjective(*args_)),
                           ("MultiLaplace", lambda: MultiLaplace(*args_))):
            obj = make()
            obj.value_and_gradient(x)
            k = [0]

            def one():
                k[0] += 1
                obj.value_and_gradient(x + 1e-3 * k[0])
            row[f"{name} eval ms"] = 1e3 * median_time(one, max(args.reps, 5))
            row[f"{name} fit s"] = median_time(lambda: fit_glmm(make()), args.reps)
        rows.append(row)
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(df.to_string(index=False))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
