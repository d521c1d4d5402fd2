"""The layers: what each pure layer does NOT load, in a fresh interpreter, and no cycles.

A layer that imports too much makes every user of it pay (``import nasflow.strategy`` once
loaded sqlite3, anyio and the store) and lets its tests depend on I/O. Each check imports
one module in a new process and looks at ``sys.modules``; docs/architecture.md ("Layers")
says what each layer may import.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import nasflow

SRC = Path(nasflow.__file__).parent

# what no pure layer may load: I/O, torch, and the layers above it
IO = ["torch", "numpy", "anyio", "sqlite3", "websockets", "cloudpickle", "optuna"]
ABOVE = ["nasflow.protocol", "nasflow.store", "nasflow.engine", "nasflow.worker",
         "nasflow.manager", "nasflow.experiment", "nasflow.events", "nasflow.evaluator",
         "nasflow._results", "nasflow._run_loop"]

LAYERS = {
    # module: (third-party packages it may load, nasflow modules it may load)
    "nasflow": ((), ("nasflow._kernel", "nasflow._version", "nasflow.config",
                     "nasflow.exceptions")),
    "nasflow._kernel": ((), ("nasflow._kernel", "nasflow._version", "nasflow.config",
                             "nasflow.exceptions")),
    "nasflow.exceptions": ((), ("nasflow._kernel", "nasflow._version", "nasflow.config",
                                "nasflow.exceptions")),
    "nasflow.config": ((), ("nasflow._kernel", "nasflow._version", "nasflow.config",
                            "nasflow.exceptions")),
    "nasflow.space": (("orjson",), ("nasflow._kernel", "nasflow._version", "nasflow.config",
                                    "nasflow.exceptions", "nasflow.space")),
    # multi-trial strategies: the kernel and the space, nothing else (one-shot needs torch)
    "nasflow.strategy": (("orjson",), ("nasflow._kernel", "nasflow._version",
                                       "nasflow.config", "nasflow.exceptions",
                                       "nasflow.space", "nasflow.strategy")),
    "nasflow.protocol": (("orjson",), ("nasflow._kernel", "nasflow._version",
                                       "nasflow.config", "nasflow.exceptions",
                                       "nasflow.protocol")),
}

_PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(module: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_a_pure_layer_loads_no_io_and_nothing_above_it(module: str) -> None:
    third_party, own = LAYERS[module]
    loaded = _loaded(module)
    top = {name.partition(".")[0] for name in loaded}
    above = [m for m in ABOVE if not _within(m, own)]
    assert [m for m in IO + above if m in loaded] == [], module
    # nothing heavier than orjson: every other top-level module is the standard library's
    foreign = sorted(t for t in top - set(sys.stdlib_module_names) - {"nasflow", "__main__"}
                     if t not in third_party and not t.startswith("_"))
    assert foreign == [], f"{module} loads third-party {foreign}"
    extra = [m for m in loaded
             if m.startswith("nasflow.") and not _within(m, own)]
    assert extra == [], f"{module} loads {extra}"


def test_the_kernel_and_strategies_do_not_even_load_asyncio() -> None:
    # a strategy is a coroutine, but nothing in it needs the event loop's module
    for module in ("nasflow._kernel", "nasflow.strategy", "nasflow.protocol"):
        loaded = _loaded(module)
        assert [m for m in ("asyncio", "sqlite3") if m in loaded] == [], module


def test_public_names_still_resolve_lazily() -> None:
    code = ("import sys, nasflow\n"
            "assert 'nasflow.experiment' not in sys.modules\n"
            "from nasflow import Experiment, run, Categorical, load_experiment\n"
            "assert nasflow.engine.InProcessEngine is not None\n"
            "assert nasflow.Experiment is Experiment\n"
            "assert set(nasflow.__all__) <= set(dir(nasflow))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr


# --- cycles -----------------------------------------------------------------------------------

def _unit(module: str) -> str:
    """The package (or root module) a module belongs to: ``nasflow.engine._base`` ->
    ``nasflow.engine``."""
    return ".".join(module.split(".")[:2])


def _import_time_imports(tree: ast.Module) -> list[str]:
    """The nasflow modules a file imports when it is imported (not in functions, not under
    ``TYPE_CHECKING``)."""
    found: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "nasflow":
                    found.extend(f"nasflow.{a.name}" for a in node.names)
                elif node.module.startswith("nasflow."):
                    found.append(node.module)
            elif isinstance(node, ast.Import):
                found.extend(a.name for a in node.names if a.name.startswith("nasflow."))

    visit(tree.body)
    return found


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module == "nasflow":
            continue  # the facade imports everything (lazily); it is no layer
        for target in _import_time_imports(ast.parse(path.read_text(encoding="utf-8"))):
            a, b = _unit(module), _unit(target)
            if a != b:
                edges.setdefault(a, set()).add(b)
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                strong(w)
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycle_between_packages_and_root_modules() -> None:
    # engine -> worker._payload -> ... -> worker._runner -> engine was one; the payload
    # now lives in nasflow._payload, which both sides import
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# --- private state across packages ------------------------------------------------------------

def _private_imports(module: str, is_package: bool, tree: ast.Module) -> list[str]:
    """The imports in ``tree`` (anywhere: in functions, under ``TYPE_CHECKING``) of another
    package's private submodule (``nasflow.store._lock``) or of a private name of another
    package or root module (``from nasflow._payload import _file_safe``).

    A package's ``__init__`` is its only interface to the others: what they need beyond
    its ``__all__`` it lists in ``__internal__`` (docs/architecture.md, "Internal APIs").
    A root module (``nasflow._payload``) is itself such an interface."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            target, names = "", [a.name for a in node.names]
        else:
            continue
        if target == "nasflow":  # ``from nasflow import _payload``: a root module
            modules = [f"nasflow.{n}" for n in names]
            names = [n for n in names if not (SRC / f"{n}.py").exists()
                     and not (SRC / n).is_dir()]
        elif target:
            modules = [target]
        else:
            modules = [n for n in names if n.startswith("nasflow.")]
            names = []
        for target in modules:
            if not target.startswith("nasflow.") or _unit(target) == _unit(module):
                continue
            private = [p for p in target.split(".")[2:] if p.startswith("_")]
            bad = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private or bad:
                found.append(f"{module}:{node.lineno} imports {target} {bad or ''}".rstrip())
    return found


