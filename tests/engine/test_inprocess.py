"""InProcessEngine passes the engine contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

import nasflow as nf
from nasflow.engine import EngineSetup, InProcessEngine
from nasflow.evaluator import Evaluator, Trial
from nasflow.events import TrialEnded, TrialStarted
from nasflow.testing import EngineContract


class TestInProcessEngine(EngineContract):
    def make_engine(self, setup: EngineSetup) -> InProcessEngine:
        return InProcessEngine(setup)


class TestInProcessEngineOneAtATime(EngineContract):
    concurrency = 1

    def make_engine(self, setup: EngineSetup) -> InProcessEngine:
        return InProcessEngine(setup)


class TwoProcessTrials(Evaluator):
    """Trials of two processes each (``devices=2``): the first two wait until both run."""

    devices = 2

    def __init__(self) -> None:
        self.running = 0
        self.both = anyio.Event()

    async def evaluate(self, model: Any, trial: Trial) -> float:
        self.running += 1
        if self.running == 2:
            self.both.set()
        if trial.id < 2:
            await self.both.wait()
        await anyio.wait_all_tasks_blocked()  # let the search start all it would start
        self.running -= 1
        return 1.0


async def test_a_search_runs_concurrency_over_devices_trials_at_once(tmp_path: Path) -> None:
    """``concurrency=4`` with ``devices=2``: two trials at once (each owns two slots)."""
    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3, 4, 5, 6])}, TwoProcessTrials(),
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=6, concurrency=4, home=str(tmp_path)))
    events = exp.events(TrialStarted, TrialEnded)
    order: list[tuple[str, int]] = []

    async def follow() -> None:
        async for ev in events:
            order.append((type(ev).__name__, ev.trial_id))

    with anyio.fail_after(60):  # a hang guard: never reached when the slots are right
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await exp.run()
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 6
    running, peak = 0, 0
    for kind, _ in order:
        running += 1 if kind == "TrialStarted" else -1
        peak = max(peak, running)
    assert peak == 2, order
