"""``TrialRunner``: runs one trial at a time inside a worker process.

It runs the trial with the executor the in-process engine uses too
(``nasflow.evaluator._execute``: ``build_model(space, sample)``, the evaluator with a
``Trial`` whose reports stream out, ``nf.current_trial()`` set, async evaluators on this loop
and sync ones in a thread, one rule for how a trial ended) and turns what happens into
protocol messages (``trial_started``, ``metric``/``metrics``, ``checkpoint``,
``final_metric``, ``trial_ended``) handed to ``send``.

Reports leave in batches: a report into an idle outbox leaves at once (a lone report as a
``metric``, never held back); while reports keep coming, what came in during the last
millisecond leaves as one ``metrics`` message (see ``_Outbox``), split to fit the limits.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from nasflow._kernel import TrialError, TrialState
from nasflow._payload import Payload
from nasflow.evaluator import RANK_GPUS, Execution, Executor, Stop, Trial
from nasflow.events import CheckpointSaved, Event, IntermediateMetric
from nasflow.protocol import (
    Checkpoint,
    FinalMetric,
    MalformedMessageError,
    MessageTooLargeError,
    Metric,
    Metrics,
    RunTrial,
    SequencedMessage,
    TrialEnded,
    TrialRef,
    TrialStarted,
)

__all__ = ["TrialRunner", "bounded_error"]


@dataclass(slots=True, eq=False)
class _Run:
    message: RunTrial
    execution: Execution


_MAX_BACKLOG = 65536  # reports a thread may queue before it waits for the loop
_WINDOW = 0.001  # seconds a stream of reports is gathered for (the workers' GIL interval)


class _Outbox:
    """Where a worker's ``Trial`` puts its reports (it calls ``put``, like a ReportPipe).

    Reports are queued and handed to ``forward`` in batches. A report into an idle outbox
    wakes the loop (``call_soon``; from an evaluator thread ``call_soon_threadsafe``),
    which hands it over at once: a lone report is never held back. After a hand-over the
    loop looks again ``_WINDOW`` seconds later, without being woken, and hands over what
    came meanwhile; once a look finds nothing, the outbox is idle again. So a trial that
    reports in quick succession sends one batch per window, not one per report: a thread
    that woke the loop for every report would give the GIL away with each wake-up (a
    syscall), and the thread and the loop would take turns one report at a time (measured:
    a report every 0.5 ms instead of every 3 us). A thread far ahead of the loop waits
    (bounded backlog); nothing is dropped.
    """

    def __init__(self, forward: Callable[[list[Event]], None]) -> None:
        self._forward = forward
        self._pending: deque[Event] = deque()
        self._scheduled = False  # a look at the queue is due: no wake-up needed
        self._room = threading.Event()
        self._room.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    def bind(self) -> None:
        """Bind to the running loop (call from it before the first trial)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def put(self, event: Event) -> None:
        on_loop = threading.get_ident() == self._loop_thread
        while not on_loop and len(self._pending) >= _MAX_BACKLOG:
            self._room.clear()
            if len(self._pending) < _MAX_BACKLOG:
                break  # drained between the check and the clear
            self._room.wait()
        self._pending.append(event)
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            try:
                if on_loop:
                    self._loop.call_soon(self._look)
                else:
                    self._loop.call_soon_threadsafe(self._look)
            except RuntimeError:  # the loop closed under a thread the worker left behind
                pass

    def _look(self) -> None:
        """Hand over what is queued and look again after a window; idle if nothing came."""
        loop = self._loop
        assert loop is not None
        if self._pending:
            try:
                self.drain()
            finally:  # a report that failed to go out must not end the streaming
                loop.call_later(_WINDOW, self._look)
            return
        self._scheduled = False  # first: a later put wakes the loop again
        if self._pending:  # a put between the check above and the line before
            self._scheduled = True
            loop.call_soon(self._look)

    def drain(self) -> None:
        """Forward what is queued now (on the loop)."""
        pending = self._pending
        # only what is there now: a thread reporting all the while would otherwise keep
        # this loop busy until the trial ends, and nothing would be sent meanwhile
        events = [pending.popleft() for _ in range(len(pending))]
        if not self._room.is_set():
            self._room.set()
        if events:
            self._forward(events)


