"""Schedulers stop trials for real: on the in-process engine (the evaluator sees
``TrialStopped`` or ``should_stop()``, its worker is freed, the search goes on) and on
the simulated engine (less compute for the same best)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow.events import IntermediateMetric, TrialEnded
from nasflow.strategy import ASHA, Hyperband, MedianStop, Scheduler
from nasflow.testing import SimulatedEngine

SPACE = {"x": nf.Categorical(list(range(12)))}


def curve(x: int, step: int) -> float:
    """Better x, better curve at every step: rankings at any rung are the final ones."""
    return x / 12 * (1 - 0.5 ** step)


class Lockstep:
    """Makes a sync evaluator wait until the experiment has handled each of its reports
    (its scheduler has decided), so stops land at the same step on every run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handled: dict[tuple[int, int], threading.Event] = {}
        self.log: list[tuple[int, int, str]] = []
        """(trial, step, what the evaluator saw)"""
        self.done: dict[int, threading.Event] = {}

    def handled(self, trial_id: int, step: int) -> threading.Event:
        with self._lock:
            return self._handled.setdefault((trial_id, step), threading.Event())

    async def follow(self, exp: nf.Experiment) -> None:
        # subscribers see an event after the experiment's sink (and so the scheduler)
        async for ev in exp.events(IntermediateMetric):
            self.handled(ev.trial_id, ev.step).set()

    def evaluator(self, *, cooperative: bool) -> Any:
        def evaluate(model: Any, trial: nf.Trial) -> float:
            done = self.done.setdefault(trial.id, threading.Event())
            try:
                for step in range(1, 10):
                    if cooperative and trial.should_stop():
                        self.log.append((trial.id, step, "should_stop"))
                        return 0.0  # ignored: the trial ended EARLY_STOPPED already
                    try:
                        trial.report(curve(trial.sample["x"], step), step=step)
                    except nf.TrialStopped:
                        self.log.append((trial.id, step, "TrialStopped"))
                        raise
                    assert self.handled(trial.id, step).wait(10)
                return curve(trial.sample["x"], 9)
            finally:
                done.set()

        return evaluate

    async def run(self, exp: nf.Experiment) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.follow, exp)
            await exp.run()
        for done in self.done.values():  # abandoned threads finish their last report
            assert await anyio.to_thread.run_sync(done.wait, 10)


@pytest.mark.parametrize("cooperative", [False, True])
async def test_asha_stops_trials_for_real_on_the_in_process_engine(cooperative: bool) -> None:
    lock = Lockstep()
    exp = nf.Experiment(SPACE, lock.evaluator(cooperative=cooperative),
                        nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=12, concurrency=1),
                        scheduler=ASHA(max_t=9))
    await lock.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    trials = exp.trials()
    assert len(trials) == 12  # the search went on after every stop
    stopped = [t for t in trials if t.state is nf.TrialState.EARLY_STOPPED]
    done = [t for t in trials if t.state is nf.TrialState.SUCCEEDED]
    assert stopped and done and len(stopped) + len(done) == 12
    for t in stopped:
        assert t.error is not None and t.error.type == "Stopped"
        assert t.error.message.startswith("ASHA: at the rung of ")
        assert t.metric is None
    # the evaluator of every stopped trial saw it at its next step
    seen = {tid: what for tid, _, what in lock.log}
    expected = "should_stop" if cooperative else "TrialStopped"
    assert seen == {t.id: expected for t in stopped}
    # concurrency 1: each trial started once the one before had ended, stopped or not
    for before, after in itertools.pairwise(trials):
        assert after.started_at >= before.ended_at  # type: ignore[operator]
    # the best architecture is never stopped (it leads every rung it reaches)
    assert exp.best().sample == {"x": 11}  # type: ignore[union-attr]


async def test_a_stopped_trial_frees_its_worker_while_its_thread_is_still_busy() -> None:
    release = threading.Event()
    ran: list[int] = []

    def evaluate(model: Any, trial: nf.Trial) -> float:
        ran.append(trial.id)
        trial.report(trial.sample["x"] / 12, step=1)
        if trial.id == 1:
            release.wait(10)  # a long epoch: the trial is stopped in the middle of it
        return trial.sample["x"] / 12

    class StopTrialOne(Scheduler):
        def on_result(self, trial: Any, step: int, metric: float, value: Any,
                      time: float) -> nf.strategy.Decision:
            if trial.id == 1:
                return nf.strategy.Decision.STOP
            return nf.strategy.Decision.CONTINUE

    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=5, concurrency=1),
                        scheduler=StopTrialOne())
    try:
        await exp.run()
    finally:
        release.set()
    states = [t.state for t in exp.trials()]
    assert states[1] is nf.TrialState.EARLY_STOPPED
    assert states.count(nf.TrialState.SUCCEEDED) == 4 and ran == [0, 1, 2, 3, 4]
    assert exp.trials()[1].error.message == "stopped early by StopTrialOne"  # type: ignore[union-attr]


