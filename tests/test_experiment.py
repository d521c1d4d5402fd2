"""Experiment: running, budgets, objectives, events, stopping, cancelling and exports."""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import nasflow as nf
from nasflow.events import (
    Event,
    ExperimentFinished,
    FinalMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)
from nasflow.strategy import Strategy, StrategyContext

SPACE = {
    "width": nf.Categorical([8, 16, 32, 64]),
    "depth": nf.Categorical([1, 2, 3]),
    "act": nf.Categorical(["relu", "tanh", "gelu"]),
}


def score(sample: dict[str, Any]) -> float:
    return sample["width"] * 0.01 + sample["depth"] * 0.1 + ["relu", "tanh", "gelu"].index(
        sample["act"]) * 0.001


async def evaluate(model: Any, trial: nf.Trial) -> float:
    assert model is None  # a torch-free space gives no model
    trial.report(0.0, step=0)
    return score(trial.sample)


def experiment(strategy: Strategy | None = None, evaluator: Any = evaluate,
               **config: Any) -> nf.Experiment:
    return nf.Experiment(SPACE, evaluator, strategy or nf.strategy.Random(seed=0),
                         nf.ExperimentConfig(**config))


async def test_run_and_export() -> None:
    exp = experiment(max_trials=12, concurrency=2)
    await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    assert exp.end_reason == "max_trials reached"
    trials = exp.trials()
    assert [t.id for t in trials] == list(range(12))
    assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    assert len({t.hash for t in trials}) == 12  # Random de-duplicates
    records = exp.export_top_models(3)
    assert [r.metric for r in records] == sorted((t.metric for t in trials), reverse=True)[:3]
    assert all(isinstance(r, nf.TrialRecord) and r.id >= 0 for r in records)
    dicts = exp.export_top_models(3, formatter="dict")
    assert dicts == [r.sample for r in records]
    assert exp.export_top_models(1, formatter="instance") == [dicts[0]]
    assert exp.best() == records[0]
    with pytest.raises(ValueError, match="formatter"):
        exp.export_top_models(1, formatter="code")


async def test_minimize_ranks_the_other_way() -> None:
    exp = experiment(nf.strategy.GridSearch(), objective="minimize")
    await exp.run()
    assert len(exp.trials()) == 36  # the grid is exhausted, then the search ends
    assert exp.end_reason == "the strategy finished"
    best = exp.best()
    assert best is not None and best.sample == {"width": 8, "depth": 1, "act": "relu"}
    maxi = experiment(nf.strategy.GridSearch(), objective="maximize")
    await maxi.run()
    assert maxi.best().sample == {"width": 64, "depth": 3, "act": "gelu"}  # type: ignore[union-attr]


async def test_dict_metrics_name_the_objective() -> None:
    async def both(model: Any, trial: nf.Trial) -> dict[str, float]:
        return {"acc": score(trial.sample), "latency": 1.0}

    exp = experiment(evaluator=both, max_trials=4, objective={"acc": "maximize"})
    await exp.run()
    assert all(t.metrics["latency"] == 1.0 for t in exp.trials())  # type: ignore[index]
    bad = experiment(evaluator=both, max_trials=1)  # "default" is not reported
    await bad.run()
    (t,) = bad.trials()
    assert t.state is nf.TrialState.FAILED and "lacks ['default']" in t.error.message  # type: ignore[union-attr]


async def test_random_ends_when_the_space_is_exhausted() -> None:
    exp = experiment(nf.strategy.Random(seed=1))
    await exp.run()
    assert len(exp.trials()) == 36
    assert exp.state is nf.ExperimentState.DONE


async def test_target_metric_stops_the_search_and_cancels_the_rest() -> None:
    release = anyio.Event()  # never set: only the target trial can finish

    async def slow_unless_best(model: Any, trial: nf.Trial) -> float:
        if trial.sample["width"] != 64:
            await release.wait()
        return trial.sample["width"] * 0.01

    # the grid visits width=64 first, while three other trials run beside it
    space = {"depth": nf.Categorical([3, 1, 2]), "width": nf.Categorical([8, 64, 16])}
    exp = nf.Experiment(space, slow_unless_best, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(concurrency=4, target_metric=0.64))
    with anyio.fail_after(10):
        await exp.run()
    assert "target_metric" in exp.end_reason
    states = [t.state for t in exp.trials()]
    assert states.count(nf.TrialState.SUCCEEDED) == 1
    assert states.count(nf.TrialState.CANCELED) == len(states) - 1 >= 1
    assert len(states) < 9


async def test_max_duration_cancels_running_trials() -> None:
    async def forever(model: Any, trial: nf.Trial) -> float:
        await anyio.sleep_forever()
        return 0.0

    exp = experiment(evaluator=forever, concurrency=2, max_duration=0.3)
    with anyio.fail_after(10):
        await exp.run()
    assert exp.state is nf.ExperimentState.DONE and "max_duration" in exp.end_reason
    trials = exp.trials()
    assert len(trials) == 2
    assert all(t.state is nf.TrialState.CANCELED for t in trials)


