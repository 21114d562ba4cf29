"""Seeded generators of data sets on which a fit used to return wrong numbers silently.

    python tests/hard_data.py OUTDIR      # writes the CSV files the R scripts in
                                          # tests/reference/ read (separation.R)

``separated_binomial(seed)``: issue 21 item 1. A binomial GLMM, 1,200 rows in 30 groups of
40, y ~ x + f + (1 | g) with f a 3-level factor whose level "c" (5% of rows) has y = 0
throughout: the coefficient of f[T.c] runs off to -infinity (quasi-complete separation), so
the observed information is singular in that direction. With seeds 0 and 8 the fits of
mlglm before this was fixed left every standard error at 0 (not positive definite: 8 of
the 12 seeds 0-11); lme4's numbers are in tests/reference/separation.json.

``gamma_wide_means(seed)``: issue 21 item 9. Positive responses whose mean varies over two
orders of magnitude (log mean linear in x over [-2.3, 2.3]); with Gamma's inverse link the
least-squares start on 1/y puts some fitted means below 0.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def separated_binomial(seed: int = 0) -> pd.DataFrame:
    """y ~ x + f + (1 | g): 30 groups of 40 rows, x ~ N(0, 1), f in a/b/c with
    probabilities 0.6/0.35/0.05, random-intercept SD 0.7, eta = -0.3 + 0.5 x + 0.4 [f = b]
    + b_g, and y = 0 on every row with f = c."""
    rng = np.random.default_rng(seed)
    n, G = 1200, 30
    g = np.repeat(np.arange(G), n // G)
    x = rng.normal(size=n)
    f = rng.choice(np.array(["a", "b", "c"]), size=n, p=[0.6, 0.35, 0.05])
    b = rng.normal(scale=0.7, size=G)[g]
    eta = -0.3 + 0.5 * x + 0.4 * (f == "b") + b
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    y[f == "c"] = 0.0
    return pd.DataFrame({"y": y, "x": x, "f": f, "g": g})


def gamma_wide_means(seed: int = 0) -> pd.DataFrame:
    """y ~ x + (1 | g): 20 groups of 15 rows, x uniform on [-2.3, 2.3], log mean
    1 + 2 x + b_g (b_g ~ N(0, 0.3^2)), Gamma shape 2: means from ~0.03 to ~300."""
    rng = np.random.default_rng(seed)
    G, m = 20, 15
    g = np.repeat(np.arange(G), m)
    x = rng.uniform(-2.3, 2.3, size=G * m)
    mu = np.exp(1.0 + 2.0 * x + rng.normal(scale=0.3, size=G)[g])
    y = rng.gamma(shape=2.0, scale=mu / 2.0)
    return pd.DataFrame({"y": y, "x": x, "g": g})


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for seed in (0, 8):
        separated_binomial(seed).to_csv(out / f"separated_binomial_seed{seed}.csv",
                                        index=False, float_format="%.17g")
    gamma_wide_means(0).to_csv(out / "gamma_wide_means_seed0.csv", index=False,
                               float_format="%.17g")
