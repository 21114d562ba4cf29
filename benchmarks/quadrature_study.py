"""How accurate is each AGHQ rule for the points it spends? (issue 13, part 1)

    python benchmarks/quadrature_study.py [--reps 2] [--out benchmarks/out/quadrature_study]

Every rule is compared, group by group, with the brute-force log L_j of
``quadrature_oracle.py`` (composite Gauss-Legendre over a scanned box, nothing from
mlglm) at the true parameters (at mlglm's AGHQ estimates for Contraception).

* Part A, the scenarios of the issue: hard binary data (3-10 visits per subject at
  time 0, 1, ..., random intercept SD 2, 4 or 8, random slope SD 1 on time, most
  subjects all-0 or all-1), Poisson with small counts (intercept SD 1 or 2), the easy
  simulated regime (20 rows per group, the benchmark cases' covariances) and the
  Contraception data; ``--reps`` data sets each. Rules (``quadrature_rules.py``): eleven
  orientations of the full product grid, product grids pruned of the nodes whose weight
  is below eps x the largest, Smolyak sparse grids of Gauss-Hermite rules.
* Part B, where the orientations part ways: binary data, 300 subjects x 7 visits,
  intercept SD 2, 4, 8 crossed with slope SDs 0.1 to 2 and correlations -0.2 and 0.5;
  the smooth orientations, GLMMadaptive's b-space rule with and without a floor, the
  grid turned by 45 degrees and mean-variance AGHQ at 7, 11 and 15 points per dimension.
* Part C, the rule at a zero slope variance: b-space orientations depend on the
  direction from which (Lambda_21, Lambda_22) tends to 0; spread of the value over
  five directions at slope SDs 1e-3 and 1e-6, GLMMadaptive's rule and the same with
  a floor on the diagonal of Lambda (b-chol-floor).
* Part D, a zero variance and the smaller model: with Sigma = diag(s^2, 0) a q = 2
  rule should give the q = 1 model's value at the same nagq (so likelihood-ratio
  tests of a variance component compare like with like); |difference| at 11 points
  per dimension for the aligned grid, b-chol-floor and the grid turned by 45 degrees.

Reported per rule and points per group: the mean |error| of log L_j over the groups
(and the mean |error| of the data set's log-likelihood, the sum), and in Part B each
rule's error relative to the best rule of the design. The oracle checks itself: on the
first ``--check`` groups of every data set of Part A the box integral is repeated with
twice the nodes per dimension, and the three groups where the old rule errs most are
integrated again with scipy's ``dblquad``. Writes ``study.md`` and ``study.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import integrate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import quadrature_data as qd  # noqa: E402
from quadrature_oracle import (GroupProblem, brute_force_loglik, conditional_modes,  # noqa: E402
                               log_integrand)
from quadrature_rules import (ORIENTATIONS, floor_of, mean_variance_loglik,  # noqa: E402
                              orientation, product_rule, pruned_rule, rule_loglik,
                              smolyak_rule)

PRODUCT_K = (3, 5, 7, 9, 11, 15, 21)
PRUNED = ((11, 1e-6), (15, 1e-6), (21, 1e-8), (25, 1e-9), (31, 1e-10))
SMOLYAK_L = (4, 6, 8, 10, 12)
PRUNE_ORIENT = ("u-chol", "u-chol-rev", "b-chol", "b-chol-floor")
SMOLYAK_ORIENT = ("u-chol", "u-chol-rev", "u-eig", "b-chol-floor")
DESIGN_ORIENT = ("u-chol", "u-chol-rev", "u-sym", "b-chol", "b-chol-floor", "u-chol@45",
                 "u-chol-rev@45")
DESIGN_K = (7, 11, 15)
#: Part B: (intercept SD, slope SD, correlation)
DESIGNS = [(sd0, sd1, corr) for sd0 in (2.0, 4.0, 8.0) for sd1, corr in
           ((0.1, 0.5), (0.3, -0.2), (1.0, -0.2), (1.0, 0.5), (2.0, -0.2))]


def scenarios():
    """Part A: name -> (simulator, kwargs); each returns (df, formula, beta, Sigma)."""
    return {
        "hard binary, SD0 = 2": (qd.hard_binary, dict(sd0=2.0)),
        "hard binary, SD0 = 4": (qd.hard_binary, dict(sd0=4.0)),
        "hard binary, SD0 = 8": (qd.hard_binary, dict(sd0=8.0)),
        "Poisson small counts, SD0 = 1": (qd.poisson_small, dict(sd0=1.0)),
        "Poisson small counts, SD0 = 2": (qd.poisson_small, dict(sd0=2.0)),
        "easy binomial (200 x 20)": (qd.easy_binomial, {}),
        "easy Poisson (200 x 20)": (qd.easy_poisson, {}),
    }


def design(df, formula):
    """(y, X, Z, groups) of the two simulated designs."""
    one = np.ones(len(df))
    if "time" in formula:
        X = np.column_stack([one, df.time, df.trt, df.time * df.trt])
        Z = np.column_stack([one, df.time])
    else:
        X = np.column_stack([one, df.x])
        Z = np.column_stack([one, df.x])
    return df.y.to_numpy(float), X, Z, df.id.to_numpy()


def simulated_problem(sim, kw, seed, family):
    df, formula, beta, Sigma = sim(seed, **kw)
    y, X, Z, g = design(df, formula)
    return GroupProblem.from_rows(y, X, Z, g, beta, np.linalg.cholesky(Sigma), family)


def contraception_problem():
    """Contraception, (1 + urban | district), at mlglm's AGHQ (11 x 11) estimates."""
    import mlglm
    from mlglm.core.spec.covariance import Sigma_from_vech
    df = mlglm.datasets.load_contraception()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mlglm.glmer("y ~ age + I(age**2) + urban + livch + (1 + urban | district)", df,
                          family="binomial", nagq=11)
    m = res.model
    p = m.k_fe
    Lam = np.linalg.cholesky(Sigma_from_vech(np.asarray(res.params)[p:], 2))
    return GroupProblem.from_rows(m.endog, np.asarray(m.exog), np.asarray(m.exog_re),
                                  m.group_codes, np.asarray(res.fe_params), Lam, "binomial")


