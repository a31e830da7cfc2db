"""The package's layout, checked: what a newcomer relies on when finding their way (issue #18).

* no import cycles among the package's modules, counting type-only and
  function-level imports (a cycle held apart by a deferred import is still a
  cycle to a reader);
* every module under 500 lines, and a handful of top-level modules;
* no module reads or writes another module's private attributes: a class's
  ``_name`` is its own business.
"""

from __future__ import annotations

import ast
import contextlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "cocaine_http"
MODULES = sorted(p for p in ROOT.rglob("*.py") if p.name != "_native.py")
MAX_LINES = 500
#: Top-level modules besides ``__init__``, ``__main__`` and ``_version``.
MAX_TOP_LEVEL = 6


def _name(path: pathlib.Path) -> str:
    parts = path.with_suffix("").relative_to(ROOT.parent).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every cocaine_http module *path* imports, wherever the import statement is."""
    tree = ast.parse(path.read_text())
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("cocaine_http")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    names = {_name(p): p for p in MODULES}
    graph = {}
    for name, path in names.items():
        deps = {dep for dep in _imports(path) if dep in names and dep != name}
        if path.name == "__init__.py":  # a package importing its own modules is its door
            deps = {dep for dep in deps if not dep.startswith(name + ".")}
        graph[name] = deps
    assert _cycles(graph) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_module_under_500_lines(path: pathlib.Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines < MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concept"


def test_a_handful_of_top_level_modules() -> None:
    top = sorted(p.stem for p in ROOT.glob("*.py") if p.stem not in {"__init__", "__main__", "_version"})
    assert len(top) <= MAX_TOP_LEVEL, top


def _private_names(tree: ast.AST) -> set[str]:
    """The private names a module defines: methods, classes, attributes it assigns, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            with contextlib.suppress(ValueError):
                names.update(ast.literal_eval(node.value))
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_module_reaches_into_another_modules_privates() -> None:
    trees = {p: ast.parse(p.read_text()) for p in MODULES}
    own = {p: _private_names(t) for p, t in trees.items()}
    everyone: set[str] = set().union(*own.values())
    reaches = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            if not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            # Another module's private (a name ours defines elsewhere and not here).
            if node.attr in everyone and node.attr not in own[path]:
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert reaches == []
