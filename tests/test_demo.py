"""``python -m mlglm demo`` (mlglm/demo.py, mlglm/__main__.py).

Numbers the printed text must contain come from the lecture (Barron, "Multilevel
Models", Trinity Term 2018; /work/shared/seed/000_d738aed55a65211f.txt): null model
intercept 12.64, school SD 2.93, residual SD 6.26, ICC .18; variance explained .69 and
remaining ICC .06 with meanses. The cross-level fixed effects are lme4's on the bundled
data (tests/reference/lmm_hsb.json, "full_reml", from tests/reference/references_lmm.R).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from mlglm.__main__ import main  # noqa: E402
from mlglm.demo import run_demo  # noqa: E402

FIGURES = ["pooling_lines_hsb.png", "pooling_shrinkage_hsb.png",
           "caterpillar_contraception.png", "effect_age_contraception.png"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--out", str(out)])
    return rc, buf.getvalue(), out


def test_demo_returns_zero_and_prints_lecture_numbers(demo_run):
    rc, text, _ = demo_run
    assert rc == 0
    for s in ("12.64", "2.93", "6.26", ".18", ".69", ".06"):  # lecture, see module docstring
        assert s in text, s
    assert "ICC = tau00 / (tau00 + sigma^2) = 8.61 / (8.61 + 39.15) = 0.18" in text
    assert "(8.61 - 2.64) / 8.61 = 0.69" in text
    assert "Remaining ICC = 2.64 / (2.64 + 39.16) = 0.06" in text
    # random slope: cses 2.19, tau00 8.68, tau11 .69, tau01 .05 (lecture; lme4 slope_reml)
    assert "cses effect 2.19" in text
    assert "tau00 = 8.68" in text and "tau11 = 0.69" in text and "tau01 = 0.05" in text
    # cross-level model, lme4 full_reml rounded: 12.13, 5.33, 2.95, 1.23, 1.04, -1.64;
    # SDs sqrt(2.3796) = 1.54, sqrt(0.1010) = 0.32
    assert ("Intercept 12.13, meanses 5.33, cses 2.95, sector[T.Catholic] 1.23, "
            "meanses:cses 1.04, sector[T.Catholic]:cses -1.64") in text
    assert "intercept 1.54, cses 0.32" in text
    # the GLMM part
    assert "AGHQ nagq=11" in text and "binomial latent scale (logit)" in text
    assert "No-pooling fits that failed" in text
    assert text.count("MixedGLM results") >= 5  # each model's summary()


def test_demo_writes_figures(demo_run):
    _, text, out = demo_run
    for name in FIGURES:
        path = Path(out) / name
        assert path.exists() and path.stat().st_size > 10_000, name
        assert str(path) in text


def test_demo_numbers(tmp_path):
    with open(tmp_path / "log.txt", "w") as log:
        res = run_demo(out=str(tmp_path), plots=False, file=log)
    n = res["numbers"]
    # lme4 REML (lmm_hsb.json null_reml / meanses_reml / slope_reml)
    assert n["tau00"] == pytest.approx(8.61402483714869, rel=1e-4)
    assert n["sigma2"] == pytest.approx(39.1483218909986, rel=1e-4)
    assert n["tau00_meanses"] == pytest.approx(2.63887823833871, rel=1e-4)
    assert n["tau01"] == pytest.approx(0.0467883769005967, abs=1e-3)
    assert res["figures"] == []
    assert n["llf_aghq"] >= n["llf_laplace"] - 1.0
    # profile interval of the latent ICC (tests/test_intervals.py checks the machinery
    # against lme4): it brackets the estimate
    lo, hi = n["icc_latent_ci"]
    assert 0 < lo < n["icc_latent"] < hi < 1
    lo, hi = n["profile_sd_urban"]
    assert 0 < lo < hi
    # three levels, Chem97 (multi_open.json chem97_nested, lme4 lmer ML: VarCorr school
    # 1.1661559699807, lea 0.0135957882691492, residual 5.15407289486462)
    tau_s, tau_l, sig2 = 1.1661559699807, 0.0135957882691492, 5.15407289486462
    total = tau_s + tau_l + sig2
    assert n["chem_tau_school"] == pytest.approx(tau_s, rel=1e-4)
    assert n["chem_icc_lea"] == pytest.approx(tau_l / total, rel=1e-3)
    assert n["chem_icc_school"] == pytest.approx((tau_s + tau_l) / total, rel=1e-4)


def test_demo_text_only_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = run_demo(out=str(tmp_path / "figs"), plots=True)
    text = capsys.readouterr().out
    assert "matplotlib is not installed" in text and "pip install 'mlglm[plot]'" in text
    assert res["figures"] == [] and not (tmp_path / "figs").exists()
    assert "0.18" in text


def test_main_without_command(capsys):
    assert main([]) == 1
    assert "demo" in capsys.readouterr().out


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "mlglm", "demo", "--help"], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert out.returncode == 0 and "--out" in out.stdout


def test_version(capsys):
    """``mlglm --version`` prints the package version (issue 10) and exits 0, as
    argparse's version action does."""
    import mlglm
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"mlglm {mlglm.__version__}"
    out = subprocess.run([sys.executable, "-m", "mlglm", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == f"mlglm {mlglm.__version__}"


def test_demo_output_is_not_tracked():
    """Issue 21: .gitignore missed the demo's default output folder, and its figures were
    committed. The folder is ignored and nothing under it is tracked."""
    root = Path(__file__).resolve().parents[1]
    ignore = root / ".gitignore"
    if not ignore.exists():
        pytest.skip("not a source checkout")
    assert "mlglm_demo_out/" in ignore.read_text().splitlines()
    try:
        tracked = subprocess.run(["git", "ls-files", "mlglm_demo_out"], cwd=root,
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available here")
    assert tracked == ""
