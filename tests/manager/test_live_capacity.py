"""``exp.update(concurrency=...)`` and ``exp.kill_trial`` on a manager's workers: an
embedded manager starts the workers it lacks, a daemon grants a bigger share. Ordering
assertions: the new trials start before any trial ends (a gate holds them all)."""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from _mgr_helpers import daemon, free_port

import nasflow as nf
from nasflow.events import TrialEnded, TrialStarted

SPACE = {"x": nf.Categorical(list(range(100)))}


def gated(gate: Path) -> Any:
    """An evaluator whose trials wait (in the worker) until the file ``gate`` exists."""

    def evaluate(model: Any, trial: nf.Trial) -> float:
        step = 0
        while not gate.exists():  # the workload stand-in: the test opens the gate
            trial.report(0.0, step=step)  # where a stopped trial learns it (TrialStopped)
            step += 1
            time.sleep(0.05)
        return float(trial.sample["x"])

    return evaluate


async def _raise_then_kill(config: nf.ExperimentConfig, gate: Path, via: str = "api"
                           ) -> nf.Experiment:
    """Concurrency raised from 1 to 3, then trial 0 killed: through the API, or (``via=
    "cli"``) with ``nasflow update`` / ``nasflow trial kill`` (the control endpoint)."""
    from nasflow.cli import main

    exp = nf.Experiment(SPACE, gated(gate), nf.strategy.Random(seed=1), config)
    events = exp.events(TrialStarted, TrialEnded)
    seen: list[Any] = []

    async def until_started(n: int) -> None:
        async for ev in events:
            seen.append(ev)
            if sum(isinstance(e, TrialStarted) for e in seen) == n:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(120):  # a guard against hanging, not a timed assertion
            await until_started(1)
            if via == "api":
                result = await exp.update(concurrency=3)
                assert result["changed"] == {"concurrency": [1, 3]}
            else:
                argv = ["update", exp.id, "--concurrency", "3"]
                assert await anyio.to_thread.run_sync(main, argv) == 0
            await until_started(3)
            # three ran together: the 2nd and 3rd started before any trial ended
            assert not any(isinstance(e, TrialEnded) for e in seen)
            if via == "api":
                killed = await exp.kill_trial(seen[0].trial_id)
                assert killed["killed"] is True
            else:
                argv = ["trial", "kill", exp.id, str(seen[0].trial_id)]
                assert await anyio.to_thread.run_sync(main, argv) == 0
        gate.touch()
    first = next(t for t in exp.trials() if t.id == seen[0].trial_id)
    assert first.state is nf.TrialState.CANCELED
    assert first.error is not None and first.error.type == "Killed"
    assert exp.state is nf.ExperimentState.DONE
    assert len(exp.trials()) == config.max_trials
    return exp


@pytest.mark.parametrize("via", ["api", "cli"])
async def test_local_workers_grow_when_concurrency_is_raised(tmp_path: Path, via: str
                                                             ) -> None:
    config = nf.ExperimentConfig(max_trials=5, concurrency=1, training_service="local")
    await _raise_then_kill(config, tmp_path / "gate", via)


@pytest.mark.parametrize("via", ["api", "cli"])
async def test_a_daemon_grants_a_bigger_share_when_concurrency_is_raised(tmp_path: Path,
                                                                         via: str) -> None:
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--workers", "3") as d:
        config = nf.ExperimentConfig(max_trials=5, concurrency=1, manager=d.url, token=token)
        exp = await _raise_then_kill(config, tmp_path / "gate", via)
    if via == "cli":  # recorded with who made it
        from nasflow.store import DB_NAME, StoreReader

        reader = StoreReader(exp.directory / DB_NAME)
        try:
            assert [(c["op"], c["source"]) for c in reader.changes()] == [
                ("update", "cli"), ("kill", "cli")]
        finally:
            reader.close()


async def _feed_while_it_runs(config: nf.ExperimentConfig, tmp: Path) -> None:
    """``enqueue`` and ``add_results``, each from the API and from the CLI (the control
    endpoint), while trial 0 holds the only slot on the manager's workers: the enqueued
    samples run there before the strategy's next proposal, the results are stored, never
    run, and every change is recorded with who made it."""
    from nasflow.cli import main
    from nasflow.store import DB_NAME, StoreReader

    gate = tmp / "gate"
    exp = nf.Experiment(SPACE, gated(gate), nf.strategy.Random(seed=3), config)
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(120):  # a guard against hanging, not a timed assertion
            async for _ in events:  # trial 0 runs (and waits at the gate)
                break
            exp.enqueue({"x": 91})
            exp.add_results([{"sample": {"x": 92}, "metric": 0.5}])
            cli_samples = tmp / "s.jsonl"
            cli_samples.write_text('{"x": 93}\n')
            cli_results = tmp / "r.jsonl"
            cli_results.write_text('{"sample": {"x": 94}, "metric": 0.25}\n')
            for argv in (["enqueue", exp.id, "--file", str(cli_samples)],
                         ["import", exp.id, str(cli_results)]):
                assert await anyio.to_thread.run_sync(main, argv) == 0
        gate.touch()
    assert exp.state is nf.ExperimentState.DONE
    by_x = {t.sample["x"]: t for t in exp.trials()}
    for x in (91, 93):  # run on the workers: the evaluator's value
        assert (by_x[x].origin, by_x[x].state, by_x[x].metric) == (
            "enqueued", nf.TrialState.SUCCEEDED, float(x))
    for x, metric in ((92, 0.5), (94, 0.25)):  # stored as given, never run
        assert (by_x[x].origin, by_x[x].state, by_x[x].metric) == (
            "added", nf.TrialState.SUCCEEDED, metric)
    proposed = sorted(t.id for t in exp.trials() if t.origin is None)
    assert proposed[0] == 0 and by_x[91].id < proposed[1] and by_x[93].id < proposed[1]
    assert len(exp.trials()) == config.max_trials + 2  # added results are not counted
    reader = StoreReader(exp.directory / DB_NAME)
    try:
        recorded = [(c["op"], c["source"]) for c in reader.changes()]
    finally:
        reader.close()
    assert recorded == [("enqueue", "api"), ("add_results", "api"), ("enqueue", "cli"),
                        ("add_results", "cli")]


async def test_local_workers_take_enqueued_samples_and_added_results(tmp_path: Path
                                                                      ) -> None:
    await _feed_while_it_runs(nf.ExperimentConfig(max_trials=4, concurrency=1,
                                                  training_service="local"), tmp_path)


async def test_a_daemon_runs_enqueued_samples_and_takes_added_results(tmp_path: Path
                                                                       ) -> None:
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--workers", "2") as d:
        await _feed_while_it_runs(nf.ExperimentConfig(max_trials=4, concurrency=1,
                                                      manager=d.url, token=token), tmp_path)
