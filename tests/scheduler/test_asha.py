"""ASHA's rung rule fed by hand: rung levels, who goes on, time rungs, retries, state."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nasflow as nf
from nasflow.strategy import ASHA, Decision

from ._helpers import Feeder

CONTINUE, STOP = Decision.CONTINUE, Decision.STOP


def test_rungs_sit_at_grace_times_eta_powers_below_max_t() -> None:
    assert ASHA(max_t=27).rungs() == [1, 3, 9]
    assert ASHA(max_t=28).rungs() == [1, 3, 9, 27]
    assert ASHA(max_t=10, grace_period=2, reduction_factor=2).rungs() == [2, 4, 8]
    assert ASHA(max_t=5.0, grace_period=0.5, reduction_factor=2.5).rungs() == [0.5, 1.25, 3.125]
    two = ASHA(max_t=27, brackets=2)
    assert two.rungs(0) == [1, 3, 9] and two.rungs(1) == [3, 9]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"max_t": 0}, "max_t must be a positive number"),
    ({"max_t": 9, "grace_period": 9}, "must be below max_t"),
    ({"max_t": 9, "reduction_factor": 1}, "reduction_factor must be a number > 1"),
    ({"max_t": 9, "time_attr": "epoch"}, "time_attr must be one of"),
    ({"max_t": 9, "brackets": 0}, "brackets must be an int >= 1"),
    ({"max_t": 9, "seed": "x"}, "seed must be an int or None"),
])
def test_bad_arguments_say_what_is_allowed(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ASHA(**kwargs)  # type: ignore[arg-type]


def test_a_trial_goes_on_only_in_the_top_third_of_its_rung() -> None:
    f = Feeder(ASHA(max_t=9))  # rungs 1, 3
    decisions = []
    for i, v in enumerate([0.5, 0.4, 0.6, 0.3, 0.7, 0.55, 0.65]):
        f.start(i)
        decisions.append(f.result(i, 1, v))
    # n=1: the first goes on; n=2,3: only the best so far; n=6,7: the best two
    assert decisions == [CONTINUE, STOP, CONTINUE, STOP, CONTINUE, STOP, CONTINUE]
    reason = f.scheduler.reason(f.trials[5])
    assert reason == ("ASHA: at the rung of 1 steps, its default 0.55 ranks 3 of the 6 "
                      "recorded there; only the best 2 (1/3) go on")
    assert f.scheduler.recorded()[0] == {0: 0.5, 1: 0.4, 2: 0.6, 3: 0.3, 4: 0.7, 5: 0.55,
                                         6: 0.65}


def test_results_between_rungs_decide_nothing_and_each_rung_records_once() -> None:
    f = Feeder(ASHA(max_t=9))
    f.start(0)
    f.start(1)
    assert f.result(0, 0, 0.9) is CONTINUE  # below the first rung: nothing recorded
    assert f.scheduler.recorded() == [{}, {}]
    assert f.result(0, 1, 0.9) is CONTINUE
    assert f.result(0, 2, 0.1) is CONTINUE  # rung 1 holds its step-1 result already
    assert f.scheduler.recorded()[0] == {0: 0.9}
    assert f.result(1, 1, 0.95) is CONTINUE
    assert f.result(0, 3, 0.2) is CONTINUE  # alone at rung 3
    assert f.result(1, 3, 0.1) is STOP  # second at rung 3, worse than the first
    assert f.scheduler.recorded() == [{0: 0.9, 1: 0.95}, {0: 0.2, 1: 0.1}]


def test_a_report_that_jumps_rungs_is_recorded_at_each() -> None:
    f = Feeder(ASHA(max_t=27))
    f.start(0)
    f.start(1)
    assert f.result(0, 10, 0.5) is CONTINUE
    assert [list(r) for r in f.scheduler.recorded()] == [[0], [0], [0]]
    assert f.result(1, 10, 0.4) is STOP  # stopped at rung 1 already: not recorded higher
    assert [list(r) for r in f.scheduler.recorded()] == [[0, 1], [0], [0]]


def test_minimize_ranks_smaller_first() -> None:
    f = Feeder(ASHA(max_t=9), {"loss": "minimize"})
    f.start(0)
    f.start(1)
    f.start(2)
    assert f.result(0, 1, 0.5) is CONTINUE
    assert f.result(1, 1, 0.2) is CONTINUE
    assert f.result(2, 1, 0.3) is STOP
    assert "its loss 0.3 ranks 2 of the 3" in f.scheduler.reason(f.trials[2])


def test_ties_count_in_the_trials_favour() -> None:
    f = Feeder(ASHA(max_t=9))
    for i in range(3):
        f.start(i)
    assert [f.result(i, 1, 0.5) for i in range(3)] == [CONTINUE] * 3


@given(st.lists(st.integers(0, 20), min_size=1, max_size=60),
       st.sampled_from([2, 3, 4, 2.5]))
@settings(max_examples=60, deadline=None)
def test_the_rule_matches_its_definition(values: list[int], eta: float) -> None:
    f = Feeder(ASHA(max_t=100, reduction_factor=eta))
    seen: list[float] = []
    for i, v in enumerate(values):
        f.start(i)
        seen.append(v / 20)
        better = sum(s > v / 20 for s in seen)
        keep = max(1, math.floor(len(seen) / eta))
        expected = CONTINUE if better + 1 <= keep else STOP
        assert f.result(i, 1, v / 20) is expected


def test_time_rungs_count_seconds_since_the_trial_started() -> None:
    f = Feeder(ASHA(max_t=100.0, grace_period=10.0, reduction_factor=2, time_attr="time"))
    assert f.scheduler.rungs() == [10.0, 20.0, 40.0, 80.0]
    f.start(0, at=1000.0)
    f.start(1, at=1003.0)
    assert f.result(0, 0, 0.8, time=1009.9) is CONTINUE
    assert f.scheduler.recorded()[0] == {}
    assert f.result(0, 1, 0.8, time=1010.0) is CONTINUE
    assert f.result(1, 5, 0.7, time=1012.0) is CONTINUE  # only 9 s in: no rung yet
    assert f.result(1, 6, 0.7, time=1013.5) is STOP  # 10.5 s: rung 10, behind trial 0
    assert "at the rung of 10 seconds" in f.scheduler.reason(f.trials[1])


def test_a_retry_starts_from_scratch() -> None:
    f = Feeder(ASHA(max_t=9))
    f.start(0)
    f.start(1)
    f.result(0, 1, 0.9)
    assert f.result(1, 1, 0.1) is STOP
    f.start(1)  # the same trial id runs again (a retry, or a resumed experiment)
    assert f.scheduler.recorded()[0] == {0: 0.9}
    assert f.result(1, 1, 0.95) is CONTINUE
    assert f.scheduler.bracket_of(1) == 0


def _drive(f: Feeder, trials: range, seed: int) -> list[Decision]:
    """A fixed, varied stream of results for ``trials``."""
    out = []
    for i in trials:
        f.start(i)
        for step in (1, 2, 3, 5, 9):
            d = f.result(i, step, ((i * 7919 + step * seed) % 101) / 100)
            out.append(d)
            if d is STOP:
                f.end(i, nf.TrialState.EARLY_STOPPED)
                break
    return out


@pytest.mark.parametrize("make", [
    lambda: ASHA(max_t=27),
    lambda: ASHA(max_t=27, brackets=3),
    lambda: ASHA(max_t=27, brackets=2, seed=5),
    lambda: ASHA(max_t=30.0, grace_period=2.0, time_attr="time"),
    lambda: nf.strategy.MOASHA(max_t=27),
    lambda: nf.strategy.Hyperband(max_t=27),
])
def test_state_round_trips_through_json_and_resumes_identically(make: object) -> None:
    first = Feeder(make())  # type: ignore[operator]
    _drive(first, range(0, 20), 13)
    state = orjson.loads(orjson.dumps(first.scheduler.state_dict()))
    again = Feeder(make())  # type: ignore[operator]
    again.scheduler.load_state_dict(state)
    assert again.scheduler.state_dict() == first.scheduler.state_dict()
    assert _drive(again, range(20, 45), 31) == _drive(first, range(20, 45), 31)
    assert again.scheduler.state_dict() == first.scheduler.state_dict()


def test_loading_the_state_of_other_rungs_says_so() -> None:
    state = ASHA(max_t=27).state_dict()
    with pytest.raises(ValueError, match="resume with the same max_t"):
        ASHA(max_t=81).load_state_dict(state)


def test_brackets_take_trials_in_turn_or_by_seed() -> None:
    f = Feeder(ASHA(max_t=27, brackets=3))
    for i in range(7):
        f.start(i)
    assert [f.scheduler.bracket_of(i) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    seeded = [Feeder(ASHA(max_t=27, brackets=3, seed=1)) for _ in range(2)]
    for g in seeded:
        for i in (5, 2, 9, 1):  # the draw depends on the trial id, not the order
            g.start(i)
    assert [seeded[0].scheduler.bracket_of(i) for i in (1, 2, 5, 9)] == [
        seeded[1].scheduler.bracket_of(i) for i in (1, 2, 5, 9)]


def test_each_bracket_ranks_its_own_trials() -> None:
    f = Feeder(ASHA(max_t=27, brackets=2))
    f.start(0)  # bracket 0: rungs 1, 3, 9
    f.start(1)  # bracket 1: rungs 3, 9
    assert f.result(1, 1, 0.1) is CONTINUE  # bracket 1 has no rung at 1
    assert f.result(0, 1, 0.5) is CONTINUE
    assert f.result(1, 3, 0.1) is CONTINUE  # first at bracket 1's rung 3
    assert f.scheduler.recorded(1) == [{1: 0.1}, {}]


def test_repr_names_the_arguments() -> None:
    assert repr(ASHA(max_t=9, brackets=2)) == (
        "ASHA(max_t=9, grace_period=1, reduction_factor=3, time_attr='step', brackets=2)")
