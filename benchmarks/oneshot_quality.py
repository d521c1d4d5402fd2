"""One-shot quality: the exported architecture, retrained from scratch, against random ones.

A one-shot strategy searches the space of ``examples/oneshot_digits.py`` (DARTS by
default, ``--epochs`` supernet epochs); its top-1 architecture is then trained from
scratch for ``--retrain-epochs`` on all training digits and tested on the held-out ones.
``--random`` architectures drawn uniformly from the same space get exactly the same
training (same initial weights for shared parts, same batches), and the JSON compares
the searched architecture's test accuracy with their median.

    python benchmarks/oneshot_quality.py [--strategy DARTS] [--epochs 15]
                                         [--retrain-epochs 15] [--random 10]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import anyio
import torch
from _common import emit


def retrained_accuracy(sample: dict[str, Any], epochs: int) -> float:
    """Test accuracy of ``sample`` trained from scratch (fixed initial weights and batches)."""
    from oneshot_digits import SIZE, CellNet, retrain

    torch.manual_seed(0)
    return retrain(CellNet(**SIZE).freeze(sample), epochs)


def searched(strategy: str, epochs: int) -> tuple[dict[str, Any], float]:
    """The top-1 architecture of a one-shot search, and the search's wall time."""
    import oneshot_digits as example

    import nasflow as nf

    t0 = time.perf_counter()
    if strategy == "DARTS":
        with contextlib.redirect_stdout(sys.stderr):  # its epoch lines; stdout is the JSON
            exp = anyio.run(example.search, epochs)
    else:
        train, val, _ = example.search_data()
        evaluator = nf.evaluator.Classification(train, val, epochs=epochs, batch_size=64,
                                                lr=3e-3, seed=0)
        exp = nf.Experiment(example.CellNet(**example.SIZE), evaluator,
                            getattr(nf.strategy, strategy)(seed=0),
                            nf.ExperimentConfig(store=False))
        nf.run(exp)
    return exp.export_top_models(1, formatter="dict")[0], time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="DARTS")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--retrain-epochs", type=int, default=15)
    parser.add_argument("--random", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from oneshot_digits import SIZE, CellNet

    best, search_seconds = searched(args.strategy, args.epochs)
    t0 = time.perf_counter()
    best_acc = retrained_accuracy(best, args.retrain_epochs)
    retrain_seconds = time.perf_counter() - t0
    space = CellNet(**SIZE)
    randoms = []
    for seed in range(args.random):
        sample = space.random(seed=seed)
        randoms.append({"seed": seed, "accuracy": retrained_accuracy(sample, args.retrain_epochs)})
    median = statistics.median(r["accuracy"] for r in randoms)
    better = sum(best_acc > r["accuracy"] for r in randoms)
    emit("oneshot_quality", {
        "strategy": args.strategy, "search_epochs": args.epochs,
        "retrain_epochs": args.retrain_epochs, "threads": args.threads,
        "search_seconds": search_seconds, "retrain_seconds_each": retrain_seconds,
        "searched": {"sample": best, "test_accuracy": best_acc},
        "random": randoms, "random_median_accuracy": median,
        "searched_minus_random_median": best_acc - median,
        "random_beaten": f"{better}/{len(randoms)}",
    })


if __name__ == "__main__":
    main()
