"""The Ray training service end to end: a search on a local 3-node cluster, resources
honoured, a large evaluator through the object store.

Evaluators are module-level functions of this module; workers import it by reference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

import nasflow as nf
from nasflow.evaluator import Trial

SPACE = {"x": nf.Categorical(list(range(1, 41)))}


def square(model: Any, trial: Trial) -> float:
    trial.report(0.5, step=1)
    return float(trial.sample["x"] ** 2)


def alone_on_node(model: Any, trial: Trial) -> float:
    """Fails if another trial runs on this node meanwhile (an exclusive lock file)."""
    node = os.environ["NASFLOW_RAY_NODE"]
    lock = Path(os.environ["LOCKS"]) / node
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # FileExistsError: shared
    try:
        os.write(fd, str(trial.id).encode())
        for _ in range(50):  # some work while holding the node
            sum(i * i for i in range(20_000))
    finally:
        os.close(fd)
        os.unlink(lock)
    return 1.0


class Holds:
    """An evaluator holding a large array (a data set in memory)."""

    def __init__(self, size: int) -> None:
        self.data = os.urandom(size)

    def __call__(self, model: Any, trial: Trial) -> float:
        return float(len(self.data))


async def test_a_search_runs_on_the_cluster(cluster: Any) -> None:
    cfg = nf.ExperimentConfig(max_trials=8, concurrency=4, training_service="ray",
                              trial_resources={"CPU": 1}, retry=0)
    exp = nf.Experiment(SPACE, square, nf.strategy.Random(seed=0), cfg)
    ended = []
    with anyio.fail_after(180):
        async with anyio.create_task_group() as tg:
            async def follow() -> None:
                async for ev in exp.events():
                    if isinstance(ev, nf.events.TrialEnded):
                        ended.append(ev.trial_id)
            tg.start_soon(follow)
            await exp.run()
    trials = exp.trials()
    assert len(trials) == 8
    assert {t.state for t in trials} == {nf.TrialState.SUCCEEDED}
    assert all(t.metric == t.sample["x"] ** 2 for t in trials)
    assert sorted(ended) == sorted(t.id for t in trials)  # each ended once
    # its actors (detached, named in the experiment's namespace) are gone with it
    import ray

    assert [a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == f"nasflow-{exp.id}"] == []


async def test_a_trial_asking_two_cpus_never_shares_a_two_cpu_node(
        cluster: Any, tmp_path: Path) -> None:
    cfg = nf.ExperimentConfig(max_trials=6, concurrency=4, training_service="ray",
                              trial_resources={"CPU": 2})
    exp = nf.Experiment(SPACE, LockedOnNode(str(tmp_path)), nf.strategy.Random(seed=1), cfg)
    with anyio.fail_after(180):
        await exp.run()
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 6, [
        t.error for t in trials]


class LockedOnNode:
    """``alone_on_node`` with the lock directory carried by the evaluator."""

    def __init__(self, locks: str) -> None:
        self.locks = locks

    def __call__(self, model: Any, trial: Trial) -> float:
        os.environ["LOCKS"] = self.locks
        return alone_on_node(model, trial)


async def test_a_200_mb_evaluator_goes_through_the_object_store(cluster: Any) -> None:
    cfg = nf.ExperimentConfig(max_trials=2, concurrency=2, training_service="ray")
    exp = nf.Experiment(SPACE, Holds(200 * 2**20), nf.strategy.Random(seed=2), cfg)
    with anyio.fail_after(240):
        await exp.run()
    assert [t.metric for t in exp.trials()] == [200.0 * 2**20] * 2


async def test_a_manager_daemon_places_its_workers_on_the_cluster(cluster: Any) -> None:
    import signal
    import sys

    from anyio.streams.text import TextReceiveStream

    from nasflow.manager import new_token

    token = new_token()
    process = await anyio.open_process(
        [sys.executable, "-m", "nasflow.manager", "--ray", cluster.address, "--workers", "2",
         f"--token={token}"], stderr=None)
    assert process.stdout is not None
    try:
        buffer = ""
        with anyio.fail_after(120):
            async for chunk in TextReceiveStream(process.stdout):
                buffer += chunk
                if "url: " in buffer and buffer.endswith("\n"):
                    break
        url = buffer.split("url: ", 1)[1].split()[0]
        cfg = nf.ExperimentConfig(max_trials=4, concurrency=2, manager=url, token=token)
        exp = nf.Experiment(SPACE, where, nf.strategy.Random(seed=3), cfg)
        with anyio.fail_after(180):
            await exp.run()
    finally:
        process.send_signal(signal.SIGINT)
        with anyio.move_on_after(30):
            await process.wait()
        if process.returncode is None:
            process.kill()
        await process.aclose()
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] * 4
    assert all(t.metric == 1.0 for t in trials)  # each ran under a Ray actor


def where(model: Any, trial: Trial) -> float:
    return 1.0 if os.environ.get("NASFLOW_RAY_NODE") else 0.0
