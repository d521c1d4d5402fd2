"""Faults on the Ray training service: a node removed mid-trial, a worker SIGKILLed, a
hung trial timed out (its process tree killed).

Trials block on a FIFO "gate" (opening it for reading blocks until the test holds it open
for writing), and report once before they block, so that the test acts on events, never on
time. Each trial writes ``<dir>/<id>-<attempt>`` = ``node pid`` before it reports.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import nasflow as nf
from nasflow.evaluator import Trial
from nasflow.events import IntermediateMetric, TrialEnded

SPACE = {"x": nf.Categorical(list(range(100)))}


class Gated:
    """Records where it runs, reports, then waits for the gate (a FIFO) to open."""

    def __init__(self, where: str, child: bool = False) -> None:
        self.where = where
        self.child = child

    def __call__(self, model: Any, trial: Trial) -> float:
        extra = ""
        if self.child:  # a process the trial started: it must die with the trial
            extra = f" {subprocess.Popen(['sleep', '1000']).pid}"
        note = Path(self.where) / f"{trial.id}-{trial.attempt}"
        note.write_text(f"{os.environ['NASFLOW_RAY_NODE']} {os.getpid()}{extra}")
        trial.report(0.0, step=0)
        os.close(os.open(Path(self.where) / "gate", os.O_RDONLY))  # blocks until opened
        return 1.0


def _gate(where: Path) -> Path:
    os.mkfifo(where / "gate")
    return where / "gate"


def _open_gate(gate: Path) -> int:
    # held open for writing: every reader's open() returns at once, now and later
    return os.open(gate, os.O_RDWR | os.O_NONBLOCK)


async def _run_until(exp: nf.Experiment, act: Callable[[Any], Any]) -> list[TrialEnded]:
    """Run ``exp``; ``await act(event)`` for each event (in order); return the ends."""
    ended: list[TrialEnded] = []
    async with anyio.create_task_group() as tg:
        async def follow() -> None:
            async for ev in exp.events():
                if isinstance(ev, TrialEnded):
                    ended.append(ev)
                await act(ev)
        tg.start_soon(follow)
        await exp.run()
    return ended


async def test_a_node_removed_mid_trial_retries_it_elsewhere(cluster: Any,
                                                             tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    cfg = nf.ExperimentConfig(max_trials=4, concurrency=2, training_service="ray",
                              trial_resources={"CPU": 2}, retry=1)
    exp = nf.Experiment(SPACE, Gated(str(tmp_path)), nf.strategy.Random(seed=0), cfg)
    reported: list[int] = []
    state: dict[str, Any] = {}

    async def act(ev: Any) -> None:
        if isinstance(ev, IntermediateMetric) and ev.attempt == 0:
            reported.append(ev.trial_id)
            if len(reported) == 2:  # both nodes busy: take the first trial's node away
                victim = (tmp_path / f"{reported[0]}-0").read_text().split()[0]
                node = next(n for n in cluster.worker_nodes if n.node_id == victim)
                state["victim"] = victim
                await anyio.to_thread.run_sync(
                    lambda: cluster.remove_node(node, allow_graceful=False))
        if isinstance(ev, TrialEnded) and ev.error is not None and "new" not in state:
            # a node joins: the retry has room there (the other node's trial still waits)
            # on this thread (Ray sets signal handlers); wait=False: the loop goes on
            state["new"] = cluster.add_node(num_cpus=2, wait=False).node_id
        if isinstance(ev, IntermediateMetric) and ev.attempt == 1:
            state["gate"] = _open_gate(gate)

    try:
        with anyio.fail_after(240):
            ended = await _run_until(exp, act)
    finally:
        if "gate" in state:
            os.close(state["gate"])
    lost = [e for e in ended if e.error is not None]
    assert len(lost) == 1 and lost[0].error is not None
    assert lost[0].error.type == "NodeLost", lost[0].error
    assert lost[0].trial_id == reported[0] and state["victim"] in lost[0].error.message
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 4  # none lost
    assert sorted(e.trial_id for e in ended if e.error is None) == [t.id for t in trials]
    retried = (tmp_path / f"{reported[0]}-1").read_text().split()[0]
    assert retried == state["new"]  # capacity followed the node that joined


async def test_a_worker_sigkilled_fails_its_trial_as_worker_lost(cluster: Any,
                                                                 tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    cfg = nf.ExperimentConfig(max_trials=2, concurrency=1, training_service="ray",
                              max_identical_failures=None)
    exp = nf.Experiment(SPACE, Gated(str(tmp_path)), nf.strategy.Random(seed=1), cfg)
    state: dict[str, Any] = {}

    async def act(ev: Any) -> None:
        if isinstance(ev, IntermediateMetric) and not state:
            pid = int((tmp_path / f"{ev.trial_id}-0").read_text().split()[1])
            state["pid"] = pid
            os.kill(pid, signal.SIGKILL)
        if isinstance(ev, TrialEnded) and "gate" not in state:
            state["gate"] = _open_gate(gate)  # the replacement actor runs the next trial

    try:
        with anyio.fail_after(180):
            ended = await _run_until(exp, act)
    finally:
        if "gate" in state:
            os.close(state["gate"])
    first, second = ended
    assert first.state is nf.TrialState.FAILED and first.error is not None
    assert first.error.type == "WorkerLost", first.error
    assert "SIGKILL" in first.error.message
    assert second.state is nf.TrialState.SUCCEEDED


async def test_a_hung_trial_times_out_and_its_process_tree_is_killed(
        cluster: Any, tmp_path: Path) -> None:
    _gate(tmp_path)  # never opened: the trial hangs in open()
    cfg = nf.ExperimentConfig(max_trials=1, concurrency=1, training_service="ray",
                              trial_timeout=1)
    exp = nf.Experiment(SPACE, Gated(str(tmp_path), child=True), nf.strategy.Random(seed=2),
                        cfg)
    with anyio.fail_after(180):
        await exp.run()
    (trial,) = exp.trials()
    assert trial.state is nf.TrialState.TIMEOUT
    _, worker, child = (tmp_path / f"{trial.id}-0").read_text().split()
    for pid in (int(worker), int(child)):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone and reaped
        try:
            with anyio.fail_after(30):
                await anyio.wait_readable(fd)  # readable once it has exited
        finally:
            os.close(fd)


_KILLED = '''
import os, sys
import anyio, ray
import nasflow as nf

ray.init(address=sys.argv[1], logging_level="WARNING", configure_logging=False)
where = sys.argv[2]


def gated(model, trial):
    note = os.path.join(where, f"{trial.id}-{trial.attempt}")
    with open(note, "w") as f:
        f.write(str(os.getpid()))
    os.close(os.open(os.path.join(where, "started"), os.O_WRONLY))  # until the test reads
    os.close(os.open(os.path.join(where, "gate"), os.O_RDONLY))  # until the test opens it
    return float(os.getpid())


cfg = nf.ExperimentConfig(max_trials=3, concurrency=1, training_service="ray")
exp = nf.Experiment({"x": nf.Categorical(list(range(10)))}, gated,
                    nf.strategy.Random(seed=0), cfg, id="killed")
anyio.run(exp.run)
'''


async def _started(fifo: Path, process: Any) -> None:
    """Until a trial of ``process`` opened ``fifo`` for writing; fails if ``process``
    exits first (its output is the test's)."""
    async with anyio.create_task_group() as tg:
        async def opened() -> None:
            fd = await anyio.to_thread.run_sync(os.open, fifo, os.O_RDONLY,
                                                abandon_on_cancel=True)
            os.close(fd)
            tg.cancel_scope.cancel()

        tg.start_soon(opened)
        code = await process.wait()
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # frees the abandoned open
        raise AssertionError(f"the experiment process exited ({code}) before its trial ran")


def _named(namespace: str) -> list[str]:
    import ray

    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == namespace]


