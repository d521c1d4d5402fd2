"""How one run of an experiment proceeds: open the store, start the control endpoint, run
the engine and the strategy under the budget, and always finish cleanly.

A mixin of ``Experiment`` (kept apart so that each file reads as one thing): it uses the
experiment's attributes and sinks defined in ``experiment.py``.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import anyio

from nasflow._context import ExperimentContext
from nasflow._control import ControlServer
from nasflow._persist import encode_snapshot, process_start_time, save_objects
from nasflow._resume import requeue, restore_state, space_signature
from nasflow._types import INTERRUPTED, ExperimentState, TrialError, TrialState
from nasflow._version import __version__
from nasflow.engine import Engine, TrialSpec
from nasflow.events import (
    EventStream,
    ExperimentFinished,
    ExperimentStateChanged,
    TrialEnded,
    TrialSubmitted,
)
from nasflow.exceptions import BudgetExhausted, StoreError, StrategyError
from nasflow.store import DB_NAME, ExperimentStore

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["RunMixin", "unwrap"]

_log = logging.getLogger("nasflow.experiment")


class RunMixin:
    """The run of an ``Experiment`` (see the module docstring)."""

    async def _run(self: Experiment) -> None:
        cfg = self.config
        failure: BaseException | None = None  # raised by the strategy
        internal: BaseException | None = None  # raised by anything else (e.g. the store)
        finished_normally = False
        control: ControlServer | None = None
        async with anyio.create_task_group() as services:
            try:
                if cfg.store:
                    await self._open_store()
                    control = ControlServer(self.directory, self.stop, self._status,
                                            events=self._feed_events, kill=self._kill_trial)
                    await services.start(control.serve)
                failure = await self._search()
                finished_normally = True
            except BaseException as exc:
                inner = unwrap(exc)
                if isinstance(inner, anyio.get_cancelled_exc_class()):
                    raise
                internal = inner
            finally:
                await self._finish(failure or internal, normal=finished_normally)
                # the control endpoint outlives the run's end: `nasflow stop --wait` gets
                # its answer once everything is saved
                if control is not None:
                    with anyio.CancelScope(shield=True):
                        await control.drain()
                services.cancel_scope.cancel()
        if internal is not None:
            raise internal
        if failure is None and self._repeated_failure is not None:
            raise self._repeated_failure
        if failure is not None:
            raise StrategyError(
                f"the strategy {self.strategy!r} raised {failure!r}; the experiment failed "
                f"after {len(self._records)} trials (all kept in {self.directory})"
            ) from failure

    async def _open_store(self: Experiment) -> None:
        store = ExperimentStore(self.directory / DB_NAME)
        await store.open(self._meta())
        self._store = store
        self._hub.add_sink(store.put)
        store.snapshot_with(self._snapshot)
        objects = {"space": self.space, "evaluator": self.evaluator,
                   "strategy": self.strategy, "scheduler": self.scheduler}
        await anyio.to_thread.run_sync(save_objects, self.directory, objects)

    async def _search(self: Experiment) -> BaseException | None:
        """The engine, the re-queued trials of a resume, the strategy, the budget."""
        cfg = self.config
        engine = self._make_engine()
        await self._publish(ExperimentStateChanged(time=time.time(),
                                                   state=ExperimentState.RUNNING))
        deadline = math.inf
        if cfg.max_duration is not None:
            deadline = anyio.current_time() + cfg.max_duration
            self._budget.deadline = deadline
        self._ctx = ExperimentContext(self)
        if self._plan is not None:
            restore_state(self, self._plan, self._ctx)
        failure = None
        async with engine:
            self._engine = engine
            with anyio.CancelScope(deadline=deadline) as search:
                self._search_scope = search
                if self._halt_request is not None:
                    search.cancel()
                if self._plan is not None:
                    await requeue(self, self._plan, engine)
                async with anyio.create_task_group() as helpers:
                    helpers.start_soon(self._retry_failures, engine)
                    failure = await self._run_strategy(self._ctx)
                    await self._drain(engine)
                    helpers.cancel_scope.cancel()
            if search.cancelled_caught and self._halt_request is None:
                self._halt(ExperimentState.DONE, f"max_duration={cfg.max_duration}s reached")
            if self._halt_request is not None:
                state, reason = self._halt_request
                self._budget.stopping = True
                # a stop (or a strategy failure) interrupts trials: a resume runs them again
                interrupted = state is not ExperimentState.DONE
                for trial_id in engine.running:
                    engine.cancel(trial_id, TrialState.CANCELED, reason, interrupted=interrupted)
                await engine.wait_idle()
        return failure

    async def _retry_failures(self: Experiment, engine: Engine) -> None:
        """Run failed attempts again (``ExperimentConfig.retry``), as capacity allows."""
        ctx = self._ctx
        assert ctx is not None
        while True:
            while not self._retries:
                await self._retry_wakeup.wait()
                self._retry_wakeup = anyio.Event()
            record = self._retries[0]
            await ctx.wait_capacity()
            attempt = record.attempt + 1
            _log.info("trial %d ended %s (%s); running it again (attempt %d)", record.id,
                      record.state.value, record.error, attempt)
            await self._publish(TrialSubmitted(time=time.time(), trial_id=record.id,
                                               sample=record.sample, hash=record.hash,
                                               attempt=attempt))
            await engine.submit(TrialSpec(record.id, record.sample, attempt))
            self._retries.popleft()
            self._retry_settled.set()

    async def _drain(self: Experiment, engine: Engine) -> None:
        """Wait for every running trial, and for every retry they cause."""
        while True:
            await engine.wait_idle()
            if not self._retries:
                return
            self._retry_settled = anyio.Event()
            await self._retry_settled.wait()

    async def _run_strategy(self: Experiment, ctx: ExperimentContext
                            ) -> BaseException | None:
        try:
            await self.strategy.run(ctx)
        except BudgetExhausted:
            self.end_reason = self.end_reason or "max_trials reached"
        except Exception as exc:
            self._halt(ExperimentState.FAILED, f"the strategy raised {exc!r}")
            return exc
        else:
            if self._budget.exhausted and self._budget.max_trials is not None:
                self.end_reason = self.end_reason or "max_trials reached"
            else:
                self.end_reason = self.end_reason or "the strategy finished"
        return None

    async def _finish(self: Experiment, failure: BaseException | None, *,
                      normal: bool) -> None:
        with anyio.CancelScope(shield=True):
            now = time.time()
            # nothing stays WAITING or RUNNING
            for record in list(self._records.values()):
                if not record.state.finished:
                    await self._publish(TrialEnded(
                        time=now, trial_id=record.id, state=TrialState.CANCELED,
                        error=TrialError(INTERRUPTED, "the experiment ended"),
                    ), wait=False)
            if failure is not None:
                state = ExperimentState.FAILED
                reason = self._halt_request[1] if self._halt_request else repr(failure)
            elif self._halt_request is not None:
                state, reason = self._halt_request
            elif normal:
                state, reason = ExperimentState.DONE, self.end_reason or "done"
            else:
                state, reason = ExperimentState.STOPPED, "the run was cancelled"
            self.state, self.end_reason = state, reason
            # a normal end waits for slow subscribers like any event; a cancelled one cannot
            for ev in (ExperimentStateChanged(time=now, state=state),
                       ExperimentFinished(time=now, state=state, reason=reason)):
                await self._publish(ev, wait=normal)
            self._hub.close()
            if self._tensorboard is not None:  # the scalars are on disk when run() returns
                await anyio.to_thread.run_sync(self._tensorboard.join)
            if self._store is not None:
                self._store.set_meta(state=state.value, ended_at=now, end_reason=reason,
                                     trials=len(self._records), best=self._best_metric())
                try:
                    await self._store.close()
                except StoreError:
                    _log.exception("closing the store of experiment %s failed", self.id)
            # before wait() returns: `nasflow stop --wait && nasflow resume` must not find
            # the experiment still locked
            self._release_lock()
            self._finished.set()  # everything is saved: stop() and wait() may return

    def _release_lock(self: Experiment) -> None:
        """Give up the experiment's lock (``_ownership.py``), once its store is closed."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # --- what the store and the control endpoint record -------------------------------

    def _meta(self: Experiment) -> dict[str, Any]:
        owner = {
            "state": ExperimentState.RUNNING.value,
            "pid": os.getpid(),
            "pid_start": process_start_time(os.getpid()),
            "host": socket.gethostname(),
            "started_at": time.time(),
            "ended_at": None,
        }
        if self._plan is not None:
            return {**owner, "resumed": int(self._plan.meta.get("resumed", 0)) + 1}
        return {
            **owner,
            "id": self.id,
            "name": self.name,
            "created_at": owner["started_at"],
            "config": self.config.to_dict(),
            "objective": self.objective.directions,
            "labels": self.search_space.labels,
            "space": space_signature(self.search_space),
            "strategy": repr(self.strategy),
            "evaluator": repr(self.evaluator),
            "scheduler": None if self.scheduler is None else repr(self.scheduler),
            "nasflow_version": __version__,
        }

    def _status(self: Experiment) -> dict[str, Any]:
        return {"id": self.id, "state": self.state.value, "trials": len(self._records),
                "running": self._inflight, "best": self._best_metric()}

    def _feed_events(self: Experiment) -> EventStream:
        # unbounded: a feed's reader (the dashboard) must never make the search wait; the
        # control server drops a reader that falls far behind instead
        return self._hub.subscribe(buffer=0)

    def _kill_trial(self: Experiment, trial_id: int, reason: str) -> bool:
        return self._kill(trial_id, TrialState.CANCELED, reason)

    # --- snapshots and resume -------------------------------------------------------------

    def _snapshot(self: Experiment) -> bytes:
        """The strategy's (and scheduler's) state, and how many ended trials it has taken;
        called by the store at a commit, so it matches exactly the events committed."""
        ctx = self._ctx
        return encode_snapshot({
            "version": 1,
            "taken": ctx.taken if ctx is not None else 0,
            "strategy": self.strategy.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        })


def unwrap(exc: BaseException) -> BaseException:
    """The single interesting exception inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc
