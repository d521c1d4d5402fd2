"""``nasflow.experiment``: the ``Experiment`` facade and the parts it is made of.

- ``_experiment``: ``Experiment``, the facade (the only module that defines or imports it);
- ``_ledger``: ``TrialLedger``, the trial table's one owner (pure);
- ``_policy``: ``TrialPolicy``, retry/penalty/early stop/target as actions (sans-I/O);
- ``_run``: ``Run``, one run's resources (task groups, engine, store, control endpoint);
- ``_context``: ``ExperimentContext``, the strategy's window (reads the ledger, acts
  through the run);
- ``_resume``: what a store says about where an experiment stopped.

See ``docs/architecture.md`` ("The experiment").
"""

from __future__ import annotations

from typing import Any

from nasflow.experiment._experiment import Experiment as Experiment
from nasflow.experiment._feed import check_results as check_results
from nasflow.experiment._feed import check_samples as check_samples

__all__ = ["Experiment"]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = ["check_results", "check_samples"]

# --- names the module ``nasflow.experiment`` has always had (it was one file that
# imported them); kept so that ``nf.experiment.Objective`` and the like go on working.
from nasflow._kernel import ExperimentState as ExperimentState
from nasflow._kernel import Objective as Objective
from nasflow._kernel import TrialRecord as TrialRecord
from nasflow._kernel import TrialState as TrialState
from nasflow._results import Results as Results
from nasflow.config import ExperimentConfig as ExperimentConfig
from nasflow.engine import Engine as Engine
from nasflow.engine import EngineSetup as EngineSetup
from nasflow.engine import InProcessEngine as InProcessEngine
from nasflow.engine import ManagerEngine as ManagerEngine
from nasflow.engine import TrialSpec as TrialSpec
from nasflow.engine import import_manager_modules as import_manager_modules
from nasflow.evaluator import Evaluator as Evaluator
from nasflow.evaluator import FunctionalEvaluator as FunctionalEvaluator
from nasflow.events import Event as Event
from nasflow.events import EventHub as EventHub
from nasflow.events import EventStream as EventStream
from nasflow.events import FinalMetric as FinalMetric
from nasflow.events import IntermediateMetric as IntermediateMetric
from nasflow.events import TrialEnded as TrialEnded
from nasflow.events import TrialStarted as TrialStarted
from nasflow.events import TrialSubmitted as TrialSubmitted
from nasflow.exceptions import ConfigError as ConfigError
from nasflow.exceptions import NasflowError as NasflowError
from nasflow.exceptions import RepeatedFailureError as RepeatedFailureError
from nasflow.experiment._context import ExperimentContext as ExperimentContext
from nasflow.experiment._resume import Replay as Replay
from nasflow.experiment._resume import ResumePlan as ResumePlan
from nasflow.experiment._run import unwrap as unwrap
from nasflow.integrations.tensorboard import TensorBoardSink as TensorBoardSink
from nasflow.protocol import Limits as Limits
from nasflow.space import as_search_space as as_search_space
from nasflow.store import DB_NAME as DB_NAME
from nasflow.store import ExperimentStore as ExperimentStore
from nasflow.store import experiment_dir as experiment_dir
from nasflow.store import new_experiment_id as new_experiment_id
from nasflow.store import valid_id as valid_id
from nasflow.strategy import Budget as Budget
from nasflow.strategy import Decision as Decision
from nasflow.strategy import Scheduler as Scheduler
from nasflow.strategy import Strategy as Strategy


def restore_experiment(cls: type[Experiment], id_or_path: Any, **kwargs: Any) -> Experiment:
    """``cls.restore(id_or_path, **kwargs)`` (the name this module had for it)."""
    return cls.restore(id_or_path, **kwargs)
