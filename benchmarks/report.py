"""Summaries and Markdown: per-case tables, scaling tables, machine info."""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# Machine
# ----------------------------------------------------------------------------------------------

def _pkg_version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info(r_probe=None):
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    info = {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": mem_gib,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_start": _loadavg(),
    }
    for p in ("numpy", "scipy", "pandas", "patsy", "statsmodels", "glmm"):
        info[p] = _pkg_version(p)
    info["mlglm"] = _mlglm_version()
    info["mlglm_git"] = _git_head()
    if r_probe:
        info["R"] = r_probe.get("R")
        info["lme4"] = r_probe.get("lme4")
        info["glmmTMB"] = r_probe.get("glmmTMB")
    return info


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _mlglm_version():
    code = ("import sys; sys.path.insert(0, %r)\n"
            "try:\n import mlglm; print(getattr(mlglm, '__version__', 'unknown'))\n"
            "except Exception as e: print('not importable: ' + type(e).__name__)") % str(HERE.parent)
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120).stdout.strip() or None
    except Exception:  # noqa: BLE001
        return None


def _git_head():
    try:
        head = subprocess.run(["git", "-C", str(HERE.parent), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(HERE.parent), "status", "--porcelain", "--", "mlglm"],
                               capture_output=True, text=True, timeout=30).stdout.strip()
        return head + ("+dirty(mlglm/)" if dirty else "") if head else None
    except Exception:  # noqa: BLE001
        return None


