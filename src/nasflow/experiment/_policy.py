"""What happens to a trial after its events: decided here, done by the run.

``TrialPolicy`` is sans-I/O, like the protocol sessions: it is given a trial's record as
the ledger has just updated it, and returns *actions* (plain values) -- run it again,
give it the penalty, stop it early, hand it to the strategy, take a snapshot, halt the
experiment. It calls the early-stopping scheduler (itself synchronous and I/O-free) and
keeps the one piece of state a decision needs across trials (the failures of the first
trials). It never touches an engine, a store or an event loop; ``Run`` applies what it
returns, in order. Tests drive it with records and read the actions
(``tests/experiment/test_policy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from nasflow._kernel import KNOWN_ORIGINS as KNOWN
from nasflow._kernel import ExperimentState, Objective, TrialRecord, TrialState
from nasflow.exceptions import RepeatedFailureError
from nasflow.strategy import Decision, Scheduler

__all__ = [
    "SNAPSHOT_DUE",
    "Action",
    "Deliver",
    "Halt",
    "Kill",
    "Penalise",
    "Retry",
    "SnapshotDue",
    "TrialPolicy",
    "penalty_for",
]


# --- the actions ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Retry:
    """Run ``record``'s trial again (its next attempt); nothing else sees this attempt."""

    record: TrialRecord


@dataclass(frozen=True, slots=True)
class Penalise:
    """Give the trial ``metric`` (it failed without one; ``ExperimentConfig.penalty``)."""

    record: TrialRecord
    metric: float


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop the running trial ``trial_id``; it ends in ``state``."""

    trial_id: int
    state: TrialState
    reason: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand the ended trial to the strategy."""

    record: TrialRecord


@dataclass(frozen=True, slots=True)
class SnapshotDue:
    """The strategy's state has moved on: the store should snapshot at its next commit."""


SNAPSHOT_DUE = SnapshotDue()
"""The one ``SnapshotDue`` (it holds nothing): ``TrialPolicy.ended`` returns it."""


@dataclass(frozen=True, slots=True)
class Halt:
    """End the search in ``state`` for ``reason``; ``error`` is raised by ``run()``."""

    state: ExperimentState
    reason: str
    error: RepeatedFailureError | None = None
    log: str = ""
    """Logged as an error when applied (the first failed trial's traceback)."""


Action = Retry | Penalise | Kill | Deliver | SnapshotDue | Halt


def penalty_for(record: TrialRecord, penalty: float | None) -> float | None:
    """The metric a trial that FAILED or timed out without one gets, if any."""
    if (penalty is not None and record.metric is None
            and record.state in (TrialState.FAILED, TrialState.TIMEOUT)):
        return penalty
    return None


# --- the policy -----------------------------------------------------------------------------

class TrialPolicy:
    """Retry, penalty, early stopping, repeated failures and the target, as actions.

    ``retry``/``retry_on``/``penalty``/``max_identical_failures``/``target_metric`` are
    the ``ExperimentConfig`` fields of those names; ``experiment_id`` names the
    experiment in the repeated-failure error.
    """

    def __init__(self, objective: Objective, scheduler: Scheduler | None, *,
                 experiment_id: str, retry: int = 0, retry_on: tuple[str, ...] = (),
                 penalty: float | None = None, max_identical_failures: int | None = None,
                 target_metric: float | None = None) -> None:
        self.objective = objective
        self.scheduler = scheduler
        self.experiment_id = experiment_id
        self.retry = retry
        self.retry_on = tuple(retry_on)
        self.penalty = penalty
        self.max_identical_failures = max_identical_failures
        self.target_metric = target_metric
        # the errors of the first trials to end, while they all failed alike (None once
        # one got through, or they differed, or the watch fired)
        self._failure_watch: list[tuple[str, str]] | None = []

    def started(self, record: TrialRecord) -> None:
        """The trial started (its record says RUNNING)."""
        if self.scheduler is not None:
            self.scheduler.on_trial_start(record)

    def result(self, record: TrialRecord, step: int, metric: float, value: object,
               time: float) -> Kill | None:
        """An intermediate result: ``Kill`` when the scheduler wants the trial stopped."""
        if (self.scheduler is not None and record.state is TrialState.RUNNING
                and self.scheduler.on_result(record, step, metric, value, time)
                is Decision.STOP):
            return Kill(record.id, TrialState.EARLY_STOPPED, self.scheduler.reason(record))
        return None

    def ended(self, record: TrialRecord, *, first_attempt: int, stopping: bool
              ) -> list[Action]:
        """The trial ended (the ledger recorded it); what follows, in order.

        ``first_attempt`` is where the trial's retries count from (``TrialLedger``);
        ``stopping`` whether the experiment is ending (no retries then, and the failures
        of a stopping experiment prove nothing).
        """
        if (record.attempt < first_attempt + self.retry
                and record.state.value in self.retry_on and not stopping):
            return [Retry(record)]  # the strategy and the scheduler see the last attempt only
        actions: list[Action] = []
        metric = penalty_for(record, self.penalty)
        if metric is not None:
            actions.append(Penalise(record, metric))
        halt = self._watch_failures(record, stopping=stopping)
        if halt is not None:
            actions.append(halt)
        actions += [Deliver(record), SNAPSHOT_DUE]
        target = self.target_metric
        # a known result (added, imported) is no sign that the search reached its target:
        # a warm start from a search that did would end before it began
        if (target is not None and record.state is TrialState.SUCCEEDED
                and record.metric is not None and record.origin not in KNOWN
                and self.objective.reached(record.metric, target)):
            actions.append(Halt(ExperimentState.DONE,
                                f"trial {record.id} reached target_metric={target}"))
        return actions

    def notify_scheduler(self, record: TrialRecord) -> None:
        """Tell the scheduler the trial ended (after its penalty, before the strategy)."""
        if self.scheduler is not None:
            self.scheduler.on_trial_end(record)

    def _watch_failures(self, record: TrialRecord, *, stopping: bool) -> Halt | None:
        """Stop when the first trials all fail with the same error: the evaluator (or the
        space) is broken, and every further trial would repeat it (NNI's one-argument
        ``fn(model)`` evaluator failed all 20 trials of a search that ended DONE)."""
        limit, watch = self.max_identical_failures, self._failure_watch
        if limit is None or watch is None or stopping:
            return None
        if record.state is not TrialState.FAILED or record.error is None:
            self._failure_watch = None  # a trial got through: failures are the trials'
            return None
        watch.append((record.error.type, record.error.message))
        if len(set(watch)) > 1:
            self._failure_watch = None
            return None
        if len(watch) < limit:
            return None
        self._failure_watch = None
        message = (
            f"the first {limit} trials of experiment {self.experiment_id} all FAILED with "
            f"the same error, {record.error}; the experiment stopped instead of repeating "
            f"it. {SIGNATURE} Fix the cause and start a new experiment (see `nasflow trials "
            f"{self.experiment_id} --state FAILED` for the tracebacks), or set "
            "ExperimentConfig(max_identical_failures=None) to run on whatever fails."
        )
        return Halt(ExperimentState.FAILED, message,
                    error=RepeatedFailureError(message, record.error, limit),
                    log=f"{message}\nThe first trial's traceback:\n{record.error.traceback}")


SIGNATURE = (
    "An evaluator is called as `fn(model, trial)` (def or async def; NNI's one-argument "
    "`fn(model)` gets a TypeError), or is an nf.Evaluator whose "
    "`evaluate(self, model, trial)` returns the metric or reports it with "
    "trial.report(value, step=...)."
)
