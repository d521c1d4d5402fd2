"""MedianStop's rule fed by hand, and Hyperband's brackets and deal."""

from __future__ import annotations

import statistics
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.strategy import Decision, Hyperband, MedianStop

from ._helpers import Feeder

CONTINUE, STOP = Decision.CONTINUE, Decision.STOP


def test_stops_a_best_so_far_below_the_median_of_the_others_running_averages() -> None:
    f = Feeder(MedianStop(min_trials=3))
    for i in range(4):
        f.start(i)
    # trials 0-2 report steps 1, 2: running averages at step 2 are 0.5, 0.6, 0.7
    for i, (a, b) in enumerate([(0.4, 0.6), (0.5, 0.7), (0.6, 0.8)]):
        assert f.result(i, 1, a) is CONTINUE  # fewer than 3 others have reached step 1
        assert f.result(i, 2, b) is CONTINUE
    assert f.result(3, 1, 0.3) is STOP  # median of 0.4, 0.5, 0.6 is 0.5
    assert f.scheduler.reason(f.trials[3]) == (
        "MedianStop: at step 1 its best default 0.3 is worse than the median 0.5 of the "
        "running averages of 3 other trials")


def test_the_best_so_far_counts_and_equal_to_the_median_goes_on() -> None:
    f = Feeder(MedianStop(min_trials=3))
    for i in range(4):
        f.start(i)
    for i, (a, b) in enumerate([(0.4, 0.6), (0.5, 0.7), (0.6, 0.8)]):
        f.result(i, 1, a)
        f.result(i, 2, b)
    assert f.result(3, 1, 0.5) is CONTINUE  # equal to the median 0.5 (of 0.4, 0.5, 0.6)
    f.start(4)
    assert f.result(4, 1, 0.7) is CONTINUE
    # at step 2 the median is 0.6 (of 0.5, 0.6, 0.7; trial 3 has not reached step 2):
    # trial 4's latest 0.1 is far below, its best so far 0.7 is not
    assert f.result(4, 2, 0.1) is CONTINUE
    # trial 3 at step 2: the others' averages are 0.5, 0.6, 0.7 and trial 4's 0.4, so
    # the median is 0.55; its best so far is max(0.5, 0.52)
    assert f.result(3, 2, 0.52) is STOP


def test_grace_steps_and_min_trials() -> None:
    f = Feeder(MedianStop(grace_steps=2, min_trials=2))
    for i in range(3):
        f.start(i)
    for i in range(2):
        f.result(i, 1, 0.9)
        f.result(i, 2, 0.9)
    assert f.result(2, 1, 0.1) is CONTINUE  # step 1 < grace_steps
    assert f.result(2, 2, 0.1) is STOP
    g = Feeder(MedianStop(min_trials=2))
    g.start(0)
    g.start(1)
    g.result(0, 1, 0.9)
    assert g.result(1, 1, 0.1) is CONTINUE  # only one other trial at step 1


def test_minimize_and_trials_that_never_reached_the_step() -> None:
    f = Feeder(MedianStop(min_trials=1), {"loss": "minimize"})
    for i in range(3):
        f.start(i)
    f.result(0, 1, 1.0)
    f.result(1, 5, 0.1)  # no result at or before step 1: no running average there
    assert f.result(2, 1, 2.0) is STOP
    assert "best loss 2 is worse than the median 1 of the running averages of 1 other" in (
        f.scheduler.reason(f.trials[2]))


def reference(history: list[tuple[int, int, float]], min_trials: int, grace: int,
              ) -> list[Decision]:
    """The rule straight from its definition, recomputed from scratch at every result."""
    seen: dict[int, list[tuple[int, float]]] = {}
    out = []
    for tid, step, v in history:
        mine = seen.setdefault(tid, [])
        if mine and step <= mine[-1][0]:
            out.append(CONTINUE)
            continue
        mine.append((step, v))
        others = []
        for other, rs in seen.items():
            upto = [x for s, x in rs if s <= step]
            if other != tid and rs[-1][0] >= step and upto:
                others.append(sum(upto) / len(upto))
        best = max(x for _, x in mine)
        stop = (step >= grace and len(others) >= min_trials
                and best < statistics.median(others))
        out.append(STOP if stop else CONTINUE)
    return out