def orientations(prob, modes, kinds=ORIENTATIONS):
    fl = floor_of(prob)
    return {o: orientation(o, modes[1], prob.Lambda, floor=fl) for o in kinds}


def part_a_rules():
    """(label, orientation, points, kind, K or level, eps) for every rule of Part A."""
    out = []
    for o in ORIENTATIONS:
        for K in PRODUCT_K:
            out.append((f"product {o}", o, K * K, "product", K, None))
    for o in PRUNE_ORIENT:
        for K, eps in PRUNED:
            n = pruned_rule(K, 2, eps)[0].shape[0]
            out.append((f"pruned {o} (eps {eps:g})", o, n, "pruned", K, eps))
    for o in SMOLYAK_ORIENT:
        for L in SMOLYAK_L:
            n = smolyak_rule(L, 2)[0].shape[0]
            out.append((f"Smolyak {o}", o, n, "smolyak", L, None))
    return out


def evaluate_part_a(prob, modes, truth):
    """Per-group errors of every rule of Part A: {(label, points, K/L): errors (G,)}."""
    out = {}
    Ms = orientations(prob, modes)
    for label, o, n, kind, K, eps in part_a_rules():
        if kind == "product":
            v = rule_loglik(prob, modes, Ms[o], *product_rule(K, 2))
        elif kind == "pruned":
            v = rule_loglik(prob, modes, Ms[o], *pruned_rule(K, 2, eps))
        else:
            t, w = smolyak_rule(K, 2)
            v = rule_loglik(prob, modes, Ms[o], t, w=w)
        out[(label, n, K)] = v - truth
    return out


