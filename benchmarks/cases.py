"""Benchmark case registry and data sources (the one place cases are defined).

A *dataset* is a named table (real data read from CSV, or simulated data generated
deterministically with ``np.random.default_rng(seed)``); a *case* is one model fitted to one
dataset by one method.  Engines adapt the case to their own syntax (see ``peers/``).

Formulas are written once, lme4-style (``I(age^2)``, ``cbind(s, f)``); ``patsy_formula`` and
the per-case ``lhs`` overrides give the spellings other engines need.

Nothing here imports mlglm, glmm or statsmodels, so the parent process stays small.
"""
from __future__ import annotations

import dataclasses
import os
import re
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

#: Where simulated data are cached as CSV, so R engines read exactly the same rows.
DEFAULT_DATA_CACHE = HERE / "out" / "data"


# ----------------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------------

#: Columns that are categorical (read as strings, never as numbers).
REAL_DATA = {
    "hsb": {"categorical": ["school", "minrty", "sx", "sector"]},
    "contraception": {"categorical": ["woman", "district", "use", "livch", "urban"]},
    "cbpp": {"categorical": ["herd", "period"]},
    "grouseticks": {"categorical": ["INDEX", "BROOD", "YEAR", "LOCATION"]},
    # several grouping factors (bundled with mlglm; exported by references_multi.R)
    "verbagg": {"categorical": ["Gender", "item", "resp", "id", "btype", "situ", "mode", "r2"],
                "bundled": True},
    "penicillin": {"categorical": ["plate", "sample"], "bundled": True},
    "pastes": {"categorical": ["batch", "cask", "sample"], "bundled": True},
    "sleepstudy": {"categorical": ["Subject"], "bundled": True},
    "chem97": {"categorical": ["school", "lea"], "bundled": True},
    "insteval": {"categorical": ["service", "s", "d", "dept"], "bundled": True},
}


def real_data_dir() -> Path:
    """Directory holding hsb.csv, contraception.csv, cbpp.csv, grouseticks.csv.

    Order: $MLGLM_BENCH_DATA, /work/shared/data, the package's bundled mlglm/datasets/.
    """
    cands = []
    if os.environ.get("MLGLM_BENCH_DATA"):
        cands.append(Path(os.environ["MLGLM_BENCH_DATA"]))
    cands += [Path("/work/shared/data"), REPO / "mlglm" / "datasets"]
    for c in cands:
        if (c / "contraception.csv").exists() and (c / "hsb.csv").exists():
            return c
    raise FileNotFoundError(f"no real-data directory found among {[str(c) for c in cands]}")


def load_real(name: str):
    """Read a real dataset and add the derived columns every engine uses."""
    import pandas as pd

    spec = REAL_DATA[name]
    df = pd.read_csv(real_csv(name), dtype={c: str for c in spec["categorical"]})
    if name == "contraception":
        df["y"] = (df["use"] == "Y").astype(float)
        df["livch"] = pd.Categorical(df["livch"], categories=["0", "1", "2", "3+"])
        df["urban"] = pd.Categorical(df["urban"], categories=["N", "Y"])
    elif name == "cbpp":
        df["failures"] = df["size"] - df["incidence"]
        df["period"] = pd.Categorical(df["period"], categories=["1", "2", "3", "4"])
    elif name == "grouseticks":
        df["YEAR"] = pd.Categorical(df["YEAR"], categories=["95", "96", "97"])
    elif name == "verbagg":
        df["y"] = (df["r2"] == "Y").astype(float)
    return df


def real_csv(name: str) -> Path:
    """The CSV of a real dataset (the bundled copy for the several-factor ones)."""
    if REAL_DATA[name].get("bundled"):
        return REPO / "mlglm" / "datasets" / f"{name}.csv"
    return real_data_dir() / f"{name}.csv"


# ----------------------------------------------------------------------------------------------
# Simulated data
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class SimSpec:
    family: str            # "binomial" (Bernoulli rows), "poisson" or "negative_binomial"
    n: int                 # rows
    per_group: int         # rows per group
    q: int                 # random effects per group: 2 -> (1 + x1), 3 -> (1 + x1 + x2)

    @property
    def name(self) -> str:
        return f"sim_{self.family[:3]}_n{_fmt_n(self.n)}_m{self.per_group}_q{self.q}"

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    #: NB2 size of the negative binomial data (Var = mu + mu^2 / theta)
    theta = 2.0

    @property
    def beta(self):
        # (Intercept, x1, x2, x3, z)
        if self.family == "binomial":
            return np.array([-0.5, 0.8, -0.4, 0.3, 0.5])
        return np.array([0.5, 0.3, -0.2, 0.15, 0.25])

    @property
    def sigma(self):
        if self.family == "binomial":
            s = np.array([[0.6, 0.15, 0.05], [0.15, 0.3, 0.05], [0.05, 0.05, 0.2]])
        else:
            s = np.array([[0.2, 0.04, 0.02], [0.04, 0.1, 0.02], [0.02, 0.02, 0.08]])
        return s[: self.q, : self.q]


