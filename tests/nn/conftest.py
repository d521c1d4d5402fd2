"""Shared setup for the nasflow.nn tests: one torch thread, a fixed seed per test."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
