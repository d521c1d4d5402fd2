"""``nasflow manager`` as a daemon: several experiments, restarts, signals."""

from __future__ import annotations

import os
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from _mgr_helpers import Harness, alive, daemon, free_port, setup_for, wait_exited

from nasflow._kernel import INTERRUPTED, TrialState
from nasflow.engine import ManagerEngine, ManagerGoneError, TrialSpec
from nasflow.evaluator import Trial
from nasflow.events import FinalMetric, IntermediateMetric, TrialEnded, TrialStarted
from nasflow.manager import TrialManager, manager_command, new_token
from nasflow.testing._engine_contract import hang_forever

STEPS = 30
BURSTS = 30  # bursty_reporter: BURSTS x BURST reports
BURST = 100


def steady_reporter(model: Any, trial: Trial) -> float:
    for step in range(STEPS):
        trial.report(float(step), step=step)
        time.sleep(0.04)  # simulated work: the trial outlives a manager restart
    return 1.0


def bursty_reporter(model: Any, trial: Trial) -> float:
    # many reports at once (they travel as `metrics` batches), then some simulated work
    for burst in range(BURSTS):
        for step in range(burst * BURST, (burst + 1) * BURST):
            trial.report(step / 1000, step=step)
        time.sleep(0.04)
    return 1.0


REPORTERS = {"one-by-one": (steady_reporter, STEPS), "in-bursts": (bursty_reporter,
                                                                    BURSTS * BURST)}


@pytest.mark.parametrize("reporter", list(REPORTERS))
async def test_manager_restart_mid_trial_delivers_every_metric_once(tmp_path: Path,
                                                                    reporter: str) -> None:
    port, token = free_port(), new_token()
    h = Harness()
    fn, steps_in_all = REPORTERS[reporter]
    setup = setup_for(fn, h, tmp_path)
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            logs = ("--log-dir", str(tmp_path / "logs"))  # a SIGKILLed daemon cannot clean up
            first = await stack.enter_async_context(
                daemon(port, token, "--workers", "1", *logs))
            later = AsyncExitStack()  # the second daemon outlives the engine
            await stack.enter_async_context(later)
            async with ManagerEngine(setup, manager=first.url, token=token) as engine:
                await engine.submit(TrialSpec(0, {"x": 1}))
                await h.first(lambda e: isinstance(e, IntermediateMetric)
                              and e.step == steps_in_all // 6)
                first.kill()  # a crash: no goodbye to anyone
                await first.process.wait()
                await later.enter_async_context(daemon(port, token, "--workers", "1", *logs))
                ended = await h.ended(0)
                assert ended.state is TrialState.SUCCEEDED, ended
    events = h.of(0)
    steps = [e.step for e in events if isinstance(e, IntermediateMetric)]
    assert steps == list(range(steps_in_all))
    assert [type(e) for e in events if not isinstance(e, IntermediateMetric)] == [
        TrialStarted, FinalMetric, TrialEnded]


@pytest.mark.parametrize("reporter", list(REPORTERS))
async def test_an_experiment_that_loses_its_connection_reattaches(tmp_path: Path,
                                                                  reporter: str) -> None:
    h = Harness()
    fn, steps_in_all = REPORTERS[reporter]
    setup = setup_for(fn, h, tmp_path)
    with anyio.fail_after(60):
        async with TrialManager(workers=1) as manager, \
                ManagerEngine(setup, manager=manager.url, token=manager.token) as engine:
            await engine.submit(TrialSpec(0, {"x": 1}))
            await h.first(lambda e: isinstance(e, IntermediateMetric)
                          and e.step == steps_in_all // 6)
            (port,) = manager._ports.values()
            port.connection.transport.abort()  # the network drops; nobody says goodbye
            ended = await h.ended(0)
            assert ended.state is TrialState.SUCCEEDED
    steps = [e.step for e in h.of(0) if isinstance(e, IntermediateMetric)]
    assert steps == list(range(steps_in_all))


async def test_two_experiments_share_one_manager_fairly(tmp_path: Path) -> None:
    ha, hb = Harness(), Harness()
    sa = setup_for(hang_forever, ha, tmp_path / "a", concurrency=2, experiment_id="exp-a")
    sb = setup_for(hang_forever, hb, tmp_path / "b", concurrency=2, experiment_id="exp-b")

    def started(trial_id: int) -> Any:
        return lambda e: isinstance(e, TrialStarted) and e.trial_id == trial_id

    with anyio.fail_after(60):
        async with TrialManager(workers=2) as manager:
            core = manager.core
            async with ManagerEngine(sa, manager=manager.url, token=manager.token) as a:
                assert a.capacity == 2  # alone: both workers
                for i in (0, 1):
                    await a.submit(TrialSpec(i, {"x": 1}))
                await ha.first(started(0))
                await ha.first(started(1))
                async with ManagerEngine(sb, manager=manager.url, token=manager.token) as b:
                    assert b.capacity == 1
                    assert core.experiments["exp-a"].slots == 1
                    await b.submit(TrialSpec(0, {"x": 1}))  # waits: both workers are busy
                    a.cancel(0)
                    # the freed worker goes to b (0 running), not to a (1 running)
                    await hb.first(started(0))
                    assert len(a.running) == 1 and len(b.running) == 1
                    b.cancel(0)
                    await b.wait_idle()
                assert core.experiments["exp-a"].slots == 2  # b left: a gets both back
                a.cancel(1)
                await a.wait_idle()


async def report_pid_and_wait(model: Any, trial: Trial) -> float:
    trial.report(float(os.getpid()))
    await anyio.sleep_forever()
    return 0.0


async def test_the_daemon_stops_its_workers_on_ctrl_c(tmp_path: Path) -> None:
    # SIGTERM is a restart instead: tests/faults/test_manager_restart.py
    h = Harness()
    setup = setup_for(report_pid_and_wait, h, tmp_path, concurrency=2)
    token = new_token()
    with anyio.fail_after(60):
        async with daemon(free_port(), token, "--workers", "2") as d:
            with pytest.raises(ManagerGoneError, match="shutting down"):
                async with ManagerEngine(setup, manager=d.url, token=token) as engine:
                    for i in (0, 1):
                        await engine.submit(TrialSpec(i, {"x": 1}))
                    pids = [int((await h.metric(i)).value) for i in (0, 1)]
                    d.process.send_signal(signal.SIGINT)
                    assert await d.process.wait() == 130
                    # the experiment learns why its trials ended: not their fault, so they
                    # are Interrupted (a resume runs them again), not FAILED
                    for i in (0, 1):
                        ended = await h.ended(i)
                        assert ended.state is TrialState.CANCELED
                        assert ended.error is not None and ended.error.type == INTERRUPTED
            for pid in pids:
                await wait_exited(pid)
                assert not alive(pid)


def test_manager_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        manager_command(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "nasflow manager --port 8765" in out and "NASFLOW_TOKEN" in out
