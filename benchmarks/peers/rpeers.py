"""R peers (lme4, glmmTMB) run as ``Rscript benchmarks/peers/fit_one.R ENGINE SPEC.json``."""
import json
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIT_ONE_R = HERE / "fit_one.R"
R_PACKAGES = {"lme4": "lme4", "glmmTMB": "glmmTMB"}

#: Rows from which an engine is treated as a slow peer (run only with --slow-peers).
SLOW_ROWS = {"lme4": 10**6, "glmmTMB": 10**6}
SLOW_NOTES = {
    "lme4": "lme4 at 10^6 rows takes > 25 min per fit",
    "glmmTMB": "glmmTMB at 10^6 rows took 833 s per fit",
}


def probe(timeout=120):
    """{'R': version or None, 'lme4': version or None, 'glmmTMB': ..., 'jsonlite': ..., 'note': str}"""
    out = {"R": None, "lme4": None, "glmmTMB": None, "jsonlite": None, "note": ""}
    if shutil.which("Rscript") is None:
        out["note"] = "Rscript not on PATH"
        return out
    code = (
        'cat("R=", R.version.string, "\\n", sep="");'
        'for (p in c("jsonlite","lme4","glmmTMB")) {'
        ' ok <- suppressWarnings(suppressMessages(requireNamespace(p, quietly=TRUE)));'
        ' cat(p, "=", if (ok) as.character(packageVersion(p)) else "", "\\n", sep="") }'
    )
    try:
        p = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, timeout=timeout)
    except Exception as e:  # noqa: BLE001
        out["note"] = f"Rscript failed: {e!r}"
        return out
    for line in p.stdout.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            if k in out:
                out[k] = v.strip() or None
    if out["jsonlite"] is None and out["R"]:
        out["note"] = "R package jsonlite missing (apt-get install r-cran-jsonlite)"
    return out


def available(engine, probe_result):
    """None if usable, else the reason it is not."""
    if probe_result.get("R") is None:
        return probe_result.get("note") or "R not available"
    if probe_result.get("jsonlite") is None:
        return "R package jsonlite not installed"
    if probe_result.get(R_PACKAGES[engine]) is None:
        return f"R package {R_PACKAGES[engine]} not installed"
    return None


def applicable(engine, case, slow_peers=False):
    if engine == "lme4" and case.nagq > 1 and (case.q > 1 or case.multi):
        return "lme4: nAGQ > 1 only for a single scalar random effect (lme4#123)"
    if engine == "glmmTMB" and case.nagq > 1:
        return "glmmTMB: Laplace only, no AGHQ"
    n = case.nrows
    if n is not None and n >= SLOW_ROWS[engine] and not slow_peers:
        return SLOW_NOTES[engine] + " (use --slow-peers)"
    return None


def write_spec(case, csv_path, spec_dir):
    from cases import REAL_DATA

    spec = {
        "id": case.id,
        "dataset": case.dataset,
        "csv": str(csv_path),
        "categorical": REAL_DATA.get(case.dataset, {}).get("categorical", []),
        "formula": case.lme4_formula("lme4"),
        "family": case.family,
        "kind": case.kind,
        "reml": case.reml,
        "nagq": case.nagq,
        "response": case.response,
        "trials": case.lhs.startswith("cbind"),
        "factors": case.factors if case.multi else [],
    }
    spec_dir = Path(spec_dir)
    spec_dir.mkdir(parents=True, exist_ok=True)
    path = spec_dir / f"{case.id}.json"
    path.write_text(json.dumps(spec, indent=1))
    return path


def command(engine, spec_path):
    return ["Rscript", "--vanilla", str(FIT_ONE_R), engine, str(spec_path)]
