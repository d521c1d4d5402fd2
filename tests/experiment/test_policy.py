"""Retry, penalty, early stopping, repeated failures and the target, decided as actions:
records in, actions out, no event loop and no engine."""

from __future__ import annotations

from typing import Any

from nasflow._kernel import ExperimentState, Objective, TrialError, TrialRecord, TrialState
from nasflow.exceptions import RepeatedFailureError
from nasflow.experiment._policy import (
    Deliver,
    Halt,
    Kill,
    Penalise,
    Retry,
    SnapshotDue,
    TrialPolicy,
    penalty_for,
)
from nasflow.strategy import Decision, Scheduler

MAX = Objective({"default": "maximize"})


def record(trial_id: int = 0, state: TrialState = TrialState.SUCCEEDED, *,
           metric: float | None = None, attempt: int = 0,
           error: TrialError | None = None) -> TrialRecord:
    return TrialRecord(id=trial_id, sample={}, hash=f"h{trial_id}", state=state,
                       metric=metric, attempt=attempt, error=error)


def policy(**kwargs: Any) -> TrialPolicy:
    kwargs.setdefault("max_identical_failures", None)
    return TrialPolicy(MAX, kwargs.pop("scheduler", None), experiment_id="exp", **kwargs)


def test_an_ended_trial_goes_to_the_strategy_and_moves_the_snapshot() -> None:
    r = record(metric=0.5)
    assert policy().ended(r, first_attempt=0, stopping=False) == [Deliver(r), SnapshotDue()]


def test_a_failure_is_retried_up_to_the_limit_counted_from_the_first_attempt() -> None:
    p = policy(retry=2, retry_on=("FAILED",))
    assert p.ended(record(state=TrialState.FAILED, attempt=1), first_attempt=0,
                   stopping=False) == [Retry(record(state=TrialState.FAILED, attempt=1))]
    last = record(state=TrialState.FAILED, attempt=2)
    assert Deliver(last) in p.ended(last, first_attempt=0, stopping=False)
    # a resumed trial that runs again as attempt 2 gets its own retries
    assert p.ended(last, first_attempt=2, stopping=False) == [Retry(last)]


def test_no_retry_for_other_states_or_while_stopping() -> None:
    p = policy(retry=3, retry_on=("FAILED",))
    timeout = record(state=TrialState.TIMEOUT)
    assert not any(isinstance(a, Retry)
                   for a in p.ended(timeout, first_attempt=0, stopping=False))
    failed = record(state=TrialState.FAILED)
    assert not any(isinstance(a, Retry)
                   for a in p.ended(failed, first_attempt=0, stopping=True))


def test_the_penalty_goes_to_failures_without_a_metric_before_the_strategy_sees_them() -> None:
    p = policy(penalty=-1.0)
    failed = record(state=TrialState.FAILED)
    actions = p.ended(failed, first_attempt=0, stopping=False)
    assert actions[0] == Penalise(failed, -1.0)
    assert actions.index(Penalise(failed, -1.0)) < actions.index(Deliver(failed))
    assert penalty_for(record(state=TrialState.TIMEOUT), -1.0) == -1.0
    assert penalty_for(record(state=TrialState.FAILED, metric=0.2), -1.0) is None
    assert penalty_for(record(state=TrialState.CANCELED), -1.0) is None
    assert penalty_for(record(state=TrialState.FAILED), None) is None


def test_reaching_the_target_halts_done_after_the_strategy_has_the_trial() -> None:
    p = policy(target_metric=0.9)
    assert not any(isinstance(a, Halt) for a in p.ended(record(metric=0.8), first_attempt=0,
                                                        stopping=False))
    best = record(3, metric=0.95)
    actions = p.ended(best, first_attempt=0, stopping=False)
    assert actions[-1] == Halt(ExperimentState.DONE, "trial 3 reached target_metric=0.9")
    assert Deliver(best) in actions


def test_the_first_trials_failing_alike_halt_the_experiment_failed() -> None:
    p = policy(max_identical_failures=2)
    error = TrialError("TypeError", "fn() takes 1 positional argument", "Traceback...")
    assert not any(isinstance(a, Halt) for a in p.ended(
        record(0, TrialState.FAILED, error=error), first_attempt=0, stopping=False))
    actions = p.ended(record(1, TrialState.FAILED, error=error), first_attempt=0,
                      stopping=False)
    halt = next(a for a in actions if isinstance(a, Halt))
    assert halt.state is ExperimentState.FAILED
    assert isinstance(halt.error, RepeatedFailureError) and "Traceback..." in halt.log
    # the watch fires once
    assert not any(isinstance(a, Halt) for a in p.ended(
        record(2, TrialState.FAILED, error=error), first_attempt=0, stopping=False))


def test_one_trial_getting_through_ends_the_failure_watch() -> None:
    p = policy(max_identical_failures=2)
    error = TrialError("E", "m")
    p.ended(record(0, TrialState.FAILED, error=error), first_attempt=0, stopping=False)
    p.ended(record(1, metric=0.1), first_attempt=0, stopping=False)
    for i in (2, 3, 4):
        assert not any(isinstance(a, Halt) for a in p.ended(
            record(i, TrialState.FAILED, error=error), first_attempt=0, stopping=False))


class _StopAtStep(Scheduler):
    def __init__(self, step: int) -> None:
        self.step = step
        self.seen: list[str] = []

    def on_trial_start(self, trial: TrialRecord) -> None:
        self.seen.append(f"start {trial.id}")

    def on_result(self, trial: TrialRecord, step: int, metric: float, value: Any,
                  time: float) -> Decision:
        return Decision.STOP if step >= self.step else Decision.CONTINUE

    def on_trial_end(self, trial: TrialRecord) -> None:
        self.seen.append(f"end {trial.id} {trial.metric}")


def test_the_scheduler_decision_becomes_a_kill_of_running_trials_only() -> None:
    scheduler = _StopAtStep(2)
    scheduler.bind(MAX)
    p = policy(scheduler=scheduler)
    running = record(4, TrialState.RUNNING)
    p.started(running)
    assert p.result(running, 1, 0.1, 0.1, 1.0) is None
    assert p.result(running, 2, 0.1, 0.1, 2.0) == Kill(
        4, TrialState.EARLY_STOPPED, "stopped early by _StopAtStep")
    assert p.result(record(5, TrialState.WAITING), 9, 0.1, 0.1, 3.0) is None
    p.notify_scheduler(record(4, TrialState.EARLY_STOPPED, metric=0.1))
    assert scheduler.seen == ["start 4", "end 4 0.1"]
