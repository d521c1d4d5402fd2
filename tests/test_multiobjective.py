"""Multi-objective experiments: the Pareto front (correct, fast), what export returns,
and MOASHA stopping trials of a two-objective search."""

from __future__ import annotations

import random
import time
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

import nasflow as nf
from nasflow._kernel import Objective
from nasflow._results import pareto_front
from nasflow.strategy import MOASHA
from nasflow.testing import SimulatedEngine

BOTH = {"accuracy": "maximize", "latency_ms": "minimize"}


def rec(i: int, metrics: Any) -> nf.TrialRecord:
    return nf.TrialRecord(id=i, sample={"i": i}, hash=str(i), state=nf.TrialState.SUCCEEDED,
                          metric=None, metrics=metrics)


def brute_front(records: list[nf.TrialRecord], directions: dict[str, str]) -> list[int]:
    """Ids of the records no other record dominates, straight from the definition."""
    def better_or_equal(a: dict[str, float], b: dict[str, float]) -> bool:
        return all(a[n] >= b[n] if d == "maximize" else a[n] <= b[n]
                   for n, d in directions.items())

    def same(a: dict[str, float], b: dict[str, float]) -> bool:
        return all(a[n] == b[n] for n in directions)

    ok = [r for r in records if all(n in r.metrics for n in directions)]
    return [r.id for r in ok if not any(
        better_or_equal(q.metrics, r.metrics) and not same(q.metrics, r.metrics) for q in ok)]


direction = st.sampled_from(["maximize", "minimize"])


@given(st.integers(2, 4).flatmap(lambda m: st.tuples(
    st.lists(direction, min_size=m, max_size=m),
    st.lists(st.lists(st.integers(0, 5), min_size=m, max_size=m), max_size=40))),
    st.booleans())
@settings(max_examples=200, deadline=None)
def test_the_pareto_front_matches_the_definition(case: tuple[list[str], list[list[int]]],
                                                 holes: bool) -> None:
    dirs, rows = case
    directions = {f"m{k}": d for k, d in enumerate(dirs)}
    records = [rec(i, {f"m{k}": float(v) for k, v in enumerate(row)})
               for i, row in enumerate(rows)]
    if holes:  # a record lacking a metric is on no front
        for r in records[::3]:
            del r.metrics["m0"]
    front = pareto_front(records, Objective(directions))
    assert [r.id for r in front] == brute_front(records, directions)


def test_equal_points_share_the_front_and_order_is_kept() -> None:
    records = [rec(0, {"accuracy": 0.9, "latency_ms": 5.0}),
               rec(1, {"accuracy": 0.9, "latency_ms": 5.0}),
               rec(2, {"accuracy": 0.95, "latency_ms": 9.0}),
               rec(3, {"accuracy": 0.9, "latency_ms": 6.0}),
               rec(4, {"accuracy": 0.8, "latency_ms": 5.0}),
               rec(5, 0.99)]
    assert [r.id for r in pareto_front(records, Objective(BOTH))] == [0, 1, 2]


def test_a_single_objective_front_is_every_record_tied_at_the_best() -> None:
    records = [nf.TrialRecord(id=i, sample={}, hash=str(i), metric=m, metrics=m)
               for i, m in enumerate([0.3, 0.1, 0.1, 0.2])]
    assert [r.id for r in pareto_front(records, Objective({"loss": "minimize"}))] == [1, 2]


def test_ten_thousand_trials_take_milliseconds() -> None:
    rng = random.Random(0)
    two = [rec(i, {"accuracy": rng.random(), "latency_ms": rng.random()}) for i in range(10000)]
    three = [rec(i, {"a": rng.random(), "b": rng.random(), "c": rng.random()})
             for i in range(10000)]
    t0 = time.perf_counter()
    front2 = pareto_front(two, Objective(BOTH))
    front3 = pareto_front(three, Objective({"a": "maximize", "b": "minimize", "c": "maximize"}))
    assert time.perf_counter() - t0 < 1.0
    assert 0 < len(front2) < 100 and 0 < len(front3) < 1000
    sample = two[:800]
    assert [r.id for r in pareto_front(sample, Objective(BOTH))] == brute_front(sample, BOTH)


# --- experiments ---------------------------------------------------------------------------

SPACE = {"width": nf.Categorical([8, 16, 32, 64, 128]), "depth": nf.Categorical([1, 2, 3, 4])}


def accuracy(sample: dict[str, Any]) -> float:
    w, d = sample["width"], sample["depth"]
    return round(1 - 1 / (w * d) - 0.01 * (d == 4), 6)


def latency(sample: dict[str, Any]) -> float:
    return sample["width"] * sample["depth"] / 10 + (sample["width"] == 128) * 5


async def evaluate(model: Any, trial: nf.Trial) -> dict[str, float]:
    return {"accuracy": accuracy(trial.sample), "latency_ms": latency(trial.sample),
            "params": trial.sample["width"] * 1000}


async def test_export_returns_exactly_the_front_ordered_by_the_primary() -> None:
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(objective=BOTH, store=True), id="mo-front")
    await exp.run()
    done = exp.trials([nf.TrialState.SUCCEEDED])
    assert len(done) == 20
    front_ids = set(brute_front(done, BOTH))
    exported = exp.export_top_models(100)
    assert {r.id for r in exported} == front_ids and 1 < len(front_ids) < 20
    assert [r.metrics["accuracy"] for r in exported] == sorted(
        (r.metrics["accuracy"] for r in exported), reverse=True)
    assert exp.best() == exported[0]
    assert exp.export_top_models(2, formatter="dict") == [r.sample for r in exported[:2]]
    with nf.load_experiment("mo-front") as loaded:  # the same front, read from disk
        assert [r.id for r in loaded.export_top_models(100)] == [r.id for r in exported]


def mo_table(sample: dict[str, Any]) -> tuple[list[dict[str, float]], float]:
    """9 one-second epochs; a "bad" activation costs accuracy and saves no latency."""
    acc = accuracy(sample) - 0.2 * (sample["act"] == "bad")
    lat = latency(sample)
    return [{"accuracy": acc * (1 - 0.5 ** (e + 1)), "latency_ms": lat} for e in range(9)], 1.0


async def test_moasha_stops_dominated_trials_of_a_two_objective_search() -> None:
    space = dict(SPACE, act=nf.Categorical(["relu", "bad"]))

    def run(scheduler: Any) -> nf.Experiment:
        exp = SimulatedEngine.experiment(
            space, nf.strategy.Random(seed=0), mo_table,
            nf.ExperimentConfig(objective=BOTH, max_trials=40, concurrency=2, store=False),
            scheduler=scheduler)
        nf.run(exp)
        return exp

    full = await anyio.to_thread.run_sync(run, None)
    early = await anyio.to_thread.run_sync(run, MOASHA(max_t=9))
    stopped = {t.id for t in early.trials([nf.TrialState.EARLY_STOPPED])}
    assert all("non-dominated sorting" in t.error.message  # type: ignore[union-attr]
               for t in early.trials([nf.TrialState.EARLY_STOPPED]))
    used = sum(t.duration for t in early.trials())  # type: ignore[misc]
    assert used < 0.4 * sum(t.duration for t in full.trials())  # type: ignore[misc]
    full_front = {r.id for r in full.export_top_models(100)}
    dominated = set(range(40)) - full_front
    # (the same seed submits the same trials in the same order)
    assert [t.sample for t in early.trials()] == [t.sample for t in full.trials()]
    assert len(stopped & dominated) >= 0.9 * len(dominated)
    finished = {r.id for r in early.export_top_models(100)}
    assert finished and finished <= full_front
