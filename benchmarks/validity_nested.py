"""Three-level binary data: bias and coverage of Laplace vs nested AGHQ.

    python benchmarks/validity_nested.py [--reps 200] [--communities 150] [--nagq 11]
                                         [--out benchmarks/VALIDITY.md] [--profile]

The design of Rodriguez and Goldman's (1995, 2001) study of children in families in
communities: ``--communities`` communities of 10 families with 1, 2 or 3 children each
(2 on average), a child-level covariate x ~ N(0, 1), and

    logit P(y = 1) = -0.5 + 1.0 x + b_community + b_family,
    b_community ~ N(0, 2^2),   b_family ~ N(0, 1^2).

Each data set (seeds 0..reps-1) is fitted by ``glmer("y ~ x + (1 | community/family)")``
with the Laplace approximation (nagq = 1) and with adaptive quadrature through both
levels (nagq = ``--nagq``), and the script reports per parameter the mean estimate, bias,
relative bias (of the variances too), empirical SD, and the coverage of 95% Wald intervals:
estimate +- 1.96 SE for the fixed effects, and for each SD the interval exp(log s +- 1.96
SE(log s)) with SE(log s) = SE(variance) / (2 variance) from the observed information
(the construction ``conf_int()`` uses for one grouping factor). With ``--profile`` the
script also computes 95% profile-likelihood intervals of the two SDs (the fit's own
approximation, every other parameter re-maximised) and their coverage.

Results are appended as a section to ``--out`` (replacing an earlier section of the same
title), so the one-factor study that ``validity.py`` writes stays in place.
"""
from __future__ import annotations

import argparse
import os
import re
import time
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

import mlglm

BETA = np.array([-0.5, 1.0])
SDS = np.array([2.0, 1.0])               # community, family
TERMS = ("community", "community:family")
SECTION = "## Three-level binary data: children in families in communities (nested AGHQ)"


def simulate(seed: int, n_comm: int = 150, n_fam: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 4, size=n_comm * n_fam)            # 1..3 children, mean 2
    fam = np.repeat(np.arange(n_comm * n_fam), sizes)
    comm = fam // n_fam
    x = rng.normal(size=fam.size)
    eta = (BETA[0] + BETA[1] * x + SDS[0] * rng.normal(size=n_comm)[comm]
           + SDS[1] * rng.normal(size=n_comm * n_fam)[fam])
    y = (rng.random(fam.size) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "community": comm, "family": fam % n_fam})


def _sd_profile_interval(res, k, level=0.95):
    """Profile-likelihood interval of SD k: log L maximised over every other parameter
    (BFGS with the exact gradient, scaled by the Wald SEs, warm-started along each
    side) with theta_k (= the SD: one intercept per factor) held fixed; the ends
    solve 2 (llf - profile) = chi2_1(level) by brentq (SD to 1e-3)."""
    model = res.model
    obj = model.objective(res.nagq or 1)
    x_hat = model.theta_from_params(np.asarray(res.params))
    p = model.k_fe
    i = p + k
    crit = stats.chi2.ppf(level, 1) / 2.0
    free = np.ones(x_hat.size, dtype=bool)
    free[i] = False
    cov = np.asarray(res.cov_params(), dtype=float)
    se = np.sqrt(np.diag(cov))
    se[p:] = se[p:] / (2 * np.maximum(np.abs(x_hat[p:]), 1e-3))    # SE(var) -> SE(theta)
    scale = np.where(np.isfinite(se) & (se > 0), se, 1.0)[free]
    start = {"z": np.zeros(free.sum())}

    def profile(sd):
        x0 = x_hat.copy()
        x0[i] = sd

        def f(z):
            x = x0.copy()
            x[free] = x_hat[free] + scale * z
            try:
                v, g = obj.value_and_gradient(x)
            except Exception:
                return np.inf, np.zeros(z.size)
            return -v, -g[free] * scale
        r = optimize.minimize(f, start["z"], jac=True, method="BFGS", options={"gtol": 1e-5})
        start["z"] = r.x
        return -r.fun

    llf = res.llf
    sd_hat = abs(x_hat[i])
    g = lambda s: llf - profile(s) - crit               # noqa: E731
    ends = []
    for factor, floor in ((0.7, 1e-4), (1.4, None)):
        start["z"] = np.zeros(free.sum())
        a = sd_hat
        try:
            for _ in range(40):
                a *= factor
                if (floor is not None and a < floor) or g(a) > 0:
                    break
            if floor is not None and a < floor:
                ends.append(0.0)
            else:
                lo_, hi_ = sorted((a, sd_hat))
                ends.append(optimize.brentq(g, lo_, hi_, xtol=1e-3))
        except (ValueError, RuntimeError):
            ends.append(np.nan)
    return tuple(ends)


def fit_one(seed, n_comm, nagq, profile):
    d = simulate(seed, n_comm)
    out = {}
    for key, k in (("laplace", 1), (f"aghq{nagq}", nagq)):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = mlglm.glmer("y ~ x + (1 | community/family)", d, family="binomial",
                                  nagq=k)
            except Exception as exc:                    # recorded, not hidden
                out[key] = {"failed": repr(exc)}
                continue
        secs = time.perf_counter() - t0
        cov = np.asarray(res.cov_params(), dtype=float)
        fe = np.asarray(res.fe_params)
        var = np.array([res.cov_re[t].iloc[0, 0] for t in TERMS])
        se_var = np.sqrt(np.diag(cov)[2:4])
        rec = {"fe": fe, "se_fe": np.asarray(res.bse_fe), "var": var, "se_var": se_var,
               "converged": bool(res.converged), "seconds": secs}
        if profile:
            rec["profile"] = [_sd_profile_interval(res, j) for j in range(2)]
        out[key] = rec
    return out


