"""Sharded fits on a Dask LocalCluster: 2 x 10^7 rows from Parquet (issue #15).

    python benchmarks/dask_sharded.py generate [--rows 20000000] [--dir benchmarks/out/dask]
    python benchmarks/dask_sharded.py fit      [--dir ...] [--workers 2] [--memory 4GB]
    python benchmarks/dask_sharded.py memory --rows 1000000     # in-memory, one process
    python benchmarks/dask_sharded.py overhead                  # per-evaluation overhead

The data: 10^5 groups, a random intercept and a random slope (SDs 0.8 and 0.4,
correlation -0.3), x ~ N(0, 1), logit(p) = -0.5 + 0.7 x + b0 + b1 x, Bernoulli y,
rows of each group scattered over the files (the fit has to shuffle them).
Every subcommand prints one JSON line; RESULTS.md records them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x + (1 + x | g)"
GROUPS = 100_000
ROWS_PER_FILE = 1_000_000


def simulate(n_rows: int, n_groups: int, seed: int, part: int = 0) -> pd.DataFrame:
    """n_rows rows of the benchmark model; group effects fixed by ``seed``, rows by part."""
    rng = np.random.default_rng(seed)
    L = np.linalg.cholesky(np.array([[0.64, -0.3 * 0.8 * 0.4], [-0.3 * 0.8 * 0.4, 0.16]]))
    b = rng.standard_normal((n_groups, 2)) @ L.T
    rng = np.random.default_rng([seed, part])
    g = rng.integers(0, n_groups, n_rows)
    x = rng.standard_normal(n_rows)
    eta = -0.5 + 0.7 * x + b[g, 0] + b[g, 1] * x
    y = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(np.int64)})


def generate(args):
    out = Path(args.dir) / "data"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_files = args.rows // ROWS_PER_FILE
    for k in range(n_files):
        simulate(ROWS_PER_FILE, GROUPS, seed=15, part=k).to_parquet(out / f"part-{k:03d}.parquet")
    print(json.dumps({"what": "generate", "rows": n_files * ROWS_PER_FILE, "files": n_files,
                      "seconds": time.perf_counter() - t0,
                      "bytes": sum(f.stat().st_size for f in out.glob("*.parquet"))}))


class PeakMemory:
    """Polls every worker's resident memory and CPU seconds (psutil): the maximum RSS and
    the last CPU total per worker (CPU time does not depend on the machine's load)."""

    def __init__(self, client, every=0.25):
        self.client, self.every, self.peak, self.cpu, self._stop = client, every, {}, {}, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        import psutil
        while not self._stop:
            try:
                def probe():
                    proc = psutil.Process()
                    t = proc.cpu_times()
                    return proc.memory_info().rss, t.user + t.system
                for w, (rss, cpu) in self.client.run(probe).items():
                    self.peak[w] = max(self.peak.get(w, 0), rss)
                    self.cpu[w] = cpu
            except Exception:       # a worker restarting
                pass
            time.sleep(self.every)

    def stop(self):
        self._stop = True
        self.thread.join()
        return self.peak


def fit(args):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import mlglm
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory, dashboard_address=":0")
    client = Client(cluster)
    evals = []
    mem = PeakMemory(client)
    t0 = time.perf_counter()
    ddf = dd.read_parquet(str(Path(args.dir) / "data"))
    model = mlglm.MixedGLM.from_formula("y ~ x", ddf, groups="g", re_formula="~x",
                                        family="binomial", npartitions=args.npartitions)
    t_spec = time.perf_counter() - t0
    def progress(rec):
        evals.append(rec)
        print(f"evaluation {rec['evaluation']} ({rec['what']}) at {rec['seconds']:.1f} s",
              file=sys.stderr, flush=True)
    res = model.fit(progress=progress)
    total = time.perf_counter() - t0
    peak = mem.stop()
    first = next(r["seconds"] for r in evals)
    print(json.dumps({
        "what": "fit", "rows": int(res.nobs), "groups": int(res.n_groups),
        "workers": args.workers, "memory_limit": args.memory, "shards": args.npartitions,
        "seconds_total": total, "seconds_spec": t_spec,
        "seconds_to_first_evaluation": first + t_spec,
        "evaluations": len(evals), "llf": float(res.llf),
        "params": [float(v) for v in res.params], "converged": bool(res.converged),
        "peak_rss_gb": {w: v / 1e9 for w, v in peak.items()},
        "worker_cpu_s": dict(mem.cpu),
        "evaluation_seconds": [r["seconds"] for r in evals],
        "load_average": os.getloadavg()}))
    client.close()
    cluster.close()


def memory(args):
    import mlglm
    df = pd.concat([simulate(min(ROWS_PER_FILE, args.rows - k), GROUPS, 15, part=i)
                    for i, k in enumerate(range(0, args.rows, ROWS_PER_FILE))])
    t0, c0 = time.perf_counter(), time.process_time()
    res = mlglm.MixedGLM.from_formula("y ~ x", df, groups="g", re_formula="~x",
                                      family="binomial").fit()
    cpu = time.process_time() - c0
    import resource
    print(json.dumps({"what": "in-memory", "rows": len(df), "seconds": time.perf_counter() - t0,
                      "cpu_seconds": cpu, "evaluations": res.optim.n_evals, "llf": float(res.llf),
                      "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
                      "load_average": os.getloadavg()}))


def overhead(args):
    """Seconds per evaluation on the cluster minus in memory, on data small enough that
    the arithmetic is negligible: the round trip driver -> scheduler -> shards -> driver."""
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import mlglm
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    client = Client(cluster)
    df = simulate(20_000, 200, 15)
    out = {"what": "overhead", "load_average": os.getloadavg()}
    for shards in (2, 8, 32):
        model = mlglm.MixedGLM.from_formula("y ~ x", dd.from_pandas(df, npartitions=shards),
                                            groups="g", re_formula="~x", family="binomial")
        obj = model.objective(1)
        x = obj.start()
        obj.value_and_gradient(x)
        t0 = time.perf_counter()
        for k in range(20):
            obj.value_and_gradient(x + 1e-6 * (k + 1))
        out[f"cluster_{shards}_shards_s"] = (time.perf_counter() - t0) / 20
    mem = mlglm.MixedGLM.from_formula("y ~ x", df, groups="g", re_formula="~x",
                                      family="binomial").objective(1)
    x = mem.start()
    mem.value_and_gradient(x)
    t0 = time.perf_counter()
    for k in range(20):
        mem.value_and_gradient(x + 1e-6 * (k + 1))
    out["in_memory_s"] = (time.perf_counter() - t0) / 20
    print(json.dumps(out))
    client.close()
    cluster.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["generate", "fit", "memory", "overhead"])
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--dir", default="benchmarks/out/dask")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--memory", default="4GB")
    ap.add_argument("--npartitions", type=int, default=20)
    args = ap.parse_args()
    {"generate": generate, "fit": fit, "memory": memory, "overhead": overhead}[args.command](args)


if __name__ == "__main__":
    main()
