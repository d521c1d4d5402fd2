"""The engine contract: engines execute trials; they never decide what to run."""

from __future__ import annotations

import asyncio
from abc import ABC
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from nasflow._kernel import INTERRUPTED, Clock, Objective, TrialState, WallClock
from nasflow.evaluator import Evaluator, Stop, build_model
from nasflow.events import Event

__all__ = ["Clock", "Engine", "EngineSetup", "Publish", "Stop", "TrialSpec", "WallClock",
           "build_model"]


class Publish(Protocol):
    """Deliver an event; ``wait=False`` never waits (used while shutting down)."""

    def __call__(self, event: Event, *, wait: bool = True) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class TrialSpec:
    """What an engine runs: a trial id, its sample, and which attempt this is."""

    id: int
    sample: dict[str, Any]
    attempt: int = 0


@dataclass(frozen=True)
class EngineSetup:
    """Everything an engine needs from its experiment."""

    space: Any
    """The space given to the experiment; a model space is frozen into each trial's model."""
    evaluator: Evaluator
    objective: Objective
    publish: Publish
    trial_directory: Callable[[int], Path]
    experiment_id: str
    concurrency: int = 1
    trial_timeout: float | None = None
    flush: Callable[[], Awaitable[None]] | None = None
    """Returns once everything published so far is durable (the store's commit); engines
    that acknowledge events to remote workers await it before acking. ``None``: no store."""