history_st = st.lists(st.tuples(st.integers(0, 5), st.integers(0, 6), st.integers(0, 10)),
                      max_size=60)


@given(history_st, st.integers(1, 3), st.integers(0, 2))
@settings(max_examples=100, deadline=None)
def test_the_rule_matches_its_definition(raw: list[tuple[int, int, int]], min_trials: int,
                                         grace: int) -> None:
    history = [(t, s, v / 10) for t, s, v in raw]
    f = Feeder(MedianStop(grace_steps=grace, min_trials=min_trials))
    got = []
    for tid, step, v in history:
        if tid not in f.trials:
            f.start(tid)
        got.append(f.result(tid, step, v))  # (it keeps deciding after a STOP: pure rule)
    assert got == reference(history, min_trials, grace)


@given(history_st, history_st)
@settings(max_examples=40, deadline=None)
def test_state_round_trips_and_resumes_identically(
        before: list[tuple[int, int, int]], after: list[tuple[int, int, int]]) -> None:
    def feed(f: Feeder, rows: list[tuple[int, int, int]]) -> list[Decision]:
        out = []
        for tid, step, v in rows:
            if tid not in f.trials:
                f.start(tid)
            out.append(f.result(tid, step, v / 10))
        return out

    first = Feeder(MedianStop(min_trials=2))
    feed(first, before)
    again = Feeder(MedianStop(min_trials=2))
    again.scheduler.load_state_dict(orjson.loads(orjson.dumps(first.scheduler.state_dict())))
    again.trials = dict(first.trials)
    assert feed(again, after) == feed(first, after)
    assert again.scheduler.state_dict() == first.scheduler.state_dict()


def test_a_retry_takes_its_old_results_back() -> None:
    f = Feeder(MedianStop(min_trials=1))
    f.start(0)
    f.start(1)
    f.result(0, 1, 0.9)
    f.result(0, 2, 0.9)
    f.start(0)  # trial 0 runs again: its old curve no longer counts
    assert f.result(1, 1, 0.1) is CONTINUE
    assert f.scheduler.state_dict()["curves"] == [[1, [[1, 0.1]]]]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="grace_steps must be an int >= 0"):
        MedianStop(grace_steps=-1)
    with pytest.raises(ValueError, match="min_trials must be an int >= 1"):
        MedianStop(min_trials=0)


def test_hyperband_brackets_span_every_aggressiveness() -> None:
    h = Hyperband(max_t=27)
    assert h.brackets == 4
    assert [h.rungs(b) for b in range(4)] == [[1, 3, 9], [3, 9], [9], []]
    assert Hyperband(max_t=81, grace_period=3).brackets == 4
    assert Hyperband(max_t=10, grace_period=1, reduction_factor=2).brackets == 4


def test_hyperband_deals_trials_in_the_proportions_of_its_schedule() -> None:
    f = Feeder(Hyperband(max_t=27))
    for i in range(49):
        f.start(i)
    deal = [f.scheduler.bracket_of(i) for i in range(49)]
    assert deal[:8] == [0, 1, 2, 3, 0, 0, 1, 0]
    assert Counter(deal) == {0: 27, 1: 12, 2: 6, 3: 4}  # Hyperband's n_i for s_max = 3
    g = Feeder(Hyperband(max_t=27, seed=7))
    for i in range(4900):
        g.start(i)
    counts = Counter(g.scheduler.bracket_of(i) for i in range(4900))
    assert abs(counts[0] - 2700) < 150 and abs(counts[3] - 400) < 80


def test_the_least_aggressive_bracket_never_stops() -> None:
    f = Feeder(Hyperband(max_t=9))  # brackets: rungs [1, 3], [3], []
    for i in range(6):
        f.start(i)
    assert [f.scheduler.bracket_of(i) for i in range(6)] == [0, 1, 2, 0, 0, 1]
    assert f.result(2, 1, 0.0) is CONTINUE
    assert f.result(2, 8, 0.0) is CONTINUE
    assert f.result(0, 1, 0.9) is CONTINUE
    assert f.result(3, 1, 0.1) is STOP
    assert repr(f.scheduler) == (
        "Hyperband(max_t=9, grace_period=1, reduction_factor=3, time_attr='step')")