def dblquad_check(prob, modes, truth, groups):
    """|brute force - scipy dblquad| on the given groups (independent cross-check)."""
    u_hat, H, h_hat = modes
    diffs = []
    for j in groups:
        p1 = prob.subset([j])
        S = np.linalg.inv(np.linalg.cholesky(H[j])).T

        def f(t2, t1):
            u = u_hat[j] + S @ np.array([t1, t2])
            return np.exp(log_integrand(p1, u[None, None, :])[0, 0] - h_hat[j])

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            val = integrate.dblquad(f, -np.inf, np.inf, -np.inf, np.inf,
                                    epsabs=1e-11, epsrel=1e-11)[0]
        exact = h_hat[j] + np.log(np.abs(np.linalg.det(S))) + np.log(val)
        diffs.append(abs(exact - truth[j]))
    return float(np.max(diffs))


def run_part_a(reps, n_check, log):
    records, meta = {}, {}
    todo = [(name, sim, kw, seed) for name, (sim, kw) in scenarios().items()
            for seed in range(reps)]
    todo.append(("Contraception (1 + urban | district), at the AGHQ estimates", None, None, 0))
    for name, sim, kw, seed in todo:
        t0 = time.time()
        if sim is None:
            prob = contraception_problem()
        else:
            prob = simulated_problem(sim, kw, seed, "poisson" if "Poisson" in name else
                                     "binomial")
        modes = conditional_modes(prob)
        truth, _ = brute_force_loglik(prob, modes, check=False)
        chk = np.arange(min(n_check, truth.size))
        _, err = brute_force_loglik(prob.subset(chk), tuple(a[chk] for a in modes))
        errs = evaluate_part_a(prob, modes, truth)
        cur = np.abs(errs[("product u-chol", 121, 11)])
        dq = dblquad_check(prob, modes, truth, np.argsort(-cur)[:3])
        m = meta.setdefault(name, {"groups": 0, "datasets": 0, "oracle_refine": 0.0,
                                   "oracle_dblquad": 0.0, "all_same": 0})
        ys, ns = (prob.y * prob.mask).sum(1), (prob.m * prob.mask).sum(1)
        m["groups"] += truth.size
        m["datasets"] += 1
        m["all_same"] += int(np.sum((ys == 0) | (ys == ns))) if prob.family == "binomial" else 0
        m["oracle_refine"] = max(m["oracle_refine"], float(np.nanmax(err)))
        m["oracle_dblquad"] = max(m["oracle_dblquad"], dq)
        for key, e in errs.items():
            r = records.setdefault(name, {}).setdefault(key, {"abs": [], "llf": []})
            r["abs"].extend(np.abs(e).tolist())
            r["llf"].append(abs(float(e.sum())))
        log(f"A | {name} seed {seed}: {truth.size} groups, {time.time() - t0:.0f} s; oracle "
            f"refinement {np.nanmax(err):.1e}, dblquad {dq:.1e}")
    summ = {name: [(label, n, K, float(np.mean(r["abs"])), float(np.mean(r["llf"])))
                   for (label, n, K), r in recs.items()] for name, recs in records.items()}
    return summ, meta


def run_part_b(log):
    """{design label: {rule: [mean |error| at each K of DESIGN_K]}}."""
    out = {}
    for sd0, sd1, corr in DESIGNS:
        t0 = time.time()
        prob = simulated_problem(qd.hard_binary, dict(sd0=sd0, sd1=sd1, corr=corr, sizes=7),
                                 0, "binomial")
        modes = conditional_modes(prob)
        truth, _ = brute_force_loglik(prob, modes, check=False)
        Ms = orientations(prob, modes, DESIGN_ORIENT)
        row = {o: [float(np.mean(np.abs(rule_loglik(prob, modes, M, *product_rule(K, 2))
                                        - truth))) for K in DESIGN_K] for o, M in Ms.items()}
        row["mean-variance (u-chol)"] = [float(np.mean(np.abs(
            mean_variance_loglik(prob, modes, Ms["u-chol"], K) - truth))) for K in DESIGN_K]
        label = f"SD0 {sd0:g}, SD1 {sd1:g}, corr {corr:+g}"
        out[label] = row
        log(f"B | {label}: {time.time() - t0:.0f} s")
    return out


