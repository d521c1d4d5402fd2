"""``nasflow.experiment`` became a package and kept the names the module had."""

from __future__ import annotations

import nasflow
import nasflow.experiment

# what ``dir(nasflow.experiment)`` gave (but modules and typing names) when it was a file
OLD_NAMES = [
    "Budget", "ConfigError", "DB_NAME", "Decision", "Engine", "EngineSetup", "Evaluator",
    "Event", "EventHub", "EventStream", "Experiment", "ExperimentConfig",
    "ExperimentContext", "ExperimentState", "ExperimentStore", "FinalMetric",
    "FunctionalEvaluator", "InProcessEngine", "IntermediateMetric", "Limits",
    "ManagerEngine", "NasflowError", "Objective", "RepeatedFailureError", "Replay",
    "Results", "ResumePlan", "Scheduler", "Strategy", "TensorBoardSink", "TrialEnded",
    "TrialRecord", "TrialSpec", "TrialStarted", "TrialState", "TrialSubmitted",
    "as_search_space", "experiment_dir", "import_manager_modules", "new_experiment_id",
    "restore_experiment", "unwrap", "valid_id",
]


def test_the_module_keeps_its_names() -> None:
    assert [n for n in OLD_NAMES if not hasattr(nasflow.experiment, n)] == []
    assert nasflow.experiment.__all__ == ["Experiment"]


def test_nasflow_experiment_is_the_same_class() -> None:
    assert nasflow.Experiment is nasflow.experiment.Experiment
