"""Statistical validity by simulation: bias of the estimates and coverage of 95% Wald
intervals for the fixed effects, Laplace vs AGHQ, binomial and Poisson random-slope models.

    python benchmarks/validity.py [--reps 200] [--out benchmarks/VALIDITY.md]

Each scenario simulates ``reps`` data sets with ``mlglm.datasets.simulate_glmm`` (seeds
0..reps-1, so the run is reproducible), fits every method, and records per parameter the mean
estimate, bias, empirical SD and (fixed effects) the coverage of estimate +- 1.96 SE. The
binary scenario with small groups is where Laplace is known to be biased (variances shrunk
towards zero); AGHQ with 7 x 7 points should remove most of it.
"""
from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

import mlglm
from mlglm.datasets import simulate_glmm

SCENARIOS = {
    # name: (family, n_groups, group_size, fe_params, cov_re)
    "binomial, 100 groups x 20 rows": ("binomial", 100, 20, [-0.5, 0.8],
                                        [[0.6, 0.15], [0.15, 0.3]]),
    "binary small groups, 200 groups x 5 rows": ("binomial", 200, 5, [0.5, 1.0],
                                                  [[2.0, 0.3], [0.3, 0.5]]),
    "poisson, 100 groups x 20 rows": ("poisson", 100, 20, [0.5, 0.4],
                                       [[0.3, 0.05], [0.05, 0.1]]),
}
METHODS = {"laplace": dict(method="laplace"), "aghq7": dict(method="aghq", nagq=7)}


def run_scenario(name, reps):
    family, G, m, beta, Sigma = SCENARIOS[name]
    beta, Sigma = np.asarray(beta, float), np.asarray(Sigma, float)
    truth = np.concatenate([beta, [Sigma[0, 0], Sigma[1, 0], Sigma[1, 1]]])
    names = ["beta0", "beta1", "var0", "cov01", "var1"]
    rows = {k: [] for k in METHODS}
    covered = {k: [] for k in METHODS}
    failures = {k: 0 for k in METHODS}
    for seed in range(reps):
        sim = simulate_glmm(family, G, m, beta, Sigma, seed=seed)
        for key, kw in METHODS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    res = mlglm.glmer(sim.formula, sim.data, family=family,
                                      nagq=kw.get("nagq", 1))
                except Exception:  # recorded, not hidden
                    failures[key] += 1
                    continue
            est = np.concatenate([np.asarray(res.fe_params),
                                  np.asarray(res.cov_re)[np.tril_indices(2)]])
            rows[key].append(est)
            se = np.asarray(res.bse_fe)
            covered[key].append(np.abs(np.asarray(res.fe_params) - beta) <= 1.96 * se)
    out = []
    for key in METHODS:
        E = np.array(rows[key])
        C = np.array(covered[key])
        for j, nm in enumerate(names):
            out.append({"scenario": name, "method": key, "parameter": nm, "true": truth[j],
                        "mean": E[:, j].mean(), "bias": E[:, j].mean() - truth[j],
                        "rel. bias": (E[:, j].mean() - truth[j]) / abs(truth[j]),
                        "emp. SD": E[:, j].std(ddof=1),
                        "coverage 95%": C[:, j].mean() if j < 2 else np.nan,
                        "fits": len(E), "failed": failures[key]})
    return out


def _markdown(df):
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/VALIDITY.md")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = []
    for name in SCENARIOS:
        rows += run_scenario(name, args.reps)
    df = pd.DataFrame(rows)
    fmt = df.copy()
    for c in ["true", "mean", "bias", "rel. bias", "emp. SD", "coverage 95%"]:
        fmt[c] = fmt[c].map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    # the other studies' sections (validity_nb.py, validity_nested.py) follow this
    # one's table in the same file: keep them
    try:
        old = open(args.out).read()
    except OSError:
        old = ""
    cut = [i for i in (old.find("\n<!-- "), old.find("\n## ")) if i >= 0]
    tail = old[min(cut):] if cut else ""
    with open(args.out, "w") as fh:
        fh.write("# Statistical validity by simulation\n\n")
        fh.write(f"`python benchmarks/validity.py --reps {args.reps}` (mlglm {mlglm.__version__}; "
                 f"{time.time() - t0:.0f} s on the project machine). Data from "
                 "`simulate_glmm` with seeds 0..reps-1, model `y ~ x1 + (1 + x1 | g)`; "
                 "coverage is of estimate +- 1.96 SE for the fixed effects.\n\n")
        fh.write(_markdown(fmt))
        fh.write(tail)
    print(open(args.out).read())
    return df


if __name__ == "__main__":
    main()
