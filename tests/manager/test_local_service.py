"""The local training service end to end: real worker processes, real sockets.

Evaluators are module-level functions of this module; workers import it by reference
(the experiment's ``sys.path`` travels with the setup, so they find it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from _mgr_helpers import alive, embedded, group_alive, wait_exited

import nasflow as nf
from nasflow._kernel import INTERRUPTED, TrialState
from nasflow.engine import TrialSpec
from nasflow.evaluator import Trial
from nasflow.events import IntermediateMetric

# --- evaluators -------------------------------------------------------------------------------


def whoami(model: Any, trial: Trial) -> dict[str, float]:
    print(f"stdout of trial {trial.id}")
    print(f"stderr of trial {trial.id}", file=sys.stderr)
    time.sleep(0.05)  # simulated work, so that both workers get trials
    return {"default": float(trial.sample["x"]), "pid": float(os.getpid())}


def report_pid_then_hang(model: Any, trial: Trial) -> float:
    trial.report(float(os.getpid()))
    time.sleep(3600)  # a trial that never ends on its own
    return 0.0


def spawn_child_then_hang(model: Any, trial: Trial) -> float:
    # a non-cooperative trial with a child process of its own: only a kill ends it
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    trial.report({"default": float(os.getpid()), "child": float(child.pid)})
    print("about to hang", file=sys.stderr, flush=True)
    time.sleep(3600)
    return 0.0


async def report_then_wait(model: Any, trial: Trial) -> float:
    trial.report(1.0)
    await anyio.sleep_forever()
    return 0.0


def pid_only(model: Any, trial: Trial) -> float:
    return float(os.getpid())


# --- tests ------------------------------------------------------------------------------------


async def test_search_with_two_workers(home: Path) -> None:
    """A whole search on two warm workers: every trial succeeds, both workers work, and
    each trial's stdout and stderr land in its own folder."""
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2, 3, 4, 5, 6])}, whoami, nf.strategy.Random(seed=1),
        nf.ExperimentConfig(max_trials=6, concurrency=2, training_service="local"),
    )
    with anyio.fail_after(60):
        await exp.run()
    trials = exp.trials()
    assert [t.state for t in trials] == [TrialState.SUCCEEDED] * 6
    assert len({t.metrics["pid"] for t in trials}) == 2
    assert os.getpid() not in {t.metrics["pid"] for t in trials}
    folder = exp.directory / "trials" / "3"
    assert (folder / "stdout.log").read_text() == "stdout of trial 3\n"
    assert (folder / "stderr.log").read_text() == "stderr of trial 3\n"


async def test_stopping_the_experiment_interrupts_its_trials(home: Path) -> None:
    """A stop cuts trials off as INTERRUPTED (a resume runs them again), not as failures."""
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2])}, report_then_wait, nf.strategy.GridSearch(),
        nf.ExperimentConfig(concurrency=2, training_service="local"),
    )
    with anyio.fail_after(60):
        async with exp:
            seen = 0
            async for _ in exp.events(IntermediateMetric):
                seen += 1
                if seen == 2:  # both trials run
                    await exp.stop("enough")
    trials = exp.trials()
    assert [t.state for t in trials] == [TrialState.CANCELED] * 2
    assert all(t.error is not None and t.error.type == INTERRUPTED for t in trials), trials


async def test_sigkilled_worker_fails_its_trial_and_is_replaced(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with embedded(report_pid_then_hang, tmp_path, kill_grace=0.5) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            pid = int((await h.metric(0)).value)
            os.kill(pid, signal.SIGKILL)
            ended = await h.ended(0)
            assert ended.state is TrialState.FAILED
            assert ended.error is not None and ended.error.type == "WorkerDied"
            assert "SIGKILL" in ended.error.message and str(pid) in ended.error.message
            # the search goes on, on a new worker
            await engine.submit(TrialSpec(1, {"x": 1}))
            assert int((await h.metric(1)).value) != pid
            engine.cancel(1)
            await engine.wait_idle()


async def test_worker_dying_shows_the_end_of_its_stderr(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with embedded(die_loudly, tmp_path) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
    assert ended.state is TrialState.FAILED and ended.error is not None
    assert "exited with code 3" in ended.error.message
    assert "last words before dying" in ended.error.message


def die_loudly(model: Any, trial: Trial) -> float:
    print("last words before dying", file=sys.stderr, flush=True)
    os._exit(3)


async def test_hanging_trial_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        # the timeout must outlast the trial's start and its child's spawn, or the trial
        # times out before it reports the pids this test checks (it did under load)
        async with embedded(spawn_child_then_hang, tmp_path, trial_timeout=4.0,
                            kill_grace=0.5) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            value = (await h.metric(0)).value
            worker, child = int(value["default"]), int(value["child"])
            assert alive(worker) and alive(child)
            ended = await h.ended(0)
            assert ended.state is TrialState.TIMEOUT, ended
            assert ended.error is not None and "trial_timeout=4s" in ended.error.message
            assert "kill_grace" in ended.error.message
            await wait_exited(child)
            assert not alive(worker) and not alive(child)
            assert group_alive(worker) == []


async def test_one_trial_per_worker_process(tmp_path: Path) -> None:
    with anyio.fail_after(60):
        async with embedded(pid_only, tmp_path, concurrency=2,
                            max_trials_per_worker=1) as (engine, h):
            for i in range(4):
                await engine.submit(TrialSpec(i, {"x": 1}))
            await engine.wait_idle()
    finals = [e.value for e in h.events if type(e).__name__ == "FinalMetric"]
    assert len(finals) == 4 and len(set(finals)) == 4
