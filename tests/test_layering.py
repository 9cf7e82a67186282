"""The package's modules import one another one way: no cycle, counting the imports
written inside functions too (an import hidden in a function to dodge a cycle is still one),
and no import from a lower layer of LAYERS into a higher one. Imports under
`if TYPE_CHECKING:` are left out: they name types for annotations and are never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import superposition

PACKAGE = Path(superposition.__file__).parent


def imports(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its text, by dotted name."""
    root = package.name
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found = [f"{target}.{alias.name}" for alias in node.names] + [target]
            elif isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            else:
                continue
            for target in found:
                # `from . import x` names the module x; `from .x import y` the module x
                while target and target not in modules and target.startswith(root):
                    target = target.rpartition(".")[0]
                if target in modules and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


# The layers, lowest first: a module may import its own layer's modules and lower ones'.
# A module's layer is that of the longest name here that it starts with.
LAYERS = [
    ("core", ["errors", "limits", "registry"]),
    ("data", ["data"]),
    ("units", ["config", "files", "models", "saes", "saes.kind", "saes.relu", "saes.topk", "saes.jumprelu", "saes.batchtopk", "saes.matryoshka"]),
    ("kernels", ["kernels"]),
    ("training", ["training"]),
    ("analysis", ["analysis"]),
    ("outputs", ["labels", "plots", "runs"]),
    ("saes", ["saes.config", "saes.sources", "saes.saelens", "saes.training", "saes.runs", "saes.plots"]),
    ("tools", ["tools"]),
    ("sweeps", ["sweeps"]),
    ("experiments", ["report", "experiments"]),
    ("entry", ["cli", "__main__", ""]),
]


def layer_of(module: str) -> int:
    """The index in LAYERS of a module (a dotted name below the package)."""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(prefix) > best:
                best, found = len(prefix), index
    return found


def upward(edges: dict[str, set[str]], root: str) -> list[str]:
    """Every import of a module in a higher layer, as 'a (layer) -> b (layer)'."""
    def short(name: str) -> str:
        return name.removeprefix(root).removeprefix(".")

    return sorted(
        f"{short(a)} ({LAYERS[layer_of(short(a))][0]}) -> {short(b)} ({LAYERS[layer_of(short(b))][0]})"
        for a, targets in edges.items()
        for b in targets
        if layer_of(short(b)) > layer_of(short(a))
    )


def test_no_module_imports_a_higher_layer():
    assert upward(imports(PACKAGE), "superposition") == []


def test_an_upward_import_is_found():
    edges = {"superposition.training.loop": {"superposition.training.steps"}, "superposition.data.stream": {"superposition.runs"}}
    assert upward(edges, "superposition") == ["data.stream (data) -> runs (outputs)"]


def test_the_package_has_no_import_cycle():
    edges = imports(PACKAGE)
    assert len(edges) > 30 and "superposition.training.steps" in edges["superposition.training.loop"]
    assert cycles(edges) == []


def test_a_planted_cycle_is_found(tmp_path):
    package = tmp_path / "planted"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .inner import b\n")
    (package / "inner" / "b.py").write_text("def f():\n    from ..c import g\n")  # hidden in a function
    (package / "c.py").write_text("import planted.a\n")
    (package / "d.py").write_text("from . import a\n")  # imports into the cycle, not part of it
    (package / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import f\n")
    (package / "f.py").write_text("from . import e\n")  # a cycle in annotations only: never run
    assert cycles(imports(package)) == [["planted.a", "planted.c", "planted.inner.b"]]
