"""Contracts a machine can check: public names, the exception tree, the config's types.

Like httpx's and websockets' own tests: ``__all__`` says what a package exports, so it
must list exactly the public names found there; the tree drawn in ``exceptions.py``'s
docstring must be the tree the classes form.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path

import pytest

import nasflow
from nasflow import exceptions
from nasflow.config import ExperimentConfig
from nasflow.exceptions import ConfigError, NasflowError

# every public package (a directory whose name has no leading underscore) and public module
PACKAGES = sorted(
    ["nasflow"] + [
        m.name for m in pkgutil.walk_packages(nasflow.__path__, "nasflow.")
        if m.ispkg and not any(p.startswith("_") for p in m.name.split("."))
    ]
)
MODULES = ["nasflow.config", "nasflow.events", "nasflow.exceptions", "nasflow.demo",
           "nasflow.integrations.mlflow", "nasflow.integrations.tensorboard"]
# names every module may hold that are not part of what it exports
PLUMBING = {"annotations", "TYPE_CHECKING", "Any"}
# names a package keeps, unexported, so that old attribute access goes on working:
# ``nasflow.experiment`` was one module that imported these (``nf.experiment.Objective``)
COMPATIBILITY = {
    "nasflow.experiment": frozenset({
        "Budget", "ConfigError", "DB_NAME", "Decision", "Engine", "EngineSetup", "Evaluator",
        "Event", "EventHub", "EventStream", "ExperimentConfig", "ExperimentContext",
        "ExperimentState", "ExperimentStore", "FinalMetric", "FunctionalEvaluator",
        "InProcessEngine", "IntermediateMetric", "Limits", "ManagerEngine", "NasflowError",
        "Objective", "RepeatedFailureError", "Replay", "Results", "ResumePlan", "Scheduler",
        "Strategy", "TensorBoardSink", "TrialEnded", "TrialRecord", "TrialSpec",
        "TrialStarted", "TrialState", "TrialSubmitted", "as_search_space", "experiment_dir",
        "import_manager_modules", "new_experiment_id", "restore_experiment", "unwrap",
        "valid_id",
    }),
}


def _public(module: types.ModuleType, *, package: bool) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or name in PLUMBING or isinstance(value, types.ModuleType):
            continue
        if not package and getattr(value, "__module__", module.__name__) != module.__name__:
            continue  # a plain module's own imports (Path, Mapping, ...) are not exports
        names.add(name)
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_a_packages_all_is_exactly_its_public_names(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    for attr in exported:  # resolves the lazy ones too
        assert getattr(module, attr) is not None, f"{name}.{attr}"
    submodules = {a for a in exported if isinstance(getattr(module, a), types.ModuleType)}
    # names a module-level __getattr__ imports on first use (torch, the one-shot strategies)
    lazy = {a for a in exported if a not in vars(module)}
    assert not lazy or hasattr(module, "__getattr__"), f"{name} lacks {lazy}"
    dunders = {a for a in exported if a.startswith("__")}
    # what the other nasflow packages may import from it (docs/architecture.md, "Internal
    # APIs"): held there, resolvable, sorted, never exported
    internal = list(getattr(module, "__internal__", ()))
    assert internal == sorted(internal), f"{name}.__internal__ is not sorted"
    assert not set(internal) & set(exported), f"{name} exports an internal name"
    for attr in internal:
        assert getattr(module, attr) is not None, f"{name}.{attr}"
    public = ((_public(module, package=True) | lazy | dunders) - COMPATIBILITY.get(name, set())
              - set(internal))
    assert set(exported) - submodules == public - submodules, name


@pytest.mark.parametrize("name", MODULES)
def test_a_modules_all_lists_what_it_defines(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr}"
    assert _public(module, package=False) <= set(exported), name


def test_packages_are_found() -> None:
    assert {"nasflow.space", "nasflow.strategy", "nasflow.strategy.oneshot",
            "nasflow.protocol", "nasflow.testing"} <= set(PACKAGES)


# --- the exception tree -----------------------------------------------------------------------

def _drawn_tree() -> dict[str, str | None]:
    """``{class name: parent name}`` as drawn in ``exceptions.py``'s docstring."""
    doc = exceptions.__doc__ or ""
    parents: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        m = re.match(r"^(\s*)((?:[│ ]   |    )*)(?:[├└]── )?(\(?[A-Za-z]+)", line)
        if not m or not re.search(r"(Error|Stopped|Exhausted)\b", m.group(3)):
            continue
        name = m.group(3)
        depth = len(line) - len(line.lstrip(" │├└─"))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        parents[name] = stack[-1][1] if stack else None
        stack.append((depth, name))
    return parents


