"""``InProcessEngine``: trials run in this process, ``concurrency`` at a time.

A pool of ``concurrency`` runner tasks (grown by ``resize``) takes trials from a queue;
``submit`` waits while all of them are busy. Async evaluators run on the event loop; sync
ones in worker threads. A trial past its timeout, or cancelled, is cut off at once: an
async evaluator is cancelled, a thread is abandoned (its next ``trial.report()`` raises
``TrialStopped``, so a cooperative evaluator ends soon after; a thread that never reports
runs on until it returns -- use the ``local`` training service to kill runaway trials for real).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections import deque
from dataclasses import dataclass
from typing import IO

import anyio
from anyio.abc import TaskGroup

from nasflow._kernel import INTERRUPTED, TrialError, TrialState
from nasflow.engine._base import Engine, EngineSetup, TrialSpec
from nasflow.evaluator import (
    Execution,
    Executor,
    Outcome,
    ReportPipe,
    Stop,
    Trial,
    TrialOutput,
)
from nasflow.events import FinalMetric, TrialEnded, TrialStarted

__all__ = ["InProcessEngine"]


class _ResponsiveGil:
    """Shortens the interpreter's GIL switch interval while sync evaluators run in threads.

    With the default 5 ms, two CPU-bound evaluator threads make the event loop wait for
    the GIL for tens of milliseconds (p99 16-20 ms measured, see docs/benchmarks.md);
    at 1 ms the loop stays responsive (p99 ~7 ms) for a negligible cost to the threads.
    Reference-counted, so that engines running side by side restore it once.
    """

    INTERVAL = 0.001

    def __init__(self) -> None:
        self._users = 0
        self._saved = sys.getswitchinterval()

    def acquire(self) -> None:
        if self._users == 0:
            self._saved = sys.getswitchinterval()
            sys.setswitchinterval(min(self._saved, self.INTERVAL))
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            sys.setswitchinterval(self._saved)


_responsive_gil = _ResponsiveGil()


class _CapturedOutput:
    """Routes what trials print to their ``stdout.log``/``stderr.log`` while any in-process
    engine runs (reference-counted; the streams are restored after the last one)."""

    def __init__(self) -> None:
        self._users = 0
        self._saved: tuple[IO[str], IO[str]] | None = None

    def acquire(self) -> None:
        if self._users == 0:
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout = TrialOutput(sys.stdout, "stdout")
            sys.stderr = TrialOutput(sys.stderr, "stderr")
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._saved is not None:
            # only undo our own change (a test runner may have swapped the streams since)
            if isinstance(sys.stdout, TrialOutput):
                sys.stdout = self._saved[0]
            if isinstance(sys.stderr, TrialOutput):
                sys.stderr = self._saved[1]
            self._saved = None


_captured_output = _CapturedOutput()


@dataclass(slots=True)
class _Running:
    spec: TrialSpec
    execution: Execution


class InProcessEngine(Engine):
    """Runs trials in this process; see the module docstring."""

    def __init__(self, setup: EngineSetup) -> None:
        super().__init__(setup)
        # hand-off to the runner pool: a queue and the runners waiting for work. Plain
        # asyncio primitives: this is the per-trial hot path (see docs/decisions.md)
        self._queue: deque[_Running] = deque()
        self._idle_runners: deque[asyncio.Future[None]] = deque()
        self._runners_left = 0  # runner tasks started and not yet ended
        self._runners_done = asyncio.Event()
        self._pipe = ReportPipe(setup.publish)
        self._executor = Executor(setup.space, setup.evaluator, abandon_threads=True,
                                  timeout=setup.trial_timeout)
        self._holds: list[_ResponsiveGil | _CapturedOutput] = []

    # --- lifecycle (the base runs these hooks) --------------------------------------------

    async def __aenter__(self) -> InProcessEngine:
        await super().__aenter__()
        return self

    async def _open(self, tg: TaskGroup) -> None:
        if not self.setup.evaluator.is_async:
            _responsive_gil.acquire()
            self._holds.append(_responsive_gil)
        _captured_output.acquire()
        self._holds.append(_captured_output)
        tg.start_soon(self._pipe.run)
        self._add_runners(self._capacity)

    def _add_runners(self, count: int) -> None:
        assert self._tg is not None
        for _ in range(count):
            self._runners_left += 1
            self._tg.start_soon(self._runner)

    def _resize(self, concurrency: int) -> None:
        # one runner per slot, never fewer: a lower limit leaves the extra ones idle (the
        # capacity, not the runners, limits what starts)
        if self._tg is not None and not self._closed:
            self._add_runners(max(0, concurrency - self._runners_left))
        self._set_capacity(concurrency)

    async def _drain(self, exc: BaseException | None) -> None:
        self._closed = True  # runners finish what is queued, then leave
        self._wake_runners(all_of_them=True)
        if exc is None:
            await self._runners_done.wait()
        # the base then cancels the task group: the report pipe, or everything on error

    async def _release(self) -> None:
        while self._holds:
            self._holds.pop().release()

    # --- the contract (the base does the bookkeeping) --------------------------------------

    def _accept(self, spec: TrialSpec) -> _Running:
        s = self.setup
        trial = Trial(
            spec.id,
            spec.sample,
            objective=s.objective,
            pipe=self._pipe,
            directory=functools.partial(s.trial_directory, spec.id),
            experiment_id=s.experiment_id,
            attempt=spec.attempt,
        )
        run = _Running(spec, self._executor.execution(trial))
        self._queue.append(run)
        self._wake_runners()
        return run

    def _wake_runners(self, all_of_them: bool = False) -> None:
        while self._idle_runners and (all_of_them or self._queue):
            waiter = self._idle_runners.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_of_them:
                    return

    def _stop_trial(self, entry: _Running, stop: Stop) -> bool:
        entry.execution.stop(stop)
        return True

    # --- running trials ---------------------------------------------------------------------

    async def _runner(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue:
                    if self._closed:
                        return
                    waiter = loop.create_future()
                    self._idle_runners.append(waiter)
                    await waiter
                    continue
                run = self._queue.popleft()
                try:
                    await self._run(run)
                finally:
                    self._ended(run.spec.id)
        finally:
            self._runners_left -= 1
            if self._runners_left == 0:
                self._runners_done.set()

    async def _run(self, run: _Running) -> None:
        spec, execution = run.spec, run.execution
        publish, clock = self.setup.publish, self.clock.now
        try:
            await publish(TrialStarted(time=clock(), trial_id=spec.id, attempt=spec.attempt))
            outcome = await execution.run()
        except anyio.get_cancelled_exc_class():
            # the experiment itself is being cancelled: record the trial, then go on dying
            reason = "the experiment was cancelled"
            execution.stop(Stop(TrialState.CANCELED, reason, INTERRUPTED))
            with anyio.CancelScope(shield=True):
                for ev in self._pipe.take_pending():
                    await publish(ev, wait=False)
                await publish(TrialEnded(
                    time=clock(), trial_id=spec.id, state=TrialState.CANCELED,
                    error=TrialError(INTERRUPTED, reason),
                ), wait=False)
                execution.close()
            raise
        except Exception as exc:  # publishing the start failed
            outcome = Outcome(TrialState.FAILED, TrialError.from_exception(exc))
        await self._pipe.flush()  # every intermediate before the final result
        execution.close()
        now = clock()
        if outcome.metric is not None:  # it succeeded
            await publish(FinalMetric(time=now, trial_id=spec.id, value=outcome.value,
                                      metric=outcome.metric))
        await publish(TrialEnded(time=now, trial_id=spec.id, state=outcome.state,
                                 error=outcome.error))
