"""What a ``ManagerEngine`` does with what its manager sends: a ``ManagerEvents`` object the
engine owns (so that ``_manager.py`` stays about the engine's lifecycle and its contract).

One consumer task takes the messages in order: trial events become the experiment's events
(a ``metrics`` message one event per step, so a strategy or scheduler sees every step),
``capacity`` grants room, ``setup_failed`` and a lost manager fail the run. A message is
acked only once what it published is durable: after ``setup.flush()`` if the experiment
offers that barrier. The consumer does not wait for the commit; the store writes one batch
while the next is published, and each barrier covers everything published before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskGroup

from nasflow._kernel import INTERRUPTED, TrialError, TrialState
from nasflow.engine._base import EngineSetup, TrialSpec
from nasflow.events import CheckpointSaved, Event, FinalMetric, IntermediateMetric, TrialEnded
from nasflow.events import TrialStarted as TrialStartedEvent
from nasflow.exceptions import MetricError, WorkerSetupError
from nasflow.protocol import Capacity, Checkpoint, HeldTrial, Metric, Metrics, SetupFailed
from nasflow.protocol import FinalMetric as FinalMetricMessage
from nasflow.protocol import TrialEnded as TrialEndedMessage
from nasflow.protocol import TrialStarted as TrialStartedMessage

__all__ = ["Done", "Flight", "ManagerEvents"]

_log = logging.getLogger("nasflow.engine.manager")

Done = Callable[[], None]


@dataclass(slots=True, eq=False)
class Flight:
    """The engine's state of one trial it holds (its entry in ``Engine.running``)."""

    spec: TrialSpec
    started: bool = False
    """A worker has it (a manager that restarts is told so in ``hello.running``)."""
    announced: bool = False
    """Its ``TrialStarted`` was published (by this engine)."""
    cancel: tuple[TrialState, str] | None = None
    error_type: str = ""
    """The error type the cancel asked for (the wire carries only the state)."""


