"""The experiment's modules import one way: no import cycle runs through a module of
``nasflow.experiment`` (walking it and the root modules ``nasflow._*``), and only the
facade imports ``Experiment``.

Read from the source (every ``import`` in a file counts, also those under
``TYPE_CHECKING`` and inside functions): a cycle that only type checking or a lazy import
hides is still two modules that need each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nasflow

SRC = Path(nasflow.__file__).parent
PACKAGE = "nasflow.experiment"
FACADE = "nasflow.experiment._experiment"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """The root modules and the experiment package's modules."""
    paths = [p for p in SRC.glob("_*.py") if p.name != "__init__.py"]
    paths += sorted((SRC / "experiment").glob("*.py"))
    return {_module_name(p): p for p in paths}


def _imports(path: Path, known: set[str]) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that ends where it starts), or ``None``."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for nxt in sorted(edges.get(node, ())):
            cycle = visit(nxt, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(edges):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_the_walk_sees_the_experiment_modules() -> None:
    edges = graph()
    assert {FACADE, f"{PACKAGE}._ledger", f"{PACKAGE}._run", f"{PACKAGE}._context"} <= set(edges)
    assert f"{PACKAGE}._ledger" in edges[f"{PACKAGE}._context"]  # it reads imports


def cycle_through(edges: dict[str, set[str]], start: str) -> list[str] | None:
    """A path from ``start`` back to itself, or ``None``."""
    seen: set[str] = set()
    stack: list[list[str]] = [[start]]
    while stack:
        path = stack.pop()
        for nxt in sorted(edges.get(path[-1], ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*path, nxt])
    return None


def test_no_import_cycle_runs_through_the_experiment() -> None:
    edges = graph()
    cycles = [c for m in sorted(edges) if m.startswith(PACKAGE)
              if (c := cycle_through(edges, m)) is not None]
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_cycle_finders_find_one() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(edges) == ["a", "b", "c", "a"]
    assert cycle_through(edges, "b") == ["b", "c", "a", "b"]
    assert cycle_through(edges, "d") is None
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_facade_imports_the_experiment() -> None:
    edges = graph()
    importers = {m for m, targets in edges.items()
                 if m.startswith(PACKAGE) and targets & {FACADE, PACKAGE}}
    assert importers == {PACKAGE}  # the package's __init__, re-exporting it


def test_the_ledger_and_the_policy_do_no_io() -> None:
    for name in ("_ledger", "_policy"):
        tree = ast.parse((SRC / "experiment" / f"{name}.py").read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                    for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                     if isinstance(n, ast.ImportFrom) and n.module}
        assert not imported & {"anyio", "asyncio", "sqlite3", "socket", "os", "websockets"}
