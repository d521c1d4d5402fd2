"""The trials a run submits besides its strategy's proposals, and the results it stores
without running them:

* **resumed**: the trials in flight when the experiment stopped (``requeue``): re-attached
  where still running (a manager's workers), else run again under their id;
* **retried**: failed attempts run again (``ExperimentConfig.retry``; the policy's
  ``Retry`` action queues them, ``retry_failures`` submits them, ``drain`` waits for them);
* **fed**: what the user enqueued or added (``exp.enqueue``, ``exp.add_results``, the
  CLI): known results stored at once (``add_known``), enqueued samples submitted as
  capacity allows (``follow_feed``; the strategy's context serves that queue first).

Every submission waits in the run's one capacity wait (``RunPort.wait_capacity``) and is
published through the run (``RunPort.publish``), like the strategy's. ``Run`` (``_run.py``)
owns one ``TrialSources`` per run and starts its loops in the search's task group.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import anyio

from nasflow._kernel import INTERRUPTED, KILLED, TrialError, TrialRecord, TrialState
from nasflow.engine import Engine, TrialSpec
from nasflow.events import Event, TrialEnded, TrialSubmitted
from nasflow.experiment._context import ExperimentContext
from nasflow.experiment._feed import Feed, known_trial_events
from nasflow.experiment._ledger import TrialLedger
from nasflow.experiment._resume import Replay, ResumePlan

__all__ = ["SourcesPort", "TrialSources"]

_log = logging.getLogger("nasflow.experiment")


class SourcesPort(Protocol):
    """What ``TrialSources`` needs of its run (``Run`` is one)."""

    ledger: TrialLedger
    feed: Feed
    clock: Callable[[], float]

    async def publish(self, event: Event, *, wait: bool = True) -> None: ...

    async def wait_capacity(self) -> None: ...


class TrialSources:
    """Resumed, retried and fed trials of one run (see the module docstring)."""

    def __init__(self, run: SourcesPort) -> None:
        self._run = run
        self.replay: Replay | None = None
        """The metrics a re-attached trial sends again (the run's ``publish`` drops them),
        while there are any."""
        self._fed_samples = anyio.Event()
        self._fed_results = anyio.Event()
        self._retry_wakeup = anyio.Event()
        self._retry_settled = anyio.Event()

    # --- resumed ---------------------------------------------------------------------------

    async def requeue(self, plan: ResumePlan, engine: Engine) -> None:
        """Trials in flight when the experiment stopped: re-attach those still running (a
        manager's workers), run the others again under the same id (attempt + 1)."""
        if not plan.pending:
            return
        run = self._run
        # a trial the user killed stays killed: its end may not have reached the store
        # before the process died (kill -9 after the change was committed)
        now = run.clock()
        for record in plan.pending:
            if record.id in plan.killed and not record.state.finished:
                await run.publish(TrialEnded(
                    time=now, trial_id=record.id, state=TrialState.CANCELED,
                    error=TrialError(KILLED, plan.killed[record.id])))
        pending = [r for r in plan.pending if r.id not in plan.killed]
        specs = [TrialSpec(r.id, r.sample, r.attempt) for r in pending]
        if plan.stored:
            # before reattach: the engine may publish a re-attached trial's events at once
            self.replay = Replay(dict(plan.stored))
        attached = await engine.reattach(specs)
        if self.replay is not None:
            self.replay.keep(attached)
            if not self.replay:
                self.replay = None
        again = [r for r in pending if r.id not in attached]
        for record in again:
            if not record.state.finished:  # the process died under it: record that first
                await run.publish(TrialEnded(
                    time=now, trial_id=record.id, state=TrialState.CANCELED,
                    error=TrialError(INTERRUPTED, "the process running the experiment ended"),
                ))
        for record in again:
            await run.wait_capacity()
            attempt = record.attempt + 1
            run.ledger.rerun_from(record.id, attempt)  # retries count from here
            await self._resubmit(record, attempt, engine)

    # --- retried ---------------------------------------------------------------------------

    def retry(self, record: TrialRecord) -> None:
        """Run ``record`` again (the policy's ``Retry``), as capacity allows."""
        self._run.ledger.queue_retry(record)
        self._retry_wakeup.set()

    async def retry_failures(self, engine: Engine) -> None:
        """Run failed attempts again (``ExperimentConfig.retry``), as capacity allows."""
        ledger = self._run.ledger
        while True:
            while (record := ledger.next_retry()) is None:
                await self._retry_wakeup.wait()
                self._retry_wakeup = anyio.Event()
            await self._run.wait_capacity()
            attempt = record.attempt + 1
            _log.info("trial %d ended %s (%s); running it again (attempt %d)", record.id,
                      record.state.value, record.error, attempt)
            await self._resubmit(record, attempt, engine)
            ledger.retry_submitted()
            self._retry_settled.set()

    async def drain(self, engine: Engine) -> None:
        """Wait for every running trial, and for every retry they cause."""
        while True:
            await engine.wait_idle()
            if not self._run.ledger.retries:
                return
            self._retry_settled = anyio.Event()
            await self._retry_settled.wait()

    async def _resubmit(self, record: TrialRecord, attempt: int, engine: Engine) -> None:
        await self._run.publish(TrialSubmitted(time=self._run.clock(), trial_id=record.id,
                                               sample=record.sample, hash=record.hash,
                                               attempt=attempt, origin=record.origin))
        await engine.submit(TrialSpec(record.id, record.sample, attempt))

    # --- fed -------------------------------------------------------------------------------

    def fed(self) -> None:
        """Something was enqueued or added while the run goes on (the feed's listener)."""
        self._fed_samples.set()
        self._fed_results.set()

    async def add_known(self) -> None:
        """Store the queued known results as trials that ended SUCCEEDED (not counted
        toward ``max_trials``); the strategy takes them like any ended trial."""
        run = self._run
        for result in run.feed.take_results():
            if run.ledger.seen(result.hash):
                continue
            trial_id = run.ledger.new_id(counted=False)
            for event in known_trial_events(result, trial_id, run.clock()):
                await run.publish(event)

    async def follow_feed(self, ctx: ExperimentContext) -> None:
        """Take what is enqueued or added while the strategy runs (or waits on a result):
        known results at once, enqueued samples as capacity allows."""
        async def results() -> None:
            while True:
                await self._fed_results.wait()
                self._fed_results = anyio.Event()
                await self.add_known()

        async def samples() -> None:
            while True:
                await self._fed_samples.wait()
                self._fed_samples = anyio.Event()
                await ctx.wait_capacity()  # submits what is queued, as capacity allows

        async with anyio.create_task_group() as tg:
            tg.start_soon(results)
            tg.start_soon(samples)