async def test_median_stop_stops_the_trials_below_the_median() -> None:
    lock = Lockstep()
    exp = nf.Experiment(SPACE, lock.evaluator(cooperative=False),
                        nf.strategy.GridSearch(), nf.ExperimentConfig(max_trials=12),
                        scheduler=MedianStop(min_trials=3))
    await lock.run(exp)
    states = {t.sample["x"]: t.state for t in exp.trials()}
    # the grid runs x = 0, 1, ..., 11: each new x beats everything before it
    assert all(s is nf.TrialState.SUCCEEDED for s in states.values())
    lock = Lockstep()
    exp = nf.Experiment({"x": nf.Categorical(list(range(11, -1, -1)))},
                        lock.evaluator(cooperative=False), nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=12), scheduler=MedianStop(min_trials=3))
    await lock.run(exp)
    # x = 11, 10, 9 set the bar; every later (worse) one is stopped at its first step
    stopped = sorted(t.sample["x"] for t in exp.trials()
                     if t.state is nf.TrialState.EARLY_STOPPED)
    assert stopped == list(range(9))
    assert {step for _, step, _ in lock.log} == {2}


# --- the simulated engine -----------------------------------------------------------------

WIDE = {"a": nf.Categorical(list(range(20))), "b": nf.Categorical(list(range(10)))}
EPOCHS = 27


def table(sample: dict[str, Any]) -> tuple[list[float], float]:
    """27 epochs of 1 to 1.9 s; early epochs foretell the final accuracy, not perfectly
    (curves rise at different speeds)."""
    a, b = sample["a"], sample["b"]
    final = (a * 37 + b * 11) % 97 / 97
    speed = 0.2 + (a * 13 + b * 7) % 10 / 200
    return [final * (1 - 0.6 * (1 - speed) ** (e + 1)) for e in range(EPOCHS)], 1.0 + b / 10


def simulated(scheduler: Scheduler | None, trials: int = 200) -> nf.Experiment:
    return SimulatedEngine.experiment(
        WIDE, nf.strategy.Random(seed=4), table,
        nf.ExperimentConfig(max_trials=trials, concurrency=4, store=False),
        scheduler=scheduler,
    )


def compute(exp: nf.Experiment) -> float:
    return sum(t.duration for t in exp.trials())  # type: ignore[misc]


@pytest.mark.parametrize(("make", "rank", "share"), [
    (lambda: ASHA(max_t=EPOCHS), 1, 0.2),
    (lambda: Hyperband(max_t=EPOCHS), 1, 0.4),
    # time rungs favour architectures with fast epochs: the best one is slow
    (lambda: ASHA(max_t=EPOCHS * 1.5, grace_period=2.0, time_attr="time"), 2, 0.2),
])
async def test_on_simulated_time_asha_finds_the_best_for_less_compute(
        make: Any, rank: int, share: float) -> None:
    def run_both() -> tuple[nf.Experiment, nf.Experiment, nf.Experiment]:
        full, early, again = simulated(None), simulated(make()), simulated(make())
        for exp in (full, early, again):
            nf.run(exp)
        return full, early, again

    full, early, again = await anyio.to_thread.run_sync(run_both)
    finals = sorted((t.metric for t in full.trials()), reverse=True)  # type: ignore[arg-type]
    assert early.best().metric == finals[rank - 1]  # type: ignore[union-attr]
    assert compute(early) < share * compute(full)
    assert len(early.trials([nf.TrialState.EARLY_STOPPED])) > 150
    rows = [(t.id, t.state, t.started_at, t.ended_at) for t in early.trials()]
    assert rows == [(t.id, t.state, t.started_at, t.ended_at) for t in again.trials()]


async def test_time_rungs_stop_at_the_first_report_past_the_rung() -> None:
    def run() -> nf.Experiment:
        exp = simulated(ASHA(max_t=40.0, grace_period=3.0, time_attr="time"), trials=60)
        nf.run(exp)
        return exp

    exp = await anyio.to_thread.run_sync(run)
    stopped = exp.trials([nf.TrialState.EARLY_STOPPED])
    assert stopped
    for t in stopped:
        seconds = table(t.sample)[1]
        ran = t.duration
        # stopped at a report: a whole number of epochs, the first at or past a rung
        epochs = round(ran / seconds)  # type: ignore[operator]
        assert ran == pytest.approx(epochs * seconds)
        assert any(epochs * seconds >= r > (epochs - 1) * seconds for r in (3.0, 9.0, 27.0))


async def test_a_resumed_search_goes_on_from_the_scheduler_snapshot() -> None:
    lock = Lockstep()
    first = nf.Experiment(SPACE, lock.evaluator(cooperative=False), nf.strategy.Random(seed=1),
                          nf.ExperimentConfig(max_trials=12, concurrency=1, store=True),
                          scheduler=ASHA(max_t=9), id="halted")

    async def stop_after_five() -> None:
        ended = 0
        async for _ in first.events(TrialEnded):
            ended += 1
            if ended == 5:
                await first.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_after_five)
        await lock.run(first)
    assert first.state is nf.ExperimentState.STOPPED
    before = first.scheduler.recorded()  # type: ignore[union-attr]
    assert set(before[0]) >= set(range(5))

    lock = Lockstep()
    again = nf.Experiment.restore("halted", evaluator=lock.evaluator(cooperative=False))
    await lock.run(again)
    assert isinstance(again.scheduler, ASHA) and again.state is nf.ExperimentState.DONE
    after = again.scheduler.recorded()
    # the five trials that ended before the stop kept their records (from the snapshot);
    # the interrupted one ran again and was recorded once more; every trial reached step 1
    assert {i: after[0][i] for i in range(5)} == {i: before[0][i] for i in range(5)}
    assert sorted(after[0]) == list(range(12))
    stopped = {t.id for t in again.trials([nf.TrialState.EARLY_STOPPED])}
    assert stopped and all(again.scheduler.bracket_of(i) == 0 for i in range(12))
