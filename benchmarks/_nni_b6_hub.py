"""NNI 3.0's DARTS on NNI's own hub spaces (imported by b6_hub.py --nni).

Needs ``nni==3.0`` and ``pytorch_lightning`` in the running interpreter, never a nasflow
dependency (the environment of docs/benchmarks-oneshot.md). As in ``_nni_b6.py``: NNI's
strategy converts the space (``mutate_model``), wraps the Lightning evaluator
(``mutate_evaluator``) and trains, what ``NasExperiment.run`` does for a one-shot
strategy, minus the web manager. Epoch times come from a Lightning callback.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any

import torch


def run_nni_hub_darts(space_name: str, data: tuple[Any, Any], epochs: int,
                      batch_size: int, sizes: dict[str, Any]) -> dict[str, Any]:
    """Median seconds per supernet epoch of NNI's DARTS on its hub ``space_name``."""
    warnings.filterwarnings("ignore")
    import nni
    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.hub.pytorch import DARTS as NNI_DARTS
    from nni.nas.hub.pytorch import NasBench201 as NniNb201
    from nni.nas.strategy import DARTS
    from torch.utils.data import TensorDataset

    class EpochTimer(pl.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.cpu: list[float] = []
            self._t0 = self._c0 = 0.0

        def on_train_epoch_start(self, *args: Any) -> None:
            self._t0, self._c0 = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, *args: Any) -> None:
            self.seconds.append(time.perf_counter() - self._t0)
            self.cpu.append(time.process_time() - self._c0)

    train, val = data
    timer = EpochTimer()
    evaluator = Classification(
        learning_rate=3e-3,
        train_dataloaders=DataLoader(TensorDataset(*train), batch_size=batch_size,
                                     shuffle=True),
        val_dataloaders=DataLoader(TensorDataset(*val), batch_size=batch_size),
        max_epochs=epochs + 1, num_classes=10, accelerator="cpu", devices=1,
        enable_progress_bar=False, enable_model_summary=False, logger=False,
        enable_checkpointing=False, callbacks=[timer],
    )
    if space_name == "NasBench201":
        space = NniNb201(stem_out_channels=sizes["C"], num_modules_per_stack=sizes["N"],
                         num_labels=10)
    else:
        space = NNI_DARTS(width=sizes["width"], num_cells=sizes["num_cells"], dataset="cifar")
    strategy = DARTS(arc_learning_rate=3e-3)
    model = strategy.mutate_model(space)
    evaluator = strategy.mutate_evaluator(evaluator)
    evaluator.evaluate(model)
    timed = timer.seconds[1:] or timer.seconds
    return {"epoch_seconds": statistics.median(timed), "all_epochs": timer.seconds,
            "all_cpu_epochs": timer.cpu, "pytorch_lightning": pl.__version__,
            "nni": nni.__version__, "torch": torch.__version__}
