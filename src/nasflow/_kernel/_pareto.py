"""Pareto fronts: which results no other result beats on every metric.

Points are tuples of floats where larger is better on every coordinate (turn a minimised
metric by negating it, as ``pareto_front`` does). One implementation serves the exports
(``ExperimentResults.best``, plots) and MOASHA's rungs.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from nasflow._kernel._objective import Objective
from nasflow._kernel._types import TrialRecord

__all__ = ["crowding_distance", "first_front", "nondominated_sort", "pareto_front"]


def pareto_front(records: Iterable[TrialRecord], objective: Objective) -> list[TrialRecord]:
    """The non-dominated records under every metric of ``objective``, in input order.

    A record dominates another when it is at least as good on every metric and better on
    one; records with equal metrics do not dominate each other (all of them stay on the
    front). Records whose ``metrics`` lack one of the objective's names are left out (a
    single-objective record may give its ``metric`` instead). O(n log n) for two metrics,
    O(n * front size) otherwise: 10k trials take milliseconds.
    """
    names = list(objective.directions)
    signs = [1.0 if objective.directions[n] == "maximize" else -1.0 for n in names]
    kept: list[TrialRecord] = []
    points: list[tuple[float, ...]] = []
    for r in records:
        m = r.metrics
        if isinstance(m, dict) and all(n in m for n in names):
            points.append(tuple(s * m[n] for s, n in zip(signs, names, strict=True)))
        elif not objective.multi and r.metric is not None:
            points.append((signs[0] * r.metric,))
        else:
            continue
        kept.append(r)
    return [kept[i] for i in first_front(points)]


def first_front(points: Sequence[tuple[float, ...]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates, larger being better.

    Scans the points in descending lexicographic order: a point can only be dominated by
    one before it, and if it is, then by one already on the front (dominance is
    transitive), so each point is checked against the front found so far.
    """
    order = sorted(range(len(points)), key=points.__getitem__, reverse=True)
    front: list[int] = []
    if points and len(points[0]) == 2:
        # two metrics: everything before p has f1 >= p's; p is dominated iff one of them
        # has a larger f2, or the same f2 and a larger f1 (the first to reach the largest
        # f2 has the largest f1 among those)
        best: tuple[float, float] | None = None  # (largest f2 so far, f1 of its first)
        for i in order:
            f1, f2 = points[i]
            if best is None or f2 > best[0]:
                best = (f2, f1)
            elif f2 < best[0] or best[1] > f1:
                continue
            front.append(i)
    else:
        for i in order:
            p = points[i]
            if not any(q != p and all(a >= b for a, b in zip(q, p, strict=True))
                       for q in (points[j] for j in front)):
                front.append(i)
    front.sort()
    return front


def nondominated_sort(points: Sequence[tuple[float, ...]]) -> list[list[int]]:
    """The Pareto fronts of ``points`` (larger is better), best first, as index lists.

    Two objectives take O(n log n) (each point goes to the first front none of whose
    members dominates it, found by bisection); more are peeled front by front.
    """
    if not points:
        return []
    if len(points[0]) == 2:
        order = sorted(range(len(points)), key=points.__getitem__, reverse=True)
        # per front, the negated (largest f2, f1 of the first point reaching it): a front
        # dominates p iff its key is below p's; keys ascend from front to front
        keys: list[tuple[float, float]] = []
        fronts: list[list[int]] = []
        for i in order:
            f1, f2 = points[i]
            key = (-f2, -f1)
            j = bisect_left(keys, key)
            if j == len(keys):
                keys.append(key)
                fronts.append([i])
            else:
                keys[j] = key
                fronts[j].append(i)
        return [sorted(f) for f in fronts]
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [remaining[j] for j in first_front([points[i] for i in remaining])]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


def crowding_distance(points: Sequence[tuple[float, ...]], front: Sequence[int],
                      ) -> dict[int, float]:
    """NSGA-II crowding distance of each index of ``front`` (the extremes: infinity)."""
    dist = dict.fromkeys(front, 0.0)
    if len(front) <= 2:
        return dict.fromkeys(front, math.inf)
    for m in range(len(points[front[0]])):
        by = sorted(front, key=lambda i: points[i][m])
        lo, hi = points[by[0]][m], points[by[-1]][m]
        dist[by[0]] = dist[by[-1]] = math.inf
        if hi == lo:
            continue
        for before, i, after in zip(by, by[1:], by[2:], strict=False):
            dist[i] += (points[after][m] - points[before][m]) / (hi - lo)
    return dist
