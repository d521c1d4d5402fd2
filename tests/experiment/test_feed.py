"""Feeding a search: ``exp.enqueue`` (evaluated before the strategy's next proposals),
``exp.add_results`` and ``warm_start`` (known results, never run), and continuing a DONE
experiment with ``Experiment.restore(id, max_trials=...)``."""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow._kernel import Objective
from nasflow.engine import EngineSetup, InProcessEngine, TrialSpec
from nasflow.events import TrialEnded, TrialSubmitted
from nasflow.exceptions import MetricError, ResumeError, SampleValidationError
from nasflow.experiment._feed import Feed, check_results, check_samples
from nasflow.space import SearchSpace, sample_hash
from nasflow.strategy import FrozenTrial, Strategy, StrategyContext

SPACE = {"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}


def value(sample: dict[str, Any]) -> float:
    return float(sample["a"] * 10 + sample["b"])


def evaluate(model: None, trial: nf.Trial) -> float:
    return value(trial.sample)


class Watching(Strategy):
    """Random unseen proposals; records every result it is handed, in order."""

    def __init__(self) -> None:
        self.taken: list[FrozenTrial] = []

    async def run(self, ctx: StrategyContext) -> None:
        rng = random.Random(0)
        while True:
            await ctx.wait_capacity()
            self.taken += ctx.take_results()
            if ctx.budget.exhausted:
                return
            sample = ctx.space.random(rng=rng)
            if not ctx.seen(sample):
                await ctx.submit(sample)


# --- checks and the queue, without an event loop --------------------------------------------

def test_a_bad_sample_is_refused_with_its_label_and_value_and_nothing_is_queued() -> None:
    space = SearchSpace(SPACE)
    with pytest.raises(SampleValidationError) as info:
        check_samples(space, [{"a": 1, "b": 2}, {"a": 1, "b": 42}])
    assert info.value.label == "b" and info.value.value == 42
    assert "sample 1 of the 2 given; none was taken" in str(info.value)


def test_a_result_is_checked_against_the_space_and_the_objective() -> None:
    space = SearchSpace(SPACE)
    objective = Objective({"acc": "maximize", "size": "minimize"})
    with pytest.raises(SampleValidationError) as info:
        check_results(space, objective, {"sample": {"a": 11, "b": 0}, "metric": {"acc": 1}})
    assert info.value.label == "a" and info.value.value == 11
    with pytest.raises(MetricError, match="lacks"):
        check_results(space, objective, {"sample": {"a": 1, "b": 0}, "metric": {"acc": 1}})
    with pytest.raises(MetricError, match="only results of trials that succeeded"):
        check_results(space, objective, {"sample": {"a": 1, "b": 0}, "state": "FAILED",
                                         "metric": None})
    [known] = check_results(space, objective,
                            {"sample": {"a": 1, "b": 0}, "metric": {"acc": 0.9, "size": 3}})
    assert (known.metric, known.value, known.origin) == (0.9, {"acc": 0.9, "size": 3.0},
                                                         "added")


def test_the_queue_drops_what_the_history_or_the_queue_has() -> None:
    feed = Feed()
    history = {sample_hash({"a": 0, "b": 0})}
    queued = feed.enqueue([{"a": 0, "b": 0}, {"a": 1, "b": 1}, {"a": 1, "b": 1}],
                          history.__contains__)
    assert queued == [{"a": 1, "b": 1}]
    history.add(sample_hash({"a": 1, "b": 1}))  # the strategy proposed it meanwhile
    assert feed.next_sample(history.__contains__) is None


# --- enqueue --------------------------------------------------------------------------------

async def test_enqueued_samples_run_first_count_toward_the_budget_and_are_marked() -> None:
    strategy = Watching()
    exp = nf.Experiment(SPACE, evaluate, strategy, nf.ExperimentConfig(max_trials=5,
                                                                       store=False))
    assert exp.enqueue([{"a": 9, "b": 9}, {"a": 9, "b": 8}, {"a": 9, "b": 9}]) == [
        {"a": 9, "b": 9}, {"a": 9, "b": 8}]
    await exp.run()
    trials = exp.trials()
    assert len(trials) == 5  # the enqueued ones count toward max_trials
    assert [(t.sample, t.origin) for t in trials[:2]] == [
        ({"a": 9, "b": 9}, "enqueued"), ({"a": 9, "b": 8}, "enqueued")]
    assert [t.origin for t in trials[2:]] == [None] * 3
    assert len({t.hash for t in trials}) == 5  # the strategy did not propose them again
    assert {t.id for t in strategy.taken} >= {0, 1}  # it was handed their results


async def test_a_sample_enqueued_while_it_runs_is_the_next_trial_submitted() -> None:
    gate = anyio.Event()

    async def slow(model: None, trial: nf.Trial) -> float:
        if trial.id == 0:
            await gate.wait()
        return value(trial.sample)

    exp = nf.Experiment(SPACE, slow, nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=4, store=False))
    submitted = exp.events(TrialSubmitted)
    async with exp:
        async for ev in submitted:
            assert ev.trial_id == 0
            break
        exp.enqueue({"a": 0, "b": 7})  # trial 0 holds the only slot
        gate.set()
        async for ev in submitted:
            assert (ev.trial_id, ev.sample, ev.origin) == (1, {"a": 0, "b": 7}, "enqueued")
            break
    assert len(exp.trials()) == 4


