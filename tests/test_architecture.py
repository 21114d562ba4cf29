"""The package's layers (docs/architecture.md): the numerical core imports only numpy, scipy
and itself (DESIGN.md section 3); imports point down the layers, core < design < inference <
results < api < distributed, and down the core's own folders, numerics < spec < fit <
engines < problem; no import cycle, function-local imports counted; the optional Dask engine
is loaded only by its plugin hook; at most a dozen modules directly in ``mlglm/``.

(Modules are split on concepts, not to meet a line count: the former 620-line cap is gone.)"""
import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "mlglm"
ALLOWED_CORE = {"numpy", "scipy", "__future__", "dataclasses", "functools", "math", "typing"}


@pytest.mark.parametrize("path", sorted((PKG / "core").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_core_imports_only_numpy_and_scipy(path):
    tree = ast.parse(path.read_text())
    depth = len(path.relative_to(PKG / "core").parts)     # 1: core/x.py, 2: core/spec/x.py
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:          # relative: must stay inside mlglm.core
                assert node.level <= depth, f"{path.name}:{node.lineno} leaves mlglm.core"
                continue
            roots = [node.module.split(".")[0]]
        else:
            continue
        assert set(roots) <= ALLOWED_CORE, f"{path.name} imports {roots}"


def test_only_the_plugin_hook_loads_the_dask_engine():
    """mlglm.distributed (the optional Dask engine) builds on every other layer, so no
    module outside it imports it, not even inside a function (the validation module
    did, tying 12 modules into an import cycle): the front door loads it on demand by
    importlib (mlglm.api.models.sharded_engine)."""
    for path in sorted(PKG.rglob("*.py")):
        if "distributed" in path.relative_to(PKG).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                parts = (node.module or "").split(".")
                if node.level == 0 and parts[0] != "mlglm":
                    continue                    # another package (dask's own distributed)
                within = parts[1:] if node.level == 0 else parts
                names = [a.name for a in node.names]
                assert "distributed" not in within + names, f"{path.name}:{node.lineno}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    assert not a.name.startswith("mlglm.distributed"), \
                        f"{path.name}:{node.lineno}"


# ------------------------------------------------------------------ the import graph
def _modules(root):
    """Dotted module name -> path, for every module of the package at ``root`` (a
    package's ``__init__`` under the package's name)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(root=PKG):
    """module -> {imported module: first line}, every import counted: at the top, inside
    a function, under ``if TYPE_CHECKING`` alike (a function-local import is still a
    dependency; it only hides a cycle). ``from . import x`` names module x; an import
    of a package's face (``__init__``) is not an edge, as the faces only re-export."""
    mods = _modules(root)
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = graph.setdefault(name, {})
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and mods[target].name != "__init__.py":
                    edges.setdefault(target, node.lineno)
                    break
    return graph


def _cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    """Imports point one way (issue 22): no module reaches itself through imports,
    function-local ones included."""
    graph = import_graph()
    cycles = _cycles(graph)
    detail = [" <-> ".join(c) + ": " + "; ".join(
        f"{a} -> {b} (line {graph[a][b]})" for a in c for b in graph[a] if b in c)
        for c in cycles]
    assert not cycles, "\n".join(detail)


def test_the_cycle_check_sees_function_local_imports(tmp_path):
    """The check finds a cycle hidden in a function (so the test above can fail)."""
    pkg = tmp_path / "mlglm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import g\n")
    (pkg / "b.py").write_text("def g():\n    from . import a\n    return a\n")
    assert _cycles(import_graph(pkg)) == [["mlglm.a", "mlglm.b"]]
    (pkg / "b.py").write_text("def g():\n    return 1\n")
    assert _cycles(import_graph(pkg)) == []


#: The layers, bottom up; a module may import only from its own layer or below.
#: (``datasets``, ``demo``, ``__main__`` and the package face sit on top.)
LAYERS = ("core", "design", "inference", "results", "api", "distributed")
#: The core's folders, bottom up (``problem`` chooses the engine, so it sits on them).
CORE_LAYERS = ("numerics", "spec", "fit", "engines", "problem")


def _rank(module):
    """(layer rank, core-folder rank) of a dotted module name."""
    parts = module.split(".")[1:]
    if not parts or parts[0] not in LAYERS:
        return (len(LAYERS), 0)
    core = CORE_LAYERS.index(parts[1]) if parts[0] == "core" and len(parts) > 1 and \
        parts[1] in CORE_LAYERS else 0
    return (LAYERS.index(parts[0]), core)


def test_imports_point_down_the_layers():
    """Issue 22: an upward need is met by duck typing on the objects passed in (a refit
    through ``type(results.model)``, a replicate through ``results.rebuild``), never by
    an import, not even inside a function."""
    graph = import_graph()
    upward = [f"{a} -> {b} (line {line})" for a, edges in sorted(graph.items())
              for b, line in edges.items() if _rank(b) > _rank(a)]
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "mlglm"
    for d in ("", "core", "core/spec", "results"):
        (pkg / d).mkdir(exist_ok=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "core" / "spec" / "terms.py").write_text("def f():\n    from ...results import view\n")
    (pkg / "results" / "view.py").write_text("from ..core.spec import terms\n")
    graph = import_graph(pkg)
    assert [(a, b) for a, e in graph.items() for b in e if _rank(b) > _rank(a)] == \
        [("mlglm.core.spec.terms", "mlglm.results.view")]


def test_at_most_a_dozen_modules_directly_in_the_package():
    top = sorted(p.name for p in PKG.glob("*.py"))
    assert len(top) <= 12, top
