"""The package's layering: no module imports a higher layer, and no imports form a cycle.

The layers follow the data flow (``moodsong/__init__.py`` describes them). Every import counts,
also those inside functions (a lazy import of a higher layer is still a dependency on it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "moodsong"

#: Lowest first. A module may import its own layer and the layers before it.
LAYERS = [
    ["moodsong", "moodsong.errors", "moodsong.fileio"],
    ["moodsong.representation"],
    ["moodsong.corpora"],
    ["moodsong.models", "moodsong.song"],
    ["moodsong.evaluation"],
    ["moodsong.training"],
    ["moodsong.emotion", "moodsong.render"],
    ["moodsong.pipeline"],
    ["moodsong.cli", "moodsong.web", "moodsong.__main__"],
]


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in the file)."""
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                candidates = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in candidates:
                while target and target not in modules:  # a name inside a module -> the module
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("moodsong"):
                    targets.add(target)
        graph[name] = targets
    return graph


def layer_of(module: str, layers=LAYERS) -> int | None:
    best, best_len = None, -1
    for i, prefixes in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def upward_imports(graph: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return [f"{a} (layer {layer_of(a, layers)}) imports {b} (layer {layer_of(b, layers)})"
            for a, targets in sorted(graph.items()) for b in sorted(targets)
            if layer_of(b, layers) > layer_of(a, layers)]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between the first-level parts (``moodsong.models``, ``moodsong.pipeline``, ...)."""
    def top(m):
        return ".".join(m.split(".")[:2])
    out: dict[str, set[str]] = {}
    for a, targets in graph.items():
        out.setdefault(top(a), set()).update(top(b) for b in targets if top(b) != top(a))
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph(module_files())


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if layer_of(m) is None] == []
    assert len(graph) > 60  # the walk found the package


def test_no_module_imports_a_higher_layer(graph):
    assert upward_imports(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []
    assert cycles(package_graph(graph)) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    pkg = tmp_path / "moodsong"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("from .a import x\n")
    (pkg / "models" / "a.py").write_text("def f():\n    from moodsong.pipeline import compose\nx = 1\n")
    (pkg / "models" / "b.py").write_text("from moodsong.models import a\n")
    (pkg / "pipeline.py").write_text("from moodsong.models.b import a\nimport moodsong.models.a\n")
    g = import_graph(module_files(pkg))
    assert g["moodsong.models"] == {"moodsong.models.a"}
    assert g["moodsong.models.a"] == {"moodsong.pipeline"}
    assert upward_imports(g) == ["moodsong.models.a (layer 3) imports moodsong.pipeline (layer 7)"]
    assert cycles(g) == [["moodsong.models", "moodsong.models.a", "moodsong.models.b", "moodsong.pipeline"]]
    assert cycles(package_graph(g)) == [["moodsong.models", "moodsong.pipeline"]]
