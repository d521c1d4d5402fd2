"""Issue 16's figures: what the training options of ``Classification`` buy on digits, and
what a latency penalty does to DARTS. Prints one JSON object per part.

    python benchmarks/training_options.py accuracy   # defaults vs schedule + smoothing
    python benchmarks/training_options.py precision  # seconds per epoch, fp32 vs bf16
    python benchmarks/training_options.py darts      # DARTS at three latency weights
    python benchmarks/training_options.py            # all three

Data: sklearn's bundled digits (the demo's 80/20 split). Torch uses one thread (the
machines these run on are shared); ``NASFLOW_TORCH_THREADS`` changes it.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import nasflow as nf
from nasflow._kernel import Objective
from nasflow.demo import DigitsNet, digits_data

THREADS = int(os.environ.get("NASFLOW_TORCH_THREADS", "1"))
SEEDS = (0, 1, 2)


class Silent(nf.Trial):
    """A trial outside any experiment (nothing is published)."""

    def __init__(self) -> None:
        super().__init__(0, {}, objective=Objective({"default": "maximize"}), pipe=None,
                         directory=lambda: Path(os.devnull).parent)


def cnn() -> nn.Module:
    """A fixed small CNN for 8x8 digits (with dropout, so smoothing has work to do)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.25), nn.Linear(64, 10),
    )


def train(seed: int, **options: Any) -> tuple[float, float]:
    """Validation accuracy and seconds per epoch of ``cnn()`` trained with ``options``."""
    tr, val = digits_data(0)
    torch.manual_seed(seed)
    model = cnn()
    evaluator = nf.evaluator.Classification(tr, val, device="cpu", seed=seed, **options)
    started = time.perf_counter()
    accuracy = evaluator.evaluate(model, Silent())
    return accuracy, (time.perf_counter() - started) / evaluator.epochs


def accuracy() -> dict[str, Any]:
    settings = {
        "defaults (adam 3e-3, constant lr)": {"lr": 3e-3},
        "adam 3e-3 + cosine + label_smoothing 0.1": {
            "lr": 3e-3, "lr_schedule": "cosine", "label_smoothing": 0.1},
        "sgd 0.05 momentum 0.9 wd 3e-4 + cosine + smoothing 0.1": {
            "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 3e-4,
            "lr_schedule": "cosine", "label_smoothing": 0.1},
    }
    out: dict[str, Any] = {}
    for name, options in settings.items():
        accs = [train(seed, epochs=15, batch_size=64, **options)[0] for seed in SEEDS]
        out[name] = {"val_accuracy_mean": round(statistics.mean(accs), 4),
                     "val_accuracy_per_seed": [round(a, 4) for a in accs]}
    return {"part": "accuracy", "epochs": 15, "seeds": list(SEEDS), "results": out}


def precision() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prec in ("fp32", "bf16"):
        runs = [train(0, epochs=3, batch_size=64, precision=prec) for _ in range(3)]
        out[prec] = {"s_per_epoch_median": round(statistics.median(r[1] for r in runs), 4),
                     "val_accuracy": round(runs[0][0], 4)}
    out["bf16_over_fp32"] = round(out["bf16"]["s_per_epoch_median"]
                                  / out["fp32"]["s_per_epoch_median"], 3)
    return {"part": "precision", "device": "cpu", "epochs": 3, "results": out}


def darts() -> dict[str, Any]:
    tr, val = digits_data(0)
    rows = []
    for weight in (0.0, 0.5, 5.0):
        evaluator = nf.evaluator.Classification(tr, val, epochs=6, batch_size=64, lr=3e-3,
                                                device="cpu")
        penalty = nf.strategy.LatencyPenalty(weight=weight, repeats=30)
        strategy = nf.strategy.DARTS(arc_learning_rate=3e-2, penalty=penalty,
                                     evaluate_top=False)
        exp = nf.Experiment(DigitsNet(), evaluator, strategy,
                            nf.ExperimentConfig(store=False))
        nf.run(exp)
        sample = exp.export_top_models(1, formatter="dict")[0]
        torch.manual_seed(0)
        model = DigitsNet().freeze(sample)
        latency = statistics.median(
            nf.evaluator.measure_latency(model, (1, 1, 8, 8), repeats=50) for _ in range(3))
        retrain = nf.evaluator.Classification(tr, val, epochs=10, batch_size=64, lr=3e-3,
                                              device="cpu", seed=0)
        acc = retrain.evaluate(model, Silent())
        rows.append({"weight": weight, "architecture": sample,
                     "estimated_latency_ms": round(next(
                         t.metrics["latency_ms"] for t in exp.trials() if t.sample == sample),
                         4),
                     "measured_latency_ms": round(latency, 4),
                     "flops": nf.evaluator.count_flops(model, (1, 1, 8, 8)),
                     "retrained_val_accuracy": round(acc, 4)})
    return {"part": "darts", "penalty": "LatencyPenalty(weight=w), no target",
            "search_epochs": 6, "retrain_epochs": 10, "results": rows}


def main() -> None:
    torch.set_num_threads(THREADS)
    parts = {"accuracy": accuracy, "precision": precision, "darts": darts}
    chosen = sys.argv[1:] or list(parts)
    for name in chosen:
        if name not in parts:
            raise SystemExit(f"unknown part {name!r}; choose from {sorted(parts)}")
        print(json.dumps({**parts[name](), "torch_threads": THREADS,
                          "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
