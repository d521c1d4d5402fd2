"""DARTS on a small cell-based space over scikit-learn's digits, then retraining from scratch.

The search trains one supernet (every op of every cell, mixed by learned weights) as an
ordinary nasflow strategy: each epoch streams an event (losses, validation accuracy,
the probability of every op), writes a checkpoint, and at the end the five most probable
architectures are recorded, so ``export_top_models`` returns them ranked. The best one
is then frozen into a plain torch model and trained from scratch on the whole training
split; its accuracy on held-out digits is printed.

    python examples/oneshot_digits.py            # about 2 minutes on one CPU core
    NASFLOW_EXAMPLE_QUICK=1 python examples/oneshot_digits.py   # a few seconds (tests)

No download: ``sklearn.datasets.load_digits`` ships with scikit-learn.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import anyio
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.demo import digits_data
from nasflow.events import StrategyProgress

QUICK = os.environ.get("NASFLOW_EXAMPLE_QUICK") == "1"
THREADS = int(os.environ.get("NASFLOW_TORCH_THREADS", "1"))
"""Torch threads. One by default: these models are tiny, and on a CPU shared with other
work several OpenMP threads spin against each other (30x slower steps were measured)."""


# --- the space ------------------------------------------------------------------------------


def _relu_conv_bn(c: int, k: int, dilation: int = 1) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, padding=dilation * (k // 2),
                                              dilation=dilation, bias=False),
                         nn.BatchNorm2d(c))


def _separable(c: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
                         nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))


def cell_ops(c: int) -> dict[str, Callable[[], nn.Module]]:
    """DARTS-like candidate ops on ``c`` channels (factories: each slot gets its own)."""
    return {
        "conv3": lambda: _relu_conv_bn(c, 3),
        "sep3": lambda: _separable(c),
        "dil3": lambda: _relu_conv_bn(c, 3, dilation=2),
        "max3": lambda: nn.MaxPool2d(3, stride=1, padding=1),
        "avg3": lambda: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
        "skip": lambda: nn.Identity(),
    }


class CellNet(snn.ModelSpace):
    """stem -> cell ("normal", 8x8) -> reduce -> cell ("reduced", 4x4) -> classifier.

    Each cell has ``nodes`` nodes; node ``i`` sums two ops, each applied to one earlier
    state (labels ``<cell>/op_<i>_<k>`` and ``<cell>/input_<i>_<k>``); the cell outputs
    all nodes concatenated. 6 ops and 1-3 inputs per slot: about 10^10 architectures.
    """

    def __init__(self, channels: int = 16, nodes: int = 3) -> None:
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        self.normal = snn.Cell(cell_ops(c), num_nodes=nodes, num_ops_per_node=2,
                               label="normal")
        self.reduce = nn.Sequential(nn.ReLU(), nn.Conv2d(nodes * c, 2 * c, 1, bias=False),
                                    nn.BatchNorm2d(2 * c), nn.MaxPool2d(2))
        self.reduced = snn.Cell(cell_ops(2 * c), num_nodes=nodes, num_ops_per_node=2,
                                label="reduced")
        self.head = nn.Linear(nodes * 2 * c, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduced(self.reduce(self.normal(self.stem(x))))
        logits: torch.Tensor = self.head(torch.relu(x).mean((2, 3)))
        return logits


SIZE = {"channels": 8, "nodes": 2} if QUICK else {"channels": 16, "nodes": 3}

# --- searching ------------------------------------------------------------------------------


Pair = tuple[torch.Tensor, torch.Tensor]


def search_data() -> tuple[Pair, Pair, Pair]:
    """Search train / search validation (a 3:1 split of the training digits) and the
    held-out test digits."""
    (x, y), test = digits_data()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    cut = len(y) * 3 // 4
    if QUICK:
        perm, cut = perm[:256], 192
    return (x[perm[:cut]], y[perm[:cut]]), (x[perm[cut:]], y[perm[cut:]]), test


async def search(epochs: int) -> nf.Experiment:
    """Run DARTS, printing one line per supernet epoch."""
    train, val, _ = search_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=epochs, batch_size=64,
                                            lr=3e-3, seed=0)
    # a larger architecture learning rate than DARTS's 3e-4: this search has ~250 steps,
    # not ~20,000
    strategy = nf.strategy.DARTS(arc_learning_rate=1e-2, top_k=5, seed=0)
    exp = nf.Experiment(CellNet(**SIZE), evaluator, strategy, nf.ExperimentConfig(store=not QUICK))
    async with exp:  # the search runs in the background while we read its events
        async for ev in exp.events(StrategyProgress):
            assert isinstance(ev, StrategyProgress)
            v = ev.values
            favourite = max(v["probs"]["normal/op_2_0"].items(), key=lambda kv: kv[1])
            print(f"epoch {v['epoch']:2d}/{v['epochs']}  train loss {v['train_loss']:.3f}  "
                  f"supernet val acc {v['val_accuracy']:.3f}  {v['seconds']:.1f}s  "
                  f"normal/op_2_0 -> {favourite[0]} ({favourite[1]:.2f})")
    return exp


# --- retraining from scratch ----------------------------------------------------------------


def retrain(model: nn.Module, epochs: int) -> float:
    """Train ``model`` on all training digits; its accuracy on the held-out ones."""
    (x, y), (xt, yt) = digits_data()
    if QUICK:
        x, y = x[:256], y[:256]
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for idx in torch.split(torch.randperm(len(y), generator=g), 64):
            opt.zero_grad()
            torch.autograd.backward(loss_fn(model(x[idx]), y[idx]))
            opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(xt).argmax(1) == yt).float().mean())


def main() -> None:
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    exp = anyio.run(search, 1 if QUICK else 15)
    print(f"search: {exp.state.value} in {time.perf_counter() - started:.0f}s "
          f"({exp.directory})")
    for record in exp.export_top_models(5):
        m = record.metrics
        print(f"  rank {m['arch_rank']:.0f}: p={m['arch_prob']:.2e}  "
              f"supernet acc {m['supernet_accuracy']:.3f}")
    best = exp.export_top_models(1, formatter="dict")[0]
    print("best architecture:", best)
    CellNet(**SIZE).validate(best)
    # a plain torch model with the space's initial weights: the search trained a copy of
    # the space, so this one starts from scratch
    model = exp.export_top_models(1, formatter="instance")[0]
    accuracy = retrain(model, 1 if QUICK else 30)
    print(f"retrained from scratch: test accuracy {accuracy:.4f} "
          f"(total {time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
