"""ASHA vs full-budget random search on a tabular benchmark: same best, how much compute?

Every search draws the same random sequence of architectures (``Random(seed)``) and runs
on a ``SimulatedEngine`` that replays each architecture's recorded learning curve on a
fake clock; compute is the sum of simulated seconds the trials ran. Random search trains
``--trials`` architectures for every epoch. ASHA and Hyperband stop trials at rungs, and
are measured two ways:

* ``same_trials``: on the same ``--trials`` architectures: total compute, and whether the
  best they let finish is random search's best;
* ``anytime``: allowed ``--more`` times as many architectures (the first ``--trials`` of
  them the same), the compute spent when a finished trial first matched random search's
  best accuracy (``null``: never matched).

Target: the median over seeds of the anytime ratio is at most 0.40 (the same best for at
most 40 % of the compute; a seed that never matched counts as infinite); the JSON also
says for how many seeds it held. Not every seed can meet it: a rung sometimes stops the
architecture that would have ended best, when learning curves cross.

    python benchmarks/asha_compute.py                       # the small digits table if built,
    python benchmarks/asha_compute.py --table PATH.json.gz  # else a synthetic one
    python benchmarks/asha_compute.py --synthetic --seeds 10

Table format (``benchmarks/build_digits_table.py``): ``{"epochs": E, "rows": [[sample,
[accuracy per epoch], [seconds per epoch]], ...]}``. The synthetic table (``--synthetic``,
or when the file is missing) has the same format and is generated deterministically.

The simulated engine reports epoch ``e`` (1-based) as ``step = e - 1`` and ASHA counts
that report as ``e`` epochs done, so ``--grace 1`` puts the first rung after 1 epoch;
``max_t = E`` (no rung on the last epoch: a finished trial is never stopped). The engine
replays the mean epoch time of a row.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import emit

import nasflow as nf
from nasflow.strategy import ASHA, Hyperband, Scheduler
from nasflow.testing import SimulatedEngine

DIGITS = Path(__file__).resolve().parent / "data" / "digits_small_table.json.gz"


def synthetic_table(n: int = 1872, epochs: int = 10, seed: int = 0) -> dict[str, Any]:
    """Learning curves that rise towards a final accuracy at different speeds, with noise:
    early epochs foretell the final ranking well, not perfectly (as real training does)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        final = 0.80 + 0.18 * rng.betavariate(4, 2)
        start = final - rng.uniform(0.25, 0.55)
        tau = rng.uniform(1.0, 3.5)  # epochs to close ~63 % of the gap
        accs = [round(min(1.0, final - (final - start) * math.exp(-e / tau)
                          + rng.gauss(0, 0.004)), 5) for e in range(1, epochs + 1)]
        per_epoch = rng.uniform(0.05, 0.5)
        secs = [round(per_epoch * rng.uniform(0.95, 1.05), 4) for _ in range(epochs)]
        rows.append([{"arch": i}, accs, secs])
    return {"space": "synthetic", "epochs": epochs, "rows": rows}


