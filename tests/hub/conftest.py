"""Shared setup of the hub tests: one torch thread, a fixed seed, generated 32x32 data."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import nasflow as nf


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def image_data(n: int = 64, classes: int = 10, size: int = 32) -> tuple[Any, Any]:
    """Generated images whose class is the brightest of ``classes`` fixed patterns."""
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(classes, 3, size, size, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    x = patterns[y] + 0.5 * torch.randn(n, 3, size, size, generator=g)
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def classification(epochs: int = 1, n: int = 64, size: int = 32) -> Any:
    train, val = image_data(n, size=size)
    return nf.evaluator.Classification(train, val, epochs=epochs, batch_size=16)