def run_part_c(log):
    """Spread of the K = 11 value over 7 directions of (Lambda_21, Lambda_22) -> 0, hard
    binary data (SD0 8, 7 visits), for GLMMadaptive's rule, without and with the floor."""
    df, formula, beta, Sigma = qd.hard_binary(0, G=300, sizes=7, sd0=8.0)
    y, X, Z, g = design(df, formula)
    out = {}
    for eps in (1e-3, 1e-6):
        vals = {"b-chol": [], "b-chol-floor": []}
        for a in np.linspace(0.0, np.pi, 7)[1:-1]:
            L = np.array([[8.0, 0.0], [eps * np.cos(a), eps * np.sin(a)]])
            prob = GroupProblem.from_rows(y, X, Z, g, beta, L, "binomial")
            modes = conditional_modes(prob)
            Ms = orientations(prob, modes, ("b-chol", "b-chol-floor"))
            for o in vals:
                vals[o].append(float(rule_loglik(prob, modes, Ms[o], *product_rule(11, 2)).sum()))
        out[f"{eps:g}"] = {o: float(np.ptp(v)) for o, v in vals.items()}
        log(f"C | slope SD {eps:g}: spread {out[f'{eps:g}']}")
    return out


def run_part_d(log):
    """|AGHQ(q = 2, Sigma = diag(s^2, 0)) - AGHQ(q = 1, s^2)| summed over groups, K = 11."""
    out = {}
    for label, sim, kw in (("hard binary (SD0 8, 7 visits)", qd.hard_binary,
                            dict(sd0=8.0, sizes=7)),
                           ("easy binomial (200 x 20)", qd.easy_binomial, {})):
        df, formula, beta, Sigma = sim(0, **kw)
        y, X, Z, g = design(df, formula)
        s0 = float(np.sqrt(Sigma[0, 0]))
        p1 = GroupProblem.from_rows(y, X, Z[:, :1], g, beta, np.array([[s0]]), "binomial")
        m1 = conditional_modes(p1)
        v1 = rule_loglik(p1, m1, orientation("u-chol", m1[1], p1.Lambda), *product_rule(11, 1))
        p2 = GroupProblem.from_rows(y, X, Z, g, beta, np.array([[s0, 0.0], [0.0, 0.0]]),
                                    "binomial")
        m2 = conditional_modes(p2)
        Ms = orientations(p2, m2, ("u-chol", "b-chol-floor", "u-chol@45"))
        out[label] = {o: float(abs(np.sum(rule_loglik(p2, m2, M, *product_rule(11, 2)) - v1)))
                      for o, M in Ms.items()}
        log(f"D | {label}: {out[label]}")
    return out


