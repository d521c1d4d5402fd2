"""The engine is the one authority on capacity and on time (issue 14).

* A manager that grants fewer slots than ``concurrency`` asks for: the experiment never has
  more trials submitted (``TrialSubmitted`` published, not yet ended) than it granted --
  before the fix, a steady-state strategy proposed against ``config.concurrency`` and the
  extra trial waited inside ``engine.submit``, already submitted.
* One clock stamps every event: on a ``SimulatedEngine`` a trial's ``submitted_at``
  (stamped by the experiment) was wall time (~1.79e9) while ``started_at`` (stamped by the
  engine) was simulated (0.0).
"""

from __future__ import annotations

import functools
from typing import Any

import anyio

import nasflow as nf
from nasflow.engine import ManagerEngine
from nasflow.events import Event, ExperimentStateChanged, TrialEnded, TrialSubmitted
from nasflow.testing import FakeClock, SimulatedEngine

SPACE = {"a": nf.Categorical(list(range(8))), "b": nf.Categorical(list(range(4)))}


def _score(sample: dict[str, Any]) -> tuple[list[float], float]:
    v = (sample["a"] * 7 + sample["b"] * 3) % 10 / 10
    return [v / 2, v], 1.0 + sample["a"] % 3


def score_sync(model: Any, trial: nf.Trial) -> float:
    return float(trial.sample["a"])


async def _run_counting(exp: nf.Experiment) -> tuple[int, list[Event]]:
    """Run ``exp``; return the most trials it had submitted and not ended at once."""
    events: list[Event] = []
    most = 0

    async def watch(stream: Any) -> None:
        nonlocal most
        open_ = 0
        async for ev in stream:
            events.append(ev)
            if isinstance(ev, TrialSubmitted):
                open_ += 1
                most = max(most, open_)
            elif isinstance(ev, TrialEnded):
                open_ -= 1

    stream = exp.events()
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, stream)
        await exp.run()
    return most, events


async def test_a_manager_granting_one_of_two_slots_never_has_two_trials_submitted() -> None:
    exp = nf.Experiment(
        SPACE, score_sync, nf.strategy.Random(seed=0),
        nf.ExperimentConfig(max_trials=6, concurrency=2, store=False),
        engine=functools.partial(ManagerEngine, workers=1),  # the pool grants 1 of 2
    )
    with anyio.fail_after(120):
        most, _ = await _run_counting(exp)
    assert exp.state is nf.ExperimentState.DONE
    assert len(exp.trials()) == 6
    assert most == 1, f"{most} trials were submitted at once; the manager granted 1"


async def test_a_daemon_with_one_worker_never_has_two_trials_submitted() -> None:
    from nasflow.manager import TrialManager

    with anyio.fail_after(120):
        async with TrialManager(workers=1) as manager:  # over the tuner channel (a socket)
            exp = nf.Experiment(
                SPACE, score_sync, nf.strategy.Random(seed=1),
                nf.ExperimentConfig(max_trials=4, concurrency=2, store=False,
                                    manager=manager.url, token=manager.token),
            )
            most, _ = await _run_counting(exp)
    assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 4
    assert most == 1, f"{most} trials were submitted at once; the daemon granted 1"


async def test_a_simulated_engine_with_less_capacity_is_the_authority() -> None:
    class OneSlot(SimulatedEngine):
        """A simulated pool that can run one trial, whatever the experiment asks for."""

        async def _open(self, tg: Any) -> None:
            self._set_capacity(1)
            await super()._open(tg)

    exp = nf.Experiment(SPACE, score_sync, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=10, concurrency=4, store=False))
    OneSlot.attach(exp, _score)
    most, _ = await _run_counting(exp)
    assert len(exp.trials()) == 10 and most == 1


async def test_simulated_timestamps_are_consistent_and_on_the_fake_clock() -> None:
    clock = FakeClock(start=1000.0)
    exp = SimulatedEngine.experiment(
        SPACE, nf.strategy.Random(seed=2), _score,
        nf.ExperimentConfig(max_trials=12, concurrency=3, store=False), clock=clock,
    )
    _, events = await _run_counting(exp)
    trials = exp.trials()
    assert len(trials) == 12
    for t in trials:
        assert t.submitted_at is not None and t.started_at is not None
        assert t.ended_at is not None
        assert 1000.0 <= t.submitted_at <= t.started_at <= t.ended_at <= clock.now(), t
    # the experiment's own events are on the same clock
    states = [ev.time for ev in events if isinstance(ev, ExperimentStateChanged)]
    assert states and all(1000.0 <= s <= clock.now() for s in states)
    assert [ev.time for ev in events] == sorted(ev.time for ev in events)
