"""Issue 13's "done when": mlglm and `glmm` at nagq = 11 on hard binary data, against the truth.

    python benchmarks/quadrature_vs_glmm.py [--datasets 20] [--groups 300]
        [--baseline PATH] [--out benchmarks/out/quadrature_vs_glmm]
    python benchmarks/quadrature_vs_glmm.py --auto-only [--seeds 7,9,14,15]

``--auto-only`` refits only ``nagq="auto"`` (with the package as it is now) on the data sets
already in ``--out``/results.json (all, or ``--seeds``), keeping the stored glmm, nagq = 11
and chain results; the previous auto record is kept as ``auto_before``.

Data (``quadrature_data.hard_binary``): ``--groups`` subjects x 7 visits (time 0..6), a
subject-level treatment, ``y ~ time * trt + (1 + time | id)``, random-intercept SD 8,
random-slope SD 1, correlation -0.2; seeds 0..datasets-1. For every data set:

* ``glmm.fit(df, formula, family="binomial", nagq=11)`` (the Rust peer) and
  ``mlglm.glmer(formula, df, nagq=11)``; with ``--baseline PATH`` also mlglm before issue 13
  (the package at PATH, its grid oriented in u-space), in a child process;
* ``mlglm.glmer(..., nagq="auto")`` and a chain of mlglm fits with nagq = 11, 15, 21, 27,
  35, 41 (each warm-started from the previous), for "the best found with any nagq up to 41";
* the true log-likelihood at every set of estimates by brute force
  (``quadrature_oracle.brute_force_total``: composite Gauss-Legendre per distinct group);
* at glmm's estimates, glmm's own AGHQ value (its reported loglik) and mlglm's
  (``model.loglike(..., method="aghq", nagq=11)``), each minus the truth there.

Writes ``results.json`` and ``results.md`` (per data set and the three claims) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from quadrature_data import hard_binary  # noqa: E402
from quadrature_oracle import GroupProblem, brute_force_total  # noqa: E402

CHAIN = (11, 15, 21, 27, 35, 41)
FE_NAMES = ("(Intercept)", "time", "trt", "time:trt")       # glmm's names, mlglm's order


def dataset(seed, groups):
    return hard_binary(seed, G=groups, sizes=7, sd0=8.0, sd1=1.0, corr=-0.2)


def truth(df, params):
    """True log-likelihood at params = (beta (4), vech Sigma (3)) by brute force."""
    from mlglm.core.spec.covariance import Sigma_from_vech
    one = np.ones(len(df))
    X = np.column_stack([one, df.time, df.trt, df.time * df.trt])
    Z = np.column_stack([one, df.time])
    Lam = np.linalg.cholesky(Sigma_from_vech(np.asarray(params)[4:], 2))
    prob = GroupProblem.from_rows(df.y.to_numpy(float), X, Z, df.id.to_numpy(),
                                  np.asarray(params)[:4], Lam, "binomial")
    return brute_force_total(prob)


def fit_glmm(df, formula, nagq=11):
    import glmm
    t0 = time.perf_counter()
    r = glmm.fit(df, formula, "binomial", nagq=nagq, satterthwaite=False, anova_test="Wald")
    dt = time.perf_counter() - t0
    b = dict(zip(r.names, r.beta))
    vc = np.asarray(r.varcorr[0], float)             # (Sigma_11, Sigma_21, Sigma_22)
    params = [float(b[k]) for k in FE_NAMES] + [float(v) for v in vc]
    return {"params": params, "llf": float(r.loglik), "time": dt, "nagq": int(r.nagq),
            "converged": bool(r.converged)}


def fit_mlglm(df, formula, nagq, start=None):
    import mlglm
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if start is None:
            res = mlglm.glmer(formula, df, family="binomial", nagq=nagq)
        else:
            res = mlglm.glmer(formula, df, family="binomial").model.fit(
                method="aghq", nagq=nagq, start_params=start)
        dt = time.perf_counter() - t0
    out = {"params": [float(v) for v in np.asarray(res.params)], "llf": float(res.llf),
           "time": dt, "nagq": int(res.nagq), "converged": bool(res.converged),
           "warnings": sorted({type(w.message).__name__ for w in caught})}
    chk = getattr(res.optim, "quadrature_check", None)
    if chk is not None:
        out["check_adequate"] = bool(chk.adequate)
    if getattr(res.optim, "starts_tried", ()):
        out["start_won"] = res.optim.start_won
    if getattr(res.optim, "auto", None) is not None:
        out["auto_path"] = [int(r[0]) for r in res.optim.auto.path]
        out["auto_settled"] = bool(res.optim.auto.settled)
    return out, res


def fit_baseline(path, seed, groups):
    """mlglm at PATH (e.g. the commit before issue 13) in a child process, nagq = 11."""
    code = ("import json, sys, warnings; sys.path.insert(0, %r); sys.path.insert(0, %r); "
            "warnings.simplefilter('ignore'); import numpy as np, mlglm, time; "
            "from quadrature_data import hard_binary; "
            "df, f, b, S = hard_binary(%d, G=%d, sizes=7, sd0=8.0, sd1=1.0, corr=-0.2); "
            "t0 = time.perf_counter(); r = mlglm.glmer(f, df, family='binomial', nagq=11); "
            "print(json.dumps({'params': [float(v) for v in np.asarray(r.params)], "
            "'llf': float(r.llf), 'time': time.perf_counter() - t0, "
            "'mlglm': mlglm.__file__}))") % (str(path), str(HERE), seed, groups)
    env = dict(os.environ, PYTHONPATH=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec.pop("mlglm").startswith(str(path)), "the baseline did not import from PATH"
    return rec


def one_dataset(seed, groups, baseline=None):
    df, formula, beta, Sigma = dataset(seed, groups)
    rec = {"seed": seed}
    rec["glmm"] = fit_glmm(df, formula)
    rec["mlglm"], res = fit_mlglm(df, formula, 11)
    if baseline:
        rec["baseline"] = fit_baseline(baseline, seed, groups)
    rec["auto"], _ = fit_mlglm(df, formula, "auto")
    chain, start = [], None
    for K in CHAIN:
        c, r = fit_mlglm(df, formula, K, start)
        start = np.asarray(r.params)
        chain.append(dict(c, nagq=K))
    rec["chain"] = chain
    # mlglm's AGHQ value at glmm's estimates
    rec["mlglm_at_glmm"] = float(res.model.loglike(np.asarray(rec["glmm"]["params"]),
                                                   method="aghq", nagq=11))
    for key in ("glmm", "mlglm", "auto", "baseline"):
        if key in rec:
            rec[key]["true"] = truth(df, rec[key]["params"])
    for c in rec["chain"]:
        c["true"] = truth(df, c["params"])
    return rec


def rerun_auto(out_dir, groups, seeds=None):
    """Refit nagq="auto" on stored data sets (see --auto-only); returns the records."""
    path = Path(out_dir) / "results.json"
    records = json.loads(path.read_text())["records"]
    for rec in records:
        if seeds is not None and rec["seed"] not in seeds:
            continue
        t0 = time.time()
        df, formula, _, _ = dataset(rec["seed"], groups)
        before = rec.get("auto_before", rec["auto"])
        rec["auto"], _ = fit_mlglm(df, formula, "auto")
        rec["auto"]["true"] = truth(df, rec["auto"]["params"])
        rec["auto_before"] = before
        write(records, out_dir, groups)
        a = rec["auto"]
        print(f"seed {rec['seed']}: auto nagq {before['nagq']} -> {a['nagq']} "
              f"(path {a.get('auto_path')}), true llf {before['true']:.4f} -> {a['true']:.4f}, "
              f"fit {before['time']:.1f} -> {a['time']:.1f} s [{time.time() - t0:.0f} s]",
              flush=True)
    return records


def best_upto_41(rec):
    """The highest true llf of any mlglm fit with nagq <= 41 on this data set (the chain,
    the nagq = 11 fit, and an auto fit that stopped at 41 or below)."""
    fits = [c["true"] for c in rec["chain"]] + [rec["mlglm"]["true"]]
    fits += [a["true"] for a in (rec["auto"], rec.get("auto_before")) if a and a["nagq"] <= 41]
    return max(fits)


def claims(records):
    """The three claims of the issue, from the per-data-set records."""
    gap = [r["mlglm"]["true"] - r["glmm"]["true"] for r in records]
    err_m = [abs(r["mlglm_at_glmm"] - r["glmm"]["true"]) for r in records]
    err_g = [abs(r["glmm"]["llf"] - r["glmm"]["true"]) for r in records]
    best = [best_upto_41(r) for r in records]
    auto_gap = [b - r["auto"]["true"] for b, r in zip(best, records)]
    return {"true_llf_mlglm_minus_glmm": gap,
            "claim1_every_dataset": bool(all(g >= -1e-3 for g in gap)),
            "mean_abs_err_at_glmm_params": {"mlglm": float(np.mean(err_m)),
                                            "glmm": float(np.mean(err_g))},
            "claim2_mlglm_closer_on_average": bool(np.mean(err_m) < np.mean(err_g)),
            "auto_below_best": auto_gap,
            "claim3_auto_within_0.01": bool(all(g <= 0.01 for g in auto_gap))}


def write(records, out_dir, groups):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    c = claims(records)
    with open(out_dir / "results.json", "w") as fh:
        json.dump({"records": records, "claims": c}, fh, indent=1)
    base = "baseline" in records[0]
    before = any("auto_before" in r for r in records)
    lines = [f"{len(records)} data sets of {groups} subjects x 7 visits, intercept SD 8, slope "
             "SD 1 (true log-likelihoods by brute force).\n",
             "| seed | true llf at glmm (11) | mlglm (11) - glmm | "
             + ("mlglm before #13 (11) - glmm | " if base else "")
             + "auto: nagq, true llf - best (<= 41) | "
             + ("auto before the longer ladder: nagq, true llf - best, fit s | " if before
                else "")
             + "best true llf (nagq) | AGHQ error at glmm's "
             "estimates: glmm / mlglm | fit s: glmm / mlglm / auto |",
             "|---:|---:|---:|" + ("---:|" if base else "") + "---|" + ("---|" if before else "")
             + "---|---|---|"]
    for r in records:
        cand = [(ch["true"], ch["nagq"]) for ch in r["chain"]]
        bt, bk = max(cand)
        best = best_upto_41(r)
        g = r["glmm"]["true"]
        ab = r.get("auto_before")
        lines.append(
            f"| {r['seed']} | {g:.3f} | {r['mlglm']['true'] - g:+.3f} | "
            + (f"{r['baseline']['true'] - g:+.3f} | " if base else "")
            + f"{r['auto']['nagq']}, {r['auto']['true'] - best:+.4f} | "
            + ((f"{ab['nagq']}, {ab['true'] - best:+.4f}, {ab['time']:.1f} | " if ab else "- | ")
               if before else "")
            + f"{bt:.3f} ({bk}) | "
            f"{r['glmm']['llf'] - g:+.3f} / {r['mlglm_at_glmm'] - g:+.3f} | "
            f"{r['glmm']['time']:.2f} / {r['mlglm']['time']:.2f} / {r['auto']['time']:.1f} |")
    lines.append("")
    lines.append(f"* true llf at mlglm's nagq=11 estimates >= at glmm's - 1e-3 on every data "
                 f"set: {c['claim1_every_dataset']} (differences "
                 f"{min(c['true_llf_mlglm_minus_glmm']):+.3f} .. "
                 f"{max(c['true_llf_mlglm_minus_glmm']):+.3f}; mlglm higher on "
                 f"{sum(g > 0 for g in c['true_llf_mlglm_minus_glmm'])} of {len(records)})")
    e = c["mean_abs_err_at_glmm_params"]
    lines.append(f"* at glmm's estimates, mean |AGHQ value - truth|: mlglm {e['mlglm']:.3f}, "
                 f"glmm {e['glmm']:.3f}: mlglm closer: {c['claim2_mlglm_closer_on_average']}")
    lines.append(f"* nagq='auto' within 0.01 of the best true llf found with nagq <= 41: "
                 f"{c['claim3_auto_within_0.01']} (largest shortfall, best minus auto: "
                 f"{max(c['auto_below_best']):+.2g}; negative: auto's estimates are better than "
                 "every fit with nagq <= 41)")
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    return c


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--first", type=int, default=0, help="first seed")
    ap.add_argument("--groups", type=int, default=300)
    ap.add_argument("--baseline", default=None, help="path holding an older mlglm package")
    ap.add_argument("--out", default=str(HERE / "out" / "quadrature_vs_glmm"))
    ap.add_argument("--auto-only", action="store_true",
                    help="refit only nagq='auto' on the data sets in --out/results.json")
    ap.add_argument("--seeds", default=None, help="with --auto-only: comma-separated seeds")
    args = ap.parse_args(argv)
    if args.auto_only:
        seeds = None if args.seeds is None else {int(s) for s in args.seeds.split(",")}
        records = rerun_auto(args.out, args.groups, seeds)
        c = write(records, args.out, args.groups)
        print(json.dumps({k: v for k, v in c.items() if not isinstance(v, list)}, indent=1))
        return
    records = []
    for seed in range(args.first, args.first + args.datasets):
        t0 = time.time()
        records.append(one_dataset(seed, args.groups, args.baseline))
        write(records, args.out, args.groups)
        r = records[-1]
        print(f"seed {seed}: true llf glmm {r['glmm']['true']:.3f}, mlglm "
              f"{r['mlglm']['true']:.3f}, auto (nagq {r['auto']['nagq']}) "
              f"{r['auto']['true']:.3f} [{time.time() - t0:.0f} s]", flush=True)
    c = write(records, args.out, args.groups)
    print(json.dumps({k: v for k, v in c.items() if not isinstance(v, list)}, indent=1))


if __name__ == "__main__":
    main()