async def test_failures_are_kept_and_the_search_goes_on() -> None:
    def flaky(model: Any, trial: nf.Trial) -> float:
        if trial.sample["depth"] == 2:
            raise RuntimeError("diverged")
        if trial.sample["depth"] == 3:
            return math.nan
        return score(trial.sample)

    exp = experiment(nf.strategy.GridSearch(), flaky)
    await exp.run()
    by_depth = {d: [t for t in exp.trials() if t.sample["depth"] == d] for d in (1, 2, 3)}
    assert all(t.state is nf.TrialState.SUCCEEDED for t in by_depth[1])
    assert all(t.state is nf.TrialState.FAILED and t.error.type == "RuntimeError"  # type: ignore[union-attr]
               and "diverged" in t.error.traceback for t in by_depth[2])  # type: ignore[union-attr]
    assert all(t.state is nf.TrialState.FAILED and t.error.type == "MetricError"  # type: ignore[union-attr]
               for t in by_depth[3])


async def test_trial_timeout() -> None:
    async def hang(model: Any, trial: nf.Trial) -> float:
        await anyio.sleep_forever()
        return 0.0

    exp = experiment(evaluator=hang, max_trials=2, trial_timeout=0.1)
    await exp.run()
    assert [t.state for t in exp.trials()] == [nf.TrialState.TIMEOUT] * 2


async def test_two_subscribers_see_every_event_in_order() -> None:
    exp = experiment(max_trials=5, concurrency=2)
    streams = [exp.events(), exp.events()]
    seen: list[list[Event]] = [[], []]

    async def collect(i: int) -> None:
        async for ev in streams[i]:
            seen[i].append(ev)

    async with anyio.create_task_group() as tg:
        tg.start_soon(collect, 0)
        tg.start_soon(collect, 1)
        await exp.run()
    assert seen[0] == seen[1]
    assert isinstance(seen[0][-1], ExperimentFinished)
    for trial_id in range(5):
        kinds = [type(e) for e in seen[0] if getattr(e, "trial_id", None) == trial_id]
        assert kinds[0] is TrialSubmitted and kinds[1] is TrialStarted
        assert kinds[-2:] == [FinalMetric, TrialEnded]


async def test_filtered_and_slow_subscribers_lose_nothing() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=0, dedup=False),
                        nf.ExperimentConfig(max_trials=300, event_buffer=2))
    ended = exp.events(TrialEnded)
    got: list[Event] = []

    async def slow() -> None:
        async for ev in ended:
            got.append(ev)
            await anyio.lowlevel.checkpoint()  # a consumer slower than the search

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow)
        await exp.run()
    assert [e.trial_id for e in got] == list(range(300))  # type: ignore[attr-defined]
    assert len(nf.load_experiment(exp.id).trials()) == 300


async def test_a_subscriber_that_leaves_early_does_not_stall_the_search() -> None:
    exp = experiment(max_trials=50, event_buffer=1)

    async def first_only() -> None:
        async for _ in exp.events():
            break  # the stream is dropped here: the hub must forget it

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_only)
        with anyio.fail_after(10):
            await exp.run()
    assert len(exp.trials()) == 36


async def test_stop_inside_async_with() -> None:
    started = anyio.Event()

    async def forever(model: Any, trial: nf.Trial) -> float:
        started.set()
        await anyio.sleep_forever()
        return 0.0

    exp = experiment(evaluator=forever, concurrency=2)
    async with exp:
        await started.wait()
        await exp.stop()
        assert exp.state is nf.ExperimentState.STOPPED
    assert all(t.state is nf.TrialState.CANCELED for t in exp.trials())
    with nf.load_experiment(exp.id) as loaded:
        assert loaded.state is nf.ExperimentState.STOPPED
        assert all(t.state is nf.TrialState.CANCELED for t in loaded.trials())


async def test_async_with_waits_for_the_end() -> None:
    exp = experiment(max_trials=6)
    async with exp:
        await exp.wait()
    assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 6


