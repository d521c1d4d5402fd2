"""What the core sends a worker it keeps account of, and must keep it right.

A worker the core told to leave (``bye``: recycled, or adopted from an earlier manager and
done) is still connected until it goes: the core must give it nothing more. A setup sent
to it raised ``SessionEndedError`` into whoever called the core -- an experiment attaching
(``port_setup``), which an in-memory link (a hosted experiment) would fail. And a worker
keeps only the last ``WORKER_SETUPS`` setups: the core must send a dropped one again."""

from __future__ import annotations

from typing import Any

from nasflow.manager._core import ManagerCore
from nasflow.manager._state import WorkerRecord
from nasflow.protocol import WORKER_SETUPS, Capacity, Role, ServerSession, Setup, Submit


class Port:
    def __init__(self) -> None:
        self.got: list[Any] = []

    def deliver(self, message: Any, origin: Any, origin_seq: Any, done: Any) -> None:
        self.got.append(message)

    def close(self, reason: str) -> None:
        self.got.append(("closed", reason))

    def hand_over(self, reason: str) -> list[Any]:
        return []


def _ready_worker(core: ManagerCore, name: str) -> WorkerRecord:
    session = ServerSession(Role.WORKER, peer_session=name)
    worker = WorkerRecord(name, session, None)
    worker.ready = worker.ever_ready = True
    core.fleet.workers[name] = worker
    return worker


async def test_a_retired_worker_gets_no_setup_and_no_trial() -> None:
    core = ManagerCore(pool=None, slots=[None, None])
    gone = _ready_worker(core, "worker-gone")
    gone.retiring = True
    core.fleet.retire(gone)  # bye sent; its connection is still open
    live = _ready_worker(core, "worker-live")
    port = Port()
    core.port_setup(port, Setup(experiment_id="e1", payload=b"x", concurrency=2))
    core.submit(port, Submit(experiment_id="e1", trial_id=1, attempt=0, sample={"a": 1}))
    assert next(m for m in port.got if isinstance(m, Capacity)).slots == 2
    assert "e1" not in gone.setups
    assert live.trial is not None and live.trial.trial_id == 1


async def test_a_setup_the_worker_dropped_is_sent_again_before_its_trial() -> None:
    """A worker keeps the last ``WORKER_SETUPS`` setups it was sent: with more experiments
    than that on a daemon (20 hosted ones), the oldest experiment's next trial found no
    setup (``SetupMissing``, three times: the experiment failed)."""
    core = ManagerCore(pool=None, slots=[None])
    worker = _ready_worker(core, "worker-1")
    port = Port()
    ids = [f"e{i}" for i in range(WORKER_SETUPS + 1)]
    for i, exp_id in enumerate(ids):
        core.port_setup(port, Setup(experiment_id=exp_id, payload=bytes([i]), concurrency=1))
    assert list(worker.setups) == ids[1:]  # the worker's account: e0 was dropped
    core.submit(port, Submit(experiment_id="e0", trial_id=0, attempt=0, sample={}))
    assert worker.trial is not None and worker.trial.exp.id == "e0"
    assert list(worker.setups) == [*ids[2:], "e0"]  # sent again, before the trial
