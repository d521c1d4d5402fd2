"""Build the tabular benchmark: every architecture of ``nasflow.demo.DigitsNet`` (1,872)
trained for real on sklearn's digits, per-epoch validation accuracy and time recorded.

Built with nasflow itself: a GridSearch experiment with a fixed id, so an interrupted
build is continued with nasflow's own resume (run the same command again). When the
search is complete the table is written as compact gzipped JSON:

    python benchmarks/build_digits_table.py                  # ~65 min on 2 cores; resumable
    python benchmarks/build_digits_table.py --variant small  # ~30 min on 2 cores
    python benchmarks/build_digits_table.py --export-only    # re-write the table file

Two variants (``VARIANTS``): ``full``, the demo's setting (``digits_table.json.gz``), and
``small``, a quarter of the digits to train on with a cosine-annealed learning rate
(``digits_small_table.json.gz``, the default table of ``search_quality.py`` and
``asha_compute.py``).

Table format (``benchmarks/data/<name>.json.gz``)::

    {"space": "nasflow.demo.DigitsNet", "epochs": E, "labels": [...],
     "signature": {label: domain}, "rows": [[sample, [acc per epoch], [s per epoch]], ...]}
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import anyio

import nasflow as nf
from nasflow.experiment._resume import space_signature

DATA = Path(__file__).resolve().parent / "data"
VARIANTS = {
    # the demo's setting: 80% of the digits to train on, 20% to validate on, constant lr
    "full": ("digits-table-v1", DATA / "digits_table.json.gz"),
    # a quarter of the digits to train on (449), the rest to validate on (1,348), the lr
    # annealed to 0 on a cosine: accuracy is not saturated at the top, it comes in finer
    # steps (1/1348), and the last epochs move less from one epoch to the next
    "small": ("digits-small-table-v1", DATA / "digits_small_table.json.gz"),
}


class SeededClassification(nf.evaluator.Classification):
    """Classification with torch's generator seeded per trial: the table is reproducible."""

    def evaluate(self, model, trial):  # type: ignore[no-untyped-def]
        import torch

        torch.manual_seed(trial.id)
        # the model was built (and initialised) before; re-initialise under the seed
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        return super().evaluate(model, trial)


class CosineAdam:
    """``params -> Adam`` whose learning rate follows a cosine from ``lr`` down to 0 over
    ``total_steps`` (the evaluator steps the optimizer once per batch)."""

    def __init__(self, lr: float, total_steps: int) -> None:
        self.lr, self.total_steps = lr, total_steps

    def __call__(self, params):  # type: ignore[no-untyped-def]
        import torch

        lr, total = self.lr, self.total_steps

        class _Adam(torch.optim.Adam):
            done = 0

            def step(self, closure=None):  # type: ignore[no-untyped-def]
                loss = super().step(closure)
                self.done += 1
                for group in self.param_groups:
                    group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * min(1.0, self.done / total)))
                return loss

        return _Adam(params, lr=lr)


def small_digits() -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """A quarter of the digits to train on, the other three quarters to validate on
    (stratified, fixed seed)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, val_idx = train_test_split(range(len(y)), train_size=0.25, random_state=0,
                                          stratify=y.numpy())
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


def make(variant: str, epochs: int, concurrency: int) -> nf.Experiment:
    from nasflow.demo import DigitsNet, digits_data

    if variant == "full":
        train, val = digits_data(seed=0)
        optimizer: Any = "adam"
    else:
        train, val = small_digits()
        optimizer = CosineAdam(3e-3, epochs * math.ceil(len(train[1]) / 64))
    evaluator = SeededClassification(train, val, epochs=epochs, batch_size=64, lr=3e-3,
                                     optimizer=optimizer, device="cpu", seed=0)
    space = DigitsNet()
    return nf.Experiment(space, evaluator, nf.strategy.GridSearch(),
                         nf.ExperimentConfig(max_trials=space.size(), concurrency=concurrency),
                         name=f"digits tabular benchmark ({variant})", id=VARIANTS[variant][0])


def export(variant: str, epochs: int) -> None:
    exp_id, out = VARIANTS[variant]
    from nasflow.demo import DigitsNet

    space = DigitsNet()
    with nf.load_experiment(exp_id) as exp:
        rows = []
        for t in exp.trials(["SUCCEEDED"]):
            curve = exp.intermediates(t.id)
            accs = [v for _, v in curve]
            times = exp._reader._query(  # per-epoch durations from the metric timestamps
                "SELECT time FROM metrics WHERE trial_id = ? AND attempt = ? ORDER BY rowid",
                (t.id, t.attempt))
            stamps = [t.started_at] + [x for (x,) in times]
            secs = [round(b - a, 4) for a, b in itertools.pairwise(stamps)]
            rows.append([t.sample, [round(a, 5) for a in accs], secs])
    table = {"space": "nasflow.demo.DigitsNet", "epochs": epochs,
             "labels": space.search_space_object().labels,
             "signature": space_signature(space.search_space_object()), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt") as f:
        json.dump(table, f, separators=(",", ":"))
    print(f"wrote {len(rows)} architectures to {out} ({out.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="full")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if not args.export_only:
        try:
            exp = nf.Experiment.restore(VARIANTS[args.variant][0])
            print(f"resuming {exp.id}: {len(exp._plan.records)} trials so far")  # type: ignore[union-attr]
        except nf.ExperimentNotFoundError:
            exp = make(args.variant, args.epochs, args.concurrency)
            print(f"building {exp.id}: {exp.config.max_trials} architectures")
        anyio.run(exp.run)
        if exp.state is not nf.ExperimentState.DONE:
            sys.exit(f"the build stopped ({exp.state.value}: {exp.end_reason}); run again")
    export(args.variant, args.epochs)


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_HOME", str(Path(__file__).resolve().parent / ".table-home"))
    main()