def write(part_a, meta, part_b, part_c, out_dir, part_d=None):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "study.json", "w") as fh:
        json.dump({"part_a": part_a, "meta": meta, "part_b": part_b, "part_c": part_c,
                   "part_d": part_d}, fh, indent=1)
    lines = ["## Part A: rules by points per group\n"]
    for name, rows in part_a.items():
        m = meta[name]
        lines.append(f"### {name}\n")
        lines.append(f"{m['datasets']} data set(s), {m['groups']} groups"
                     + (f" ({m['all_same']} all-0 or all-1)" if m["all_same"] else "")
                     + f"; oracle: refinement <= {m['oracle_refine']:.1e}, dblquad on the "
                     f"hardest groups <= {m['oracle_dblquad']:.1e}.\n")
        lines.append("Mean |error| of log L_j per group (mean |error| of the data set's llf "
                     "in brackets), by rule and points per group:\n")
        prod = [r for r in rows if r[0].startswith("product")]
        labels = list(dict.fromkeys(r[0] for r in prod))
        Ks = sorted({r[1] for r in prod})
        lines.append("| rule | " + " | ".join(str(k) for k in Ks) + " |")
        lines.append("|---|" + "---:|" * len(Ks))
        for lab in labels:
            cells = {r[1]: r for r in prod if r[0] == lab}
            lines.append(f"| {lab} | " + " | ".join(
                f"{cells[k][3]:.1e} ({cells[k][4]:.1e})" for k in Ks) + " |")
        other = [r for r in rows if not r[0].startswith("product")]
        lines.append("\n| rule | points (K or level) | mean abs error per group | "
                     "mean abs llf error |")
        lines.append("|---|---:|---:|---:|")
        for lab, n, K, a, llf in other:
            lines.append(f"| {lab} | {n} ({K}) | {a:.1e} | {llf:.1e} |")
        lines.append("")
    if part_b:
        lines += _part_b_lines(part_b)
    if part_c:
        lines += _part_c_lines(part_c)
    if part_d:
        lines += ["\n## Part D: a zero slope variance against the random-intercept model\n",
                  "|sum over groups of AGHQ(q = 2, Sigma = diag(s^2, 0)) - AGHQ(q = 1)|, "
                  "11 points per dimension:\n",
                  "| data | " + " | ".join(next(iter(part_d.values()))) + " |",
                  "|---|" + "---:|" * len(next(iter(part_d.values())))]
        for label, row in part_d.items():
            lines.append(f"| {label} | " + " | ".join(f"{v:.1e}" for v in row.values()) + " |")
    (out_dir / "study.md").write_text("\n".join(lines) + "\n")


def _part_b_lines(part_b):
    lines = ["## Part B: orientations by design (binary, 300 x 7 visits)\n"]
    rules = list(next(iter(part_b.values())))
    lines.append("Mean |error| of log L_j per group at " + ", ".join(
        f"{k * k}" for k in DESIGN_K) + " points per group:\n")
    lines.append("| design | " + " | ".join(rules) + " |")
    lines.append("|---|" + "---|" * len(rules))
    for label, row in part_b.items():
        lines.append(f"| {label} | " + " | ".join(
            " / ".join(f"{e:.1e}" for e in row[r]) for r in rules) + " |")
    # error relative to the best rule of each design (121 points), over Part A and B
    ratios = {r: [] for r in rules}
    for row in part_b.values():
        best = min(row[r][1] for r in rules)
        for r in rules:
            ratios[r].append(row[r][1] / best)
    lines.append("\nError at 121 points relative to the best rule of the design (Part B):\n")
    lines.append("| rule | worst | geometric mean | designs where best |")
    lines.append("|---|---:|---:|---:|")
    for r in rules:
        x = np.array(ratios[r])
        lines.append(f"| {r} | {x.max():.1f} | {np.exp(np.mean(np.log(x))):.2f} | "
                     f"{int(np.sum(x == 1.0))} |")
    return lines


def _part_c_lines(part_c):
    lines = ["\n## Part C: a zero slope variance approached from 5 directions\n"]
    lines.append("Spread (max - min) of the 11 x 11 log-likelihood, hard binary (SD0 8, 7 "
                 "visits), slope SD eps in directions 30..150 degrees:\n")
    lines.append("| slope SD | GLMMadaptive's b-space rule | with the floor (b-chol-floor) |")
    lines.append("|---:|---:|---:|")
    for eps, v in part_c.items():
        lines.append(f"| {eps} | {v['b-chol']:.2e} | {v['b-chol-floor']:.2e} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="data sets per scenario of Part A")
    ap.add_argument("--check", type=int, default=20,
                    help="groups per data set whose oracle value is refined (convergence)")
    ap.add_argument("--parts", default="ABCD")
    ap.add_argument("--out", default=str(HERE / "out" / "quadrature_study"))
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    part_a, meta = run_part_a(args.reps, args.check, log) if "A" in args.parts else ({}, {})
    part_b = run_part_b(log) if "B" in args.parts else {}
    part_c = run_part_c(log) if "C" in args.parts else {}
    part_d = run_part_d(log) if "D" in args.parts else {}
    write(part_a, meta, part_b, part_c, args.out, part_d)


if __name__ == "__main__":
    main()
