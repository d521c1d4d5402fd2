"""Runtime changes of an in-process experiment: ``exp.update`` and ``exp.kill_trial`` go
through the one change path (validated, applied, recorded in the store), and the engine
is the one authority on capacity. Ordering assertions only, never timed ones."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import nasflow as nf
from nasflow._control import send_request
from nasflow.events import ChangeApplied, TrialEnded, TrialStarted
from nasflow.store import DB_NAME, StoreReader

SPACE = {"x": nf.Categorical(list(range(1000)))}


class Gate:
    """Trials wait until the test opens the gate; the test sees which are running."""

    def __init__(self) -> None:
        self.open = anyio.Event()

    async def evaluate(self, model: Any, trial: nf.Trial) -> float:
        await self.open.wait()
        return float(trial.sample["x"])


def changes(exp: nf.Experiment) -> list[dict[str, Any]]:
    reader = StoreReader(exp.directory / DB_NAME)
    try:
        return reader.changes()
    finally:
        reader.close()


async def started(events: Any, n: int, seen: list[Any]) -> None:
    """Read events until ``n`` trials have started (recording every event)."""
    count = 0
    async for ev in events:
        seen.append(ev)
        if isinstance(ev, TrialStarted):
            count += 1
            if count == n:
                return


async def test_raising_concurrency_starts_trials_without_waiting_for_one_to_end() -> None:
    gate = Gate()
    exp = nf.Experiment(SPACE, gate.evaluate, nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=8, concurrency=1))
    events = exp.events(TrialStarted, TrialEnded, ChangeApplied)
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):  # a guard against hanging, not an assertion on time
            await started(events, 1, seen)
            result = await exp.update(concurrency=4)
            await started(events, 3, seen)
        gate.open.set()
    assert result["changed"] == {"concurrency": [1, 4]}
    # four trials ran together: the 2nd, 3rd and 4th started before any trial ended
    assert not any(isinstance(e, TrialEnded) for e in seen)
    assert sum(isinstance(e, TrialStarted) for e in seen) == 4
    assert exp.config.concurrency == 4
    stored = changes(exp)
    assert [(c["op"], c["args"], c["source"]) for c in stored] == [
        ("update", {"concurrency": 4}, "api")]
    assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 8


def gated(gate: Path) -> Any:
    """A sync evaluator whose trials wait until the file ``gate`` exists (it runs in a
    thread here, or in a worker process: a file reaches both)."""

    def evaluate(model: Any, trial: nf.Trial) -> float:
        step = 0
        while not gate.exists():  # the workload stand-in: the test opens the gate
            trial.report(0.0, step=step)  # where a stopped trial learns it
            step += 1
            time.sleep(0.02)
        return float(trial.sample["x"])

    return evaluate


def running_at_each_start(seen: list[Any]) -> list[tuple[bool, int]]:
    """For each ``TrialStarted`` in the event order: (after the ``ChangeApplied``?, how
    many trials ran once it had started)."""
    running: set[int] = set()
    changed = False
    out = []
    for ev in seen:
        if isinstance(ev, ChangeApplied):
            changed = True
        elif isinstance(ev, TrialStarted):
            running.add(ev.trial_id)
            out.append((changed, len(running)))
        elif isinstance(ev, TrialEnded):
            running.discard(ev.trial_id)
    return out


@pytest.mark.parametrize("service", ["inprocess", "local"])
async def test_lowering_concurrency_never_exceeds_the_new_limit(tmp_path: Path, service: str
                                                                ) -> None:
    gate = tmp_path / "gate"
    exp = nf.Experiment(SPACE, gated(gate), nf.strategy.Random(seed=2),
                        nf.ExperimentConfig(max_trials=10, concurrency=4,
                                            training_service=service))
    events = exp.events(TrialStarted, TrialEnded, ChangeApplied)
    seen: list[Any] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(120):  # a guard against hanging, not an assertion on time
            await started(events, 4, seen)
            await exp.update(concurrency=2)
            gate.touch()
            async for ev in events:  # the rest of the run, in the order it happened
                seen.append(ev)
    assert exp.state is nf.ExperimentState.DONE and len(exp.trials()) == 10
    starts = running_at_each_start(seen)
    before = [n for after, n in starts if not after]
    after = [n for after, n in starts if after]
    assert before == [1, 2, 3, 4]  # four ran together before the change
    # the four running when it was lowered finished; every trial started after the change
    # (the six left) started with at most one other running
    assert len(after) == 6 and max(after) <= 2, starts


async def test_budgets_change_live_and_bad_changes_are_refused_and_not_recorded() -> None:
    gate = Gate()
    exp = nf.Experiment(SPACE, gate.evaluate, nf.strategy.Random(seed=3),
                        nf.ExperimentConfig(max_trials=3, concurrency=2))
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):
            await started(events, 2, [])
            for bad, words in [({"concurrency": 0}, "concurrency"),
                               ({"concurrency": True}, "concurrency"),
                               ({"max_trials": 1}, "already submitted"),
                               ({"trial_timeout": 5}, "cannot be changed"),
                               ({}, "nothing to change")]:
                with pytest.raises(nf.ChangeRefusedError, match=words):
                    await exp.update(**bad)
            assert exp.config.concurrency == 2 and exp.config.max_trials == 3
            await exp.update(max_trials=5, max_duration=3600)
            with pytest.raises(nf.ChangeRefusedError, match="no trial 99"):
                await exp.kill_trial(99)
        gate.open.set()
    assert len(exp.trials()) == 5  # the raised budget ran
    assert [(c["op"], c["args"]) for c in changes(exp)] == [
        ("update", {"max_trials": 5, "max_duration": 3600})]
    assert exp.config.max_trials == 5 and exp.config.max_duration == 3600


async def test_a_killed_trial_ends_canceled_and_the_search_goes_on() -> None:
    gate = Gate()
    exp = nf.Experiment(SPACE, gate.evaluate, nf.strategy.Random(seed=4),
                        nf.ExperimentConfig(max_trials=4, concurrency=2, retry=2))
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):
            await started(events, 2, [])
            result = await exp.kill_trial(0)
            assert result["killed"] is True
        gate.open.set()
    trials = {t.id: t for t in exp.trials()}
    assert trials[0].state is nf.TrialState.CANCELED
    assert trials[0].error is not None and trials[0].error.type == "Killed"
    assert trials[0].error.message == "killed by the user"
    assert trials[0].attempt == 0  # killed by the user: never retried
    assert sorted(trials) == [0, 1, 2, 3]
    assert all(t.state is nf.TrialState.SUCCEEDED for i, t in trials.items() if i)
    again = await _kill_after_the_end(exp)
    assert again is not None


async def _kill_after_the_end(exp: nf.Experiment) -> nf.ChangeRefusedError | None:
    try:
        await exp.kill_trial(1)
    except nf.ChangeRefusedError as exc:
        assert "not running" in str(exc)
        return exc
    return None


async def test_killing_a_finished_trial_is_a_no_op_with_a_message() -> None:
    release = anyio.Event()

    async def evaluate(model: Any, trial: nf.Trial) -> float:
        if trial.id > 0:
            await release.wait()
        return 1.0

    exp = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=5),
                        nf.ExperimentConfig(max_trials=3, concurrency=1))
    events = exp.events(TrialEnded)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):
            async for _ in events:
                break  # trial 0 ended
            result = await exp.kill_trial(0)
        release.set()
    assert result["killed"] is False and "already ended (SUCCEEDED)" in result["message"]
    assert exp.trials()[0].state is nf.TrialState.SUCCEEDED


async def test_the_control_endpoint_takes_the_same_path() -> None:
    gate = Gate()
    exp = nf.Experiment(SPACE, gate.evaluate, nf.strategy.Random(seed=6),
                        nf.ExperimentConfig(max_trials=6, concurrency=1))
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):
            await started(events, 1, [])

            def call(op: str, **extra: Any) -> dict[str, Any]:
                return send_request(exp.directory, op, **extra)

            bad = await anyio.to_thread.run_sync(lambda: call("update", concurrency=0))
            assert bad["ok"] is False and "concurrency" in bad["error"]
            good = await anyio.to_thread.run_sync(lambda: call("update", concurrency=3))
            assert good["ok"] is True and good["changed"] == {"concurrency": [1, 3]}
            killed = await anyio.to_thread.run_sync(lambda: call("kill", trial=0))
            assert killed["ok"] is True and killed["killed"] is True
            unknown = await anyio.to_thread.run_sync(lambda: call("frobnicate"))
            assert unknown["ok"] is False and "update" in unknown["error"]
        gate.open.set()
    assert [(c["op"], c["source"]) for c in changes(exp)] == [("update", "cli"),
                                                              ("kill", "cli")]
    assert exp.config.concurrency == 3


async def test_an_update_before_the_run_changes_the_config() -> None:
    exp = nf.Experiment(SPACE, lambda m, t: 1.0, nf.strategy.Random(seed=7),
                        nf.ExperimentConfig(max_trials=2))
    await exp.update(max_trials=3, concurrency=2)
    await exp.run()
    assert len(exp.trials()) == 3 and exp.config.concurrency == 2


async def test_a_kill_whose_end_never_reached_the_store_is_kept_by_a_resume() -> None:
    gate = Gate()
    exp = nf.Experiment(SPACE, gate.evaluate, nf.strategy.Random(seed=8),
                        nf.ExperimentConfig(max_trials=4, concurrency=2))
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(30):
            await started(events, 2, [])
            await exp.stop()
    # as after a kill -9 right after `nasflow trial kill ID 0` was committed: the change is
    # in the store, trial 0's end is not (it is still RUNNING there)
    conn = sqlite3.connect(exp.directory / DB_NAME)
    conn.execute("UPDATE trials SET state = 'RUNNING', error_type = NULL, "
                 "error_message = NULL, ended_at = NULL, end_seq = NULL WHERE id = 0")
    conn.execute("INSERT INTO changes (time, source, op, args, result) VALUES "
                 "(0, 'cli', 'kill', '{\"trial\": 0}', '{\"killed\": true}')")
    conn.commit()
    conn.close()
    resumed = nf.Experiment.restore(exp.id, evaluator=lambda model, trial: 1.0)
    await resumed.run()
    trials = {t.id: t for t in resumed.trials()}
    assert trials[0].state is nf.TrialState.CANCELED and trials[0].attempt == 0
    assert trials[0].error is not None and trials[0].error.type == "Killed"
    assert trials[1].state is nf.TrialState.SUCCEEDED and trials[1].attempt == 1  # again
    assert sorted(trials) == [0, 1, 2, 3]
