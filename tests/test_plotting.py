"""Plots (mlglm/results/plotting.py) and the random-effects table (mlglm/results/ranef.py).

Figures are drawn with the Agg backend and saved to pytest's tmp_path; set
MLGLM_PLOT_DIR=/some/dir to keep copies for looking at them.
"""
from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import statsmodels.formula.api as smf  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from scipy import stats  # noqa: E402

import mlglm  # noqa: E402
from mlglm.results.plotting import caterpillar, effect_plot  # noqa: E402
from mlglm.api.pooling import compare_pooling  # noqa: E402
from mlglm.results.ranef import random_effects_frame  # noqa: E402

GLMM = "y ~ age + I(age**2) + urban + livch + (1 + urban | district)"


def _save(fig, tmp_path, name):
    path = tmp_path / name
    fig.savefig(path, dpi=80)
    keep = os.environ.get("MLGLM_PLOT_DIR")
    if keep:
        os.makedirs(keep, exist_ok=True)
        fig.savefig(os.path.join(keep, name), dpi=110)
    plt.close(fig)
    assert path.stat().st_size > 5000  # a real image, not an empty canvas
    return path


@pytest.fixture(scope="module")
def hsb():
    return mlglm.datasets.load_hsb()


@pytest.fixture(scope="module")
def slope_fit(hsb):
    return mlglm.lmer("mAch ~ cses + (1 + cses | school)", hsb)


@pytest.fixture(scope="module")
def con():
    return mlglm.datasets.load_contraception()


@pytest.fixture(scope="module")
def glmm(con):
    return mlglm.glmer(GLMM, con, family="binomial")


# ------------------------------------------------------------------ ranef
def test_random_effects_frame(slope_fit):
    df = random_effects_frame(slope_fit, level=0.9)
    assert list(df.columns) == ["group", "term", "estimate", "se", "lower", "upper"]
    assert len(df) == 160 * 2
    row = df[(df["group"] == "1224") & (df["term"] == "cses")].iloc[0]
    assert row["estimate"] == pytest.approx(slope_fit.random_effects["1224"]["cses"])
    se = np.sqrt(slope_fit.random_effects_cov["1224"].loc["cses", "cses"])
    assert row["se"] == pytest.approx(se)
    z = stats.norm.ppf(0.95)
    assert row["lower"] == pytest.approx(row["estimate"] - z * se)
    assert row["upper"] == pytest.approx(row["estimate"] + z * se)
    with pytest.raises(ValueError):
        random_effects_frame(slope_fit, level=1.5)


def test_random_effects_frame_statsmodels(hsb):
    res = smf.mixedlm("mAch ~ 1", hsb, groups="school").fit()
    df = random_effects_frame(res)
    assert len(df) == 160 and df["se"].gt(0).all()


# ------------------------------------------------------------- caterpillar
def test_caterpillar_all_terms(glmm, tmp_path):
    fig = caterpillar(glmm)
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2
    assert axes[0].get_title() == "Intercept (district)"
    assert len(axes[0].get_yticklabels()) == 60
    # sorted by estimate, bottom to top
    x = axes[1].lines[0].get_xdata()
    assert np.all(np.diff(x) >= 0)
    _save(fig, tmp_path, "caterpillar_contraception.png")


def test_caterpillar_one_term_into_ax(slope_fit, tmp_path):
    fig, ax = plt.subplots()
    out = caterpillar(slope_fit, term="cses", ax=ax)
    assert out is fig and ax.get_title() == "cses"
    _save(fig, tmp_path, "caterpillar_hsb_cses.png")
    with pytest.raises(ValueError, match="not a random-effect term"):
        caterpillar(slope_fit, term="ses")


