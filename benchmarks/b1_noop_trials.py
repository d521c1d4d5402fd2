"""B1: 2,000 no-op trials, random search, one at a time, in-process, store ON.

nasflow (SQLite store on, an ``async def`` evaluator and, for reference, a ``def`` one that
runs in a worker thread) against Optuna's in-memory RandomSampler on the same work, in the
same run, alternating, median of ``--runs``. Target: nasflow >= 1.5x Optuna's trials/s.

    python benchmarks/b1_noop_trials.py [--trials 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import anyio
from _common import ACTS, DEPTHS, WIDTHS, emit, nasflow_space, noop_objective


def run_optuna(trials: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        return noop_objective(
            trial.suggest_categorical("width", WIDTHS),
            trial.suggest_categorical("depth", DEPTHS),
            trial.suggest_categorical("act", ACTS),
        )

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0),
                                direction="maximize")
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    return trials / (time.perf_counter() - t0)


def run_nasflow(trials: int, *, store: bool, sync: bool, home: str) -> float:
    import nasflow as nf

    async def evaluate_async(model: None, trial: nf.Trial) -> float:
        return noop_objective(**trial.sample)

    def evaluate_sync(model: None, trial: nf.Trial) -> float:
        return noop_objective(**trial.sample)

    exp = nf.Experiment(
        nasflow_space(),
        nf.FunctionalEvaluator(evaluate_sync if sync else evaluate_async),
        nf.strategy.Random(seed=0, dedup=False),  # 36 samples only: B1 repeats them
        nf.ExperimentConfig(max_trials=trials, store=store, home=home),
    )
    t0 = time.perf_counter()
    anyio.run(exp.run)
    elapsed = time.perf_counter() - t0
    assert len(exp.trials(["SUCCEEDED"])) == trials
    return trials / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    variants = {
        "optuna_inmemory": lambda: run_optuna(args.trials),
        "nasflow_store_async": lambda: run_nasflow(args.trials, store=True, sync=False, home=home),
        "nasflow_nostore_async": lambda: run_nasflow(args.trials, store=False, sync=False,
                                                     home=home),
        "nasflow_store_sync": lambda: run_nasflow(args.trials, store=True, sync=True, home=home),
    }
    with tempfile.TemporaryDirectory() as home:
        raw: dict[str, list[float]] = {k: [] for k in variants}
        for fn in variants.values():  # warm-up: imports, first SQLite open
            fn()
        for _ in range(args.runs):  # alternate so that machine noise hits all alike
            for name, fn in variants.items():
                raw[name].append(fn())
    med = {k: sorted(v)[len(v) // 2] for k, v in raw.items()}
    base = med["optuna_inmemory"]
    emit("B1", {
        "trials": args.trials,
        "runs": args.runs,
        "trials_per_s_median": {k: round(v) for k, v in med.items()},
        "ratio_vs_optuna": {k: round(v / base, 2) for k, v in med.items()},
        "store_cost_ratio": round(med["nasflow_store_async"] / med["nasflow_nostore_async"], 2),
        "target": "nasflow_store_async >= 1.5x optuna_inmemory",
        "raw": {k: [round(x) for x in v] for k, v in raw.items()},
    })


if __name__ == "__main__":
    main()