def summarise(runs, nagq, profile):
    z = stats.norm.ppf(0.975)
    rows = []
    methods = ["laplace", f"aghq{nagq}"]
    truth = np.concatenate([BETA, SDS, SDS ** 2])
    names = ["beta0 (Intercept)", "beta1 (x)", "SD community", "SD family",
             "Var community", "Var family"]
    for key in methods:
        recs = [r[key] for r in runs if "fe" in r.get(key, {})]
        failed = sum("failed" in r.get(key, {}) for r in runs)
        E = np.array([np.concatenate([r["fe"], np.sqrt(r["var"]), r["var"]]) for r in recs])
        cover = []
        for r in recs:
            c_fe = np.abs(r["fe"] - BETA) <= z * r["se_fe"]
            with np.errstate(divide="ignore", invalid="ignore"):
                se_log = r["se_var"] / (2 * r["var"])
                s = np.sqrt(r["var"])
                c_sd = (s * np.exp(-z * se_log) <= SDS) & (SDS <= s * np.exp(z * se_log))
            cover.append(np.concatenate([c_fe, c_sd]))
        C = np.array(cover, dtype=float)
        P = None
        if profile:
            P = np.array([[lo <= SDS[j] <= hi for j, (lo, hi) in enumerate(r["profile"])]
                          for r in recs], dtype=float)
        for j, nm in enumerate(names):
            mean = E[:, j].mean()
            row = {"method": "Laplace" if key == "laplace" else f"AGHQ ({nagq} x {nagq})",
                   "parameter": nm, "true": truth[j], "mean": mean, "bias": mean - truth[j],
                   "rel. bias": (mean - truth[j]) / truth[j],
                   "MC SE of mean": E[:, j].std(ddof=1) / np.sqrt(len(E)),
                   "emp. SD": E[:, j].std(ddof=1),
                   "Wald 95%": C[:, j].mean() if j < 4 else np.nan,
                   "fits": len(E), "failed": failed,
                   "not converged": sum(not r["converged"] for r in recs)}
            if profile:
                row["profile 95%"] = P[:, j - 2].mean() if j in (2, 3) else np.nan
            rows.append(row)
        secs = np.array([r["seconds"] for r in recs])
        rows[-1]["_seconds"] = float(np.median(secs))
    return pd.DataFrame(rows)


def _markdown(df):
    cols = [c for c in df.columns if not c.startswith("_")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df[cols].itertuples(index=False):
        lines.append("| " + " | ".join(v if isinstance(v, str) else
                                        ("" if pd.isna(v) else
                                         (f"{v:d}" if isinstance(v, (int, np.integer))
                                          else f"{v:.3f}")) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_section(path, text):
    old = open(path).read() if os.path.exists(path) else "# Statistical validity by simulation\n"
    pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\Z)", re.S)
    new = pattern.sub(lambda _: text.rstrip("\n"), old) if SECTION in old else \
        old.rstrip("\n") + "\n\n" + text
    with open(path, "w") as fh:
        fh.write(new.rstrip("\n") + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--communities", type=int, default=150)
    ap.add_argument("--nagq", type=int, default=11)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default="benchmarks/VALIDITY.md")
    args = ap.parse_args(argv)
    t0 = time.time()
    runs = []
    for seed in range(args.reps):
        runs.append(fit_one(seed, args.communities, args.nagq, args.profile))
        if (seed + 1) % 20 == 0:
            print(f"{seed + 1}/{args.reps} data sets, {time.time() - t0:.0f} s", flush=True)
    df = summarise(runs, args.nagq, args.profile)
    load = os.getloadavg()[0]
    n_rows = np.mean([len(simulate(s, args.communities)) for s in range(min(args.reps, 20))])
    secs = df["_seconds"].dropna().tolist()
    text = (f"{SECTION}\n\n`python benchmarks/validity_nested.py --reps {args.reps} "
            f"--communities {args.communities} --nagq {args.nagq}"
            f"{' --profile' if args.profile else ''}` (mlglm {mlglm.__version__}; "
            f"{time.time() - t0:.0f} s on the project's shared 2-core machine, load average "
            f"{load:.1f} at the end). Design of Rodriguez and Goldman (1995): "
            f"{args.communities} communities x 10 families x 1-3 children (about "
            f"{n_rows:.0f} children per data set), logit P(y) = -0.5 + 1.0 x + "
            f"b_community + b_family with SDs 2 and 1; model `y ~ x + (1 | community/family)`"
            f" by Laplace and by adaptive quadrature through both levels. Wald intervals: "
            f"estimate +- 1.96 SE (fixed effects), exp(log s +- 1.96 SE(log s)) (SDs); "
            f"'MC SE of mean' is the Monte Carlo standard error of the mean estimate. Median "
            f"fit time per data set: Laplace {secs[0]:.2f} s, AGHQ {secs[1]:.2f} s.\n\n"
            + _markdown(df))
    write_section(args.out, text)
    print(text)
    return df


if __name__ == "__main__":
    main()
