"""``TrialRunner``: runs one trial at a time inside a worker process.

It does what the in-process engine does for one trial -- ``build_model(space, sample)``,
the evaluator with a ``Trial`` whose reports stream out, ``nf.current_trial()`` set, async
evaluators on this loop and sync ones in a thread -- and turns what happens into protocol
messages (``trial_started``, ``metric``, ``checkpoint``, ``final_metric``,
``trial_ended``) handed to ``send``.

A cancel (a stop from the experiment or the manager's timeout) is cooperative: the trial is
marked stopped, so its next ``trial.report()`` raises ``TrialStopped``; an async evaluator
is also cancelled. A sync evaluator's thread is never abandoned: the trial ends when the
thread returns, and one that never returns is killed with the whole worker by the manager.

While a trial runs, file descriptors 1 and 2 point at ``stdout.log`` and ``stderr.log`` in
the trial's directory, so prints, C-level output and child processes are captured too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from nasflow._types import TrialError, TrialState
from nasflow.engine._base import build_model
from nasflow.evaluator._trial import Trial, _current
from nasflow.events import CheckpointSaved, Event, IntermediateMetric
from nasflow.exceptions import MetricError, TrialStopped
from nasflow.protocol import (
    Checkpoint,
    FinalMetric,
    Metric,
    RunTrial,
    SequencedMessage,
    TrialEnded,
    TrialRef,
    TrialStarted,
)
from nasflow.worker._payload import Payload

__all__ = ["TrialRunner"]


@dataclass(slots=True, eq=False)
class _Run:
    message: RunTrial
    trial: Trial
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    kill: tuple[TrialState, str] | None = None
    is_async: bool = False


_MAX_BACKLOG = 65536  # reports a thread may queue before it waits for the loop


class _Outbox:
    """Where a worker's ``Trial`` puts its reports (it calls ``put``, like a ReportPipe).

    On the loop (async evaluators) a report becomes a protocol message at once; from an
    evaluator thread it is queued and the loop is woken once per batch, not per report.
    A thread far ahead of the loop waits (bounded backlog); nothing is dropped.
    """

    def __init__(self, forward: Callable[[Event], None]) -> None:
        self._forward = forward
        self._pending: deque[Event] = deque()
        self._scheduled = False
        self._room = threading.Event()
        self._room.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def bind(self) -> None:
        """Bind to the running loop (call from it before the first trial)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def put(self, event: Event) -> None:
        if threading.get_ident() == self._loop_thread:
            self.drain()  # keep reports in order
            self._forward(event)
            return
        if len(self._pending) >= _MAX_BACKLOG:
            self._room.clear()
            self._room.wait()
        self._pending.append(event)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            try:
                self._loop.call_soon_threadsafe(self.drain)
            except RuntimeError:  # the loop closed under a thread the worker left behind
                pass

    def drain(self) -> None:
        """Forward what is queued now (on the loop)."""
        self._scheduled = False  # first: a later put schedules a new drain
        pending, forward = self._pending, self._forward
        # only what is there now: a thread reporting all the while would otherwise keep
        # this loop busy until the trial ends, and nothing would be sent meanwhile
        for _ in range(len(pending)):
            forward(pending.popleft())
        self._room.set()


