"""The Ray training service end to end: a search on a local 3-node cluster, resources
honoured, a large evaluator through the object store, a daemon's workers on the cluster,
ASHA stopping trials in Ray actors (the actor reused after), and a one-shot search whose
supernet trains as one Ray task with the resources asked, its results in the store.

Evaluators and spaces are module-level in this module; workers and the one-shot task
import it by reference. One module: one cluster start for all of them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.evaluator import Trial
from nasflow.events import StrategyProgress

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


class Gated:
    """Trials wait (reporting) until the file ``gate`` exists: the test opens it."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    def __call__(self, model: Any, trial: Trial) -> float:
        import time

        step = 0
        while not os.path.exists(self.gate):
            trial.report(0.0, step=step)  # where a stopped trial learns it
            step += 1
            time.sleep(0.05)
        return float(trial.sample["x"])


async def test_raising_concurrency_starts_trials_on_the_cluster_at_once(
        cluster: Any, tmp_path: Path) -> None:
    # issue 15: the Ray pool grows like local workers (actors for the slots it lacks)
    gate = tmp_path / "gate"
    cfg = nf.ExperimentConfig(max_trials=4, concurrency=1, training_service="ray",
                              trial_resources={"CPU": 1})
    exp = nf.Experiment(SPACE, Gated(str(gate)), nf.strategy.Random(seed=2), cfg)
    events = exp.events(nf.events.TrialStarted, nf.events.TrialEnded)
    seen: list[Any] = []

    async def until_started(n: int) -> None:
        async for ev in events:
            seen.append(ev)
            if sum(isinstance(e, nf.events.TrialStarted) for e in seen) == n:
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(exp.run)
        with anyio.fail_after(180):  # a guard against hanging, not a timed assertion
            await until_started(1)
            await exp.update(concurrency=3)
            await until_started(3)
        # three ran together: the 2nd and 3rd started before any trial ended
        assert not any(isinstance(e, nf.events.TrialEnded) for e in seen)
        gate.touch()
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 4


# --- a scheduler stops trials on the cluster ----------------------------------------


ASHA_SPACE = {"x": nf.Categorical([4, 3, 2, 1])}  # grid order: the first is the best


class Climb:
    """Writes ``<where>/<id>`` = ``node pid``, reports ``x`` at step 0; the best trial
    (x=4) goes on to step 3 and returns, every other one waits at the first rung until it
    is stopped (ASHA must stop it: nothing else ends it)."""

    def __init__(self, where: str) -> None:
        self.where = where

    async def __call__(self, model: Any, trial: Trial) -> float:
        x = trial.sample["x"]
        note = Path(self.where) / str(trial.id)
        note.write_text(f"{os.environ['NASFLOW_RAY_NODE']} {os.getpid()}")
        trial.report(float(x), step=0)
        if x != 4:
            await anyio.sleep_forever()  # cancelled by the stop
        for step in range(1, 4):
            trial.report(float(x), step=step)
        return float(x)


async def test_asha_stops_trials_running_in_ray_actors_and_the_actor_is_reused(
        cluster: Any, tmp_path: Path) -> None:
    cfg = nf.ExperimentConfig(max_trials=4, concurrency=1, training_service="ray",
                              trial_resources={"CPU": 1})
    exp = nf.Experiment(ASHA_SPACE, Climb(str(tmp_path)), nf.strategy.GridSearch(), cfg,
                        scheduler=nf.strategy.ASHA(max_t=4, reduction_factor=2))
    with anyio.fail_after(180):
        await exp.run()
    trials = exp.trials()
    assert [t.state for t in trials] == [nf.TrialState.SUCCEEDED] + [
        nf.TrialState.EARLY_STOPPED] * 3, [t.error for t in trials]
    for t in trials[1:]:
        assert t.error is not None and t.error.type == "Stopped"
        assert t.error.message.startswith("ASHA: at the rung of "), t.error
        assert t.metric is None
    assert trials[0].metric == 4.0
    # one warm actor ran all four, the stopped ones included: a stop does not cost it
    where = {(tmp_path / str(t.id)).read_text() for t in trials}
    assert len(where) == 1, where
    _node, pid = where.pop().split()
    assert int(pid) != os.getpid()


# --- a one-shot search as one Ray task ---------------------------------------------


class Keep(snn.ModelSpace):
    """``y`` is linear in ``x``: keeping ``x`` fits it, destroying it cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"destroy": nn.Tanhshrink(), "keep": nn.Identity()},
                                  label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x))  # type: ignore[no-any-return]


def _data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (x[:96], y[:96]), (x[96:], y[96:])


async def test_a_one_shot_search_trains_its_supernet_as_one_ray_task(cluster: Any) -> None:
    import ray

    train, val = _data()
    evaluator = nf.evaluator.Regression(train, val, epochs=2, batch_size=16, lr=0.05)
    cfg = nf.ExperimentConfig(training_service="ray", trial_resources={"CPU": 2})
    exp = nf.Experiment(Keep(), evaluator, nf.strategy.DARTS(top_k=2), cfg)
    progress: list[dict[str, Any]] = []
    with anyio.fail_after(180):
        async with anyio.create_task_group() as tg:
            async def follow() -> None:
                async for ev in exp.events():
                    if isinstance(ev, StrategyProgress):
                        progress.append(dict(ev.values))
            tg.start_soon(follow)
            await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    (placed,) = [p for p in progress if p.get("phase") == "placed"]
    assert placed["pid"] != os.getpid()  # not in the experiment process...
    head = ray.get_runtime_context().get_node_id()
    assert placed["ray_node"] != head  # ...on a worker node (the head has no CPUs)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    assert nodes[placed["ray_node"]].get("CPU") == 2.0  # a node that holds what it asked
    # the task's epochs came back as the search's own progress, and the checkpoint
    assert [p["epoch"] for p in progress if p.get("phase") == "train"] == [1, 2]
    assert (exp.directory / "strategy").is_dir()
    # the architectures were recorded in the store as usual
    trials = exp.trials()
    assert len(trials) == 2
    assert {t.state for t in trials} == {nf.TrialState.SUCCEEDED}
    with nf.load_experiment(exp.id) as saved:
        assert [t.sample for t in saved.trials()] == [t.sample for t in trials]
