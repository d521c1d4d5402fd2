"""An experiment with an embedded manager whose process is killed mid-trial: its workers
must not outlive it. Prints each worker's pid as its trial starts."""

import os
import time

import anyio

import nasflow as nf
from nasflow.events import IntermediateMetric


def hang(model, trial):
    print(f"WORKER {os.getpid()}", flush=True)  # goes to the trial's stdout.log
    trial.report(float(os.getpid()))
    time.sleep(3600)  # until its experiment process dies


async def main():
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2])}, hang, nf.strategy.GridSearch(),
        nf.ExperimentConfig(concurrency=2, training_service="local", store=False),
    )
    async with exp:
        async for event in exp.events(IntermediateMetric):
            print(f"PID {int(event.value)}", flush=True)


if __name__ == "__main__":
    anyio.run(main)
