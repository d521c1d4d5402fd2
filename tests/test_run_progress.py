"""``RunProgress``: the one fold of a run's events that ``nasflow run``'s table and the
notebook display both draw (no event loop, no I/O)."""

from __future__ import annotations

from nasflow._kernel import ExperimentState, TrialError, TrialRecord, TrialState
from nasflow._run_progress import RunProgress
from nasflow.events import (
    Event,
    ExperimentFinished,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)


def _trial(i: int, metric: float | None, state: TrialState = TrialState.SUCCEEDED,
           ) -> list[Event]:
    out: list[Event] = [TrialSubmitted(time=1.0, trial_id=i, sample={"a": i}, hash=str(i)),
                        TrialStarted(time=2.0, trial_id=i),
                        IntermediateMetric(time=2.5, trial_id=i, step=0, value=0.5,
                                           metric=0.5)]
    if metric is not None:
        out.append(FinalMetric(time=3.0, trial_id=i, value=metric, metric=metric))
    error = None if state is TrialState.SUCCEEDED else TrialError("ValueError", "bad", "")
    out.append(TrialEnded(time=3.0, trial_id=i, state=state, error=error))
    return out


def test_the_best_follows_the_objective_direction_and_ignores_failures() -> None:
    for maximize, best in ((True, 1), (False, 0)):
        p = RunProgress(maximize=maximize)
        for ev in [*_trial(0, 0.2), *_trial(1, 0.9), *_trial(2, None, TrialState.FAILED)]:
            p.apply(ev)
        assert p.best is not None and p.best.id == best
        assert [r.id for r in p.ranked()] == ([1, 0] if maximize else [0, 1])
        assert p.done == 3
        assert p.counts() == {TrialState.SUCCEEDED: 2, TrialState.FAILED: 1}
        assert "ValueError" in p.rows[2].error


def test_a_running_trial_shows_its_last_report_and_the_end_is_kept() -> None:
    p = RunProgress()
    for ev in _trial(0, 0.3)[:3]:
        p.apply(ev)
    (row,) = p.running
    assert (row.id, row.step, row.last, row.started) == (0, 0, 0.5, 2.0)
    assert p.apply(ExperimentFinished(time=4.0, state=ExperimentState.STOPPED,
                                      reason="stopped")) is None
    assert p.finished is not None and p.finished.reason == "stopped"


def test_earlier_runs_count_as_done_until_a_trial_of_them_is_run_again() -> None:
    earlier = [TrialRecord(id=i, sample={"a": i}, hash=str(i), state=TrialState.SUCCEEDED,
                           metric=float(i)) for i in range(3)]
    p = RunProgress(history=earlier)
    assert (p.earlier, p.done) == (3, 3)
    assert p.best is not None and p.best.id == 2
    p.apply(TrialSubmitted(time=1.0, trial_id=2, sample={"a": 2}, hash="2"))  # run again
    assert (p.earlier, p.done) == (2, 2)


def test_events_of_unknown_trials_are_ignored() -> None:
    p = RunProgress()
    assert p.apply(TrialStarted(time=0.0, trial_id=7)) is None
    assert p.rows == {}