async def test_cancelling_the_awaiting_task_stops_cleanly() -> None:
    started = anyio.Event()

    async def forever(model: Any, trial: nf.Trial) -> float:
        started.set()
        await anyio.sleep_forever()
        return 0.0

    exp = experiment(evaluator=forever, concurrency=2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        await started.wait()
        tg.cancel_scope.cancel()
    assert exp.state is nf.ExperimentState.STOPPED
    trials = exp.trials()
    assert trials and all(t.state is nf.TrialState.CANCELED for t in trials)
    with nf.load_experiment(exp.id) as loaded:
        assert [t.state for t in loaded.trials()] == [t.state for t in trials]


class Broken(Strategy):
    async def run(self, ctx: StrategyContext) -> None:
        await ctx.submit({"width": 8, "depth": 1, "act": "relu"})
        raise KeyError("oops")


class Invalid(Strategy):
    async def run(self, ctx: StrategyContext) -> None:
        await ctx.submit({"width": 9, "depth": 1, "act": "relu"})


async def test_a_failing_strategy_fails_the_experiment_and_keeps_trials() -> None:
    exp = experiment(Broken())
    with pytest.raises(nf.StrategyError, match="KeyError") as err:
        await exp.run()
    assert isinstance(err.value.__cause__, KeyError)
    assert exp.state is nf.ExperimentState.FAILED
    assert all(t.state.finished for t in exp.trials())
    bad = experiment(Invalid())
    with pytest.raises(nf.StrategyError) as err2:
        await bad.run()
    assert isinstance(err2.value.__cause__, nf.SampleValidationError)
    assert "label 'width'" in str(err2.value.__cause__)


async def test_a_run_is_once() -> None:
    exp = experiment(max_trials=1)
    await exp.run()
    with pytest.raises(nf.NasflowError, match="already ran"):
        await exp.run()


async def test_nf_run_refuses_a_running_loop() -> None:
    with pytest.raises(nf.NasflowError, match="await exp.run"):
        nf.run(experiment(max_trials=1))


def test_nf_run_from_sync_code() -> None:
    exp = nf.run(experiment(max_trials=3))
    assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 3


async def test_sync_evaluators_and_current_trial() -> None:
    def sync_eval(model: Any, trial: nf.Trial) -> float:
        assert nf.current_trial() is trial
        trial.report(0.5)
        return score(trial.sample)

    exp = experiment(evaluator=sync_eval, max_trials=4, concurrency=2)
    await exp.run()
    assert all(t.state is nf.TrialState.SUCCEEDED for t in exp.trials())
    with pytest.raises(nf.NasflowError, match="outside a trial"):
        nf.current_trial()


def test_bad_arguments_are_refused_up_front() -> None:
    with pytest.raises(TypeError, match="strategy"):
        nf.Experiment(SPACE, evaluate, "random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="evaluator"):
        nf.Experiment(SPACE, 3, nf.strategy.Random())  # type: ignore[arg-type]
    with pytest.raises(nf.ConfigError, match="id"):
        nf.Experiment(SPACE, evaluate, nf.strategy.Random(), id="no spaces")
    with pytest.raises(nf.SpaceError):
        nf.Experiment([1, 2], evaluate, nf.strategy.Random())


async def test_store_off_keeps_results_in_memory_only() -> None:
    exp = experiment(max_trials=5, store=False)
    await exp.run()
    assert len(exp.trials()) == 5
    with pytest.raises(nf.ExperimentNotFoundError):
        nf.load_experiment(exp.id)


async def test_trial_directory_is_per_trial() -> None:
    dirs: list[str] = []

    async def writes(model: Any, trial: nf.Trial) -> float:
        (trial.directory / "note.txt").write_text(str(trial.id))
        dirs.append(str(trial.directory))
        return 1.0

    exp = experiment(evaluator=writes, max_trials=2)
    await exp.run()
    assert len(set(dirs)) == 2
    assert all(d.startswith(str(exp.directory)) for d in dirs)


async def test_retry_runs_failed_trials_again_under_their_id() -> None:
    attempts: dict[int, list[int]] = {}

    def flaky(model: Any, trial: nf.Trial) -> float:
        attempts.setdefault(trial.id, []).append(trial.attempt)
        if trial.attempt < 2 and trial.sample["depth"] == 1:
            raise RuntimeError("transient")
        return score(trial.sample)

    seen: list[nf.TrialRecord] = []

    class Watch(Strategy):
        async def run(self, ctx: StrategyContext) -> None:
            for sample in list(ctx.space.grid())[:6]:
                await ctx.submit(sample)
            while (r := await ctx.next_result()) is not None:
                seen.append(r)

    exp = experiment(Watch(), flaky, retry=2, concurrency=2)
    await exp.run()
    trials = exp.trials()
    assert len(trials) == 6 and all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    depth1 = [t for t in trials if t.sample["depth"] == 1]
    assert depth1 and all(t.attempt == 2 and attempts[t.id] == [0, 1, 2] for t in depth1)
    assert sorted(r.id for r in seen) == list(range(6))  # the strategy saw each trial once


async def test_retries_are_bounded_and_penalty_marks_failures() -> None:
    def always_fails(model: Any, trial: nf.Trial) -> float:
        raise RuntimeError("broken")

    exp = experiment(evaluator=always_fails, max_trials=3, retry=1, penalty=-1.0,
                     max_identical_failures=None)  # every trial fails alike, on purpose
    await exp.run()
    trials = exp.trials()
    assert [t.attempt for t in trials] == [1, 1, 1]
    assert all(t.state is nf.TrialState.FAILED and t.metric == -1.0 for t in trials)
    assert exp.export_top_models(3) == []  # failures are never exported as results
