"""GPU slots of the local training service: which ``CUDA_VISIBLE_DEVICES`` each worker gets.

Every worker is bound to one slot for its life. With ``gpus=[0, 1]`` and
``trials_per_gpu=2`` there are four slots; workers are spread over the GPUs first
(0, 1, 0, 1), so two workers already use both GPUs. A request that could never be met
(a GPU this machine does not show, more workers than GPU shares) is a ``ConfigError`` at
once -- never a trial waiting forever for a GPU that will not come (NNI's stuck WAITING).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from nasflow.exceptions import ConfigError

__all__ = ["plan_slots", "visible_gpus"]

_NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def visible_gpus() -> list[str]:
    """The GPUs processes started from here may use, as ``CUDA_VISIBLE_DEVICES`` entries.

    ``CUDA_VISIBLE_DEVICES`` of this process wins when set (index ``i`` of ``gpus`` then
    means its ``i``-th entry); otherwise the NVIDIA devices the driver lists. No torch
    import and no CUDA initialisation.
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        entries = [e.strip() for e in env.split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every GPU
        out = []
        for entry in entries:
            if entry.startswith("-"):
                break
            out.append(entry)
        return out
    try:
        count = sum(1 for _ in _NVIDIA_PROC.iterdir())
    except OSError:
        return []
    return [str(i) for i in range(count)]


def plan_slots(
    gpus: Sequence[int] | None,
    trials_per_gpu: int,
    workers: int,
    *,
    available: Sequence[str] | None = None,
) -> list[str | None]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``workers`` slots (``None``: leave it alone).

    ``available`` defaults to ``visible_gpus()``. Raises ``ConfigError`` naming the field
    and what would work when the request cannot be met.
    """
    if gpus is None:
        return [None] * workers
    gpus = list(gpus)
    if not gpus:
        raise ConfigError("gpus", gpus, "at least one GPU index (e.g. [0]), or None to "
                          "leave GPU assignment alone")
    shown = list(visible_gpus() if available is None else available)
    missing = [g for g in gpus if g >= len(shown)]
    if missing:
        seen = (f"{len(shown)} GPU(s): indices 0..{len(shown) - 1}" if shown
                else "no GPU (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them all)")
        raise ConfigError(
            "gpus", gpus,
            f"indices of GPUs this machine shows; it has {seen}, so {missing} can never "
            "be used. Fix gpus=, or drop it to run trials on the CPU",
        )
    shares = len(gpus) * trials_per_gpu
    if workers > shares:
        need = math.ceil(workers / len(gpus))
        raise ConfigError(
            "concurrency", workers,
            f"at most {shares} (= {len(gpus)} GPU(s) x trials_per_gpu={trials_per_gpu}): "
            f"every trial needs a GPU share. Set trials_per_gpu={need}, give more GPUs, or "
            f"lower concurrency to {shares}",
        )
    # spread over the GPUs first: two workers on two GPUs use both
    return [shown[gpus[i % len(gpus)]] for i in range(workers)]