def _fmt_n(n: int) -> str:
    e = int(round(np.log10(n)))
    return f"1e{e}" if 10 ** e == n else str(n)


def simulate(spec: SimSpec):
    """Rows y, x1, x2, x3 (row-level N(0,1)), z (group-level N(0,1)), g (group id 1..G)."""
    import pandas as pd

    rng = np.random.default_rng(spec.seed)
    G = spec.n // spec.per_group
    g = np.repeat(np.arange(G), spec.per_group)
    x = rng.standard_normal((spec.n, 3))
    z = rng.standard_normal(G)
    b = rng.standard_normal((G, spec.q)) @ np.linalg.cholesky(spec.sigma).T
    beta = spec.beta
    eta = beta[0] + x @ beta[1:4] + z[g] * beta[4] + b[g, 0] + b[g, 1] * x[:, 0]
    if spec.q >= 3:
        eta = eta + b[g, 2] * x[:, 1]
    if spec.family == "binomial":
        y = (rng.random(spec.n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    elif spec.family == "negative_binomial":
        mu, th = np.exp(eta), spec.theta
        y = rng.negative_binomial(th, th / (th + mu)).astype(np.int64)
    else:
        y = rng.poisson(np.exp(eta)).astype(np.int64)
    return pd.DataFrame({"y": y, "x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "z": z[g], "g": g + 1})


SIM_DATASETS = {s.name: s for s in [
    SimSpec(fam, n, m, q)
    for fam in ("binomial", "poisson")
    for (n, m, q) in [(10**4, 100, 2), (10**5, 100, 2), (10**6, 100, 2),
                      (10**5, 10, 2), (10**5, 1000, 2), (10**5, 100, 3)]
] + [SimSpec("negative_binomial", 10**5, 100, 2), SimSpec("negative_binomial", 10**5, 10, 2)]}


@dataclasses.dataclass(frozen=True)
class MultiSimSpec:
    """Several grouping factors: ``crossed`` (factors a and b assigned independently at
    random) or ``nested`` (families of ``per_family`` rows in communities of
    ``families`` families). Gaussian, or Bernoulli rows."""

    family: str
    structure: str          # "crossed" | "nested"
    n: int
    levels: tuple           # crossed: (J_a, J_b); nested: (communities, families per community)
    per_family: int = 2

    @property
    def name(self) -> str:
        return (f"sim_{self.family[:3]}_{self.structure}_n{_fmt_n(self.n)}_"
                f"{'x'.join(map(str, self.levels))}")

    @property
    def seed(self) -> int:
        return zlib.crc32(self.name.encode())

    @property
    def factors(self) -> list:
        return ["a", "b"] if self.structure == "crossed" else ["community", "family"]


def simulate_multi(spec: MultiSimSpec):
    """Rows y, x (N(0,1)) and the factor columns (as strings): crossed -- eta = b0 + 0.5 x
    + a_j (SD 0.6 Gaussian / 1.0 binomial) + b_k (SD 0.4 / 0.5); nested -- communities
    with SD 2, families with SD 1 (issue 12's hard three-level binary case)."""
    import pandas as pd

    rng = np.random.default_rng(spec.seed)
    n = spec.n
    x = rng.standard_normal(n)
    if spec.structure == "crossed":
        Ja, Jb = spec.levels
        a, b = rng.integers(0, Ja, n), rng.integers(0, Jb, n)
        sa, sb = (0.6, 0.4) if spec.family == "gaussian" else (1.0, 0.5)
        eta = 0.2 + 0.5 * x + sa * rng.standard_normal(Ja)[a] + sb * rng.standard_normal(Jb)[b]
        cols = {"a": [f"a{v}" for v in a], "b": [f"b{v}" for v in b]}
    else:
        C, F = spec.levels
        fam = np.arange(n) // spec.per_family
        com = fam // F
        eta = -0.5 + 0.5 * x + 2.0 * rng.standard_normal(C)[com] \
            + 1.0 * rng.standard_normal(C * F)[fam]
        cols = {"community": [f"c{v}" for v in com], "family": [f"f{v % F}" for v in fam]}
    if spec.family == "gaussian":
        y = eta + rng.standard_normal(n)
    else:
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int64)
    return pd.DataFrame({"y": y, "x": x, **cols})


MULTI_SIM = {s.name: s for s in (
    MultiSimSpec("gaussian", "crossed", 10**6, (10**4, 10**3)),
    MultiSimSpec("binomial", "crossed", 10**5, (5000, 200)),
    MultiSimSpec("binomial", "crossed", 10**6, (5000, 200)),
    MultiSimSpec("binomial", "nested", 10**4, (1000, 5)),
)}


def sim_csv_path(name: str, cache: Path | None = None) -> Path:
    return Path(cache or DEFAULT_DATA_CACHE) / f"{name}.csv"


def ensure_sim_csv(name: str, cache: Path | None = None) -> Path:
    """Write the CSV cache of a simulated dataset (exact round trip: %.17g) if missing."""
    path = sim_csv_path(name, cache)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        load_dataset(name).to_csv(tmp, index=False, float_format="%.17g")
        tmp.replace(path)
    return path


def load_dataset(name: str):
    """Data for the Python engines (not timed)."""
    if name in REAL_DATA:
        return load_real(name)
    if name in MULTI_SIM:
        return simulate_multi(MULTI_SIM[name])
    return simulate(SIM_DATASETS[name])


def dataset_csv(name: str, cache: Path | None = None) -> Path:
    """CSV the R engines read."""
    if name in REAL_DATA:
        return real_csv(name)
    return sim_csv_path(name, cache)


def fingerprint(df, response: str) -> dict:
    """Cheap data check reported by every child: same rows in every engine?"""
    out = {"nrows": int(len(df)), "ysum": float(np.asarray(df[response], dtype=float).sum())}
    if "x1" in df:
        out["x1sum"] = round(float(df["x1"].sum()), 6)
    return out


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    dataset: str
    family: str                    # gaussian | binomial | poisson | negative_binomial
    lhs: str                       # lme4 spelling of the response
    fixed: str                     # fixed-effects right-hand side, lme4 spelling
    re: str                        # random-effects terms inside the bar, e.g. "1 + urban"
    group: str
    method: str = "laplace"        # laplace | aghq | reml | ml   (lmm: reml/ml)
    nagq: int = 1
    reps: int | None = None        # cap on repetitions (large cases)
    quick: bool = False
    scaling: str | None = None     # cases sharing a label form a scaling table (time vs rows)
    lhs_by_engine: tuple = ()      # ((engine, lhs), ...) for engines needing another spelling
    random: str | None = None      # several factors: the lme4 random terms, "(1 | a) + (1 | b)"
    vc: tuple = ()                 # statsmodels' spelling: (groups, re_formula, ((name, vc), ...))

    # ---- derived ------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return "lmm" if self.family == "gaussian" else "glmm"

    @property
    def reml(self) -> bool:
        return self.method == "reml"

    @property
    def q(self) -> int:
        return len([t for t in self.re.split("+") if t.strip()])

    @property
    def multi(self) -> bool:
        return self.random is not None

    @property
    def factors(self) -> list:
        """Grouping columns named in the random terms."""
        if not self.multi:
            return [self.group]
        names = re.findall(r"\|\s*([\w:/ ]+)\)", self.random)
        return list(dict.fromkeys(f.strip() for n in names for f in re.split("[:/]", n)))

    @property
    def response(self) -> str:
        m = re.match(r"\s*cbind\(\s*(\w+)", self.lhs)
        return m.group(1) if m else self.lhs.strip()

    @property
    def nrows(self) -> int | None:
        s = SIM_DATASETS.get(self.dataset) or MULTI_SIM.get(self.dataset)
        return s.n if s else None

    def lhs_for(self, engine: str) -> str:
        return dict(self.lhs_by_engine).get(engine, self.lhs)

    def lme4_formula(self, engine: str = "lme4") -> str:
        if self.multi:
            return f"{self.lhs_for(engine)} ~ {self.fixed} + {self.random}"
        return f"{self.lhs_for(engine)} ~ {self.fixed} + ({self.re} | {self.group})"

    def patsy_formula(self, engine: str = "mlglm", with_re: bool = True) -> str:
        """The same model in patsy spelling (``**`` for powers inside I())."""
        fixed = _patsy(self.fixed)
        lhs = _patsy(self.lhs_for(engine))
        if with_re and self.multi:
            return f"{lhs} ~ {fixed} + {_patsy(self.random)}"
        if with_re:
            return f"{lhs} ~ {fixed} + ({_patsy(self.re)} | {self.group})"
        return f"{lhs} ~ {fixed}"

    def describe(self) -> str:
        m = self.method.upper() if self.kind == "lmm" else (
            "Laplace" if self.method == "laplace" else f"AGHQ nagq={self.nagq}")
        return f"{self.lme4_formula()}  [{self.family}, {m}, data={self.dataset}]"


def _patsy(s: str) -> str:
    return re.sub(r"\^", "**", s)


def _sim_cases():
    out = []
    for fam in ("binomial", "poisson"):
        f3 = fam[:3]
        for (n, m) in [(10**4, 100), (10**5, 100), (10**6, 100), (10**5, 10), (10**5, 1000)]:
            ds = SimSpec(fam, n, m, 2).name
            out.append(Case(
                id=f"sim{f3}_n{_fmt_n(n)}_m{m}_laplace", dataset=ds, family=fam, lhs="y",
                fixed="x1 + x2 + x3 + z", re="1 + x1", group="g",
                reps=2 if n >= 10**6 else None,
                quick=(fam == "binomial" and m == 100 and n <= 10**5),
                scaling=f"sim {fam} Laplace, 100 rows/group" if m == 100 else None))
        out.append(Case(
            id=f"sim{f3}_n1e5_m100_q2_aghq11", dataset=SimSpec(fam, 10**5, 100, 2).name,
            family=fam, lhs="y", fixed="x1 + x2 + x3 + z", re="1 + x1", group="g",
            method="aghq", nagq=11))
        if fam == "binomial":     # issue #4: AGHQ q = 2, nagq = 11 at 10^6 rows within 2 GB
            out.append(Case(
                id="simbin_n1e6_m100_q2_aghq11", dataset=SimSpec(fam, 10**6, 100, 2).name,
                family=fam, lhs="y", fixed="x1 + x2 + x3 + z", re="1 + x1", group="g",
                method="aghq", nagq=11, reps=1))
        out.append(Case(
            id=f"sim{f3}_n1e5_m100_q3_aghq7", dataset=SimSpec(fam, 10**5, 100, 3).name,
            family=fam, lhs="y", fixed="x1 + x2 + x3 + z", re="1 + x1 + x2", group="g",
            method="aghq", nagq=7))
    # issue 14: negative binomial (NB2, theta estimated by ML), 10^5 rows, random
    # intercept and slope; 100 and 10 rows per group, Laplace; AGHQ with 11 points
    for m in (100, 10):
        out.append(Case(
            id=f"simneg_n1e5_m{m}_laplace", dataset=SimSpec("negative_binomial", 10**5, m, 2).name,
            family="negative_binomial", lhs="y", fixed="x1 + x2 + x3 + z", re="1 + x1",
            group="g"))
    out.append(Case(
        id="simneg_n1e5_m100_q2_aghq11",
        dataset=SimSpec("negative_binomial", 10**5, 100, 2).name, family="negative_binomial",
        lhs="y", fixed="x1 + x2 + x3 + z", re="1 + x1", group="g", method="aghq", nagq=11))
    return out


def _build_cases():
    cases = []
    for re_, tag in (("1", "ri"), ("1 + cses", "rs")):
        fixed = "1" if re_ == "1" else "cses"
        for meth in ("ml", "reml"):
            cases.append(Case(id=f"hsb_{tag}_{meth}", dataset="hsb", family="gaussian", lhs="mAch",
                              fixed=fixed, re=re_, group="school", method=meth,
                              quick=(tag == "rs")))
    contra_fixed = "age + I(age^2) + urban + livch"
    for re_, tag in (("1", "ri"), ("1 + urban", "rs")):
        cases.append(Case(id=f"contra_{tag}_laplace", dataset="contraception", family="binomial",
                          lhs="y", fixed=contra_fixed, re=re_, group="district", quick=True))
        for k in (7, 11, 25):
            cases.append(Case(id=f"contra_{tag}_aghq{k}", dataset="contraception",
                              family="binomial", lhs="y", fixed=contra_fixed, re=re_,
                              group="district", method="aghq", nagq=k,
                              quick=(tag == "rs" and k == 11)))
    cases.append(Case(id="cbpp_ri_laplace", dataset="cbpp", family="binomial",
                      lhs="cbind(incidence, size - incidence)", fixed="period", re="1",
                      group="herd",
                      # glmm's cbind() takes two column names; patsy takes a two-column LHS
                      lhs_by_engine=(("glmm", "cbind(incidence, failures)"),
                                     ("mlglm", "incidence + failures"))))
    cases.append(Case(id="grouse_ri_laplace", dataset="grouseticks", family="poisson",
                      lhs="TICKS", fixed="YEAR + cHEIGHT", re="1", group="BROOD"))
    cases += _sim_cases()
    cases += _multi_cases()
    return {c.id: c for c in cases}


def _multi_cases():
    """Several grouping factors (issues 11 and 12), with statsmodels' vc_formula spelling
    where its MixedLM can take the model (one constant group for crossed factors)."""
    out = [
        Case(id="penicillin_reml", dataset="penicillin", family="gaussian", lhs="diameter",
             fixed="1", re="", group="", method="reml", random="(1 | plate) + (1 | sample)",
             vc=("ONE", "0", (("plate", "0 + C(plate)"), ("sample", "0 + C(sample)"))),
             quick=True),
        Case(id="pastes_reml", dataset="pastes", family="gaussian", lhs="strength", fixed="1",
             re="", group="", method="reml", random="(1 | batch/cask)",
             vc=("batch", "1", (("cask", "0 + C(cask)"),))),
        Case(id="sleepstudy_reml", dataset="sleepstudy", family="gaussian", lhs="Reaction",
             fixed="Days", re="1 + Days", group="Subject", method="reml"),
        Case(id="chem97_ml", dataset="chem97", family="gaussian", lhs="score", fixed="gcsecnt",
             re="", group="", method="ml", random="(1 | school) + (1 | lea)",
             vc=("lea", "1", (("school", "0 + C(school)"),))),
        Case(id="insteval_ml", dataset="insteval", family="gaussian", lhs="y", fixed="service",
             re="", group="", method="ml", random="(1 | s) + (1 | d) + (1 | dept)",
             quick=True),
        Case(id="simgau_crossed_n1e6_ml", dataset=MultiSimSpec("gaussian", "crossed", 10**6,
                                                               (10**4, 10**3)).name,
             family="gaussian", lhs="y", fixed="x", re="", group="", method="ml",
             random="(1 | a) + (1 | b)", reps=2),
        Case(id="verbagg_laplace", dataset="verbagg", family="binomial", lhs="y",
             fixed="Anger + Gender + btype + situ", re="", group="",
             random="(1 | id) + (1 | item)", quick=True),
        Case(id="grouse3_laplace", dataset="grouseticks", family="poisson", lhs="TICKS",
             fixed="YEAR + cHEIGHT", re="", group="",
             random="(1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", quick=True),
        Case(id="simbin_crossed_n1e5_laplace",
             dataset=MultiSimSpec("binomial", "crossed", 10**5, (5000, 200)).name,
             family="binomial", lhs="y", fixed="x", re="", group="",
             random="(1 | a) + (1 | b)"),
        Case(id="simbin_crossed_n1e6_laplace",
             dataset=MultiSimSpec("binomial", "crossed", 10**6, (5000, 200)).name,
             family="binomial", lhs="y", fixed="x", re="", group="",
             random="(1 | a) + (1 | b)", reps=2),
        Case(id="simbin_nested_n1e4_laplace",
             dataset=MultiSimSpec("binomial", "nested", 10**4, (1000, 5)).name,
             family="binomial", lhs="y", fixed="x", re="", group="",
             random="(1 | community/family)"),
        Case(id="simbin_nested_n1e4_aghq11",
             dataset=MultiSimSpec("binomial", "nested", 10**4, (1000, 5)).name,
             family="binomial", lhs="y", fixed="x", re="", group="", method="aghq", nagq=11,
             random="(1 | community/family)"),
    ]
    return out


CASES: dict[str, Case] = _build_cases()


def select(pattern: str | None = None, quick: bool = False) -> list[Case]:
    """Cases whose id matches any comma-separated regex in ``pattern`` (re.search)."""
    out = [c for c in CASES.values() if (c.quick or not quick)]
    if pattern:
        pats = [re.compile(p.strip()) for p in pattern.split(",") if p.strip()]
        out = [c for c in out if any(p.search(c.id) for p in pats)]
    return out
