"""MOASHA: rungs rank by non-dominated sorting (front, crowding distance, record order)."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.strategy import ASHA, MOASHA, Decision, Hyperband
from nasflow.strategy._asha import crowding_distance, nondominated_sort

from ._helpers import Feeder

CONTINUE, STOP = Decision.CONTINUE, Decision.STOP
BOTH = {"accuracy": "maximize", "latency_ms": "minimize"}


def dominates(q: tuple[float, ...], p: tuple[float, ...]) -> bool:
    return q != p and all(a >= b for a, b in zip(q, p, strict=True))


def brute_fronts(points: list[tuple[float, ...]]) -> list[list[int]]:
    """Peel the non-dominated points off, one front at a time, by definition."""
    left, fronts = set(range(len(points))), []
    while left:
        front = sorted(i for i in left if not any(dominates(points[j], points[i]) for j in left))
        fronts.append(front)
        left -= set(front)
    return fronts


def brute_order(points: list[tuple[float, ...]]) -> list[int]:
    """The documented MOASHA order: front, crowding distance (larger first), index."""
    out = []
    for front in brute_fronts(points):
        crowd = crowding_distance(points, front)
        out += sorted(front, key=lambda i: (-crowd[i], i))
    return out


points2 = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=40)
points3 = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)),
                   max_size=30)


@given(st.one_of(points2, points3))
@settings(max_examples=150, deadline=None)
def test_nondominated_sort_matches_the_definition(ints: list[tuple[int, ...]]) -> None:
    points = [tuple(float(v) for v in p) for p in ints]  # small ints: many ties, duplicates
    assert nondominated_sort(points) == brute_fronts(points)


def test_nondominated_sort_is_fast_for_two_objectives() -> None:
    rng = random.Random(0)
    points = [(rng.random(), rng.random()) for _ in range(20000)]
    fronts = nondominated_sort(points)  # O(n log n): well under a second
    assert sum(map(len, fronts)) == 20000


def test_crowding_distance_favours_the_extremes_and_the_lonely() -> None:
    points = [(0.0, 4.0), (1.0, 3.0), (1.5, 2.5), (3.0, 1.0), (4.0, 0.0)]
    d = crowding_distance(points, range(5))  # type: ignore[arg-type]
    assert d[0] == d[4] == math.inf
    assert (d[1], d[2], d[3]) == (0.75, 1.0, 1.25)  # the sums of the neighbours' gaps
    assert crowding_distance(points, [1, 2]) == {1: math.inf, 2: math.inf}


def test_a_dominated_trial_stops_and_a_new_trade_off_goes_on() -> None:
    f = Feeder(MOASHA(max_t=9, reduction_factor=2), BOTH)
    for i in range(4):
        f.start(i)
    assert f.result(0, 1, {"accuracy": 0.9, "latency_ms": 10.0}) is CONTINUE
    # n=2, keep 1: dominated by trial 0
    assert f.result(1, 1, {"accuracy": 0.8, "latency_ms": 12.0}) is STOP
    assert "not among the best 1 of the 2 recorded there by non-dominated sorting" in (
        f.scheduler.reason(f.trials[1]))
    # n=3, keep 1: on the front with trial 0, both extremes (infinite crowding); the tie
    # goes to the one recorded first
    assert f.result(2, 1, {"accuracy": 0.7, "latency_ms": 2.0}) is STOP
    # n=4, keep 2: on the front, an extreme
    assert f.result(3, 1, {"accuracy": 0.95, "latency_ms": 30.0}) is CONTINUE
    assert f.scheduler.recorded()[0][3] == (0.95, -30.0)


def test_a_single_objective_asha_ranks_by_the_primary_only() -> None:
    f = Feeder(ASHA(max_t=9, reduction_factor=2), BOTH)
    f.start(0)
    f.start(1)
    assert f.result(0, 1, {"accuracy": 0.9, "latency_ms": 100.0}) is CONTINUE
    assert f.result(1, 1, {"accuracy": 0.8, "latency_ms": 1.0}) is STOP
    g = Feeder(MOASHA(max_t=9, reduction_factor=2), BOTH)
    g.start(0)
    g.start(1)
    assert g.result(0, 1, {"accuracy": 0.9, "latency_ms": 100.0}) is CONTINUE
    # not dominated; at n=2 only one goes on and trial 0 was first, so it still stops
    assert g.result(1, 1, {"accuracy": 0.8, "latency_ms": 1.0}) is STOP


@given(st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=40),
       st.sampled_from([2, 3]))
@settings(max_examples=80, deadline=None)
def test_moasha_continues_exactly_the_top_of_the_documented_order(
        values: list[tuple[int, int]], eta: int) -> None:
    f = Feeder(MOASHA(max_t=100, reduction_factor=eta), BOTH)
    points: list[tuple[float, ...]] = []
    for i, (acc, lat) in enumerate(values):
        f.start(i)
        points.append((acc / 8, -float(lat)))
        keep = max(1, len(points) // eta)
        expected = CONTINUE if brute_order(points).index(i) < keep else STOP
        assert f.result(i, 1, {"accuracy": acc / 8, "latency_ms": float(lat)}) is expected


def test_multi_objective_hyperband_and_asha_flag() -> None:
    assert ASHA(max_t=9, multi_objective=True).multi_objective
    assert repr(ASHA(max_t=9, multi_objective=True)).endswith("multi_objective=True)")
    h = Hyperband(max_t=9, multi_objective=True)
    f = Feeder(h, BOTH)
    for i in range(4):
        f.start(i)
    # shares 9/3 : 3/2 : 1/1, each trial to the bracket furthest behind its share
    assert [h.bracket_of(i) for i in range(4)] == [0, 1, 2, 0]
    assert f.result(0, 1, {"accuracy": 0.5, "latency_ms": 5.0}) is CONTINUE
    assert f.result(3, 1, {"accuracy": 0.4, "latency_ms": 6.0}) is STOP
