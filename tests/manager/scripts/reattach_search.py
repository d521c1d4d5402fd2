"""A search on a ``nasflow manager`` daemon whose trial 0 blocks half-way: the test kills
this process there (``kill -9``), resumes the experiment and lets the trial go on.

argv: the manager's URL, the port of the test's gate, the log file (one line per evaluator
call). The token comes from ``NASFLOW_TOKEN``. Prints ``STORED`` once trial 0's first
metrics are committed, so that the kill cannot beat the store.
"""

import socket
import sys

import anyio

import nasflow as nf
from nasflow.events import IntermediateMetric

URL, GATE, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ID = "reattach-me"


def evaluate(model, trial):
    with open(LOG, "a") as f:
        f.write(f"start {trial.id} {trial.attempt}\n")
    for step in range(3):
        trial.report(step / 10, step=step)
    if trial.id == 0:
        with socket.create_connection(("127.0.0.1", GATE)) as gate:
            gate.sendall(b"blocked\n")
            gate.recv(1)  # until the test lets it go
            for step in range(3, 6):
                trial.report(step / 10, step=step)
            gate.sendall(b"done\n")
    return float(trial.sample["x"])


async def main():
    exp = nf.Experiment(
        {"x": nf.Categorical([1, 2, 3])}, evaluate, nf.strategy.GridSearch(),
        nf.ExperimentConfig(max_trials=3, concurrency=1, manager=URL), id=ID,
    )
    metrics = exp.events(IntermediateMetric)
    async with exp:
        async for event in metrics:
            if event.trial_id == 0 and event.step == 2:
                await exp._store.flush()
                print("STORED", flush=True)


if __name__ == "__main__":
    anyio.run(main)