async def test_an_ended_experiment_refuses_to_be_fed_and_says_how_to_continue() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=1, store=False))
    await exp.run()
    with pytest.raises(nf.NasflowError, match=r"restore\("):
        exp.enqueue({"a": 1, "b": 1})


# --- add_results and warm_start ---------------------------------------------------------------

async def test_added_results_are_stored_not_run_not_counted_and_handed_to_the_strategy(
        ) -> None:
    ran: list[int] = []

    def counting(model: None, trial: nf.Trial) -> float:
        ran.append(trial.id)
        return value(trial.sample)

    strategy = Watching()
    exp = nf.Experiment(SPACE, counting, strategy, nf.ExperimentConfig(max_trials=3))
    added = exp.add_results([{"sample": {"a": 5, "b": 5}, "metric": 99.0},
                             {"sample": {"a": 5, "b": 6}, "metric": 98.0}])
    assert added == [{"a": 5, "b": 5}, {"a": 5, "b": 6}]
    with pytest.raises(SampleValidationError):
        exp.add_results([{"sample": {"a": 1, "b": 1}, "metric": 1.0},
                         {"sample": {"a": "x", "b": 1}, "metric": 1.0}])
    await exp.run()
    trials = exp.trials()
    assert [t.id for t in trials] == [0, 1, 2, 3, 4]  # ids contiguous
    assert [(t.origin, t.metric) for t in trials[:2]] == [("added", 99.0), ("added", 98.0)]
    assert all(t.state is nf.TrialState.SUCCEEDED for t in trials)
    assert sorted(ran) == [2, 3, 4]  # the added ones never ran; 3 more did (max_trials)
    assert [t.id for t in strategy.taken[:2]] == [0, 1]  # before any trial of its own
    assert {"a": 1, "b": 1} not in [t.sample for t in trials]  # the refused call: nothing
    stored = nf.load_experiment(exp.id)
    assert [t.origin for t in stored.trials()] == ["added", "added", None, None, None]


async def test_multi_objective_results_can_be_added() -> None:
    def two(model: None, trial: nf.Trial) -> dict[str, float]:
        return {"acc": value(trial.sample), "size": float(trial.sample["a"])}

    exp = nf.Experiment(SPACE, two, nf.strategy.Random(seed=2),
                        nf.ExperimentConfig(max_trials=2, store=False,
                                            objective={"acc": "maximize", "size": "minimize"}))
    exp.add_results({"sample": {"a": 0, "b": 9}, "metric": {"acc": 9.0, "size": 0.0}})
    await exp.run()
    first = exp.trials()[0]
    assert (first.origin, first.metrics) == ("added", {"acc": 9.0, "size": 0.0})
    assert first.metric == 9.0  # the primary objective


async def test_warm_start_imports_another_experiments_results() -> None:
    other = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=3),
                          nf.ExperimentConfig(max_trials=4))
    await other.run()
    strategy = Watching()
    exp = nf.Experiment(SPACE, evaluate, strategy, nf.ExperimentConfig(max_trials=2),
                        warm_start=other.id)
    await exp.run()
    trials = exp.trials()
    assert [t.origin for t in trials] == ["imported"] * 4 + [None] * 2
    assert [t.sample for t in trials[:4]] == [t.sample for t in other.trials()]
    assert len({t.hash for t in trials}) == 6
    assert [t.id for t in strategy.taken[:4]] == [0, 1, 2, 3]


async def test_warm_start_from_another_space_is_refused_with_the_trial_label_and_value(
        ) -> None:
    other = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=3),
                          nf.ExperimentConfig(max_trials=3))
    await other.run()
    narrow = {"a": nf.Categorical([100]), "b": nf.Categorical(list(range(10)))}
    with pytest.raises(SampleValidationError) as info:
        nf.Experiment(narrow, evaluate, nf.strategy.Random(), warm_start=other.id)
    assert info.value.label == "a"
    assert f"trial 0 of experiment {other.id}" in str(info.value)