# ----------------------------------------------------------------- effect
def test_effect_plot_matches_predict(glmm, con, tmp_path):
    fig = effect_plot(glmm, "age")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    line = ax.lines[0]
    grid, mu = line.get_xdata(), line.get_ydata()
    new = pd.DataFrame({"age": grid,
                        "urban": pd.Categorical(["N"] * len(grid), categories=["N", "Y"]),
                        "livch": pd.Categorical(["0"] * len(grid),
                                                categories=["0", "1", "2", "3+"])})
    expected = glmm.predict(exog=new, conditional=False)
    np.testing.assert_allclose(mu, expected, rtol=1e-10)
    assert grid.min() == pytest.approx(con["age"].min())
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() < mu.min() and band.max() > mu.max()
    assert ax.get_ylabel() == "Pr(y = 1)"
    _save(fig, tmp_path, "effect_age_contraception.png")


def test_effect_plot_at_and_categorical(glmm, tmp_path):
    fig = effect_plot(glmm, "age", at={"urban": "Y", "livch": "2"})
    assert "urban=Y" in fig.axes[0].get_title()
    _save(fig, tmp_path, "effect_age_urban.png")
    fig = effect_plot(glmm, "livch")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0", "1", "2", "3+"]
    _save(fig, tmp_path, "effect_livch.png")
    with pytest.raises(ValueError):
        effect_plot(glmm, "district")


def test_effect_plot_gaussian(slope_fit, tmp_path):
    fig = effect_plot(slope_fit, "cses")
    ax = fig.axes[0]
    x, y = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    b = slope_fit.fe_params
    np.testing.assert_allclose(y, b["Intercept"] + b["cses"] * x, rtol=1e-12)
    _save(fig, tmp_path, "effect_cses_hsb.png")


# ---------------------------------------------------------------- pooling
@pytest.fixture(scope="module")
def pc_hsb(hsb):
    return compare_pooling("mAch ~ cses", hsb, groups="school", re_formula="~cses")


def test_pooling_lines(pc_hsb, tmp_path):
    fig = pc_hsb.plot()
    assert isinstance(fig, Figure)
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 6
    sizes = [int(a.get_title().split("n = ")[1].rstrip(")")) for a in axes]
    assert sizes == sorted(sizes) and sizes[0] == 14 and sizes[-1] == 67
    assert all(len(a.lines) == 3 for a in axes)
    _save(fig, tmp_path, "pooling_lines_hsb.png")


def test_pooling_lines_with_failures(con, tmp_path):
    pc = compare_pooling("y ~ urban + age", con, groups="district", family="binomial",
                         re_formula="~urban")
    failed = pc.failed["group"].iloc[0]
    fig = pc.plot(groups=["1", failed], x="age")
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2
    assert len(axes[0].lines) == 3 and len(axes[1].lines) == 2  # no no-pooling line
    assert "no pooling failed" in axes[1].texts[0].get_text()
    _save(fig, tmp_path, "pooling_lines_contraception.png")
    # age is the only numeric covariate, so it is the default x
    fig = pc.plot(groups=["1"])
    assert fig.axes[0].get_xlabel() == "age"
    plt.close(fig)


def test_pooling_lines_needs_x_with_two_covariates(tmp_path):
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 25).astype(str)
    x1, x2 = rng.normal(size=g.size), rng.normal(size=g.size)
    y = 2 + x1 + 0.5 * x2 + rng.normal(size=12)[g.astype(int)] + rng.normal(size=g.size)
    pc = compare_pooling("y ~ x1 + x2", pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g}),
                         groups="g")
    with pytest.raises(ValueError, match="give x="):
        pc.plot()
    fig = pc.plot(x="x2", groups=["0", "5", "11"])
    assert [a.get_xlabel() for a in fig.axes if a.get_visible()] == ["x2"] * 3
    _save(fig, tmp_path, "pooling_lines_simulated.png")


def test_pooling_shrinkage(pc_hsb, tmp_path):
    fig = pc_hsb.plot(kind="shrinkage")
    axes = [a for a in fig.axes if a.get_visible()]
    assert len(axes) == 2
    _save(fig, tmp_path, "pooling_shrinkage_hsb.png")
    fig, ax = plt.subplots()
    assert pc_hsb.plot(kind="shrinkage", term="cses", ax=ax) is fig
    hline = [ln.get_ydata()[0] for ln in ax.lines]
    assert pc_hsb.shrinkage.loc["cses", "complete_pooling"] == pytest.approx(hline[0])
    plt.close(fig)