class Engine(ABC):
    """Runs trials with some capacity and reports them as events through ``publish``.

    Use as an async context manager. ``submit`` waits until the engine can take the trial
    (backpressure, no polling); the engine then publishes ``TrialStarted``, metrics,
    ``FinalMetric`` and exactly one ``TrialEnded`` for it, every event stamped by
    ``clock``.

    The base does the bookkeeping every engine needs -- the trials it holds, its capacity,
    the waits for room and for idleness, the task group its tasks run in -- and calls small
    protected hooks (a template, like syne-tune's ``TrialBackend``):

    * ``_open(tg)`` / ``_drain(exc)`` / ``_release()``: start, wind down, clean up;
    * ``_before_capacity(spec)``, ``_accept(spec) -> entry`` (register, synchronously)
      and ``_begin(entry)`` (async): the three steps of ``submit``;
    * ``_stop_trial(entry, stop) -> bool``: the step of ``cancel``;
    * ``_resize(n)``: the step of ``resize`` (default: the capacity is ``n`` at once).

    A subclass reports what happens with ``_ended(trial_id)`` (a trial left: its slot is
    free), ``_set_capacity(n)`` (its capacity changed) and ``_fail(exc)`` (it cannot go
    on: ``submit`` and ``wait_capacity`` raise ``exc``; ``_failed(exc)``).
    """

    clock: Clock
    """Stamps every event of this engine's trials (and the experiment's, which reads it
    here): ``clock.now()``; a ``WallClock`` unless the engine keeps its own time
    (``SimulatedEngine``)."""

    def __init__(self, setup: EngineSetup, *, clock: Clock | None = None) -> None:
        self.setup = setup
        self.clock = clock if clock is not None else WallClock()
        self._entries: dict[int, Any] = {}  # trial id -> the subclass's state of that trial
        self._weight = max(1, int(getattr(setup.evaluator, "devices", 1)))
        self._capacity = self._fits = 0  # in slots (a trial takes ``_weight``); in trials
        # plain asyncio primitives: submit is the per-trial hot path (see docs/decisions.md)
        self._room = asyncio.Event()  # set when a slot frees or the capacity changes
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._failure: BaseException | None = None
        self._tg: TaskGroup | None = None
        self._set_capacity(setup.concurrency)

    # --- the contract ---------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """How many trials can run at once now (it may change while a run goes on: a
        manager's grant, a resized pool). A trial on N processes (its evaluator's
        ``devices=N``) takes N of the engine's slots; one such trial always fits."""
        return self._fits

    @property
    def running(self) -> frozenset[int]:
        """Ids of the trials accepted and not yet ended."""
        return frozenset(self._entries)

    async def wait_capacity(self) -> None:
        """Return once the engine has room for one more trial (at once if it has).

        The experiment awaits it before it asks its strategy for a trial, so that no
        trial is proposed, let alone submitted, beyond what the engine can run. Raises the
        engine's failure if it cannot go on."""
        # the per-trial hot path (twice per trial): attributes, no property, no calls
        while len(self._entries) >= self._fits:
            self._raise_failure()
            self._room.clear()
            await self._room.wait()
        if self._failure is not None:
            raise self._failure

    async def submit(self, spec: TrialSpec) -> None:
        """Wait for capacity, then start ``spec``; returns once the engine holds it."""
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise RuntimeError("the engine is closed")
        await self._before_capacity(spec)
        if len(self._entries) >= self._fits or self._failure is not None:
            await self.wait_capacity()  # (not awaited when there is room: the hot path)
        entry = self._accept(spec)
        self._entries[spec.id] = entry
        self._idle.clear()
        await self._begin(entry)

    def cancel(self, trial_id: int, state: TrialState = TrialState.CANCELED,
               reason: str = "", *, interrupted: bool = False, error_type: str = ""
               ) -> bool:
        """Stop a running trial; it ends in ``state`` with ``reason`` as its error's message
        and ``error_type`` as its type (default ``Timeout`` for ``TIMEOUT``, else
        ``Stopped``). False if it is not running here.

        ``interrupted=True`` is short for ``error_type=INTERRUPTED`` (the experiment is
        stopping, not judging the trial: a resume runs it again); kept for callers."""
        entry = self._entries.get(trial_id)
        if entry is None:
            return False
        if interrupted and not error_type:
            error_type = INTERRUPTED
        return self._stop_trial(entry, Stop(state, reason, error_type))

    def resize(self, concurrency: int) -> None:
        """Run up to ``concurrency`` trials at once from now on (``exp.update``): more
        start at once (``wait_capacity`` returns), fewer let the running ones finish and
        start none until below the limit. The engine may grant less (a manager's fair
        share); ``capacity`` says what it grants."""
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        self._resize(concurrency)

    async def reattach(self, specs: list[TrialSpec]) -> set[int]:
        """On resume: take over those of ``specs`` that are still running somewhere (e.g. on
        a manager's workers); return their ids. The rest are submitted again."""
        return set()

    async def wait_idle(self) -> None:
        """Return once no trial is running."""
        await self._idle.wait()

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        try:
            await self._open(tg)
        except BaseException as exc:
            await self._leave(exc)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._leave(exc)
        if exc is None:
            self._raise_failure()

    async def _leave(self, exc: BaseException | None) -> None:
        if self._closed and self._tg is None:
            return
        try:
            await self._drain(exc)
        finally:
            self._closed = True
            tg, self._tg = self._tg, None
            try:
                if tg is not None:
                    tg.cancel_scope.cancel()  # what is left: helpers, or everything on error
                    # not given the block's exception: anyio would wrap it in a group; it
                    # goes on up as it is
                    await tg.__aexit__(None, None, None)
            finally:
                await self._release()

    # --- hooks (override what applies) ----------------------------------------------------

    async def _open(self, tg: TaskGroup) -> None:
        """Start the engine's tasks in ``tg`` (it is cancelled when the engine closes)."""

    async def _drain(self, exc: BaseException | None) -> None:
        """Wind down before the task group is cancelled (``exc``: the block's error, if
        any): e.g. let accepted trials finish, or end them. Mark the engine closed."""

    async def _release(self) -> None:
        """Release what ``_open`` took, after the task group has ended."""

    async def _before_capacity(self, spec: TrialSpec) -> None:
        """Anything ``spec`` must wait for before it waits for capacity."""

    def _accept(self, spec: TrialSpec) -> Any:
        """Take ``spec`` (there is room): return the engine's state of the trial, held as
        ``running`` until ``_ended``. Synchronous, so nothing runs in between. (An engine
        that overrides ``submit`` and ``cancel`` instead needs none of the hooks.)"""
        raise NotImplementedError(f"{type(self).__name__} must implement _accept or submit")

    async def _begin(self, entry: Any) -> None:
        """Start the trial ``_accept`` took (e.g. publish its start)."""

    def _resize(self, concurrency: int) -> None:
        """Make room for ``concurrency`` trials (e.g. start runners or workers) and report
        the capacity that results (``_set_capacity``, now or once granted)."""
        self._set_capacity(concurrency)

    def _stop_trial(self, entry: Any, stop: Stop) -> bool:
        """End a running trial as ``stop`` says (once; a second stop changes nothing)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _stop_trial or "
                                  "cancel")

    # --- what subclasses report -----------------------------------------------------------

    def _entry(self, trial_id: int) -> Any:
        """The state of a running trial, or ``None``."""
        return self._entries.get(trial_id)

    def _ended(self, trial_id: int) -> None:
        """``trial_id`` has ended (its ``TrialEnded`` is published): its slot is free."""
        self._entries.pop(trial_id, None)
        self._room.set()
        if not self._entries:
            self._idle.set()

    def _set_capacity(self, slots: int) -> None:
        """The engine can now run ``slots`` slots' worth of trials at once."""
        self._capacity = slots
        self._fits = min(slots, max(1, slots // self._weight))
        self._room.set()

    def _failed(self, exc: BaseException) -> None:
        """The engine cannot go on: ``submit``, ``wait_capacity`` and leaving the block raise
        ``exc`` (the first failure counts)."""
        if self._failure is None:
            self._failure = exc
        self._room.set()  # the waiters raise it

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
