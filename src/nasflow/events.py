"""Typed, immutable events and the hub that fans them out over bounded streams.

Every trial produces ``TrialSubmitted``, ``TrialStarted``, any number of
``IntermediateMetric`` and ``CheckpointSaved``, at most one ``FinalMetric`` and exactly one
``TrialEnded``, in that order. The experiment adds ``ExperimentStateChanged``,
``ChangeApplied`` for each runtime change (``exp.update``, ``exp.kill_trial``, ...) and,
last, ``ExperimentFinished``.

The hub delivers each event first to its *sinks* (plain functions that must see
everything: the trial table, the store writer, the strategy's inbox), then to each
subscriber's bounded stream. A full subscriber stream makes the publisher wait
(backpressure) rather than drop: every subscriber sees every event published after it
subscribed, in one global order.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from nasflow._kernel import ExperimentState, TrialError, TrialState

__all__ = [
    "ChangeApplied",
    "CheckpointSaved",
    "Event",
    "EventHub",
    "EventStream",
    "ExperimentFinished",
    "ExperimentStateChanged",
    "FinalMetric",
    "IntermediateMetric",
    "StrategyProgress",
    "TrialEnded",
    "TrialEvent",
    "TrialStarted",
    "TrialSubmitted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event. ``time`` is the wall-clock time (``time.time()``)."""

    time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialEvent(Event):
    """An event about one trial."""

    trial_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialSubmitted(TrialEvent):
    """The strategy submitted a sample; the trial waits for capacity."""

    sample: dict[str, Any]
    hash: str
    attempt: int = 0
    origin: str | None = None
    """``None`` for the strategy's proposals, else one of ``nasflow._kernel.ORIGINS``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialStarted(TrialEvent):
    """The evaluator was entered."""

    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class IntermediateMetric(TrialEvent):
    """``trial.report(value, step=step)``; ``metric`` is the primary objective's value."""

    step: int
    value: float | dict[str, float]
    metric: float
    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointSaved(TrialEvent):
    """``trial.save_checkpoint()`` wrote ``path``."""

    path: str
    step: int | None = None
    attempt: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalMetric(TrialEvent):
    """The trial's final result; ``metric`` is the primary objective's value."""

    value: float | dict[str, float]
    metric: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TrialEnded(TrialEvent):
    """The trial reached a final state; ``error`` says why when it did not succeed."""

    state: TrialState
    error: TrialError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyProgress(Event):
    """A strategy's own progress (e.g. a one-shot supernet epoch): JSON-able ``values``."""

    step: int | None
    values: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentStateChanged(Event):
    """The experiment moved to ``state``."""

    state: ExperimentState


@dataclass(frozen=True, slots=True, kw_only=True)
class ExperimentFinished(Event):
    """The last event of a run; ``reason`` says why it ended."""

    state: ExperimentState
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeApplied(Event):
    """A runtime change was validated and applied (the store keeps it, ``nasflow show``
    lists it): ``op`` with its ``args``, asked for by ``source`` (``"api"``, ``"cli"``,
    ``"dashboard"``, ...); ``result`` says what it did (JSON-able, with a ``message``)."""

    op: str
    args: dict[str, Any]
    source: str
    result: dict[str, Any]


Sink = Callable[[Event], object]  # what a sink returns is ignored


class EventStream:
    """An async iterator over the events of one subscription.

    Created by ``EventHub.subscribe`` (and ``Experiment.events``); it ends after the hub
    closes. Leaving an ``async for`` early is fine: the subscription is released when the
    stream is closed (``async with`` or ``aclose``) or garbage-collected.
    """

    _YIELD_EVERY = 64

    def __init__(self, receive: MemoryObjectReceiveStream[Event]) -> None:
        self._receive = receive
        self._finalizer = weakref.finalize(self, receive.close)
        self._unyielded = 0

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        # take what is already buffered without a trip through the event loop, but still
        # yield (a cancellation point) every few events so a backlog cannot hog the loop
        try:
            if self._unyielded < self._YIELD_EVERY:
                try:
                    event = self._receive.receive_nowait()
                    self._unyielded += 1
                    return event
                except anyio.WouldBlock:
                    pass
            self._unyielded = 0
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    @property
    def pending(self) -> int:
        """How many events are buffered, published but not taken yet."""
        return int(self._receive.statistics().current_buffer_used)

    def take_nowait(self) -> Event | None:
        """The next buffered event, or ``None`` when none is (or the stream ended)."""
        try:
            return self._receive.receive_nowait()
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return None

    async def aclose(self) -> None:
        """Stop receiving; the hub forgets this subscriber."""
        self._finalizer()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


@dataclass(slots=True)
class _Subscriber:
    send: MemoryObjectSendStream[Event]
    types: tuple[type[Event], ...] | None


class EventHub:
    """Fans events out to sinks (synchronously) and subscribers (bounded, in order)."""

    def __init__(self) -> None:
        self._sinks: list[Sink] = []
        self._subscribers: list[_Subscriber] = []
        # one publisher at a time keeps a single global order for every subscriber. An
        # asyncio.Lock: acquiring it uncontended neither yields nor allocates (hot path)
        self._lock = asyncio.Lock()
        self._closed = False

    def add_sink(self, sink: Sink) -> None:
        """Call ``sink(event)`` for every event, before any subscriber sees it."""
        self._sinks.append(sink)

    def replace_sink(self, old: Sink, new: Sink) -> None:
        """Call ``new`` instead of ``old``, in its place among the sinks (in order)."""
        self._sinks = [new if s == old else s for s in self._sinks]

    def remove_sink(self, sink: Sink) -> None:
        """Stop calling ``sink`` (one added with ``add_sink``; others are ignored)."""
        self._sinks = [s for s in self._sinks if s != sink]  # bound methods: equal, not identical

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: no event comes after it."""
        return self._closed

    def subscribe(
        self, *types: type[Event], buffer: int = 1024
    ) -> EventStream:
        """A stream of every event from now on (only ``types`` if given)."""
        send, receive = anyio.create_memory_object_stream[Event](
            max_buffer_size=buffer if buffer > 0 else math.inf
        )
        if self._closed:
            send.close()
        else:
            self._subscribers.append(_Subscriber(send, types or None))
        return EventStream(receive)

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every sink, then to every matching subscriber, waiting for
        room in a full subscriber stream."""
        if not self._subscribers and not self._lock.locked():
            # nobody to wait for: deliver synchronously, which cannot reorder anything
            for sink in self._sinks:
                sink(event)
            return
        async with self._lock:
            for sink in self._sinks:
                sink(event)
            for sub in list(self._subscribers):
                if sub.types is not None and not isinstance(event, sub.types):
                    continue
                try:
                    try:
                        sub.send.send_nowait(event)
                    except anyio.WouldBlock:
                        await sub.send.send(event)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._drop(sub)

    def _drop(self, sub: _Subscriber) -> None:
        self._subscribers.remove(sub)
        sub.send.close()

    def publish_nowait(self, event: Event) -> None:
        """Deliver ``event`` without waiting: every sink gets it; a subscriber whose stream
        is full misses it. Only for shutdown paths, where waiting could hang."""
        for sink in self._sinks:
            sink(event)
        for sub in list(self._subscribers):
            if sub.types is not None and not isinstance(event, sub.types):
                continue
            try:
                sub.send.send_nowait(event)
            except anyio.WouldBlock:
                pass
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(sub)

    def close(self) -> None:
        """End every subscriber stream once it has drained; later subscribers get nothing."""
        self._closed = True
        for sub in self._subscribers:
            sub.send.close()
        self._subscribers.clear()
