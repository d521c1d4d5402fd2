"""The manager's records: experiments, trials and workers, and the fair-share rule.

Plain data; ``ManagerCore`` (``_core.py``) owns and changes them.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nasflow._kernel import TrialError, TrialState
from nasflow.manager._pool import WorkerProcess
from nasflow.protocol import SequencedMessage, ServerSession, Setup

__all__ = [
    "ExperimentPort",
    "ExperimentRecord",
    "Held",
    "Phase",
    "TrialKey",
    "TrialRecord",
    "WorkerRecord",
    "fair_shares",
    "payload_digest",
]

TrialKey = tuple[str, int, int]
"""``(experiment_id, trial_id, attempt)``."""

Done = Callable[[], None]
Held = tuple[SequencedMessage, str | None, int | None, Done | None]
"""A message on its way to an experiment: ``(message, origin, origin_seq, done)``."""
_order = itertools.count()


def _noop() -> None:
    return None


def _set_event() -> asyncio.Event:
    event = asyncio.Event()
    event.set()
    return event


def payload_digest(payload: bytes) -> str:
    """A fingerprint of a setup payload: which workers hold which setup."""
    return hashlib.blake2b(payload, digest_size=12).hexdigest()


class ExperimentPort(Protocol):
    """How the manager reaches one attached experiment: a WebSocket session or, for an
    embedded manager, a direct link to its engine."""

    def deliver(self, message: SequencedMessage, origin: str | None, origin_seq: int | None,
                done: Done | None) -> None:
        """Queue ``message`` for the experiment; call ``done`` once it is durable there."""

    def close(self, reason: str) -> None:
        """Say goodbye: the manager will not serve this experiment any more."""

    def hand_over(self, reason: str) -> list[Held]:
        """Another client took the experiment over (it came back as a new process): say
        goodbye, and return what was delivered here and not made durable, oldest first,
        with the ``done`` callbacks that ack it onwards (``capacity`` grants excepted)."""


class Phase(enum.Enum):
    """Where a trial is, as the manager sees it."""

    QUEUED = "queued"
    """Submitted, waiting for a worker."""
    RUNNING = "running"
    """Given to a worker (or claimed by one that re-attached)."""
    ORPHAN = "orphan"
    """The experiment says it runs, but no worker has claimed it (after a restart)."""


@dataclass(eq=False)
class ExperimentRecord:
    """One experiment the manager serves."""

    id: str
    port: ExperimentPort | None = None
    payload: bytes = b""
    digest: str = ""
    setup: Setup | None = None
    """The ``setup`` its workers get (inline, or naming a file: ``SetupSpool``)."""
    concurrency: int = 1
    """The slots it wants (``setup.concurrency``)."""
    devices: int = 1
    """The slots (workers) one of its trials takes: one runs it, the rest are lent to it."""
    trial_timeout: float | None = None
    queue: deque[TrialRecord] = field(default_factory=deque)
    trials: dict[tuple[int, int], TrialRecord] = field(default_factory=dict)
    running: int = 0
    slots: int = -1
    """The capacity last granted (-1: none yet)."""
    failure: TrialError | None = None
    """Why the experiment cannot run trials (its setup failed to load)."""
    setup_deaths: int = 0
    """Workers that died while loading this experiment's setup."""
    held: list[Held] = field(default_factory=list)
    """Events of re-attached workers that arrived before the experiment did."""
    detach_timer: asyncio.TimerHandle | None = None
    order: int = field(default_factory=lambda: next(_order))

    @property
    def attached(self) -> bool:
        """Whether the experiment has sent its setup (and not left)."""
        return self.port is not None and self.setup is not None


@dataclass(eq=False)
class TrialRecord:
    """One attempt of one trial."""

    exp: ExperimentRecord
    trial_id: int
    attempt: int
    sample: dict[str, Any]
    phase: Phase = Phase.QUEUED
    worker: WorkerRecord | None = None
    lent: list[WorkerRecord] = field(default_factory=list)
    """Workers held idle for it while it runs on ``worker`` (a ``devices=N`` trial's
    other N - 1 processes stand on their slots)."""
    stop: tuple[TrialState, str] | None = None
    """The state it must end in, once a stop was asked for."""
    killed: bool = False
    """The manager killed its worker because it did not stop within ``kill_grace``."""
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def key(self) -> TrialKey:
        return (self.exp.id, self.trial_id, self.attempt)

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


@dataclass(eq=False)
class WorkerRecord:
    """One worker: its session (kept across reconnects) and its process."""

    session_id: str
    session: ServerSession
    gpu: str | None
    process: WorkerProcess | None = None
    wake: Done = _noop
    """Makes the connection's writer send what the session queued (a no-op offline)."""
    connected: bool = False
    ready: bool = False
    """Connected and handshake done: may be given setups and trials."""
    ever_ready: bool = False
    disconnected: asyncio.Event = field(default_factory=_set_event)
    """Set while no connection is open."""
    trial: TrialRecord | None = None
    lent_to: TrialRecord | None = None
    """The trial (running on another worker) whose extra process stands on this slot."""
    stale: TrialRecord | None = None
    """A trial it re-attached with that another worker runs now: its events are dropped."""
    setups: dict[str, str] = field(default_factory=dict)
    """Setups sent to it: experiment id -> payload digest."""
    setup_seqs: dict[int, str] = field(default_factory=dict)
    """Setups it has not acked yet: seq -> experiment id."""
    started: int = 0
    """Trials given to it."""
    pending: int = 0
    """Its events handed on but not yet durable at the experiment (not acked to it)."""
    retiring: bool = False
    """It runs its last trial (or none); a replacement was started."""
    connection: object | None = None
    """The connection that drives the session now (the server layer's token)."""

    @property
    def idle(self) -> bool:
        return (self.ready and self.trial is None and self.lent_to is None
                and self.stale is None and not self.retiring)

    def leave(self, reason: str) -> None:
        """Say ``bye`` (it exits on it). It gets no setup or trial any more, although it
        stays connected until it goes: a send on its ended session would raise into
        whoever called the core."""
        self.ready = False
        self.session.close(reason)
        self.wake()

    def send(self, message: SequencedMessage) -> int:
        """Queue ``message`` on its session and wake the connection; returns its seq."""
        seq = self.session.send(message)
        self.wake()
        return seq


def fair_shares(total: int, demands: list[int]) -> list[int]:
    """Max-min fair integer shares of ``total`` slots (each at least 1, at most its demand).

    Experiments that want less than an equal share keep what they want; the rest is split
    equally among the others (earlier ones get the remainder). When there are more
    experiments than slots, each still gets 1: the manager then queues their trials and
    dispatches the least served experiment first.
    """
    shares = [0] * len(demands)
    left = total
    pending = sorted(range(len(demands)), key=lambda i: demands[i])
    for n, i in enumerate(pending):
        fair = left // (len(pending) - n) if left > 0 else 0
        shares[i] = min(demands[i], max(fair, 0))
        left -= shares[i]
    # hand what integer division left over to the earliest experiments still wanting more
    for i in range(len(demands)):
        if left <= 0:
            break
        if shares[i] < demands[i]:
            shares[i] += 1
            left -= 1
    return [max(1, min(s, d)) for s, d in zip(shares, demands, strict=True)]
