"""Large setups: how long a local run takes when the evaluator holds S MB of data.

Each run is a fresh ``Experiment`` with ``training_service="local"`` and 2 workers running
2 trials of an evaluator that holds a blob of the given size. Sizes up to 16 MiB travel
inline in the setup frame; larger ones as a file the workers map (docs/manager.md). Before
issue 10's fix, anything over 16 MiB hung forever.

    python benchmarks/large_setup.py [--sizes 1,10,50,200] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
from _common import emit

import nasflow as nf


class Holding:
    """An evaluator that holds its data set (here: a blob of bytes)."""

    def __init__(self, size: int) -> None:
        self.blob = bytes(range(256)) * (size // 256)

    def __call__(self, model: Any, trial: Any) -> float:
        return float(len(self.blob) + trial.sample["x"])


async def one_run(size: int, home: str) -> float:
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, Holding(size), nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, concurrency=2,
                                            training_service="local", home=home))
    start = time.perf_counter()
    await exp.run()
    took = time.perf_counter() - start
    assert [t.state.value for t in exp.trials()] == ["SUCCEEDED"] * 2
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1,10,50,200", help="MB, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as home:
        for mb in (int(s) for s in args.sizes.split(",")):
            times = [anyio.run(one_run, mb * 1_000_000, home) for _ in range(args.runs)]
            results[f"{mb}MB"] = {"median_s": round(statistics.median(times), 3),
                                  "runs_s": [round(t, 3) for t in times]}
    emit("large_setup", {"workers": 2, "trials": 2, "results": results})


if __name__ == "__main__":
    main()
