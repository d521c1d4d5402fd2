"""The trial table's one owner, driven with plain events: no event loop, no engine."""

from __future__ import annotations

from pathlib import Path

from nasflow._kernel import TrialError, TrialRecord, TrialState
from nasflow.events import FinalMetric, TrialEnded, TrialStarted, TrialSubmitted
from nasflow.experiment._ledger import TrialLedger
from nasflow.strategy import Budget


def ledger(max_trials: int | None = None) -> TrialLedger:
    return TrialLedger(Budget(max_trials, None), lambda i: str(Path("/exp/trials") / str(i)))


def submitted(trial_id: int, h: str = "h0", attempt: int = 0) -> TrialSubmitted:
    return TrialSubmitted(time=1.0, trial_id=trial_id, sample={"a": trial_id}, hash=h,
                          attempt=attempt)


def test_new_ids_count_against_the_budget_unless_told_not_to() -> None:
    t = ledger(max_trials=2)
    assert [t.new_id(), t.new_id(counted=False), t.new_id()] == [0, 1, 2]
    assert t.budget.submitted == 2
    assert t.budget.exhausted


def test_a_trial_is_followed_from_submitted_to_ended() -> None:
    t = ledger()
    assert t.apply(submitted(0)) is None
    assert t.inflight == 1 and len(t) == 1
    assert t[0].state is TrialState.WAITING and t[0].directory == "/exp/trials/0"
    t.apply(TrialStarted(time=2.0, trial_id=0))
    assert t[0].state is TrialState.RUNNING and t[0].started_at == 2.0
    assert t.running() == [t[0]] and t.history() == []
    t.apply(FinalMetric(time=3.0, trial_id=0, value={"acc": 0.5}, metric=0.5))
    ended = t.apply(TrialEnded(time=4.0, trial_id=0, state=TrialState.SUCCEEDED))
    assert ended is t[0]
    assert (ended.metric, ended.metrics, ended.ended_at) == (0.5, {"acc": 0.5}, 4.0)
    assert t.inflight == 0
    assert t.history() == [ended] and t.history([TrialState.FAILED]) == []


def test_a_second_end_changes_nothing() -> None:
    t = ledger()
    t.apply(submitted(0))
    assert t.apply(TrialEnded(time=2.0, trial_id=0, state=TrialState.CANCELED)) is not None
    again = TrialEnded(time=3.0, trial_id=0, state=TrialState.FAILED,
                       error=TrialError("X", "late"))
    assert t.apply(again) is None
    assert t[0].state is TrialState.CANCELED and t.inflight == 0


def test_hashes_remember_the_first_trial_and_count_distinct_samples() -> None:
    t = ledger()
    t.apply(submitted(0, "h0"))
    t.apply(submitted(1, "h0"))
    t.apply(submitted(2, "h1"))
    assert t.seen("h0") and t.seen("h1") and not t.seen("h2")
    assert t.distinct == 2


def test_a_retry_replaces_the_record_with_the_next_attempt() -> None:
    t = ledger()
    t.apply(submitted(0))
    failed = t.apply(TrialEnded(time=2.0, trial_id=0, state=TrialState.FAILED))
    assert failed is not None
    t.queue_retry(failed)
    assert t.retries == 1 and t.next_retry() is failed
    t.apply(submitted(0, attempt=1))
    t.retry_submitted()
    assert t.retries == 0 and t.next_retry() is None
    assert t[0].attempt == 1 and t[0].state is TrialState.WAITING and t.inflight == 1
    assert len(t) == 1


def test_restore_loads_stored_trials_and_continues_their_ids() -> None:
    t = ledger(max_trials=10)
    done = TrialRecord(id=0, sample={}, hash="a", state=TrialState.SUCCEEDED, metric=1.0)
    alive = TrialRecord(id=3, sample={}, hash="b", state=TrialState.RUNNING)
    t.restore([done, alive], next_id=4)
    assert t.budget.submitted == 2
    assert t.inflight == 1  # in flight when the process died, until it runs again
    assert t.new_id() == 4
    t.rerun_from(3, 1)
    assert t.first_attempt(3) == 1 and t.first_attempt(0) == 0


def test_penalise_sets_the_metric() -> None:
    t = ledger()
    t.apply(submitted(0))
    record = t.apply(TrialEnded(time=2.0, trial_id=0, state=TrialState.FAILED))
    assert record is not None
    t.penalise(record, -1.0)
    assert t[0].metric == -1.0
