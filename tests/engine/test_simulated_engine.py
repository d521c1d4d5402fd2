"""SimulatedEngine: the engine contract on a fake clock, simulated-time order, stopping
trials at simulated times, and whole experiments with no waiting."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow._kernel import TrialState
from nasflow.engine import EngineSetup, TrialSpec
from nasflow.events import FinalMetric, IntermediateMetric, TrialEnded, TrialStarted
from nasflow.space import sample_hash
from nasflow.strategy import Decision, Scheduler
from nasflow.testing import EngineContract, FakeClock, SimulatedEngine
from nasflow.testing._engine_contract import report_three_sync


class TestSimulatedEngineEvaluatorMode(EngineContract):
    """With no table the evaluator computes each curve; the contract applies as is."""

    def make_engine(self, setup: EngineSetup) -> SimulatedEngine:
        return SimulatedEngine(setup)

    async def test_timeout_async_and_cooperative_sync(self) -> None:
        # On a fake clock a trial's length is its number of reports, not the wall-clock
        # time its evaluator takes, so an evaluator that hangs for real never reaches a
        # simulated timeout. The simulated meaning: a curve longer than trial_timeout ends
        # TIMEOUT at exactly start + trial_timeout, keeping the reports made before.
        async with self.engine(report_three_sync, trial_timeout=2.5) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
            assert ended.state is TrialState.TIMEOUT
            assert "trial_timeout" in ended.error.message
            assert ended.time == 2.5
            assert [e.time for e in h.of(0) if isinstance(e, IntermediateMetric)] == [1.0, 2.0]


class TestSimulatedEngineOneAtATime(TestSimulatedEngineEvaluatorMode):
    concurrency = 1


def _setup(h: Any, concurrency: int = 2, timeout: float | None = None) -> EngineSetup:
    return EngineSetup(
        space=nf.SearchSpace({"x": nf.Categorical([1, 2, 3, 4])}),
        evaluator=nf.FunctionalEvaluator(lambda m, t: 0.0),
        objective=nf.experiment.Objective({"default": "maximize"}),
        publish=h.publish, trial_directory=lambda i: __import__("pathlib").Path("."),
        experiment_id="sim", concurrency=concurrency, trial_timeout=timeout,
    )


def curves(sample: dict[str, Any]) -> tuple[list[float], float]:
    """x epochs of x seconds each: trial x ends at x*x (plus its start)."""
    x = sample["x"]
    return [x / 10 * (k + 1) for k in range(x)], float(x)


async def test_trials_end_in_simulated_time_order_with_simulated_times() -> None:
    from nasflow.testing import EngineHarness

    h = EngineHarness()
    clock = FakeClock()
    async with SimulatedEngine(_setup(h, concurrency=2), curves, clock=clock) as engine:
        await engine.submit(TrialSpec(0, {"x": 3}))  # ends at 9
        await engine.submit(TrialSpec(1, {"x": 2}))  # ends at 4
        await engine.submit(TrialSpec(2, {"x": 1}))  # waits for trial 1: runs 4..5
        await engine.wait_idle()
    ends = [(e.trial_id, e.time) for e in h.events if isinstance(e, TrialEnded)]
    assert ends == [(1, 4.0), (2, 5.0), (0, 9.0)]
    starts = {e.trial_id: e.time for e in h.events if isinstance(e, TrialStarted)}
    assert starts == {0: 0.0, 1: 0.0, 2: 4.0}
    inter = [(e.step, e.time) for e in h.of(0) if isinstance(e, IntermediateMetric)]
    assert inter == [(0, 3.0), (1, 6.0), (2, 9.0)]
    final = next(e for e in h.of(0) if isinstance(e, FinalMetric))
    assert final.metric == pytest.approx(0.9) and final.time == 9.0
    assert clock.now() == 9.0


async def test_cancel_frees_the_worker_at_the_simulated_stop_time() -> None:
    from nasflow.testing import EngineHarness

    class StopAfterTwoEpochs(EngineHarness):
        """Stops trial 0 on its second report, as a scheduler would (in the sink)."""

        engine: SimulatedEngine

        async def publish(self, event: Any, *, wait: bool = True) -> None:
            await super().publish(event, wait=wait)
            if isinstance(event, IntermediateMetric) and (event.trial_id, event.step) == (0, 1):
                assert self.engine.cancel(0, TrialState.EARLY_STOPPED, "asha")

    h = StopAfterTwoEpochs()
    clock = FakeClock()
    async with SimulatedEngine(_setup(h, concurrency=1), curves, clock=clock) as engine:
        h.engine = engine
        await engine.submit(TrialSpec(0, {"x": 4}))  # would end at 16
        await engine.submit(TrialSpec(1, {"x": 1}))  # gets the worker when 0 stops
        await engine.wait_idle()
    ended0 = next(e for e in h.of(0) if isinstance(e, TrialEnded))
    assert ended0.state is TrialState.EARLY_STOPPED and ended0.time == 8.0
    assert ended0.error is not None and ended0.error.message == "asha"
    assert next(e for e in h.of(1) if isinstance(e, TrialStarted)).time == 8.0
    assert next(e for e in h.of(1) if isinstance(e, TrialEnded)).time == 9.0


async def test_a_missing_table_entry_fails_the_trial_with_a_clear_message() -> None:
    from nasflow.testing import EngineHarness

    h = EngineHarness()
    table = {sample_hash({"x": 1}): ([0.5], 1.0)}
    async with SimulatedEngine(_setup(h), table) as engine:
        await engine.submit(TrialSpec(0, {"x": 1}))
        await engine.submit(TrialSpec(1, {"x": 2}))
        await engine.wait_idle()
    assert (await h.ended(0)).state is TrialState.SUCCEEDED
    ended = await h.ended(1)
    assert ended.state is TrialState.FAILED and "no entry" in ended.error.message


SPACE = {"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}


def _score(sample: dict[str, Any]) -> tuple[list[float], float]:
    v = (sample["a"] * 7 + sample["b"] * 3) % 10 / 10
    return [v / 2, v], 1.0 + sample["a"] % 3


async def test_whole_experiments_are_fast_and_deterministic() -> None:
    def run_once() -> tuple[list[tuple[Any, ...]], float]:
        exp = SimulatedEngine.experiment(
            SPACE, nf.strategy.Random(seed=3), _score,
            nf.ExperimentConfig(max_trials=100, concurrency=4, store=False),
        )
        t0 = time.perf_counter()
        nf.run(exp)
        elapsed = time.perf_counter() - t0
        rows = [(t.id, t.hash, t.metric, t.started_at, t.ended_at) for t in exp.trials()]
        assert exp.state is nf.ExperimentState.DONE
        return rows, elapsed

    first, elapsed = await anyio.to_thread.run_sync(run_once)
    again, _ = await anyio.to_thread.run_sync(run_once)
    assert first == again
    assert len(first) == 100 and elapsed < 2.0
    # four workers: the fourth trial to end did so at the simulated time its durations say
    assert max(r[4] for r in first) < sum(r[4] - r[3] for r in first) / 2


class StopBelowHalf(Scheduler):
    def on_result(self, trial: Any, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        return Decision.STOP if step == 0 and metric < 0.25 else Decision.CONTINUE


async def test_schedulers_stop_simulated_trials() -> None:
    exp = SimulatedEngine.experiment(
        SPACE, nf.strategy.Random(seed=1), _score,
        nf.ExperimentConfig(max_trials=40, concurrency=3, store=False),
        scheduler=StopBelowHalf(),
    )
    await exp.run()
    stopped = exp.trials([TrialState.EARLY_STOPPED])
    assert stopped and all(t.metric is None for t in stopped)
    for t in stopped:  # stopped right at the first epoch
        assert t.ended_at - t.started_at == _score(t.sample)[1]


async def test_evaluator_mode_in_an_experiment() -> None:
    async def evaluate(model: Any, trial: nf.Trial) -> float:
        for k in range(3):
            trial.report(k / 10)
        return float(trial.sample["a"])

    exp = SimulatedEngine.experiment(
        SPACE, nf.strategy.Random(seed=0), evaluator=evaluate, seconds_per_step=60.0,
        config=nf.ExperimentConfig(max_trials=5, concurrency=1, store=False),
    )
    await exp.run()
    trials = exp.trials()
    assert [t.ended_at for t in trials] == [180.0 * (i + 1) for i in range(5)]
    assert all(t.metric == t.sample["a"] for t in trials)
