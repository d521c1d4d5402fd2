"""Search NAS-Bench-201 (a small variant) on generated 32x32 images: RegularizedEvolution
(many trials, each a frozen model trained briefly), then DARTS (one supernet).

Each search prints its best cell as a NAS-Bench-201 architecture string, the key of the
benchmark's table. The data are generated: ten fixed random "class patterns" plus
noise, so no download is needed and the classes are learnable in seconds.

    python examples/hub_nb201.py               # 1-5 minutes on one CPU core (5 when shared)
    python examples/hub_nb201.py --self-test   # a few seconds (tests)

The paper's network is ``hub.NasBench201()`` (C=16, N=5); here C=8, N=1 keeps it fast.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

import nasflow as nf
from nasflow import hub

QUICK = "--self-test" in sys.argv


def generated_images(n: int, classes: int = 10, seed: int = 0) -> tuple[Any, Any]:
    """``(train, val)`` pairs of ``(images, labels)``: a class pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(classes, 3, 32, 32, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = patterns[y] + torch.randn(n, 3, 32, 32, generator=g)
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def main() -> None:
    torch.set_num_threads(1)  # tiny models: extra threads only spin on a shared CPU
    train, val = generated_images(64 if QUICK else 256)
    space = hub.NasBench201(stem_out_channels=4 if QUICK else 8, num_modules_per_stack=1)
    print(f"NAS-Bench-201: {space.size()} cells, labels {list(space.search_space())}")

    evaluator = nf.evaluator.Classification(train, val, epochs=1 if QUICK else 3,
                                            batch_size=32, lr=0.01)
    evolution = nf.Experiment(
        space, evaluator,
        nf.strategy.RegularizedEvolution(population_size=4 if QUICK else 8, sample_size=2),
        nf.ExperimentConfig(store=False, max_trials=4 if QUICK else 12),
    )
    nf.run(evolution)
    best = evolution.export_top_models(1, formatter="dict")[0]
    print("RegularizedEvolution best:", hub.NasBench201.to_arch_str(best))

    darts = nf.Experiment(space, nf.evaluator.Classification(
        train, val, epochs=1 if QUICK else 4, batch_size=32, lr=0.01),
        nf.strategy.DARTS(arc_learning_rate=3e-3), nf.ExperimentConfig(store=False))
    nf.run(darts)
    best = darts.export_top_models(1, formatter="dict")[0]
    space.validate(best)  # an exported one-shot architecture is a sample of the space
    print("DARTS best:", hub.NasBench201.to_arch_str(best))
    model = space.freeze(best)  # a plain torch model to retrain from scratch
    print(f"frozen: {nf.evaluator.count_params(model)} parameters")


if __name__ == "__main__":
    main()