def machine_markdown(info, threads_env):
    rows = [
        ("CPU", info.get("cpu")),
        ("cores (affinity)", f"{info.get('cores')} ({info.get('affinity_cores')})"),
        ("RAM", f"{info.get('ram_gib')} GiB"),
        ("OS", info.get("os")),
        ("Python", info.get("python")),
        ("numpy / scipy / pandas / patsy", " / ".join(str(info.get(k)) for k in ("numpy", "scipy", "pandas", "patsy"))),
        ("statsmodels", info.get("statsmodels")),
        ("glmm (PyPI)", info.get("glmm")),
        ("mlglm", f"{info.get('mlglm')} (git {info.get('mlglm_git')})"),
        ("R", info.get("R") or "not available"),
        ("lme4 / glmmTMB", f"{info.get('lme4')} / {info.get('glmmTMB')}"),
        ("load average (1/5/15 min) at start; at end", f"{info.get('loadavg_start')}; {info.get('loadavg_end')}"),
        ("thread pinning (child env)", ", ".join(f"{k}={v}" for k, v in threads_env.items())),
    ]
    lines = ["| item | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Per-case summaries
# ----------------------------------------------------------------------------------------------

def _finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def summarise_engine(runs):
    """runs: the list of per-repetition records of one engine on one case."""
    ok = [r for r in runs if r.get("ok")]
    s = {"reps": len(runs), "ok_reps": len(ok)}
    if ok:
        t = np.array([r["fit_seconds"] for r in ok], float)
        w = np.array([r["wall_seconds"] for r in ok], float)
        s.update(
            median_s=float(np.median(t)), min_s=float(t.min()), max_s=float(t.max()),
            wall_median_s=float(np.median(w)),
            cpu_median_s=float(np.median([r.get("fit_cpu_seconds") if r.get("fit_cpu_seconds") is not None
                                          else float("nan") for r in ok])),
            peak_rss_mb=float(max(r.get("child_maxrss_mb") or 0 for r in ok)),
            fit_rss_delta_mb=float(max(((r.get("rss_fit_peak_mb") or 0) - (r.get("rss_base_mb") or 0))
                                       for r in ok)),
            cpu_per_wall=float(np.median([(r.get("fit_cpu_seconds") or float("nan")) / max(r["fit_seconds"], 1e-9)
                                          for r in ok])),
        )
        llfs = [r.get("llf") for r in ok]
        last = llfs[-1]
        s["llf"] = last if _finite(last) else None
        fin = [x for x in llfs if _finite(x)]
        s["llf_spread"] = float(max(fin) - min(fin)) if fin else None
        s["converged"] = [r.get("converged") for r in ok][-1]
        s["fe_params"] = ok[-1].get("fe_params")
        s["cov_re"] = ok[-1].get("cov_re")
        s["fingerprint"] = ok[-1].get("fingerprint")
        s["version"] = ok[-1].get("version")
    fails = [r for r in runs if not r.get("ok")]
    if fails:
        s["error"] = fails[-1].get("error") or fails[-1].get("status")
    notes = []
    for r in runs:
        for n in r.get("notes") or []:
            n = " ".join(str(n).split())
            if n not in notes:
                notes.append(n)
    s["notes"] = notes
    return s


def finish_case(case_rec, baseline="mlglm"):
    """Add best-llf differences and ratios to a case record in place."""
    summ = case_rec["summary"]
    llfs = [v["llf"] for v in summ.values() if _finite(v.get("llf"))]
    best = max(llfs) if llfs else None
    case_rec["best_llf"] = best
    base = summ.get(baseline, {}).get("median_s")
    for eng, v in summ.items():
        v["llf_minus_best"] = (v["llf"] - best) if (best is not None and _finite(v.get("llf"))) else None
        v["ratio_to_baseline"] = (v["median_s"] / base) if (base and v.get("median_s")) else None
    # data check: every engine should have seen the same rows
    fps = {e: v.get("fingerprint") for e, v in summ.items() if v.get("fingerprint")}
    keys = ("nrows", "ysum", "x1sum")
    ref = next(iter(fps.values()), None)
    mism = [e for e, fp in fps.items()
            if any(k in fp and k in ref and abs(fp[k] - ref[k]) > 1e-6 * max(1, abs(ref[k])) for k in keys)]
    case_rec["data_mismatch"] = mism


def _fmt(x, nd=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, float):
        if abs(x) >= 1000 or x == 0:
            return f"{x:.{nd}f}" if abs(x) < 1e7 else f"{x:.4g}"
        return f"{x:.{nd}g}" if abs(x) < 1e-3 else f"{x:.{nd}f}"
    return str(x)


def _fmt_s(x):
    if x is None:
        return "–"
    return f"{x:.4f}" if x < 0.1 else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def case_markdown(case_rec, engines_order, baseline="mlglm"):
    c = case_rec
    lines = [f"### {c['id']}", "", f"`{c['description']}`", ""]
    lines.append(f"| engine | median s | min s | ratio to {baseline} | CPU s | child wall s | peak RSS MB "
                 "| fit +MB | llf | llf − best | reps ok | conv |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    notes = []
    for eng in engines_order:
        if eng in c.get("skipped", {}):
            notes.append(f"- **{eng}** skipped: {c['skipped'][eng]}")
            continue
        v = c["summary"].get(eng)
        if v is None:
            continue
        if not v.get("ok_reps"):
            lines.append(f"| {eng} | failed | | | | | | | | | {v['ok_reps']}/{v['reps']} | |")
            notes.append(f"- **{eng}** failed: {v.get('error')}")
            continue
        ratio = v.get("ratio_to_baseline")
        d = v.get("llf_minus_best")
        lines.append("| " + " | ".join([
            eng, _fmt_s(v["median_s"]), _fmt_s(v["min_s"]),
            "–" if ratio is None else f"{ratio:.2f}",
            _fmt_s(v.get("cpu_median_s")) if math.isfinite(v.get("cpu_median_s") or float("nan")) else "–",
            _fmt_s(v["wall_median_s"]), f"{v['peak_rss_mb']:.0f}", f"{v['fit_rss_delta_mb']:.0f}",
            "–" if v.get("llf") is None else f"{v['llf']:.4f}",
            "–" if d is None else (f"{d:.2e}" if d != 0 else "0"),
            f"{v['ok_reps']}/{v['reps']}", {True: "yes", False: "**no**", None: "?"}[v.get("converged")],
        ]) + " |")
        if v.get("error"):
            notes.append(f"- **{eng}**: some repetitions failed: {v['error']}")
        if v.get("cpu_per_wall") and v["cpu_per_wall"] > 1.3:
            notes.append(f"- **{eng}**: CPU time / fit time = {v['cpu_per_wall']:.2f} (more than one core busy?)")
        if v.get("llf_spread") and v["llf_spread"] > 1e-6:
            notes.append(f"- **{eng}**: llf varied across repetitions by {v['llf_spread']:.2e}")
        for n in v.get("notes", [])[:6]:
            notes.append(f"- {eng}: {n[:300]}")
    if c.get("data_mismatch"):
        notes.append(f"- **DATA MISMATCH** between engines: {c['data_mismatch']}")
    if notes:
        lines += [""] + notes
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Scaling
# ----------------------------------------------------------------------------------------------

def scaling_tables(case_recs, cases_by_id, engines_order):
    groups = {}
    for rec in case_recs:
        case = cases_by_id[rec["id"]]
        if case.scaling:
            groups.setdefault(case.scaling, []).append((case.nrows, rec))
    out_md, out_json = [], {}
    for label, items in groups.items():
        items.sort(key=lambda t: t[0])
        engs = [e for e in engines_order if any(e in r["summary"] and r["summary"][e].get("median_s")
                                                for _, r in items)]
        if not engs:
            continue
        lines = [f"### Scaling: {label}", "", "| rows | " + " | ".join(f"{e} s" for e in engs) + " |",
                 "|---:|" + "---:|" * len(engs)]
        table = {}
        for n, rec in items:
            row = []
            for e in engs:
                t = rec["summary"].get(e, {}).get("median_s")
                table.setdefault(e, {})[n] = t
                if t:
                    row.append(_fmt_s(t))
                elif e in rec.get("skipped", {}):
                    row.append("skipped")
                elif e in rec["summary"]:
                    err = str(rec["summary"][e].get("error") or "")
                    row.append("timeout" if "timeout" in err else "failed")
                else:
                    row.append("–")
            lines.append(f"| {n:,} | " + " | ".join(row) + " |")
        slopes = {}
        for e in engs:
            pts = [(n, t) for n, t in table[e].items() if t]
            if len(pts) >= 2:
                x = np.log([p[0] for p in pts])
                y = np.log([p[1] for p in pts])
                slopes[e] = float(np.polyfit(x, y, 1)[0])
        lines.append("| slope of log time vs log rows | " + " | ".join(
            f"{slopes[e]:.2f}" if e in slopes else "–" for e in engs) + " |")
        out_md.append("\n".join(lines))
        out_json[label] = {"median_s": {e: {str(n): t for n, t in d.items()} for e, d in table.items()},
                           "slope": slopes}
    return "\n\n".join(out_md), out_json