def _all_private_imports() -> list[str]:
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        found += _private_imports(module, is_package, ast.parse(path.read_text("utf-8")))
    return found


def test_no_package_imports_another_packages_private_state() -> None:
    # no allow-list: each package's __init__ (or a root module) is the way in
    assert _all_private_imports() == []


def test_the_private_import_check_finds_each_kind() -> None:
    code = ast.parse(
        "from nasflow.store._lock import take_lock\n"            # a private submodule
        "import nasflow.manager._client\n"                        # the same, imported whole
        "def f():\n    from nasflow._payload import _file_safe\n"  # a private name, in a function
        "from .._kernel._types import RecordView\n"               # relative, into the kernel
        "from nasflow.store import ExperimentLock\n"              # fine: the package itself
        "from nasflow import _payload\n"                          # fine: a root module
        "from nasflow.engine._inprocess import InProcessEngine\n"  # fine: its own package
    )
    found = _private_imports("nasflow.engine._base", False, code)
    assert sorted(f.split(" imports ")[1] for f in found) == [
        "nasflow._kernel._types", "nasflow._payload ['_file_safe']", "nasflow.manager._client",
        "nasflow.store._lock"]


def test_every_internal_name_imported_is_listed_by_its_package() -> None:
    # a name another package takes from a package's namespace is in its __all__ or its
    # __internal__ (so that the package knows what it must keep)
    import importlib

    missing: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (not isinstance(node, ast.ImportFrom) or node.level or not node.module
                    or node.module.count(".") != 1 or not node.module.startswith("nasflow.")
                    or _unit(node.module) == _unit(module)
                    or not (SRC / node.module.split(".")[1]).is_dir()):
                continue
            target = importlib.import_module(node.module)
            listed = set(target.__all__) | set(getattr(target, "__internal__", ()))
            missing += [f"{module} takes {node.module}.{a.name}" for a in node.names
                        if a.name not in listed]
    assert missing == []