def load_table(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        return json.load(f)  # type: ignore[no-any-return]


def run(table: dict[str, Any], scheduler: Scheduler | None, trials: int, seed: int,
        concurrency: int) -> dict[str, Any]:
    rows = table["rows"]
    curves = [(row[1], statistics.fmean(row[2])) for row in rows]

    def lookup(sample: dict[str, Any]) -> tuple[list[float], float]:
        return curves[sample["arch"]]

    space = {"arch": nf.Categorical(list(range(len(rows))))}
    exp = SimulatedEngine.experiment(
        space, nf.strategy.Random(seed=seed), lookup,
        nf.ExperimentConfig(max_trials=trials, concurrency=concurrency, store=False),
        scheduler=scheduler)
    t0 = time.perf_counter()
    nf.run(exp)
    wall = time.perf_counter() - t0
    done = exp.trials()
    best = max((t for t in done if t.state is nf.TrialState.SUCCEEDED),
               key=lambda t: (t.metric, -t.id))
    return {
        "trials": done,
        "best": best.metric,
        "best_arch": best.sample["arch"],
        "compute": sum(t.duration for t in done),  # type: ignore[misc]
        "stopped": sum(t.state is nf.TrialState.EARLY_STOPPED for t in done),
        "wall_s": wall,
    }


def compute_until(trials: list[nf.TrialRecord], target: float) -> float | None:
    """Simulated compute spent (over all trials) when a finished trial first reached
    ``target``; ``None`` if none did."""
    hits = [t.ended_at for t in trials
            if t.state is nf.TrialState.SUCCEEDED and t.metric >= target]  # type: ignore[operator]
    if not hits:
        return None
    at = min(hits)  # type: ignore[type-var]
    return sum(max(0.0, min(t.ended_at, at) - t.started_at)  # type: ignore[type-var, operator]
               for t in trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", type=Path, default=DIGITS)
    parser.add_argument("--synthetic", action="store_true", help="ignore --table")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--grace", type=int, default=1)
    parser.add_argument("--eta", type=float, default=3)
    parser.add_argument("--more", type=int, default=3,
                        help="the anytime runs may try this many times --trials")
    args = parser.parse_args()

    if not args.synthetic and args.table.exists():
        table, source = load_table(args.table), str(args.table)
    else:
        table, source = synthetic_table(), "synthetic (seed 0)"
    epochs = int(table["epochs"])
    max_t = epochs  # rungs strictly below the full budget: see the module docstring
    schedulers = {
        "asha": lambda: ASHA(max_t=max_t, grace_period=args.grace,
                             reduction_factor=args.eta),
        "hyperband": lambda: Hyperband(max_t=max_t, grace_period=args.grace,
                                       reduction_factor=args.eta),
    }
    per_seed: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        full = run(table, None, args.trials, seed, args.concurrency)
        row: dict[str, Any] = {"seed": seed, "random_best": full["best"],
                               "random_compute_s": round(full["compute"], 2)}
        for name, make in schedulers.items():
            early = run(table, make(), args.trials, seed, args.concurrency)
            longer = run(table, make(), args.trials * args.more, seed, args.concurrency)
            reach = compute_until(longer["trials"], full["best"])
            row[name] = {
                "same_trials": {
                    "best": early["best"],
                    "same_best": early["best"] >= full["best"],
                    "compute_ratio": round(early["compute"] / full["compute"], 4),
                    "stopped": early["stopped"],
                },
                "anytime": {
                    "best": longer["best"],
                    "compute_ratio_at_same_best": None if reach is None else round(
                        reach / full["compute"], 4),
                },
                "wall_s": round(early["wall_s"] + longer["wall_s"], 3),
            }
        per_seed.append(row)

    summary: dict[str, Any] = {}
    for name in schedulers:
        same = [r[name]["same_trials"] for r in per_seed]
        reach = [r[name]["anytime"]["compute_ratio_at_same_best"] for r in per_seed]
        found = [x for x in reach if x is not None]
        censored = [math.inf if x is None else x for x in reach]
        median = statistics.median(censored)
        summary[name] = {
            "same_trials": {
                "same_best_seeds": f"{sum(x['same_best'] for x in same)}/{len(same)}",
                "median_compute_ratio": round(statistics.median(
                    x["compute_ratio"] for x in same), 4),
                "max_best_gap": round(max(r["random_best"] - r[name]["same_trials"]["best"]
                                          for r in per_seed), 5),
            },
            "anytime": {
                "same_best_reached_seeds": f"{len(found)}/{len(reach)}",
                "median_compute_ratio_at_same_best": (
                    round(median, 4) if math.isfinite(median) else None),
                "max_compute_ratio_at_same_best": max(found) if found else None,
                "seeds_within_0.40": f"{sum(x <= 0.40 for x in censored)}/{len(reach)}",
            },
            "target_met": median <= 0.40,
        }
    emit("asha_compute", {
        "table": source,
        "architectures": len(table["rows"]),
        "epochs": epochs,
        "trials_per_search": args.trials,
        "anytime_trials": args.trials * args.more,
        "concurrency": args.concurrency,
        "grace_period_steps": args.grace,
        "reduction_factor": args.eta,
        "rungs_after_epochs": [int(r) for r in ASHA(max_t=max_t, grace_period=args.grace,
                                                         reduction_factor=args.eta).rungs()],
        "target": "anytime: the same best with <= 40% of random search's compute, "
                  "median over seeds",
        "summary": summary,
        "per_seed": per_seed,
    })


if __name__ == "__main__":
    sys.exit(main())