class TrialRunner:
    """Runs trials for a worker, one at a time; see the module docstring."""

    def __init__(self, send: Callable[[SequencedMessage], None], *, max_batch: int = 1024
                 ) -> None:
        self._send = send
        self._max_batch = max_batch  # the session's Limits.max_batch: entries per metrics
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
        # a sync evaluator's thread is not abandoned (the executor's abandon_threads=False):
        # it sees the stop when it reports; the manager kills a thread that never does
        run.execution.stop(Stop(state, reason))
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
        # not abandoned on cancel: the thread stops at its next report, or the manager
        # kills this process after its grace period; errors bounded to fit a frame
        executor = Executor(payload.space, payload.evaluator, abandon_threads=False,
                            describe=bounded_error)
        run = _Run(message, executor.execution(trial))
        self.current = run
        ids = _ids(message)
        if message.gpus is not None:  # the GPUs of the slots lent to it, for its ranks
            os.environ[RANK_GPUS] = message.gpus
        try:
            with _capture(trial.directory):
                self._send(TrialStarted(**ids, time=time.time()))
                outcome = await run.execution.run()
                self._pipe.drain()  # every intermediate before the final result
            now = time.time()
            if outcome.state is TrialState.SUCCEEDED:
                self._send(FinalMetric(**ids, value=outcome.value, time=now))
            self._send(TrialEnded(**ids, state=outcome.state, error=outcome.error, time=now))
        finally:
            # a thread the evaluator left behind may not report into a later trial
            run.execution.close()
            self.current = None
            os.environ.pop(RANK_GPUS, None)

    # --- reports from the evaluator ---------------------------------------------------------

    def _forward(self, events: list[Event]) -> None:
        """Turn a batch of reports into messages, in order: runs of metrics become one
        ``metrics`` message (split to fit the limits), checkpoints go in their place."""
        run = self.current
        if run is None:
            return  # reports that raced the end of their trial
        m = run.message
        trial_id = m.trial_id
        steps: list[int] = []
        values: list[Any] = []
        times: list[float] = []
        for event in events:
            if type(event) is IntermediateMetric:  # the hot path
                if event.trial_id == trial_id:
                    steps.append(event.step)
                    values.append(event.value)
                    times.append(event.time)
            elif isinstance(event, CheckpointSaved) and event.trial_id == trial_id:
                if steps:
                    self._send_metrics(m, steps, values, times)
                    steps, values, times = [], [], []
                try:
                    self._send(Checkpoint(**_ids(m), path=event.path, step=event.step,
                                          time=event.time))
                except (MalformedMessageError, MessageTooLargeError) as exc:
                    # the file is saved; only the event cannot travel (a path too long)
                    print(f"nasflow worker: dropped the checkpoint event of {event.path}: "
                          f"{exc}", file=sys.stderr, flush=True)
        if steps:
            self._send_metrics(m, steps, values, times)

    def _send_metrics(self, m: RunTrial, steps: list[int], values: list[Any],
                      times: list[float]) -> None:
        most = self._max_batch
        for i in range(0, len(steps), most):
            self._send_chunk(m, steps[i:i + most], values[i:i + most], times[i:i + most])

    def _send_chunk(self, m: RunTrial, steps: list[int], values: list[Any],
                    times: list[float]) -> None:
        try:
            if len(steps) == 1:
                self._send(Metric(experiment_id=m.experiment_id, trial_id=m.trial_id,
                                  attempt=m.attempt, step=steps[0], value=values[0],
                                  time=times[0]))
            else:
                self._send(Metrics(experiment_id=m.experiment_id, trial_id=m.trial_id,
                                   attempt=m.attempt, steps=tuple(steps),
                                   values=tuple(values), times=tuple(times)))
        except (MalformedMessageError, MessageTooLargeError) as exc:
            if len(steps) == 1:
                # one metric the manager would refuse (larger than a frame, a step beyond
                # 64 bits): say so in the trial's stderr.log; the trial and its other
                # metrics go on
                print(f"nasflow worker: dropped the metric of step {steps[0]}: {exc}",
                      file=sys.stderr, flush=True)
                return
            # large dict values: fewer per message; a refused entry: find it, keep the rest
            half = len(steps) // 2
            self._send_chunk(m, steps[:half], values[:half], times[:half])
            self._send_chunk(m, steps[half:], values[half:], times[half:])


_MAX_ERROR_MESSAGE = 16 * 1024  # characters of an error's message sent to the manager
_MAX_TRACEBACK = 64 * 1024  # characters of its traceback (the last frames are kept)
_MAX_TRACEBACK_LINE = 4096


def bounded_error(exc: BaseException) -> TrialError:
    """``exc`` as a ``TrialError`` that fits a ``trial_ended`` frame (1 MiB).

    A message over 16 KiB characters is cut with a note saying how long it was; the
    traceback keeps its last frames (the raising code) and the exception type, within
    64 KiB. Even all escaped (6 bytes a character), both fit one frame.
    """
    error = TrialError.from_exception(exc)
    message, tb = error.message, error.traceback
    if len(message) > _MAX_ERROR_MESSAGE:
        message = (message[:_MAX_ERROR_MESSAGE]
                   + f"... [message truncated by nasflow: {len(error.message)} characters "
                   "in all]")
    if len(tb) > _MAX_TRACEBACK or len(error.message) > _MAX_TRACEBACK_LINE:
        lines = [line if len(line) <= _MAX_TRACEBACK_LINE
                 else line[:_MAX_TRACEBACK_LINE] + f"... [{len(line)} characters]\n"
                 for line in tb.splitlines(keepends=True)]
        tb = "".join(lines)
        if len(tb) > _MAX_TRACEBACK:
            tb = ("[traceback truncated by nasflow: its first "
                  f"{len(tb) - _MAX_TRACEBACK} characters are left out]\n"
                  + tb[-_MAX_TRACEBACK:])
    return TrialError(error.type, message, tb)


def _ids(message: RunTrial) -> dict[str, Any]:
    return {
        "experiment_id": message.experiment_id,
        "trial_id": message.trial_id,
        "attempt": message.attempt,
    }


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
