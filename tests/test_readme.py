"""The README's Python examples run as written (in order, one namespace)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(_blocks()) >= 3


def test_readme_examples_run(monkeypatch, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in _blocks():
            exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README
    assert "boot" in ns and ns["boot"].n_failed == 0
