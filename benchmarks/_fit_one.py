"""Child process: one timed fit of one case by one Python engine.

    python benchmarks/_fit_one.py ENGINE CASE [--data-cache DIR]
    python benchmarks/_fit_one.py --make-data DATASET [--data-cache DIR]

Prints one line ``@@RESULT@@ {json}`` on stdout (everything the engine itself prints goes to
stderr).  Timed: the engine's fit call only (formula handling included; imports, data loading
or generation excluded).  Memory: the peak RSS of the fit is VmHWM after resetting it through
/proc/self/clear_refs just before the call; the parent also records the whole child's peak RSS
(wait4 ru_maxrss).
"""
from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
import traceback
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
# Benchmark this checkout of mlglm, not some other installed copy.
sys.path.insert(1, str(HERE.parent))

MARK = "@@RESULT@@"


def _status_kb(key):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _clean(x):
    """JSON-safe (NaN -> None)."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else x
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def run(engine, case_id, data_cache=None):
    import cases
    from peers import python_adapter

    out = {"engine": engine, "case": case_id, "ok": False, "notes": []}
    try:
        case = cases.CASES[case_id]
        ad = python_adapter(engine)
        out["version"] = ad.version()
        ad.prepare(case)
        t = time.perf_counter()
        df = cases.load_dataset(case.dataset)
        out["load_seconds"] = time.perf_counter() - t
        out["fingerprint"] = cases.fingerprint(df, case.response)
        import gc

        gc.collect()
        out["peak_reset"] = _reset_peak()
        out["rss_base_mb"] = _status_kb("VmRSS") / 1024
        with warnings.catch_warnings(record=True) as wlist:
            warnings.simplefilter("default")
            c0 = _cpu()
            t0 = time.perf_counter()
            res = ad.fit(case, df)
            t1 = time.perf_counter()
            c1 = _cpu()
        out["fit_seconds"] = t1 - t0
        out["fit_cpu_seconds"] = c1 - c0
        out["rss_fit_peak_mb"] = _status_kb("VmHWM") / 1024
        info = ad.extract(case, res)
        notes = info.pop("notes", [])
        out.update(info)
        seen = []
        for w in wlist:
            s = f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}"
            if s not in seen:
                seen.append(s)
        out["notes"] = list(notes) + seen[:10]
        out["ok"] = True
    except BaseException as e:  # noqa: BLE001 - report every failure, including ImportError
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc()[-3000:]
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("engine", nargs="?")
    p.add_argument("case", nargs="?")
    p.add_argument("--make-data", metavar="DATASET")
    p.add_argument("--data-cache", type=Path, default=None)
    a = p.parse_args(argv)

    # Keep stdout clean for the result line: route fd 1 to stderr while engines run.
    real_stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    if a.data_cache is not None:
        import cases

        cases.DEFAULT_DATA_CACHE = a.data_cache
    if a.make_data:
        import cases

        t = time.perf_counter()
        path = cases.ensure_sim_csv(a.make_data, a.data_cache)
        out = {"ok": True, "path": str(path), "seconds": time.perf_counter() - t}
    else:
        out = run(a.engine, a.case, a.data_cache)
    real_stdout.write(MARK + " " + json.dumps(_clean(out)) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
