"""Shared setup of the one-shot tests: one torch thread, a fixed seed, tiny spaces."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    # tiny models: one thread avoids OpenMP spinning against the other test processes
    torch.set_num_threads(1)
    torch.manual_seed(0)