class ManagerEvents:
    """The receiving side of a ``ManagerEngine``: one consumer task turns the manager's
    messages into the experiment's events and reports to the engine through the callbacks
    it was given (``ended``, ``set_capacity``, ``failed``: the ``Engine`` base's reports).

    ``flights`` is the engine's table of running trials (``Engine.running``), shared: the
    engine adds to it, this object ends trials from it."""

    def __init__(self, setup: EngineSetup, flights: dict[int, Flight], *,
                 ended: Callable[[int], None], set_capacity: Callable[[int], None],
                 failed: Callable[[BaseException], None]) -> None:
        self._setup = setup
        self._flights = flights
        self._ended = ended
        self._set_capacity = set_capacity
        self._failed = failed
        self.failure: BaseException | None = None
        """The first failure (the run cannot go on), once ``fail`` was called."""
        self.granted = asyncio.Event()
        """Set once the manager granted capacity (or the run failed)."""
        self._inbox: deque[tuple[Any, str | None, int | None, Done | None]] = deque()
        self._inbox_wake = asyncio.Event()
        self._seen: dict[str, int] = {}  # origin -> highest origin_seq published
        self._to_ack: list[Done] = []  # published, acked once the store committed them
        self._acking = False  # a store barrier is in flight for some of them
        self._single = not setup.objective.multi
        self.held: tuple[HeldTrial, ...] | None = None
        """The manager's answer to our setup: the trials it still holds for this
        experiment (``None``: no answer, or a manager too old to give one)."""
        self.settled = asyncio.Event()
        """Set once ``reattach`` (or the first submit) decided on the held trials."""
        self.doomed: dict[tuple[int, int], asyncio.Event] = {}
        """Held trials the engine did not take, cancelled: ``(id, attempt)`` -> "it ended"."""

    def put(self, message: Any, origin: str | None, origin_seq: int | None,
            done: Done | None) -> None:
        """Queue a message from the manager (or an exception: the run fails with it);
        ``done`` acks it once published."""
        self._inbox.append((message, origin, origin_seq, done))
        self._inbox_wake.set()

    async def consume(self, tg: TaskGroup) -> None:
        """Take the messages in order, for ever (``tg``: where acks wait for the store)."""
        inbox, wake, seen = self._inbox, self._inbox_wake, self._seen
        flights, publish, single = self._flights, self._setup.publish, self._single
        # a durability barrier, if the experiment offers one: acks then mean "committed",
        # not only "handed to the store's writer" (a few ms of group commit)
        barrier = self._setup.flush
        while True:
            await wake.wait()
            wake.clear()
            while inbox:
                batch = list(inbox)
                inbox.clear()
                for message, origin, origin_seq, _ in batch:
                    if origin is not None:
                        # a restarted manager may forward what the worker resent
                        if origin_seq is None or origin_seq <= seen.get(origin, 0):
                            continue
                        seen[origin] = origin_seq
                    kind = type(message)
                    if kind is Metrics:  # the hottest path: many metrics of one trial
                        flight = flights.get(message.trial_id)
                        if flight is not None and flight.spec.attempt == message.attempt:
                            await self._publish_metrics(message)
                        continue
                    if kind is Metric:  # the hot path, inline
                        flight = flights.get(message.trial_id)
                        value = message.value
                        if (flight is not None and flight.spec.attempt == message.attempt
                                and type(value) is float and single):
                            # the worker parsed it with this objective already
                            await publish(IntermediateMetric(
                                time=message.time, trial_id=message.trial_id,
                                step=message.step, value=value, metric=value,
                                attempt=message.attempt))
                            continue
                    await self._handle(message, origin)
                dones = [done for *_, done in batch if done is not None]
                if barrier is None:
                    for done in dones:
                        done()
                elif dones:
                    self._ack_durable(tg, barrier, dones)

    def _ack_durable(self, tg: TaskGroup, barrier: Callable[[], Any],
                     dones: list[Done]) -> None:
        """Ack ``dones`` once the store has committed what was published before them.

        The consumer does not wait for the commit: it publishes the next messages while the
        store writes these (one barrier in flight; what is published meanwhile is acked
        after the next one, which covers it)."""
        self._to_ack += dones
        if not self._acking:
            self._acking = True
            tg.start_soon(self._acker, barrier)

    async def _acker(self, barrier: Callable[[], Any]) -> None:
        try:
            while self._to_ack:
                dones, self._to_ack = self._to_ack, []
                await barrier()
                for done in dones:
                    done()
        finally:
            self._acking = False

    async def _publish_metrics(self, message: Metrics) -> None:
        """Every entry of a ``metrics`` message, in order, as its own event: a strategy or
        scheduler sees each step, exactly as if each had come in its own ``metric``."""
        publish, trial_id, attempt = self._setup.publish, message.trial_id, message.attempt
        single, parse = self._single, self._setup.objective.parse
        for step, value, when in zip(message.steps, message.values, message.times,
                                     strict=True):
            if type(value) is float and single:  # parsed with this objective by the worker
                metric = value
            else:
                try:
                    metric, value = parse(value)
                except MetricError:
                    _log.warning("dropped metric %r of trial %s", value, trial_id)
                    continue
            await publish(IntermediateMetric(time=when, trial_id=trial_id, step=step,
                                             value=value, metric=metric, attempt=attempt))

    async def _handle(self, message: Any, origin: str | None) -> None:
        kind = type(message)
        publish = self._setup.publish
        if kind is Metric:  # a dict, or a trial that ended (plain floats go inline)
            flight = self._flights.get(message.trial_id)
            if flight is None or flight.spec.attempt != message.attempt:
                return
            try:
                primary, value = self._setup.objective.parse(message.value)
            except MetricError:
                _log.warning("dropped metric %r of trial %s", message.value, message.trial_id)
                return
            await publish(IntermediateMetric(time=message.time, trial_id=message.trial_id,
                                             step=message.step, value=value, metric=primary,
                                             attempt=message.attempt))
            return
        if kind is Capacity:
            self._set_capacity(message.slots)
            if message.held is not None and not self.settled.is_set() and self.held is None:
                self.held = message.held  # the answer to our setup
            self.granted.set()
            if self.held:
                # the held trials' events come next: wait until reattach() says which
                # trials are ours (requeue calls it as soon as we are entered)
                await self.settled.wait()
            return
        if kind is SetupFailed:
            await self.fail(WorkerSetupError(message.error))
            return
        if isinstance(message, BaseException):
            await self.fail(message)
            return
        flight = self._flights.get(message.trial_id)
        if flight is None or flight.spec.attempt != message.attempt:
            # a trial that already ended here, or a held one we did not take
            if kind is TrialEndedMessage and self.doomed:
                ended = self.doomed.pop((message.trial_id, message.attempt), None)
                if ended is not None:
                    ended.set()
            return
        event: Event
        if kind is TrialStartedMessage:
            if flight.announced:
                return
            flight.started = flight.announced = True
            event = TrialStartedEvent(time=message.time, trial_id=message.trial_id,
                                      attempt=message.attempt)
        elif kind is FinalMetricMessage:
            try:
                primary, value = self._setup.objective.parse(message.value)
            except MetricError as exc:
                self._flights.pop(message.trial_id)  # ends FAILED below, once
                await self._publish_end(flight, TrialState.FAILED,
                                        TrialError.from_exception(exc), message.time)
                return
            event = FinalMetric(time=message.time, trial_id=message.trial_id, value=value,
                                metric=primary)
        elif kind is Checkpoint:
            event = CheckpointSaved(time=message.time, trial_id=message.trial_id,
                                    path=message.path, step=message.step,
                                    attempt=message.attempt)
        elif kind is TrialEndedMessage:
            error = message.error
            if origin is None and error is not None and error.type in _DIED:
                error = self._with_stderr(message.trial_id, error)
            if flight.error_type and error is not None and flight.cancel is not None \
                    and message.state is flight.cancel[0]:
                # e.g. INTERRUPTED: stopped because the experiment stops (a resume runs it
                # again), which the worker cannot know
                error = TrialError(flight.error_type, error.message, error.traceback)
            del self._flights[message.trial_id]
            await self._publish_end(flight, message.state, error, message.time)
            return
        else:
            return
        await publish(event)

    async def _publish_end(self, flight: Flight, state: TrialState, error: TrialError | None,
                           when: float) -> None:
        self._flights.pop(flight.spec.id, None)
        await self._setup.publish(TrialEnded(time=when, trial_id=flight.spec.id, state=state,
                                            error=error))
        self._ended(flight.spec.id)

    def _with_stderr(self, trial_id: int, error: TrialError) -> TrialError:
        from nasflow.manager import tail

        path = self._setup.trial_directory(trial_id) / "stderr.log"
        text = tail(path)
        if not text:
            return error
        return TrialError(error.type, f"{error.message}; the end of its stderr ({path}):\n"
                                      f"{text}", text)

    async def fail(self, exc: BaseException) -> None:
        """The run cannot go on: end every trial in flight with ``exc``, once."""
        if self.failure is not None:
            return
        self.failure = exc
        self._failed(exc)
        self.settled.set()
        for ended in self.doomed.values():
            ended.set()  # submit raises the failure instead of waiting
        state, error = TrialState.FAILED, TrialError(type(exc).__name__, str(exc))
        if _manager_lost(exc):
            # the trials did not fail: the manager (and its workers) went away under them.
            # Interrupted, so that resuming the experiment runs them again
            state, error = TrialState.CANCELED, TrialError(
                INTERRUPTED, f"{type(exc).__name__}: {exc}")
        for flight in list(self._flights.values()):
            await self._publish_end(flight, state, error, time.time())
        self.granted.set()  # (and the engine is idle: every trial ended)


_DIED = ("WorkerDied", "WorkerLost", "NodeLost")  # a worker's death: its stderr says more


def _manager_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the manager went away (not that the experiment is broken)."""
    from nasflow.exceptions import ManagerGoneError
    from nasflow.manager import ManagerConnectionError

    if isinstance(exc, ManagerGoneError):
        return True
    return isinstance(exc, ManagerConnectionError) and not exc.fatal
