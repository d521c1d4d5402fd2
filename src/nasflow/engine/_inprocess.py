"""``InProcessEngine``: trials run in this process, ``concurrency`` at a time.

A fixed pool of ``concurrency`` runner tasks takes trials from a queue; ``submit`` waits
while all of them are busy. Async evaluators run on the event loop; sync ones in worker
threads. A trial past its timeout, or cancelled, is cut off at once: an async evaluator is
cancelled, a thread is abandoned (its next ``trial.report()`` raises ``TrialStopped``, so a
cooperative evaluator ends soon after; a thread that never reports runs on until it
returns -- use the ``local`` training service to kill runaway trials for real).
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any

import anyio
from anyio.abc import TaskGroup

from nasflow._types import INTERRUPTED, TrialError, TrialState
from nasflow.engine._base import Engine, EngineSetup, TrialSpec, build_model
from nasflow.evaluator._trial import ReportPipe, Trial, TrialOutput, _current
from nasflow.events import FinalMetric, TrialEnded, TrialStarted
from nasflow.exceptions import MetricError, TrialStopped

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
            sys.stdout = TrialOutput(sys.stdout, "stdout")  # type: ignore[assignment]
            sys.stderr = TrialOutput(sys.stderr, "stderr")  # type: ignore[assignment]
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
    trial: Trial
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    kill: tuple[TrialState, str, bool] | None = None


class InProcessEngine(Engine):
    """Runs trials in this process; see the module docstring."""

    def __init__(self, setup: EngineSetup) -> None:
        super().__init__(setup)
        # hand-off to the runner pool: a queue and the runners waiting for work. Plain
        # asyncio primitives: this is the per-trial hot path (see docs/decisions.md)
        self._queue: deque[_Running] = deque()
        self._idle_runners: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._running: dict[int, _Running] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._slot_freed = asyncio.Event()
        self._runners_left = setup.concurrency
        self._runners_done = asyncio.Event()
        self._pipe = ReportPipe(setup.publish)
        self._tg: TaskGroup | None = None
        self._model_space = bool(getattr(setup.space, "is_model_space", False))

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> InProcessEngine:
        if not self.setup.evaluator.is_async:
            _responsive_gil.acquire()
        _captured_output.acquire()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._pipe.run)
        for _ in range(self.setup.concurrency):
            tg.start_soon(self._runner)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        self._closed = True  # runners finish what is queued, then leave
        self._wake_runners(all_of_them=True)
        if exc is None:
            await self._runners_done.wait()
        self._tg.cancel_scope.cancel()  # the report pipe, or everything on error
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            _captured_output.release()
            if not self.setup.evaluator.is_async:
                _responsive_gil.release()

    # --- the contract -----------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.setup.concurrency

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._running)

    async def submit(self, spec: TrialSpec) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")
        while len(self._running) >= self.setup.concurrency:
            self._slot_freed.clear()
            await self._slot_freed.wait()
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
        run = _Running(spec, trial)
        self._running[spec.id] = run
        self._idle.clear()
        self._queue.append(run)
        self._wake_runners()

    def _wake_runners(self, all_of_them: bool = False) -> None:
        while self._idle_runners and (all_of_them or self._queue):
            waiter = self._idle_runners.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_of_them:
                    return

    def cancel(self, trial_id: int, state: TrialState = TrialState.CANCELED,
               reason: str = "", *, interrupted: bool = False) -> bool:
        run = self._running.get(trial_id)
        if run is None:
            return False
        if run.kill is None:
            run.kill = (state, reason, interrupted)
            run.trial._stop(state, reason)
            run.scope.cancel()
        return True

    async def wait_idle(self) -> None:
        await self._idle.wait()

    # --- running trials ---------------------------------------------------------------------

    def _forget(self, trial_id: int) -> None:
        self._running.pop(trial_id, None)
        self._slot_freed.set()
        if not self._running:
            self._idle.set()

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
                    self._forget(run.spec.id)
        finally:
            self._runners_left -= 1
            if self._runners_left == 0:
                self._runners_done.set()

    async def _run(self, run: _Running) -> None:
        s, spec, trial = self.setup, run.spec, run.trial
        publish = s.publish
        if s.trial_timeout is not None:
            run.scope.deadline = anyio.current_time() + s.trial_timeout
        state, error, result = TrialState.SUCCEEDED, None, None
        try:
            await publish(TrialStarted(time=time.time(), trial_id=spec.id, attempt=spec.attempt))
            with run.scope:
                result = await self._call(trial)
            if run.scope.cancelled_caught or run.kill is not None:
                state, error = self._stopped(run)
        except TrialStopped:
            state, error = self._stopped(run)
        except anyio.get_cancelled_exc_class():
            # the experiment itself is being cancelled: record the trial, then go on dying
            trial._stop(TrialState.CANCELED, "the experiment was cancelled")
            with anyio.CancelScope(shield=True):
                for ev in self._pipe.take_pending():
                    await publish(ev, wait=False)
                await publish(TrialEnded(
                    time=time.time(), trial_id=spec.id, state=TrialState.CANCELED,
                    error=TrialError(INTERRUPTED, "the experiment was cancelled"),
                ), wait=False)
                trial._close()
            raise
        except _EvaluatorExitError as exc:
            state, error = TrialState.FAILED, exc.error
        except Exception as exc:
            state, error = TrialState.FAILED, TrialError.from_exception(exc)
        final = None
        if state is TrialState.SUCCEEDED:
            try:
                final = self._final(trial, result)
            except MetricError as exc:
                state, error = TrialState.FAILED, TrialError.from_exception(exc)
        await self._pipe.flush()  # every intermediate before the final result
        trial._close()
        now = time.time()
        if final is not None:
            await publish(FinalMetric(time=now, trial_id=spec.id, value=final[1], metric=final[0]))
        await publish(TrialEnded(time=now, trial_id=spec.id, state=state, error=error))

    def _stopped(self, run: _Running) -> tuple[TrialState, TrialError]:
        interrupted = False
        if run.kill is not None:
            state, reason, interrupted = run.kill
        elif run.trial._stop_state is not None:
            state, reason = run.trial._stop_state, run.trial._stop_reason
        else:
            state = TrialState.TIMEOUT
            reason = f"the trial ran longer than trial_timeout={self.setup.trial_timeout}s"
        run.trial._stop(state, reason)
        kind = "Timeout" if state is TrialState.TIMEOUT else "Stopped"
        return state, TrialError(INTERRUPTED if interrupted else kind, reason or state.value)

    def _final(self, trial: Trial, result: Any) -> tuple[float, Any]:
        if result is None:
            if trial._last is None:
                raise MetricError(
                    "the evaluator returned None and reported nothing: return the final "
                    "metric, or call trial.report(value) at least once"
                )
            return trial._last
        return self.setup.objective.parse(result)

    async def _call(self, trial: Trial) -> Any:
        s = self.setup
        token = _current.set(trial)
        try:
            if s.evaluator.is_async:
                model = None
                if self._model_space:  # freezing copies modules: keep it off the loop
                    model = await anyio.to_thread.run_sync(
                        build_model, s.space, trial.sample,
                        getattr(s.evaluator, "model_seed", None),
                    )
                try:
                    return await s.evaluator.evaluate(model, trial)
                except (SystemExit, KeyboardInterrupt) as exc:
                    raise _EvaluatorExitError(exc) from None
            return await anyio.to_thread.run_sync(
                self._call_sync, trial, abandon_on_cancel=True
            )
        finally:
            _current.reset(token)

    def _call_sync(self, trial: Trial) -> Any:
        seed = getattr(self.setup.evaluator, "model_seed", None)  # repeatable initial weights
        model = build_model(self.setup.space, trial.sample, seed)
        try:
            return self.setup.evaluator.evaluate(model, trial)
        except (SystemExit, KeyboardInterrupt) as exc:
            # left to propagate, it ends the worker thread and the loop never hears back
            # (the process then hangs at exit); on a local worker it ends that trial alone
            raise _EvaluatorExitError(exc) from None


class _EvaluatorExitError(Exception):
    """An evaluator raised ``SystemExit`` or ``KeyboardInterrupt``: that trial fails (its
    error keeps the type and traceback) and the search goes on, as on a local worker."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        error = TrialError.from_exception(exc)
        self.error = TrialError(
            error.type,
            f"the evaluator raised {exc!r}; in-process that ends this trial, not the "
            "experiment (to end the search, call Experiment.stop())",
            error.traceback,
        )

