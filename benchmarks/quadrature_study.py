"""How accurate is each AGHQ rule for the points it spends? (issue 13, part 1)

    python benchmarks/quadrature_study.py [--reps 2] [--out benchmarks/out/quadrature_study]

For every scenario (hard binary with random-intercept SD 2, 4, 8 and a random slope;
Poisson with small counts; the easy simulated regime; the Contraception data) and every
data set, the per-group log-likelihood log L_j of each rule at the true parameters (at
mlglm's AGHQ estimates for Contraception) is compared with the brute-force value of
``quadrature_oracle.py`` (composite Gauss-Legendre over a scanned box, nothing from
mlglm). Rules (``quadrature_rules.py``): ten orientations of the full product grid, pruned
product grids and Smolyak sparse grids. Reported per rule and points per group:

* mean |error| per group (averaged over the groups of all data sets of the scenario);
* mean over data sets of |sum of errors| (the error of the data set's log-likelihood).

The oracle checks itself: on the first ``--check`` groups of every data set the box
integral is repeated with twice the nodes per dimension (largest difference reported),
and a few of the hardest groups are integrated again with scipy's ``dblquad``.
Writes ``study.md`` (the tables) and ``study.json`` under ``--out``.
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
from quadrature_rules import (ORIENTATIONS, orientation, product_rule, pruned_rule,  # noqa: E402
                              rule_loglik, smolyak_rule)

PRODUCT_K = (3, 5, 7, 9, 11, 15, 21)
PRUNED = ((11, 1e-6), (15, 1e-6), (21, 1e-8), (25, 1e-9), (31, 1e-10))
SMOLYAK_L = (4, 6, 8, 10, 12)
PRUNE_ORIENT = ("u-chol", "u-chol-rev", "b-chol")
SMOLYAK_ORIENT = ("u-chol", "u-chol-rev", "u-eig")


def scenarios():
    """name -> (simulator, kwargs); each returns (df, formula, beta, Sigma)."""
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


def contraception_problem():
    """Contraception, (1 + urban | district), at mlglm's AGHQ (11 x 11) estimates."""
    import mlglm
    from mlglm.core.covariance import Sigma_from_vech
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


def all_rules():
    """(label, orientation, points, kind, K or level, eps) for every rule studied."""
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


def evaluate_rules(prob, modes, truth):
    """Per-group errors of every rule: {(label, points, K/L): errors (G,)}."""
    out = {}
    Ms = {o: orientation(o, modes[1], prob.Lambda) for o in ORIENTATIONS}
    for label, o, n, kind, K, eps in all_rules():
        if kind == "product":
            t, lw = product_rule(K, 2)
            v = rule_loglik(prob, modes, Ms[o], t, logw=lw)
        elif kind == "pruned":
            t, lw = pruned_rule(K, 2, eps)
            v = rule_loglik(prob, modes, Ms[o], t, logw=lw)
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


def run(reps, n_check, out_dir):
    records = {}
    meta = {}
    todo = [(name, sim, kw, seed) for name, (sim, kw) in scenarios().items()
            for seed in range(reps)]
    todo.append(("Contraception (1 + urban | district), at the AGHQ estimates", None, None, 0))
    for name, sim, kw, seed in todo:
        t0 = time.time()
        if sim is None:
            prob = contraception_problem()
        else:
            df, formula, beta, Sigma = sim(seed, **kw)
            y, X, Z, g = design(df, formula)
            family = "poisson" if "Poisson" in name else "binomial"
            prob = GroupProblem.from_rows(y, X, Z, g, beta, np.linalg.cholesky(Sigma), family)
        modes = conditional_modes(prob)
        truth, _ = brute_force_loglik(prob, modes, check=False)
        chk = np.arange(min(n_check, truth.size))
        _, err = brute_force_loglik(prob.subset(chk), tuple(a[chk] for a in modes))
        errs = evaluate_rules(prob, modes, truth)
        # hardest groups for the current rule, cross-checked by dblquad
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
        print(f"{name} seed {seed}: {truth.size} groups, {time.time() - t0:.0f} s; oracle "
              f"refinement {np.nanmax(err):.1e}, dblquad {dq:.1e}", flush=True)
    write(records, meta, out_dir)


def summary(records):
    """{scenario: [(label, points, K, mean |e| per group, mean |llf error|)]}."""
    out = {}
    for name, recs in records.items():
        out[name] = [(label, n, K, float(np.mean(r["abs"])), float(np.mean(r["llf"])))
                     for (label, n, K), r in recs.items()]
    return out


def write(records, meta, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summ = summary(records)
    with open(out_dir / "study.json", "w") as fh:
        json.dump({"summary": summ, "meta": meta}, fh, indent=1)
    lines = []
    for name, rows in summ.items():
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
        for lab, n, K, a, l in other:
            lines.append(f"| {lab} | {n} ({K}) | {a:.1e} | {l:.1e} |")
        lines.append("")
    (out_dir / "study.md").write_text("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2, help="data sets per simulated scenario")
    ap.add_argument("--check", type=int, default=20,
                    help="groups per data set whose oracle value is refined (convergence)")
    ap.add_argument("--out", default=str(HERE / "out" / "quadrature_study"))
    args = ap.parse_args(argv)
    run(args.reps, args.check, args.out)


if __name__ == "__main__":
    main()
