"""Hub freeze + build time: ``space.freeze(sample)`` for random samples of each hub space
(it runs once per trial). Targets (issue 11): NB201 <= 20 ms, ImageNet spaces <= 200 ms.

Reports the median and the worst over ``--samples`` random samples, with one torch thread,
and NB201's worst case (every edge ``nor_conv_3x3``, 1.5M parameters) on its own.

    python benchmarks/hub_freeze.py [--samples 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from _common import emit


def _time(space: Any, samples: list[dict[str, Any]]) -> dict[str, float]:
    space.freeze(samples[0])  # warm caches (first-call allocations)
    times = []
    for sample in samples:
        start = time.perf_counter()
        space.freeze(sample)
        times.append(time.perf_counter() - start)
    return {"median_ms": round(statistics.median(times) * 1e3, 2),
            "max_ms": round(max(times) * 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    import torch

    from nasflow import hub

    torch.set_num_threads(1)
    spaces: dict[str, Any] = {
        "NasBench201": hub.NasBench201(),
        "NasBench101": hub.NasBench101(),
    }
    for cls in (hub.DARTS, hub.PNAS, hub.NASNet, hub.ENAS, hub.AmoebaNet):
        for dataset in ("cifar", "imagenet"):
            spaces[f"{cls.__name__}-{dataset}"] = cls(dataset=dataset)
    results: dict[str, Any] = {}
    for name, space in spaces.items():
        samples = [space.random(seed) for seed in range(args.samples)]
        results[name] = _time(space, samples)
    nb201 = spaces["NasBench201"]
    worst = dict.fromkeys(nb201.search_space(), "nor_conv_3x3")
    results["NasBench201-all-nor_conv_3x3"] = _time(nb201, [worst] * args.samples)
    darts = hub.DARTS(width=36, num_cells=20, auxiliary_loss=True)
    v2 = hub.DARTS.genotype_sample(hub.DARTS.V2_NORMAL, hub.DARTS.V2_REDUCE)
    results["DARTS-V2-C36-20cells"] = _time(darts, [v2] * args.samples)
    emit("hub_freeze", {"samples": args.samples, "torch_threads": 1, "results": results})


if __name__ == "__main__":
    main()
