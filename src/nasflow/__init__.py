"""nasflow: async-native Neural Architecture Search for PyTorch.

``import nasflow`` does not import torch; ``nasflow.nn`` (model spaces) and the training
evaluators do, when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow import evaluator as evaluator
from nasflow import space as space
from nasflow import strategy as strategy
from nasflow._results import ExperimentResults as ExperimentResults
from nasflow._results import load_experiment as load_experiment
from nasflow._run import run as run
from nasflow._types import ExperimentState as ExperimentState
from nasflow._types import TrialError as TrialError
from nasflow._types import TrialRecord as TrialRecord
from nasflow._types import TrialState as TrialState
from nasflow._version import __version__ as __version__
from nasflow.config import ExperimentConfig as ExperimentConfig
from nasflow.engine import ManagerGoneError as ManagerGoneError
from nasflow.engine import PayloadError as PayloadError
from nasflow.engine import WorkerSetupError as WorkerSetupError
from nasflow.evaluator import Evaluator as Evaluator
from nasflow.evaluator import FunctionalEvaluator as FunctionalEvaluator
from nasflow.evaluator import Trial as Trial
from nasflow.evaluator import current_trial as current_trial
from nasflow.exceptions import BudgetExhausted as BudgetExhausted
from nasflow.exceptions import ConfigError as ConfigError
from nasflow.exceptions import ExperimentLockedError as ExperimentLockedError
from nasflow.exceptions import ExperimentNotFoundError as ExperimentNotFoundError
from nasflow.exceptions import MetricError as MetricError
from nasflow.exceptions import NasflowError as NasflowError
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
from nasflow.experiment import Experiment as Experiment
from nasflow.space import Categorical as Categorical
from nasflow.space import CategoricalMultiple as CategoricalMultiple
from nasflow.space import Constraint as Constraint
from nasflow.space import Numerical as Numerical
from nasflow.space import SearchSpace as SearchSpace
from nasflow.space import sample_hash as sample_hash
from nasflow.store import ExperimentInfo as ExperimentInfo
from nasflow.store import list_experiments as list_experiments

if TYPE_CHECKING:
    from nasflow import nn as nn

__all__ = [
    "BudgetExhausted",
    "Categorical",
    "CategoricalMultiple",
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
    "ManagerGoneError",
    "MetricError",
    "NasflowError",
    "Numerical",
    "PayloadError",
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
    "current_trial",
    "evaluator",
    "list_experiments",
    "load_experiment",
    "nn",
    "run",
    "sample_hash",
    "space",
    "strategy",
]


def __getattr__(name: str) -> Any:
    # nasflow.nn imports torch: only on first use
    if name == "nn":
        import importlib

        return importlib.import_module("nasflow.nn")
    raise AttributeError(f"module 'nasflow' has no attribute {name!r}")
