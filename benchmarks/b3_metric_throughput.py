"""B3: one trial reports 10,000 intermediate metrics as fast as it can.

Measured from the moment the evaluator is entered (its ``TrialStarted`` time) to the moment
an ``exp.events()`` subscriber -- what a strategy sees -- has received the last metric
("seen"), and to the moment the experiment's SQLite store has committed them all
("durable": a store flush issued right then, or, if the run has already ended by then,
the moment its store was closed). In-process and on a local worker (embedded
manager), same evaluator, same run, alternating, median of ``--runs``. Target: >= 100,000
metrics/s.

    python benchmarks/b3_metric_throughput.py [--metrics 10000] [--runs 5]
        [--service both|inprocess|local]

``--service local`` measures the worker path alone: the trial runs in a worker process and
its metrics travel worker -> trial channel -> manager -> ManagerEngine -> store/strategy.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
from _common import emit

N = 10_000


def report_many(model: Any, trial: Any) -> float:
    n = trial.sample["n"]
    report = trial.report
    for i in range(n):
        report(i * 1e-6, step=i)
    return 1.0


def run_once(service: str, n: int, home: str) -> dict[str, float]:
    import nasflow as nf
    from nasflow.events import IntermediateMetric, TrialStarted

    exp = nf.Experiment(
        {"n": nf.Categorical([n])}, report_many, nf.strategy.GridSearch(),
        nf.ExperimentConfig(training_service=service, home=home, event_buffer=n + 16),
    )
    marks: dict[str, float] = {}

    async def watch() -> None:
        seen = 0
        async for event in exp.events(TrialStarted, IntermediateMetric):
            if isinstance(event, TrialStarted):
                marks["start"] = event.time
                continue
            seen += 1
            if seen == n:
                marks["seen"] = time.time()
                # still running: commit now. Already finished: its close committed them
                if exp.state is nf.ExperimentState.RUNNING and exp._store is not None:
                    await exp._store.flush()
                    marks["durable"] = time.time()
                return

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await exp.run()
            marks["closed"] = time.time()  # the store is closed: everything is committed

    anyio.run(main)
    assert exp.trials()[0].state.value == "SUCCEEDED"
    durable = marks.get("durable", max(marks["seen"], marks["closed"]))
    return {"seen_per_s": n / (marks["seen"] - marks["start"]),
            "durable_per_s": n / (durable - marks["start"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=int, default=N)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--service", choices=("both", "inprocess", "local"), default="both",
                        help="which engine to measure (default both, alternating)")
    args = parser.parse_args()
    services = ("inprocess", "local") if args.service == "both" else (args.service,)
    raw: dict[str, list[dict[str, float]]] = {s: [] for s in services}
    with tempfile.TemporaryDirectory() as home:
        for service in raw:  # warm-up: imports, first SQLite open, first worker start
            run_once(service, args.metrics, home)
        for _ in range(args.runs):
            for service in raw:
                raw[service].append(run_once(service, args.metrics, home))

    def med(service: str, key: str) -> int:
        return round(statistics.median(r[key] for r in raw[service]))

    emit("B3", {
        "metrics": args.metrics,
        "runs": args.runs,
        "metrics_per_s_median": {
            f"{service}_{key}": med(service, f"{key}_per_s")
            for service in raw for key in ("seen", "durable")
        },
        "target": ">= 100,000 metrics/s, evaluator entered -> durable",
        "raw": {s: [{k: round(v) for k, v in r.items()} for r in rs] for s, rs in raw.items()},
    })


if __name__ == "__main__":
    main()
