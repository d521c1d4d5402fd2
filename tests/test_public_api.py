"""The public namespace: explicit, sorted, importable, and torch-free at import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nasflow as nf


@pytest.mark.parametrize(
    "module", ["nasflow", "nasflow.space", "nasflow.strategy", "nasflow.evaluator",
               "nasflow.engine", "nasflow.store", "nasflow.events"]
)
def test_all_is_sorted_and_importable(module: str) -> None:
    mod = __import__(module, fromlist=["__all__"])
    names = list(mod.__all__)
    assert names == sorted(names), f"{module}.__all__ is not sorted"
    for name in names:
        assert getattr(mod, name) is not None


def test_the_issue_names_exist() -> None:
    for name in ["Categorical", "Numerical", "Experiment", "ExperimentConfig",
                 "FunctionalEvaluator", "Trial", "current_trial", "run", "load_experiment",
                 "SampleValidationError", "TrialState", "TrialStopped"]:
        assert hasattr(nf, name)
    assert nf.strategy.Random and nf.strategy.GridSearch


def test_importing_nasflow_does_not_import_torch() -> None:
    code = (
        "import sys, nasflow, nasflow.space, nasflow.strategy, nasflow.evaluator;"
        "bad = [m for m in ('torch', 'websockets', 'sklearn') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pure_modules_do_not_import_io_libraries() -> None:
    code = (
        "import sys, nasflow.space;"
        "bad = [m for m in ('torch', 'anyio', 'websockets') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    # nasflow/__init__ imports the experiment (anyio); import the space module by path
    code = "import importlib.util, sys;" + code.replace("import sys, nasflow.space;", (
        "sys.modules.setdefault('nasflow', type(sys)('nasflow'));"
        "sys.modules['nasflow'].__path__ = [__import__('os').path.join("
        f"{str(nf.__path__[0])!r})];"
        "import nasflow.space;"
    ))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
