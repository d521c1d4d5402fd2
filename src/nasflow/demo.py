"""The demo: a real CNN architecture search on scikit-learn's bundled digits (no download).

``nasflow demo`` runs it with a live progress table; ``DigitsNet`` and ``digits_data`` are
importable for your own experiments::

    from nasflow.demo import DigitsNet, digits_data
    train, val = digits_data()
    exp = nf.Experiment(DigitsNet(), nf.evaluator.Classification(train, val, epochs=5),
                        nf.strategy.Random(seed=0), nf.ExperimentConfig(max_trials=8))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import nasflow as nf
from nasflow import nn as snn

__all__ = ["Block", "DigitsNet", "digits_data", "make_experiment"]


def digits_data(seed: int = 0) -> tuple[tuple[torch.Tensor, torch.Tensor],
                                        tuple[torch.Tensor, torch.Tensor]]:
    """``((X_train, y_train), (X_val, y_val))``: 8x8 digit images as ``(N, 1, 8, 8)``
    floats in [0, 1], an 80/20 split (stratified, fixed seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    idx = torch.arange(len(y)).numpy()
    train_idx, val_idx = train_test_split(idx, test_size=0.2, random_state=seed,
                                          stratify=y.numpy())
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def _conv(width: Any, kernel: int) -> nn.Module:
    return nn.Sequential(
        snn.Conv2d(width, width, kernel, padding=kernel // 2, bias=False),
        snn.BatchNorm2d(width),
        nn.ReLU(),
    )


def _separable(width: Any) -> nn.Module:
    return nn.Sequential(
        snn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
        snn.Conv2d(width, width, 1, bias=False),
        snn.BatchNorm2d(width),
        nn.ReLU(),
    )


class Block(nn.Module):
    """One repeated block: an operation choice (labelled from its path, ``blocks.<i>.op``)."""

    def __init__(self, width: Any) -> None:
        super().__init__()
        self.op = snn.LayerChoice({
            "conv3": _conv(width, 3),
            "sep3": _separable(width),
            "skip": nn.Identity(),
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.op(x)
        return result


class DigitsNet(snn.ModelSpace):
    """A small CNN space for 8x8 digits: width, first op, 1-3 repeated blocks (each with its
    own op), a skip choice, and dropout — about 1,900 architectures."""

    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([8, 16, 32], label="width")
        self.stem = nn.Sequential(
            snn.Conv2d(1, width, 3, padding=1, bias=False), snn.BatchNorm2d(width), nn.ReLU()
        )
        self.op = snn.LayerChoice({
            "conv3": _conv(width, 3),
            "conv5": _conv(width, 5),
            "sep3": _separable(width),
            "pool": nn.MaxPool2d(3, stride=1, padding=1),
        }, label="op")
        self.skip = snn.InputChoice(n_candidates=2, n_chosen=1, label="skip")
        self.blocks = snn.Repeat(lambda i: Block(width), depth=(1, 3), label="depth")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = snn.Dropout(nf.Categorical([0.0, 0.25], label="dropout"))
        self.head = snn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        y = self.op(stem)
        x = self.skip([y, stem + y])  # the op alone, or with a residual connection
        x = self.blocks(x)
        result: torch.Tensor = self.head(self.dropout(self.pool(x).flatten(1)))
        return result


def make_experiment(
    *, trials: int = 24, concurrency: int = 2, epochs: int = 8, seed: int = 0,
    strategy: nf.strategy.Strategy | None = None, home: str | None = None,
) -> nf.Experiment:
    """The demo experiment (Random search unless ``strategy`` is given)."""
    train, val = digits_data(seed)
    evaluator = nf.evaluator.Classification(train, val, epochs=epochs, batch_size=64,
                                            lr=3e-3, device="cpu", seed=seed)
    return nf.Experiment(
        DigitsNet(), evaluator, strategy or nf.strategy.Random(seed=seed),
        nf.ExperimentConfig(max_trials=trials, concurrency=concurrency, home=home),
        name="digits-demo",
    )
