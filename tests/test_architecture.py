"""The house rules of docs/ARCHITECTURE (issue #19), read from the source's syntax trees, nothing imported.

(a) No module under ``platform/uda3d`` imports one that imports it back, directly or through others,
    counting imports inside functions too, and no two of its packages do either (a module directly
    under ``uda3d`` counts as a package of its own).
(b) Nothing under ``uda3d.models`` imports ``uda3d.data``: models take tensors.
(c) The library never calls ``print`` outside the CLI: it reports through ``logging``.
"""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "platform" / "uda3d"


def _modules() -> dict[str, Path]:
    """Every module of the library by dotted name (a package by its own name, from ``__init__.py``)."""
    modules = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        parts = ("uda3d", *path.relative_to(LIBRARY).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = _modules()


def _imported(name: str, path: Path) -> set[str]:
    """The library modules ``name`` imports anywhere in its file (relative imports resolved).

    ``from package import thing`` counts as importing ``package.thing`` when that is a module, else
    ``package``; importing ``a.b.c`` runs ``a`` and ``a.b`` first, but only ``a.b.c`` is an edge here (a
    package's ``__init__`` importing its children would otherwise make every package a cycle).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imported(name, path) for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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


def _package(module: str) -> str:
    """``uda3d.data.slices`` -> ``uda3d.data``; a module directly under ``uda3d`` is its own package."""
    return ".".join(module.split(".")[:2])


def test_the_import_walk_sees_the_library():
    assert "uda3d.models.vae2d" in GRAPH and "uda3d.cli" in GRAPH
    assert "uda3d.config" in GRAPH["uda3d.data.slices"]
    assert "uda3d.models.blocks" in GRAPH["uda3d.models.vae2d"]


def test_the_cycle_finder_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back():
    assert _cycles(GRAPH) == []


def test_no_package_imports_one_that_imports_it_back():
    packages: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        mine = _package(module)
        packages.setdefault(mine, set()).update(_package(m) for m in imported if _package(m) != mine)
    assert _cycles(packages) == []


def test_models_never_import_data():
    offenders = {m: sorted(i for i in imported if i == "uda3d.data" or i.startswith("uda3d.data."))
                 for m, imported in GRAPH.items() if m == "uda3d.models" or m.startswith("uda3d.models.")}
    assert {m: i for m, i in offenders.items() if i} == {}


CLI_MODULES = {"uda3d.cli", "uda3d.cli_flags", "uda3d.cli_output", "uda3d.cli_parser"}


def test_the_library_never_prints_outside_the_cli():
    """The library narrates through ``logging`` (and tqdm); only the CLI decides what to print."""
    printing = []
    for name, path in MODULES.items():
        if name in CLI_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(LIBRARY)}:{node.lineno}")
    assert printing == []
