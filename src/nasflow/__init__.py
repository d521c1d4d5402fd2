"""nasflow: async-native Neural Architecture Search for PyTorch.

``import nasflow`` is cheap: it loads the kernel (states, records, objectives), the errors
and the configuration. Every other name is imported on first use (PEP 562), so that
``import nasflow.strategy`` or ``import nasflow.space`` loads neither the experiment, the
store (sqlite3), the wire protocol nor anyio; ``nasflow.nn`` (model spaces) and the training
evaluators import torch when first used. ``tests/test_layers.py`` checks what each layer
loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from nasflow._kernel import ExperimentState as ExperimentState
from nasflow._kernel import TrialError as TrialError
from nasflow._kernel import TrialRecord as TrialRecord
from nasflow._kernel import TrialState as TrialState
from nasflow._version import __version__ as __version__
from nasflow.config import ExperimentConfig as ExperimentConfig
from nasflow.exceptions import BudgetExhausted as BudgetExhausted
from nasflow.exceptions import ChangeRefusedError as ChangeRefusedError
from nasflow.exceptions import ConfigError as ConfigError
from nasflow.exceptions import ExperimentLockedError as ExperimentLockedError
from nasflow.exceptions import ExperimentNotFoundError as ExperimentNotFoundError
from nasflow.exceptions import ManagerGoneError as ManagerGoneError
from nasflow.exceptions import MetricError as MetricError
from nasflow.exceptions import NasflowError as NasflowError
from nasflow.exceptions import PayloadError as PayloadError
from nasflow.exceptions import RankError as RankError
from nasflow.exceptions import RepeatedFailureError as RepeatedFailureError
from nasflow.exceptions import ResumeError as ResumeError
from nasflow.exceptions import SampleValidationError as SampleValidationError
from nasflow.exceptions import SpaceBuildError as SpaceBuildError
from nasflow.exceptions import SpaceError as SpaceError
from nasflow.exceptions import SpaceExhaustedError as SpaceExhaustedError
from nasflow.exceptions import StoreDamagedError as StoreDamagedError
from nasflow.exceptions import StoreError as StoreError
from nasflow.exceptions import StrategyError as StrategyError
from nasflow.exceptions import TrialStopped as TrialStopped
from nasflow.exceptions import WorkerSetupError as WorkerSetupError

if TYPE_CHECKING:
    from nasflow import evaluator as evaluator
    from nasflow import nn as nn
    from nasflow import space as space
    from nasflow import strategy as strategy
    from nasflow._results import ExperimentResults as ExperimentResults
    from nasflow._results import load_experiment as load_experiment
    from nasflow._run import run as run
    from nasflow.evaluator import Evaluator as Evaluator
    from nasflow.evaluator import FunctionalEvaluator as FunctionalEvaluator
    from nasflow.evaluator import Trial as Trial
    from nasflow.evaluator import current_trial as current_trial
    from nasflow.experiment import Experiment as Experiment
    from nasflow.hosted import HostedExperiment as HostedExperiment
    from nasflow.hosted import attach as attach
    from nasflow.hosted import submit as submit
    from nasflow.space import Categorical as Categorical
    from nasflow.space import CategoricalMultiple as CategoricalMultiple
    from nasflow.space import Constraint as Constraint
    from nasflow.space import Numerical as Numerical
    from nasflow.space import SearchSpace as SearchSpace
    from nasflow.space import sample_hash as sample_hash
    from nasflow.store import ExperimentInfo as ExperimentInfo
    from nasflow.store import list_experiments as list_experiments

_LAZY: dict[str, str] = {
    # name: the module that defines it (a subpackage when the name is the module)
    "Categorical": "nasflow.space",
    "CategoricalMultiple": "nasflow.space",
    "Constraint": "nasflow.space",
    "Evaluator": "nasflow.evaluator",
    "Experiment": "nasflow.experiment",
    "ExperimentInfo": "nasflow.store",
    "ExperimentResults": "nasflow._results",
    "FunctionalEvaluator": "nasflow.evaluator",
    "HostedExperiment": "nasflow.hosted",
    "Numerical": "nasflow.space",
    "SearchSpace": "nasflow.space",
    "Trial": "nasflow.evaluator",
    "attach": "nasflow.hosted",
    "current_trial": "nasflow.evaluator",
    "evaluator": "nasflow.evaluator",
    "list_experiments": "nasflow.store",
    "load_experiment": "nasflow._results",
    "nn": "nasflow.nn",
    "run": "nasflow._run",
    "sample_hash": "nasflow.space",
    "space": "nasflow.space",
    "strategy": "nasflow.strategy",
    "submit": "nasflow.hosted",
}

# ``nasflow.engine`` and friends worked after a bare ``import nasflow`` when it imported
# them all; they still do, imported on first use
_SUBPACKAGES = frozenset({
    "cli", "dashboard", "demo", "engine", "events", "experiment", "hosted", "hub",
    "integrations",
    "manager", "protocol", "store", "testing", "worker",
})

__all__ = [
    "BudgetExhausted",
    "Categorical",
    "CategoricalMultiple",
    "ChangeRefusedError",
    "ConfigError",
    "Constraint",
    "Evaluator",
    "Experiment",
    "ExperimentConfig",
    "ExperimentInfo",
    "ExperimentLockedError",
    "ExperimentNotFoundError",
    "ExperimentResults",
    "ExperimentState",
    "FunctionalEvaluator",
    "HostedExperiment",
    "ManagerGoneError",
    "MetricError",
    "NasflowError",
    "Numerical",
    "PayloadError",
    "RankError",
    "RepeatedFailureError",
    "ResumeError",
    "SampleValidationError",
    "SearchSpace",
    "SpaceBuildError",
    "SpaceError",
    "SpaceExhaustedError",
    "StoreDamagedError",
    "StoreError",
    "StrategyError",
    "Trial",
    "TrialError",
    "TrialRecord",
    "TrialState",
    "TrialStopped",
    "WorkerSetupError",
    "__version__",
    "attach",
    "current_trial",
    "evaluator",
    "list_experiments",
    "load_experiment",
    "nn",
    "run",
    "sample_hash",
    "space",
    "strategy",
    "submit",
]


def __getattr__(name: str) -> Any:
    # the heavy names load on first use; a submodule is the module itself
    module = _LAZY.get(name)
    if module is None and name in _SUBPACKAGES:
        module = f"nasflow.{name}"
    if module is None:
        raise AttributeError(f"module 'nasflow' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    value = loaded if module == f"nasflow.{name}" else getattr(loaded, name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
