"""Metrics in batches through the local worker path, end to end: every intermediate metric
reaches the strategy, the scheduler and the store exactly once and in order, however the
worker packed it, and a scheduler still stops a trial that reports as fast as it can.

Evaluators are module-level functions of this module; workers import it by reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from _mgr_helpers import embedded

import nasflow as nf
from nasflow._kernel import TrialState
from nasflow.engine import ManagerEngine, TrialSpec
from nasflow.evaluator import Trial
from nasflow.events import IntermediateMetric
from nasflow.protocol import Metric, Metrics
from nasflow.strategy import Decision, Scheduler

N = 3000


def report_in_a_thread(model: Any, trial: Trial) -> float:
    for step in range(N):
        trial.report(step / N, step=step)
    return 1.0


async def report_without_awaiting(model: Any, trial: Trial) -> float:
    # nothing is sent before the loop gets a turn: everything leaves in full batches
    for step in range(N):
        trial.report({"default": step / N, "loss": 1 - step / N}, step=step)
    return 1.0


def report_until_stopped(model: Any, trial: Trial) -> float:
    step = 0
    while True:  # only a stop ends it (TrialStopped from report)
        trial.report(step * 1e-6, step=step)
        step += 1


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The metric messages the engine receives from its manager, in order."""
    messages: list[Any] = []
    original = ManagerEngine._receive

    def spy(self: ManagerEngine, message: Any, *args: Any) -> None:
        if isinstance(message, (Metric, Metrics)):
            messages.append(message)
        original(self, message, *args)

    monkeypatch.setattr(ManagerEngine, "_receive", spy)
    return messages


async def test_a_reporting_thread_delivers_every_metric_once_in_order(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with embedded(report_in_a_thread, tmp_path) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            assert (await h.ended(0)).state is TrialState.SUCCEEDED
    metrics = [e for e in h.of(0) if isinstance(e, IntermediateMetric)]
    assert [(e.step, e.value, e.metric) for e in metrics] == [
        (step, step / N, step / N) for step in range(N)]


async def test_full_batches_are_published_one_event_per_step(tmp_path: Path,
                                                              received: list[Any]) -> None:
    with anyio.fail_after(60):
        async with embedded(report_without_awaiting, tmp_path) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            assert (await h.ended(0)).state is TrialState.SUCCEEDED
    assert [type(m) for m in received] == [Metrics, Metrics, Metrics]
    assert [len(m.steps) for m in received] == [1024, 1024, N - 2048]
    metrics = [e for e in h.of(0) if isinstance(e, IntermediateMetric)]
    assert [(e.step, e.metric, e.value["loss"]) for e in metrics] == [
        (step, step / N, 1 - step / N) for step in range(N)]


class StopAt(Scheduler):
    """Stops every trial at step ``at``; remembers the steps it was shown."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.steps: list[int] = []

    def on_result(self, trial: Any, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        self.steps.append(step)
        return Decision.STOP if step >= self.at else Decision.CONTINUE


async def test_a_scheduler_sees_every_step_and_stops_a_fast_reporter(home: Path) -> None:
    scheduler = StopAt(2000)
    exp = nf.Experiment(
        {"x": nf.Categorical([1])}, report_until_stopped, nf.strategy.GridSearch(),
        nf.ExperimentConfig(training_service="local"), scheduler=scheduler,
    )
    with anyio.fail_after(60):
        await exp.run()
    [trial] = exp.trials()
    assert trial.state is TrialState.EARLY_STOPPED
    assert trial.error is not None and trial.error.message == "stopped early by StopAt"
    # every step up to the stop, each once, in order (and maybe a few reported meanwhile)
    assert scheduler.steps[:2001] == list(range(2001))
    assert scheduler.steps == list(range(len(scheduler.steps)))
    with nf.load_experiment(exp.id) as saved:
        stored = [step for step, _ in saved.intermediates(trial.id)]
    assert stored == list(range(len(stored))) and len(stored) >= len(scheduler.steps)
