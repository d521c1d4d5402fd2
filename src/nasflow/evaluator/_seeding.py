"""Seeding a trial: its initial weights, its data order and its dropout masks.

torch, numpy and Python's ``random`` keep one generator per process, and the in-process
engine runs concurrent trials as threads of one process. A seeded trial therefore never
draws from the process's generator as it finds it: ``seeded_freeze`` builds the model
with the generator set to the seed, and ``TrialRng.forward`` swaps the trial's own
generator state in around every forward pass (where dropout draws its masks). Both hold
``RNG_LOCK``, so two seeded trials in two threads cannot interleave their draws.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = ["RNG_LOCK", "TrialRng", "seeded_freeze"]

RNG_LOCK = threading.RLock()
"""Held while a seeded trial uses torch's process-wide CPU generator."""


def seeded_freeze(freeze: Callable[[Any], Any], sample: Any, seed: int) -> Any:
    """``freeze(sample)`` with torch's generators seeded by ``seed`` (and restored after),
    so the model's initial weights are the same each time for the same sample."""
    with RNG_LOCK, torch.random.fork_rng(devices=_cuda_devices()):
        torch.manual_seed(seed)
        return freeze(sample)


class TrialRng:
    """One trial's own random state: a data-order generator and a dropout stream."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        """The trial's seed; ``None`` draws fresh randomness."""
        self.data = torch.Generator()
        """Shuffles the training batches."""
        if seed is None:
            self.data.seed()
            self._state: torch.Tensor | None = None
            return
        self.data.manual_seed(seed)
        # numpy and random: for the user's own code in the trial (a transform, a dataset)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        if torch.cuda.is_available():  # dropout on a GPU draws from the CUDA generator
            torch.cuda.manual_seed_all(seed)
        with RNG_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._state = torch.get_rng_state()

    @contextmanager
    def forward(self) -> Iterator[None]:
        """Run a forward pass on this trial's stream (a no-op without a seed)."""
        if self._state is None:
            yield
            return
        with RNG_LOCK:
            outer = torch.get_rng_state()
            torch.set_rng_state(self._state)
            try:
                yield
            finally:
                self._state = torch.get_rng_state()
                torch.set_rng_state(outer)


def _cuda_devices() -> list[int]:
    # fork_rng touches every CUDA device otherwise (and warns when there are many)
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
