"""Shipping the space and evaluator to workers: failures fail the experiment, once."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow._kernel import TrialState
from nasflow.engine import PayloadError, WorkerSetupError
from nasflow.evaluator import Trial


def _config(**changes: Any) -> nf.ExperimentConfig:
    return nf.ExperimentConfig(max_trials=20, concurrency=2, training_service="local",
                               **changes)


async def test_an_evaluator_workers_cannot_import_fails_the_experiment_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a module that exists only in this process: pickled by reference, unknown to workers
    phantom = types.ModuleType("phantom_evaluators")

    def evaluate(model: Any, trial: Trial) -> float:
        return 1.0

    evaluate.__module__ = "phantom_evaluators"
    evaluate.__qualname__ = "evaluate"
    phantom.evaluate = evaluate  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "phantom_evaluators", phantom)
    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, evaluate,
                        nf.strategy.Random(seed=0, dedup=False), _config())
    with anyio.fail_after(60), pytest.raises(WorkerSetupError, match="phantom_evaluators"):
        await exp.run()
    assert exp.state is nf.ExperimentState.FAILED
    trials = exp.trials()
    assert len(trials) <= 4  # the search stopped; it did not fail all 20 trials one by one
    assert {t.state for t in trials} <= {TrialState.FAILED, TrialState.CANCELED}


async def test_an_unpicklable_evaluator_fails_before_anything_starts() -> None:
    lock = threading.Lock()

    def evaluate(model: Any, trial: Trial) -> float:
        with lock:
            return 1.0

    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, evaluate, nf.strategy.Random(),
                        _config())
    with anyio.fail_after(60), pytest.raises(PayloadError, match="evaluator") as caught:
        await exp.run()
    assert "lock" in str(caught.value)
    assert exp.trials() == []


def test_ray_options_outside_ray_are_refused_clearly() -> None:
    # when the config is built, not at run(): a config that cannot run is not made
    with pytest.raises(nf.ConfigError, match="unless training_service='ray'"):
        nf.ExperimentConfig(trial_resources={"CPU": 2}, store=False)
    with pytest.raises(nf.ConfigError, match="trial_resources=.'GPU'"):
        nf.ExperimentConfig(training_service="ray", gpus=[0], store=False)


async def test_pool_options_with_a_daemon_are_refused(tmp_path: Path) -> None:
    exp = nf.Experiment({"x": nf.Categorical([1])}, lambda m, t: 1.0, nf.strategy.Random(),
                        nf.ExperimentConfig(manager="ws://127.0.0.1:9", token="t", gpus=[0]))
    with pytest.raises(nf.ConfigError, match="nasflow manager --gpus"):
        await exp.run()
