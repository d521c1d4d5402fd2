"""B1's cost per trial: one experiment per measurement, each in a fresh home.

``b1_noop_trials.py`` runs every experiment in one home and reports trials/s; this one
times ``--trials`` no-op trials (random search, in-process, store on) in a fresh
``NASFLOW_HOME`` per experiment, after a warm-up, and reports microseconds per trial
(the minimum and the median of ``--runs``), for an ``async def`` and a ``def`` evaluator.
``compare_revs.py`` runs it old vs new.

    python benchmarks/b1_per_trial.py [--trials 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import anyio
from _common import emit, nasflow_space, noop_objective


def one(trials: int, *, sync: bool) -> float:
    import nasflow as nf

    async def evaluate_async(model: None, trial: nf.Trial) -> float:
        return noop_objective(**trial.sample)

    def evaluate_sync(model: None, trial: nf.Trial) -> float:
        return noop_objective(**trial.sample)

    with tempfile.TemporaryDirectory() as home:
        exp = nf.Experiment(
            nasflow_space(), nf.FunctionalEvaluator(evaluate_sync if sync else evaluate_async),
            nf.strategy.Random(seed=0, dedup=False),
            nf.ExperimentConfig(max_trials=trials, store=True, home=home))
        t0 = time.perf_counter()
        anyio.run(exp.run)
        return (time.perf_counter() - t0) / trials * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    one(200, sync=False)  # warm-up: imports, first SQLite open
    out = {}
    for name, sync in (("async", False), ("sync", True)):
        ts = sorted(one(args.trials, sync=sync) for _ in range(args.runs))
        out[name] = {"min_us": round(ts[0], 1), "median_us": round(ts[len(ts) // 2], 1),
                     "raw_us": [round(t, 1) for t in ts]}
    emit("B1 per trial", {"trials": args.trials, "runs": args.runs, "us_per_trial": out})


if __name__ == "__main__":
    main()
