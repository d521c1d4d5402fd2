"""B4: process start -> first trial started (a fresh interpreter each time).

The parent records the wall-clock time just before it spawns the child; the child writes
the wall-clock time at which its first trial started (nasflow: the ``TrialStarted``
event's time; Optuna: entry into the objective). Target: nasflow <= 0.2 s.

    python benchmarks/b4_first_trial.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import emit

NASFLOW_CHILD = """
import sys, time
import anyio
import nasflow as nf
from nasflow.events import TrialStarted

async def evaluate(model, trial):
    return 1.0

async def main():
    space = {"width": nf.Categorical([8, 16, 32, 64]), "depth": nf.Categorical([1, 2, 3]),
             "act": nf.Categorical(["relu", "tanh", "gelu"])}
    exp = nf.Experiment(space, evaluate, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=1))
    events = exp.events(TrialStarted)
    async with anyio.create_task_group() as tg:
        async def first():
            async for ev in events:
                print(ev.time, flush=True)
                return
        tg.start_soon(first)
        await exp.run()

anyio.run(main)
"""

OPTUNA_CHILD = """
import time
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
def objective(trial):
    print(time.time(), flush=True)
    trial.suggest_categorical("width", [8, 16, 32, 64])
    return 1.0
optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).optimize(objective, n_trials=1)
"""


def measure(code: str, home: str) -> float:
    env = {**os.environ, "NASFLOW_HOME": home}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True)
    return float(out.stdout.split()[0]) - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        measure(NASFLOW_CHILD, home)  # warm the OS file cache for both
        measure(OPTUNA_CHILD, home)
        nasflow, optuna = [], []
        for _ in range(args.runs):
            nasflow.append(measure(NASFLOW_CHILD, home))
            optuna.append(measure(OPTUNA_CHILD, home))
        bare = [measure("import time; print(time.time())", home) for _ in range(args.runs)]
    med = {"nasflow": statistics.median(nasflow), "optuna": statistics.median(optuna),
           "bare_python": statistics.median(bare)}
    emit("B4", {
        "runs": args.runs,
        "seconds_to_first_trial_median": {k: round(v, 3) for k, v in med.items()},
        "ratio_nasflow_vs_optuna": round(med["nasflow"] / med["optuna"], 2),
        "target": "nasflow <= 0.2 s",
        "raw": {"nasflow": [round(x, 3) for x in nasflow],
                "optuna": [round(x, 3) for x in optuna]},
    })


if __name__ == "__main__":
    main()
