"""Side-by-side speed / memory / log-likelihood benchmark of mlglm and its peers.

    python benchmarks/run.py [--quick] [--cases PATTERN] [--reps N] [--out DIR] [--no-r]
                             [--engines LIST] [--slow-peers] [--timeout S] [--budget S] [--list]

Every single fit runs in its own child process (``_fit_one.py`` for Python engines,
``peers/fit_one.R`` through Rscript for R engines) with threads pinned to one.  Within each
repetition the engines run one after another in an order rotated by one place per repetition.
See README.md for what is measured and how.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import cases as C  # noqa: E402
import report  # noqa: E402
from peers import ALL_ENGINES, PYTHON_ENGINES, R_ENGINES, python_adapter, rpeers  # noqa: E402

MARK = "@@RESULT@@"
THREADS_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    "RAYON_NUM_THREADS": "1",      # glmm's Rust core (rayon; the gemm kernels use the same pool)
}


# ----------------------------------------------------------------------------------------------
# Child processes
# ----------------------------------------------------------------------------------------------

def child_env():
    env = dict(os.environ)
    env.update(THREADS_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_child(cmd, timeout, log_path=None):
    """Run ``cmd``; return (parsed result dict or None, info) with wall time and peak RSS.

    Peak RSS comes from wait4()'s rusage of that child alone (ru_maxrss, KiB on Linux); the
    whole process group is killed on timeout.
    """
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=child_env(), cwd=str(REPO),
                             start_new_session=True)
        timed_out = threading.Event()

        def _kill():
            timed_out.set()
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {shlex.join(cmd)}\n# exit {p.returncode}, wall {wall:.3f}s\n"
                            f"--- stdout\n{out}\n--- stderr\n{err}")
    res = None
    for line in reversed(out.splitlines()):
        if line.startswith(MARK):
            try:
                res = json.loads(line[len(MARK):].strip())
            except json.JSONDecodeError:
                res = None
            break
    info = {"wall_seconds": wall, "child_maxrss_mb": ru.ru_maxrss / 1024, "exit_code": p.returncode,
            "timed_out": timed_out.is_set(), "stderr_tail": err[-1500:]}
    return res, info


def fit_command(engine, case, spec_path, data_cache):
    if engine in R_ENGINES:
        return rpeers.command(engine, spec_path)
    return [sys.executable, str(HERE / "_fit_one.py"), engine, case.id, "--data-cache", str(data_cache)]


def one_fit(engine, case, spec_path, data_cache, timeout, log_path):
    res, info = run_child(fit_command(engine, case, spec_path, data_cache), timeout, log_path)
    rec = dict(res or {"engine": engine, "case": case.id, "ok": False})
    rec.update({k: info[k] for k in ("wall_seconds", "child_maxrss_mb", "exit_code", "timed_out")})
    if info["timed_out"]:
        rec["ok"] = False
        rec["status"] = "timeout"
        rec["error"] = f"timeout after {timeout:.0f} s (killed)"
    elif res is None:
        rec["status"] = "crashed"
        tail = info["stderr_tail"].strip().splitlines()
        rec["error"] = f"no result (exit {info['exit_code']}): {tail[-1] if tail else ''}"
    else:
        rec["status"] = "ok" if rec.get("ok") else "failed"
    return rec


# ----------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------

def plan_engines(case, engines, r_probe, args):
    """(engines to run, {engine: reason skipped})"""
    run, skipped = [], {}
    for e in engines:
        if e in R_ENGINES:
            why = ("disabled with --no-r" if args.no_r else rpeers.available(e, r_probe)) or \
                rpeers.applicable(e, case, slow_peers=args.slow_peers)
        else:
            why = python_adapter(e).applicable(case, slow_peers=args.slow_peers)
        if why:
            skipped[e] = why
        else:
            run.append(e)
    return run, skipped


def n_reps(case, args):
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    if case.reps is not None:
        reps = min(reps, case.reps)
    return max(1, reps)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small subset, 3 repetitions")
    p.add_argument("--cases", metavar="PATTERN",
                   help="comma-separated regular expressions matched (re.search) against case ids")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 5, 3 with --quick; "
                   "cases with a cap, e.g. 10^6 rows, use at most their cap)")
    p.add_argument("--out", type=Path, default=HERE / "out", help="output directory (results.md/.json)")
    p.add_argument("--data-cache", type=Path, default=C.DEFAULT_DATA_CACHE,
                   help="CSV cache of simulated data (read by the R engines)")
    p.add_argument("--no-r", action="store_true", help="skip the R engines (lme4, glmmTMB)")
    p.add_argument("--engines", default=",".join(ALL_ENGINES),
                   help=f"comma-separated subset of {', '.join(ALL_ENGINES)}")
    p.add_argument("--baseline", default="mlglm", help="engine the time ratios are relative to")
    p.add_argument("--slow-peers", action="store_true",
                   help="also run lme4, glmmTMB and statsmodels' BayesMixedGLM on the 10^6-row cases "
                   "(tens of minutes per fit, or a timeout)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per child process (default 900)")
    p.add_argument("--budget", type=float, default=1800.0,
                   help="stop repeating an engine on a case once its children used this many seconds")
    p.add_argument("--list", action="store_true", help="list the selected cases and exit")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ALL_ENGINES]
    if bad:
        sys.exit(f"unknown engine(s) {bad}; choose from {ALL_ENGINES}")
    selected = C.select(args.cases, quick=args.quick)
    if not selected:
        sys.exit("no case matches")
    if args.list:
        for c in selected:
            print(f"{c.id:32s} reps={n_reps(c, args)}  {c.describe()}")
        return 0

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    data_cache = args.data_cache.resolve()
    want_r = (not args.no_r) and any(e in R_ENGINES for e in engines)
    r_probe = rpeers.probe() if want_r else {"R": None, "note": "disabled with --no-r"}
    if want_r and r_probe.get("R") is None:
        print(f"note: R engines skipped: {r_probe.get('note')}", flush=True)
    elif want_r:
        for e in R_ENGINES:
            why = rpeers.available(e, r_probe)
            if e in engines and why:
                print(f"note: {e} skipped: {why}", flush=True)
    machine = report.machine_info(r_probe if want_r else None)
    started = _dt.datetime.now().isoformat(timespec="seconds")
    print(f"mlglm benchmark  {started}  {machine['cpu']}, {machine['cores']} cores, "
          f"{machine['ram_gib']} GiB; {len(selected)} case(s); engines {', '.join(engines)}", flush=True)

    results = {"started": started, "command": shlex.join([sys.executable] + sys.argv),
               "machine": machine, "threads_env": THREADS_ENV, "r_probe": r_probe,
               "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "cases": []}
    for case in selected:
        results["cases"].append(run_case(case, engines, r_probe, args, out_dir, data_cache))
        write_outputs(results, engines, args, out_dir)
        print(report.case_markdown(results["cases"][-1], engines, args.baseline), "\n", flush=True)
    md = write_outputs(results, engines, args, out_dir, final=True)
    scal = md.split("## Scaling", 1)
    if len(scal) == 2:
        print("## Scaling" + scal[1].split("\n## ", 1)[0])
    print(f"wrote {out_dir / 'results.md'} and {out_dir / 'results.json'}")
    return 0


def run_case(case, engines, r_probe, args, out_dir, data_cache):
    run, skipped = plan_engines(case, engines, r_probe, args)
    rec = {"id": case.id, "description": case.describe(), "spec": dataclasses.asdict(case),
           "nrows": case.nrows, "skipped": skipped, "runs": {e: [] for e in run}, "summary": {}}
    reps = n_reps(case, args)
    print(f"== {case.id}: {case.describe()}; {reps} rep(s); engines {', '.join(run) or 'none'}"
          + (f"; skipped {', '.join(skipped)}" if skipped else ""), flush=True)
    spec_path = None
    if any(e in R_ENGINES for e in run):
        if (case.dataset in C.SIM_DATASETS or case.dataset in C.MULTI_SIM) and not C.sim_csv_path(case.dataset, data_cache).exists():
            t = time.perf_counter()
            res, info = run_child([sys.executable, str(HERE / "_fit_one.py"), "--make-data", case.dataset,
                                   "--data-cache", str(data_cache)], args.timeout)
            if not (res and res.get("ok")):
                msg = f"could not write the CSV cache: {info['stderr_tail'][-300:]}"
                for e in [e for e in run if e in R_ENGINES]:
                    run.remove(e)
                    rec["runs"].pop(e, None)
                    skipped[e] = msg
            else:
                print(f"   wrote {res['path']} ({time.perf_counter() - t:.1f} s)", flush=True)
        spec_path = rpeers.write_spec(case, C.dataset_csv(case.dataset, data_cache), out_dir / "specs")
    given_up, used = {}, {e: 0.0 for e in run}
    for rep in range(reps):
        k = rep % len(run) if run else 0
        order = run[k:] + run[:k]
        for eng in order:
            if eng in given_up:
                continue
            log = out_dir / "logs" / case.id / f"{eng}_rep{rep + 1}.log"
            r = one_fit(eng, case, spec_path, data_cache, args.timeout, log)
            r["rep"] = rep + 1
            rec["runs"][eng].append(r)
            used[eng] += r["wall_seconds"]
            if r.get("ok"):
                llf = r.get("llf")
                print(f"   rep {rep + 1}/{reps} {eng:12s} fit {r['fit_seconds']:9.4f} s  wall "
                      f"{r['wall_seconds']:8.2f} s  peak {r['child_maxrss_mb']:7.0f} MB  llf "
                      f"{'nan' if llf is None else f'{llf:.6f}'}", flush=True)
            else:
                print(f"   rep {rep + 1}/{reps} {eng:12s} {r['status'].upper()}: {str(r.get('error'))[:300]}",
                      flush=True)
                given_up[eng] = r["status"]
            if rep + 1 < reps and used[eng] > args.budget and eng not in given_up:
                given_up[eng] = "budget"
                r.setdefault("notes", []).append(
                    f"stopped after {rep + 1} repetition(s): --budget {args.budget:.0f} s used")
    for eng in run:
        rec["summary"][eng] = report.summarise_engine(rec["runs"][eng])
    report.finish_case(rec, args.baseline)
    return rec


def overview_markdown(results, engines, baseline):
    engs = [e for e in engines if any(e in c["summary"] for c in results["cases"])]
    lines = ["| case | " + " | ".join(f"{e} s" for e in engs) + " | best llf | engines within 1e-4 of best |",
             "|---|" + "---:|" * len(engs) + "---:|---|"]
    for c in results["cases"]:
        cells = []
        for e in engs:
            v = c["summary"].get(e)
            if v is None:
                cells.append("skip" if e in c["skipped"] else "")
            elif not v.get("ok_reps"):
                cells.append("fail")
            else:
                cells.append(report._fmt_s(v["median_s"]))
        near = [e for e, v in c["summary"].items()
                if v.get("llf_minus_best") is not None and v["llf_minus_best"] > -1e-4]
        best = c.get("best_llf")
        lines.append(f"| {c['id']} | " + " | ".join(cells) + f" | {'–' if best is None else f'{best:.4f}'} | "
                     f"{', '.join(near)} |")
    return "\n".join(lines)


def write_outputs(results, engines, args, out_dir, final=False):
    cases_by_id = C.CASES
    scal_md, scal_json = report.scaling_tables(results["cases"], cases_by_id, engines)
    results["scaling"] = scal_json
    results["finished"] = _dt.datetime.now().isoformat(timespec="seconds") if final else None
    if final:
        results["machine"]["loadavg_end"] = report._loadavg()
    with open(out_dir / "results.json", "w") as fh:
        json.dump(_clean(results), fh, indent=1)
    md = [
        "# mlglm benchmark results",
        "",
        f"Run {results['started']}{' – ' + results['finished'] if results.get('finished') else ' (in progress)'}; "
        f"command `{results['command']}`.",
        "",
        "Every fit ran in a fresh child process with one thread; times are the fit call alone (formula "
        "handling included, data loading excluded), median over repetitions with the engines alternating "
        f"within each repetition. Ratio = engine's median / {args.baseline}'s median (> 1: slower than "
        f"{args.baseline}). Peak RSS = the whole child process (interpreter, libraries and data included); "
        "fit +MB = peak during the fit minus resident size just before it. llf − best: difference to the "
        "highest log-likelihood any engine reached on that case (statsmodels BayesMixedGLM is variational "
        "Bayes, not ML: no llf).",
        "",
        "## Machine",
        "",
        report.machine_markdown(results["machine"], results["threads_env"]),
        "",
        "## Overview (median seconds)",
        "",
        overview_markdown(results, engines, args.baseline),
        "",
        "## Cases",
        "",
    ]
    for c in results["cases"]:
        md += [report.case_markdown(c, engines, args.baseline), ""]
    md += ["## Scaling", "", scal_md or "(no scaling cases in this run)", ""]
    text = "\n".join(md)
    (out_dir / "results.md").write_text(text)
    return text


def _clean(x):
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


if __name__ == "__main__":
    sys.exit(main())
