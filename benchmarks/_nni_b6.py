"""NNI 3.0's DARTS on the space and data of B6 (imported by b6_oneshot_epoch.py --nni).

Needs ``nni==3.0`` and ``pytorch_lightning`` in the running interpreter (never a nasflow
dependency; see docs/benchmarks-oneshot.md for the environment used). The NNI space
mirrors ``examples/oneshot_digits.py``'s ``CellNet`` op for op; NNI's strategy converts
it (``mutate_model``), wraps the Lightning evaluator (``mutate_evaluator``) and trains,
exactly what ``NasExperiment.run`` does for a one-shot strategy, minus the web manager.
Epoch times come from a Lightning callback.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch
import torch.nn as nn


def run_nni_darts(epochs: int, device: str = "cpu") -> dict[str, Any]:
    """Median seconds per supernet epoch of NNI's DARTS (first epoch left out)."""
    warnings.filterwarnings("ignore")
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.nn.pytorch import Cell, ModelSpace
    from nni.nas.strategy import DARTS
    from oneshot_digits import _relu_conv_bn, _separable, search_data
    from torch.utils.data import TensorDataset

    def ops(c: int) -> dict[str, Any]:
        return {
            "conv3": lambda *_: _relu_conv_bn(c, 3),
            "sep3": lambda *_: _separable(c),
            "dil3": lambda *_: _relu_conv_bn(c, 3, dilation=2),
            "max3": lambda *_: nn.MaxPool2d(3, stride=1, padding=1),
            "avg3": lambda *_: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
            "skip": lambda *_: nn.Identity(),
        }

    class NniCellNet(ModelSpace):  # type: ignore[misc]
        def __init__(self, c: int = 16, nodes: int = 3) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(c))
            self.normal = Cell(ops(c), num_nodes=nodes, num_ops_per_node=2,
                               num_predecessors=1, merge_op="all", label="normal")
            self.reduce = nn.Sequential(nn.ReLU(), nn.Conv2d(nodes * c, 2 * c, 1, bias=False),
                                        nn.BatchNorm2d(2 * c), nn.MaxPool2d(2))
            self.reduced = Cell(ops(2 * c), num_nodes=nodes, num_ops_per_node=2,
                                num_predecessors=1, merge_op="all", label="reduced")
            self.head = nn.Linear(nodes * 2 * c, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.reduced(self.reduce(self.normal(self.stem(x))))
            out: torch.Tensor = self.head(torch.relu(x).mean((2, 3)))
            return out

    class EpochTimer(pl.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._t0 = 0.0

        def on_train_epoch_start(self, *args: Any) -> None:
            self._t0 = time.perf_counter()

        def on_train_epoch_end(self, *args: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t0)

    train, val, _ = search_data()
    timer = EpochTimer()
    evaluator = Classification(
        learning_rate=3e-3,
        train_dataloaders=DataLoader(TensorDataset(*train), batch_size=64, shuffle=True),
        val_dataloaders=DataLoader(TensorDataset(*val), batch_size=64),
        max_epochs=epochs + 1, num_classes=10,
        accelerator="gpu" if device.startswith("cuda") else "cpu", devices=1,
        enable_progress_bar=False, enable_model_summary=False, logger=False,
        enable_checkpointing=False, callbacks=[timer],
    )
    strategy = DARTS(arc_learning_rate=1e-2)
    space = NniCellNet()
    model = strategy.mutate_model(space)
    evaluator = strategy.mutate_evaluator(evaluator)
    evaluator.evaluate(model)
    timed = timer.seconds[1:] or timer.seconds
    import nni

    return {"epoch_seconds": statistics.median(timed), "all_epochs": timer.seconds,
            "nni": nni.__version__, "pytorch_lightning": pl.__version__,
            "note": "NNI's DARTS feeds the validation data to its architecture steps and "
                    "runs no validation loop: its epoch is training steps only (compare "
                    "with nasflow's train_epoch_seconds too); no NNI manager is started"}
