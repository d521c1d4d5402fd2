"""Freeze + build time of the mobile and transformer hub spaces at ImageNet size
(issue 11's target: <= 200 ms, since it runs once per trial).

For each space: the published network and random samples are frozen (``space.freeze``
builds a plain ``torch.nn.Module`` with fresh weights) ``--runs`` times; the median and
the fastest are printed as JSON, with the parameter count of the published network.

    python benchmarks/hub_mobile_freeze.py [--runs 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from _common import emit


def _time(fn: Any, runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": round(statistics.median(times) * 1e3, 1),
            "min_ms": round(min(times) * 1e3, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    import torch

    from nasflow import hub

    torch.set_num_threads(args.threads)
    published = {"ProxylessNAS": "proxyless-mobile", "MobileNetV3Space": "mobilenetv3-large-100",
                 "ShuffleNetSpace": "shufflenetv2-1.0", "AutoFormer": "autoformer-tiny"}
    results: dict[str, Any] = {"runs": args.runs, "threads": args.threads, "spaces": {}}
    for name, network in published.items():
        cls = getattr(hub, name)
        start = time.perf_counter()
        space, sample = cls.searched(network)
        built = time.perf_counter() - start
        searchable = cls() if name != "ShuffleNetSpace" else cls(channel_search=True)
        rng = random.Random(0)
        samples = [searchable.random(rng=rng) for _ in range(args.runs)]
        it = iter(samples)
        model = space.freeze(sample)
        results["spaces"][name] = {
            "published": network,
            "params": sum(p.numel() for p in model.parameters()),
            "space_build_ms": round(built * 1e3, 1),
            "freeze_published": _time(lambda s=space, x=sample: s.freeze(x), args.runs),
            "freeze_random": _time(lambda s=searchable, i=it: s.freeze(next(i)), args.runs),
        }
    emit("hub_mobile_freeze", results)


if __name__ == "__main__":
    main()