# --- continuing a DONE experiment ---------------------------------------------------------------

async def test_a_done_experiment_continues_with_a_bigger_budget() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.RegularizedEvolution(
        population_size=20, sample_size=2, seed=4), nf.ExperimentConfig(max_trials=5))
    await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    with pytest.raises(ResumeError, match="below the 5 trials"):
        nf.Experiment.restore(exp.id, max_trials=3)
    with pytest.raises(ResumeError, match="retry"):
        nf.Experiment.restore(exp.id, config=nf.ExperimentConfig(max_trials=9, retry=2))
    more = nf.Experiment.restore(exp.id, max_trials=9, concurrency=2)
    assert more.config.max_trials == 9
    more.enqueue({"a": 0, "b": 0})
    await more.run()
    trials = more.trials()
    assert [t.id for t in trials] == list(range(9))
    assert [t.sample for t in trials[:5]] == [t.sample for t in exp.trials()]
    assert trials[5].origin == "enqueued"
    assert len({t.hash for t in trials}) == 9
    strategy = more.strategy
    assert isinstance(strategy, nf.strategy.RegularizedEvolution)
    # the population went on from the last snapshot: the first run's members are in it
    population = [s for s, _ in strategy.state_dict()["population"]]
    assert all(t.sample in population for t in exp.trials())
    # the new budget is what the store says now: a later resume compares against it
    again = nf.Experiment.restore(exp.id, config=nf.ExperimentConfig(max_trials=9))
    assert again.config.concurrency == 1


async def test_ended_trials_are_marked_in_events() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=5),
                        nf.ExperimentConfig(max_trials=1, store=False))
    exp.add_results({"sample": {"a": 2, "b": 2}, "metric": 22.0})
    ended = exp.events(TrialEnded)
    async with exp:
        first = await ended.__anext__()
    assert first.trial_id == 0 and first.state is nf.TrialState.SUCCEEDED


async def test_what_was_enqueued_and_not_run_is_taken_by_the_next_resume() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=6),
                        nf.ExperimentConfig(max_trials=2))
    exp.enqueue([{"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": 3, "b": 3}])
    exp.add_results({"sample": {"a": 4, "b": 4}, "metric": 44.0})
    await exp.run()  # the budget ran out before the third sample
    assert [t.sample["a"] for t in exp.trials()] == [4, 1, 2]
    more = nf.Experiment.restore(exp.id, max_trials=3)
    await more.run()
    trials = more.trials()
    assert [(t.id, t.sample["a"], t.origin) for t in trials] == [
        (0, 4, "added"), (1, 1, "enqueued"), (2, 2, "enqueued"), (3, 3, "enqueued")]
    from nasflow.store import StoreReader

    reader = StoreReader(more.directory / "experiment.db")
    try:
        ops = [c["op"] for c in reader.changes()]
    finally:
        reader.close()
    assert ops == ["enqueue", "add_results"]  # recorded once, not again by the resume


class HoldsTheSubmission(InProcessEngine):
    """An engine whose ``submit`` of ``sample`` stops before the engine holds it (where a
    manager waits for its setup): the test stops the search right there."""

    def __init__(self, setup: EngineSetup, sample: dict[str, Any], reached: anyio.Event
                 ) -> None:
        super().__init__(setup)
        self._sample, self._reached = sample, reached

    async def _before_capacity(self, spec: TrialSpec) -> None:
        if spec.sample == self._sample:
            self._reached.set()
            await anyio.sleep_forever()


async def test_an_enqueued_sample_a_stop_kept_from_starting_runs_on_resume() -> None:
    # taken from the queue, recorded as submitted, and stopped before the engine held it:
    # it must run on resume (before: it ended CANCELED, was in the history, never ran)
    held = {"a": 7, "b": 7}
    reached = anyio.Event()
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=9),
                        nf.ExperimentConfig(max_trials=3),
                        engine=lambda setup: HoldsTheSubmission(setup, held, reached))
    exp.enqueue(held)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):  # a guard against hanging, not an assertion on time
            await reached.wait()
            await exp.stop()
    assert exp.state is nf.ExperimentState.STOPPED
    more = nf.Experiment.restore(exp.id)
    await more.run()
    runs = [t for t in more.trials() if t.sample == held]
    assert [(t.state, t.origin) for t in runs] == [(nf.TrialState.SUCCEEDED, "enqueued")]
    assert len(more.trials()) == 3