def _all_errors() -> list[type[BaseException]]:
    """Every NasflowError subclass nasflow defines (importing all its public modules)."""
    for info in pkgutil.walk_packages(nasflow.__path__, "nasflow."):
        if info.name.endswith("__main__") or "dashboard" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue
    found: list[type[BaseException]] = []
    todo: list[type[BaseException]] = [NasflowError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return [c for c in found if c.__module__.startswith("nasflow")]


def test_the_drawn_tree_parses() -> None:
    tree = _drawn_tree()
    assert tree["NasflowError"] is None
    assert tree["SpaceBuildError"] == "SpaceError"


def test_every_exception_of_the_exceptions_module_is_in_the_drawn_tree() -> None:
    tree = _drawn_tree()
    for _, cls in inspect.getmembers(exceptions, inspect.isclass):
        if issubclass(cls, BaseException) and cls.__module__ == exceptions.__name__:
            assert cls.__name__ in tree, f"{cls.__name__} is not drawn in exceptions.py"
            parent = tree[cls.__name__]
            if parent is not None:
                assert parent in [b.__name__ for b in cls.__mro__[1:]], cls


def test_every_nasflow_error_anywhere_is_in_the_drawn_tree_under_its_parent() -> None:
    tree = _drawn_tree()
    for cls in _all_errors():
        assert cls.__name__ in tree, f"{cls.__module__}.{cls.__name__} is not drawn"
        parent = tree[cls.__name__]
        if cls is not NasflowError:
            bases = [b.__name__ for b in cls.__bases__]
            assert parent in bases, f"{cls.__name__} is drawn under {parent}, not {bases}"


def test_every_drawn_error_exists() -> None:
    names = {c.__name__ for c in _all_errors()}
    assert set(_drawn_tree()) <= names


# --- the config -------------------------------------------------------------------------------

def test_config_fields_hold_normalised_types() -> None:
    config = ExperimentConfig(
        max_duration="1h30m", trial_timeout=90, reattach_timeout="2m", gpus=[0, 1],
        concurrency=2, retry_on="TIMEOUT", objective={"acc": "maximize"}, target_metric=1,
        penalty=0, home=Path("~") / "x",
    )
    assert config.max_duration == 5400.0 and type(config.max_duration) is float
    assert type(config.trial_timeout) is float
    assert config.reattach_timeout == 120.0 and type(config.reattach_timeout) is float
    assert config.gpus == (0, 1)
    assert config.retry_on == ("TIMEOUT",)
    assert config.objective == {"acc": "maximize"} and type(config.objective) is dict
    assert type(config.target_metric) is float and type(config.penalty) is float
    assert isinstance(config.home, str) and not config.home.startswith("~")
    # and they survive a round trip through a dict
    again = ExperimentConfig.from_dict(config.to_dict())
    assert again == config


def test_an_unsupported_training_service_is_refused_when_the_config_is_built() -> None:
    with pytest.raises(ConfigError, match="trial_resources"):
        ExperimentConfig(training_service="ray", trial_resources={"CPU": -1})
    with pytest.raises(ConfigError, match="training_service"):
        ExperimentConfig(training_service="slurm")