# ------------------------------------------------------- without matplotlib
def test_missing_matplotlib_message(glmm, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'mlglm\[plot\]'"):
        caterpillar(glmm)


def test_plots_accept_statsmodels_mixedlm(hsb, tmp_path):
    res = smf.mixedlm("mAch ~ cses", hsb, groups="school").fit()
    fig = caterpillar(res)
    assert fig.axes[0].get_title() == "Intercept (school)"
    _save(fig, tmp_path, "caterpillar_statsmodels.png")
    fig = effect_plot(res, "cses")
    x, y = fig.axes[0].lines[0].get_xdata(), fig.axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(y, res.fe_params["Intercept"] + res.fe_params["cses"] * x)
    assert fig.axes[0].get_ylabel() == "mean mAch"
    _save(fig, tmp_path, "effect_statsmodels.png")


@pytest.mark.parametrize("kind", ["shrinkage", "lines"])
def test_saved_figures_keep_the_legend_inside(pc_hsb, kind):
    """Issue 10: a saved shrinkage plot cut its legend off (four entries in one row,
    wider than the 5-inch figure). After saving, the legend's box lies within the
    figure's, for a one-panel shrinkage plot and a one-group lines plot."""
    import io
    kw = {"term": "cses"} if kind == "shrinkage" else {"groups": ["1224"]}
    fig = pc_hsb.plot(kind=kind, **kw)
    fig.savefig(io.BytesIO(), format="png")
    box, frame = fig.legends[0].get_window_extent(), fig.bbox
    assert frame.x0 <= box.x0 and box.x1 <= frame.x1, (box, frame)
    assert frame.y0 <= box.y0 and box.y1 <= frame.y1, (box, frame)
    assert len(fig.legends[0].get_texts()) == (4 if kind == "shrinkage" else 3)
    plt.close(fig)


# ------------------------------------------------- figures shown once in a notebook
_NOTEBOOK_CELLS = [
    "import mlglm\nd = mlglm.datasets.load_sleepstudy()\n"
    "res = mlglm.lmer('Reaction ~ Days + (Days | Subject)', d)",
    "mlglm.caterpillar(res)",
    "mlglm.compare_pooling('Reaction ~ Days', d, groups='Subject').plot()",
    "fig = mlglm.caterpillar(res)",
    "fig",
]


def test_notebook_draws_each_figure_once():
    """Issue 21: in a notebook caterpillar() and PoolingComparison.plot() figures
    appeared twice -- drawn by the inline backend at the end of the cell and again as
    the returned Figure. Executed in a real kernel (inline backend): one image per
    cell that ends with a plotting call, none for an assignment, one for the variable."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c)
                                         for c in _NOTEBOOK_CELLS])
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": root}}).execute()
    images = [sum("image/png" in o.get("data", {}) for o in c.outputs) for c in nb.cells]
    assert images == [0, 1, 1, 0, 1]


def test_figures_close_only_under_the_inline_backend(slope_fit, monkeypatch):
    """Closed before returning when the inline backend would draw them again; left open
    elsewhere (plt.show()/plt.savefig() find them) and when drawn into the caller's axes."""
    import mlglm.results.plotting as mp
    fig = caterpillar(slope_fit)
    assert plt.fignum_exists(fig.number)                 # Agg: open
    plt.close(fig)
    monkeypatch.setattr(mp, "_inline_backend", lambda: True)
    fig = caterpillar(slope_fit)
    assert not plt.fignum_exists(fig.number) and len(fig.axes) == 2
    own, ax = plt.subplots()
    assert effect_plot(slope_fit, "cses", ax=ax) is own and plt.fignum_exists(own.number)
    plt.close(own)