async def test_kill_9_of_the_experiment_process_then_resume_re_attaches(
        cluster: Any, tmp_path: Path) -> None:
    import sys

    gate = _gate(tmp_path)
    os.mkfifo(tmp_path / "started")
    script = tmp_path / "killed.py"
    script.write_text(_KILLED)
    process = await anyio.open_process([sys.executable, str(script), cluster.address,
                                        str(tmp_path)], stdout=None, stderr=None)
    try:
        with anyio.fail_after(120):  # the first trial is running on an actor
            await _started(tmp_path / "started", process)
        process.kill()  # SIGKILL: no cleanup of any kind
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # its actor outlived it (detached, named in the experiment's namespace)
    assert len(_named("nasflow-killed")) == 1
    started = os.open(tmp_path / "started", os.O_RDONLY | os.O_NONBLOCK)  # never blocks now
    opened = _open_gate(gate)
    try:
        with anyio.fail_after(180):
            exp = await nf.Experiment.resume("killed")
    finally:
        os.close(opened)
        os.close(started)
    trials = exp.trials()
    assert [t.id for t in trials] == [0, 1, 2]
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 3
    # the trial running at the kill was re-attached, not run again: one attempt, whose
    # worker (the one that started it before the kill) gave the result that was kept
    assert sorted(p.name for p in tmp_path.glob("0-*")) == ["0-0"]
    assert trials[0].metric == float((tmp_path / "0-0").read_text())
    assert [t.attempt for t in trials] == [0, 0, 0]
    assert _named("nasflow-killed") == []  # no actor left behind
