"""docs/first_half_hour.ipynb runs from top to bottom and shows the right numbers.

The notebook (a statsmodels user's and an lme4 user's first half hour, issue 10) is
executed in a fresh Jupyter kernel by nbclient, on the bundled data only. Its displayed
outputs are checked where they carry the point of the cell (the summary renders as an
HTML table, VarCorr prints lme4's layout); its numbers are read back from the kernel
after the run and checked against references: the Contraception random-slope Laplace
log-likelihood of glmmTMB (glmm_open.json, references.R), lmer's fixed effects for the
HSB cross-level model (tightly converged lmer, LMER_TIGHT["full_reml"] of
tests/test_references.py: lmm_hsb.json's own fit of that model stopped early), lme4's
anova chi-square
(tests/test_compare.py), and statsmodels' own rules for conf_int, t_test and wald_test
applied to the notebook's estimates.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tolerances import LLF_MAX_SHORTFALL, LMM_FE_RTOL

nbformat = pytest.importorskip("nbformat", reason="pip install '.[test]' (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="pip install '.[test]' (nbclient)")
pytest.importorskip("ipykernel", reason="pip install '.[test]' (ipykernel)")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "first_half_hour.ipynb"
Z95 = stats.norm.ppf(0.975)

#: read back from the kernel after the last cell
PROBE = """
import json as _json
print(_json.dumps({
    "llf": res.llf, "fe": list(res.fe_params), "bse": list(res.bse_fe),
    "names": list(res.model.exog_names), "odds": odds.to_numpy().tolist(),
    "pred_pop": list(res.predict(new)),
    "pred_cond": list(res.predict(new, conditional=True, allow_new_levels=True)),
    "lm_fe": dict(lm.fe_params), "lm_bse": dict(lm.bse_fe),
    "lm_cov": lm.cov_params().to_numpy().tolist(), "lm_names": list(lm.params.index),
    "n_ranef": len(re["school"]), "n_coef": len(mlglm.coef(lm)["school"]),
    "anova_chisq": float(mlglm.anova(g_ri, g)["Chisq"].iloc[1]),
    "boot_rows": len(stats), "boot_sd": stats.std().tolist(),
    "boot_or": list(stats["OR urban"]),
    "boot_or_direct": [float(np.exp(boot.replicates["urban[T.Y]"].iloc[i]))
                       for i in range(len(stats))],
}))
"""


@pytest.fixture(scope="module")
def run():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    probe = json.loads("".join(o.get("text", "") for o in nb.cells[-1].outputs))
    cells = {tag: c for c in nb.cells for tag in c.metadata.get("tags", [])}
    return cells, probe


def _text(cell):
    out = []
    for o in cell.outputs:
        out.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(out)


def _html(cell):
    return "\n".join(o.get("data", {}).get("text/html", "") for o in cell.outputs)


def test_statsmodels_half(run, glmm_ref):
    cells, v = run
    best = max(f["loglik"] for f in glmm_ref["contra_rs"]["fits"] if f["method"] == "laplace")
    assert v["llf"] >= best - LLF_MAX_SHORTFALL and v["llf"] == pytest.approx(best, abs=1e-3)
    assert "<table" in _html(cells["summary"]) and "use[Y]" in _html(cells["summary"])
    fe, se = np.array(v["fe"]), np.array(v["bse"])
    odds = np.array(v["odds"])
    np.testing.assert_allclose(odds[:, 0], np.exp(fe - Z95 * se), rtol=1e-10)
    np.testing.assert_allclose(odds[:, 1], np.exp(fe - Z95 * se) * np.exp(2 * Z95 * se),
                               rtol=1e-10)
    assert "profile" in _text(cells["intervals"]) and "cor(Intercept, urban[T.Y])" in \
        _text(cells["intervals"])
    # woman C lives in a district the fit never saw: population level
    assert v["pred_cond"][2] == pytest.approx(v["pred_pop"][2], rel=1e-14)
    assert v["pred_cond"][0] != pytest.approx(v["pred_pop"][0], rel=1e-3)
    frame = _text(cells["get_prediction"])
    assert "mean_ci_lower" in frame and "woman C" in frame


def test_lme4_half(run):
    from test_references import LMER_TIGHT
    cells, v = run
    ref = LMER_TIGHT["full_reml"]["fixef"]
    names = {"(Intercept)": "Intercept", "sectorCatholic": "sector[T.Catholic]",
             "meanses:cses": "meanses:cses", "cses:sectorCatholic": "sector[T.Catholic]:cses"}
    for r_name, value in ref.items():
        assert v["lm_fe"][names.get(r_name, r_name)] == pytest.approx(value, rel=LMM_FE_RTOL)
    # the tests on the lmer fit: z and chi-square from cov_params() of the fixed effects
    text = _text(cells["tests"])
    z = v["lm_fe"]["cses"] / v["lm_bse"]["cses"]
    assert f"{z:.3f}" in text
    names = v["lm_names"]
    i, j = names.index("meanses:cses"), names.index("sector[T.Catholic]:cses")
    b = np.array([v["lm_fe"]["meanses:cses"], v["lm_fe"]["sector[T.Catholic]:cses"]])
    V = np.array(v["lm_cov"])[np.ix_([i, j], [i, j])]
    chi2 = float(b @ np.linalg.solve(V, b))
    shown = float(re.search(r"Wald test \(chi2\): statistic=([0-9.eE+-]+)", text).group(1))
    assert shown == pytest.approx(chi2, rel=1e-10)
    vc = _text(cells["varcorr"]).splitlines()
    assert vc[0].split() == ["Groups", "Name", "Std.Dev.", "Corr"]
    assert vc[-1].split()[0] == "Residual"
    assert v["n_ranef"] == v["n_coef"] == 160
    assert "cond. SD" in _text(cells["ranef"])
    # lme4: anova(m2, m1) on these models gives Chisq 12.11797 (tests/test_compare.py)
    assert v["anova_chisq"] == pytest.approx(12.11797, abs=1e-3)
    assert "Models:" in _text(cells["glmer"])


def test_bootstrap_half(run):
    _, v = run
    assert v["boot_rows"] == 40
    assert all(sd > 0 for sd in v["boot_sd"])            # every statistic varies
    np.testing.assert_allclose(v["boot_or"], v["boot_or_direct"], rtol=1e-12)
