"""B7: warm-worker launch latency, ``engine.submit(...)`` -> the evaluator is entered.

One ``ManagerEngine`` over an embedded manager with warm local workers; trials run one at
a time; each evaluator returns ``time.time()`` taken on entry (the same clock as the
submitter's: one machine). The first trial on each worker (which loads the setup) is a
warm-up and not counted. In-process engine figures are printed alongside for reference.
Targets (local workers): p50 <= 2 ms, p99 <= 10 ms.

    python benchmarks/b7_launch_latency.py [--trials 300] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import emit


def entered_at(model: Any, trial: Any) -> float:
    return time.time()


async def measure(kind: str, trials: int, workers: int, root: Path) -> list[float]:
    try:
        from nasflow._kernel import Objective
    except ImportError:  # a revision from before the kernel (compare_revs.py --old)
        from nasflow._objective import Objective  # type: ignore[no-redef]
    from nasflow.engine import EngineSetup, InProcessEngine, ManagerEngine, TrialSpec
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.events import FinalMetric
    from nasflow.testing import EngineHarness

    harness = EngineHarness()
    setup = EngineSetup(
        space={}, evaluator=FunctionalEvaluator(entered_at),
        objective=Objective({"default": "maximize"}), publish=harness.publish,
        trial_directory=lambda i: root / kind / "trials" / str(i), experiment_id=f"b7-{kind}",
        concurrency=workers,
    )
    engine = ManagerEngine(setup) if kind == "local" else InProcessEngine(setup)
    latencies = []
    async with engine:
        for i in range(trials + workers):
            submitted = time.time()
            await engine.submit(TrialSpec(i, {}))
            await harness.ended(i)
            final = next(e for e in harness.of(i) if isinstance(e, FinalMetric))
            if i >= workers:  # the first trial of each worker loaded the setup
                latencies.append(final.value - submitted)
    return latencies


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100)
    return {"p50_ms": round(q[49], 3), "p90_ms": round(q[89], 3), "p99_ms": round(q[98], 3),
            "max_ms": round(ms[-1], 3), "n": len(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            kind: summary(anyio.run(measure, kind, args.trials, args.workers, Path(tmp)))
            for kind in ("local", "inprocess")
        }
    emit("B7", {
        "trials": args.trials,
        "workers": args.workers,
        "latency_submit_to_evaluator": results,
        "target": "local: p50 <= 2 ms, p99 <= 10 ms",
    })


if __name__ == "__main__":
    main()
