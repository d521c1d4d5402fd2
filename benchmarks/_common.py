"""Shared bits of the benchmarks: the reference workload and JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

WIDTHS = [8, 16, 32, 64]
DEPTHS = [1, 2, 3]
ACTS = ["relu", "tanh", "gelu"]


def noop_objective(width: int, depth: int, act: str) -> float:
    """The B1 objective of ``shared/reference/benchmarks.md``: no work at all."""
    return width * 0.01 + depth * 0.1 + ACTS.index(act) * 0.001


def nasflow_space() -> dict[str, Any]:
    """The three-label torch-free space of the reference workloads."""
    import nasflow as nf

    return {
        "width": nf.Categorical(WIDTHS, label="width"),
        "depth": nf.Categorical(DEPTHS, label="depth"),
        "act": nf.Categorical(ACTS, label="act"),
    }


def median_of(runs: int, fn: Callable[[], float]) -> tuple[float, list[float]]:
    """The median of ``runs`` calls of ``fn`` and the raw values."""
    values = [fn() for _ in range(runs)]
    return statistics.median(values), values


def emit(name: str, results: dict[str, Any]) -> None:
    """Print one JSON document describing a benchmark run."""
    doc = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **results,
    }
    print(json.dumps(doc, indent=2))