class TrialRunner:
    """Runs trials for a worker, one at a time; see the module docstring."""

    def __init__(self, send: Callable[[SequencedMessage], None]) -> None:
        self._send = send
        self._pipe = _Outbox(self._forward)
        self.current: _Run | None = None
        """The trial running now, if any."""

    async def run_pipe(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                       ) -> None:
        """Bind report forwarding to this loop: ``await tg.start(runner.run_pipe)`` before
        the first trial."""
        self._pipe.bind()
        task_status.started()

    @property
    def running(self) -> tuple[TrialRef, ...]:
        """The trial in flight, for the worker's ``hello``."""
        run = self.current
        if run is None:
            return ()
        m = run.message
        return (TrialRef(experiment_id=m.experiment_id, trial_id=m.trial_id, attempt=m.attempt),)

    def cancel(self, trial_id: int, attempt: int, state: TrialState, reason: str) -> bool:
        """Stop the running trial if it is ``trial_id``/``attempt``; False otherwise."""
        run = self.current
        if run is None or run.message.trial_id != trial_id or run.message.attempt != attempt:
            return False
        if run.kill is None:
            run.kill = (state, reason)
            run.trial._stop(state, reason)
            if run.is_async:
                # a sync evaluator's thread cannot be interrupted: it sees the stop when it
                # reports; cancelling its scope now would only hide that it is still running
                run.scope.cancel()
        return True

    # --- one trial ----------------------------------------------------------------------------

    async def run(self, message: RunTrial, payload: Payload) -> None:
        """Run ``message``'s trial to its end, sending every event on the way."""
        trial = Trial(
            message.trial_id,
            message.sample,
            objective=payload.objective,
            pipe=self._pipe,  # type: ignore[arg-type]  # duck-typed: only put() is used
            directory=lambda: payload.trial_directory(message.trial_id),
            experiment_id=message.experiment_id,
            attempt=message.attempt,
        )
        run = _Run(message, trial, is_async=payload.evaluator.is_async)
        self.current = run
        try:
            with _capture(trial.directory):
                state, error, final = await self._evaluate(run, payload)
                self._pipe.drain()  # every intermediate before the final result
            ids = _ids(message)
            now = time.time()
            if final is not None:
                self._send(FinalMetric(**ids, value=final, time=now))
            self._send(TrialEnded(**ids, state=state, error=error, time=now))
        finally:
            # a thread the evaluator left behind may not report into a later trial
            trial._stop(TrialState.CANCELED, "the trial has ended")
            self.current = None

    async def _evaluate(
        self, run: _Run, payload: Payload
    ) -> tuple[TrialState, TrialError | None, Any]:
        trial = run.trial
        self._send(TrialStarted(**_ids(run.message), time=time.time()))
        token = _current.set(trial)
        try:
            with run.scope:
                if payload.evaluator.is_async:
                    model = None
                    if getattr(payload.space, "is_model_space", False):
                        # freezing copies modules: keep it off the loop
                        model = await anyio.to_thread.run_sync(
                            build_model, payload.space, trial.sample
                        )
                    result = await payload.evaluator.evaluate(model, trial)
                else:
                    # not abandoned on cancel: the thread stops at its next report, or the
                    # manager kills this process after its grace period
                    result = await anyio.to_thread.run_sync(_call_sync, payload, trial)
            if run.scope.cancelled_caught or run.kill is not None:
                return (*self._stopped(run), None)
        except TrialStopped:
            return (*self._stopped(run), None)
        except Exception as exc:
            return TrialState.FAILED, TrialError.from_exception(exc), None
        finally:
            _current.reset(token)
        try:
            return TrialState.SUCCEEDED, None, _final(trial, result)
        except MetricError as exc:
            return TrialState.FAILED, TrialError.from_exception(exc), None

    @staticmethod
    def _stopped(run: _Run) -> tuple[TrialState, TrialError]:
        if run.kill is not None:
            state, reason = run.kill
        else:
            state = run.trial._stop_state or TrialState.CANCELED
            reason = run.trial._stop_reason
        kind = "Timeout" if state is TrialState.TIMEOUT else "Stopped"
        return state, TrialError(kind, reason or state.value)

    # --- reports from the evaluator ---------------------------------------------------------

    def _forward(self, event: Event) -> None:
        run = self.current
        if run is None:
            return  # a report that raced the end of its trial
        m = run.message
        if type(event) is IntermediateMetric:  # the hot path
            if event.trial_id == m.trial_id:
                self._send(Metric(experiment_id=m.experiment_id, trial_id=m.trial_id,
                                  attempt=m.attempt, step=event.step, value=event.value,
                                  time=event.time))
        elif isinstance(event, CheckpointSaved) and event.trial_id == m.trial_id:
            self._send(Checkpoint(**_ids(m), path=event.path, step=event.step,
                                  time=event.time))


def _ids(message: RunTrial) -> dict[str, Any]:
    return {
        "experiment_id": message.experiment_id,
        "trial_id": message.trial_id,
        "attempt": message.attempt,
    }


def _call_sync(payload: Payload, trial: Trial) -> Any:
    model = build_model(payload.space, trial.sample)
    return payload.evaluator.evaluate(model, trial)


def _final(trial: Trial, result: Any) -> Any:
    if result is None:
        if trial._last is None:
            raise MetricError(
                "the evaluator returned None and reported nothing: return the final "
                "metric, or call trial.report(value) at least once"
            )
        return trial._last[1]
    return trial._objective.parse(result)[1]


@contextlib.contextmanager
def _capture(directory: Path) -> Iterator[None]:
    """Point fds 1 and 2 at the trial's log files for the duration of the trial."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    out = os.open(directory / "stdout.log", flags, 0o644)
    err = os.open(directory / "stderr.log", flags, 0o644)
    _flush_std()
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
    finally:
        os.close(out)
        os.close(err)
    try:
        yield
    finally:
        _flush_std()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
