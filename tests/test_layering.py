"""The package's modules import one another one way: no cycle, counting the imports
written inside functions too (an import hidden in a function to dodge a cycle is still one).
Imports under `if TYPE_CHECKING:` are left out: they name types for annotations and are
never run.
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


def test_the_package_has_no_import_cycle():
    edges = imports(PACKAGE)
    assert len(edges) > 30 and "superposition.steps" in edges["superposition.training"]
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
