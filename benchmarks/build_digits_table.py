"""Build the tabular benchmark: every architecture of ``nasflow.demo.DigitsNet`` (1,872)
trained for real on sklearn's digits, per-epoch validation accuracy and time recorded.

Built with nasflow itself: a GridSearch experiment with a fixed id, so an interrupted
build is continued with nasflow's own resume (run the same command again). When the
search is complete the table is written as compact gzipped JSON:

    python benchmarks/build_digits_table.py                # hours on 2 cores; resumable
    python benchmarks/build_digits_table.py --export-only  # re-write the table file

Table format (``benchmarks/data/digits_table.json.gz``)::

    {"space": "nasflow.demo.DigitsNet", "epochs": E, "labels": [...],
     "signature": {label: domain}, "rows": [[sample, [acc per epoch], [s per epoch]], ...]}
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import sys
from pathlib import Path

import anyio

import nasflow as nf
from nasflow._resume import space_signature

EXP_ID = "digits-table-v1"
OUT = Path(__file__).resolve().parent / "data" / "digits_table.json.gz"


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


def make(epochs: int, concurrency: int) -> nf.Experiment:
    from nasflow.demo import DigitsNet, digits_data

    train, val = digits_data(seed=0)
    evaluator = SeededClassification(train, val, epochs=epochs, batch_size=64, lr=3e-3,
                                     device="cpu", seed=0)
    space = DigitsNet()
    return nf.Experiment(space, evaluator, nf.strategy.GridSearch(),
                         nf.ExperimentConfig(max_trials=space.size(), concurrency=concurrency),
                         name="digits tabular benchmark", id=EXP_ID)


def export(epochs: int) -> None:
    from nasflow.demo import DigitsNet

    space = DigitsNet()
    with nf.load_experiment(EXP_ID) as exp:
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
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as f:
        json.dump(table, f, separators=(",", ":"))
    print(f"wrote {len(rows)} architectures to {OUT} ({OUT.stat().st_size // 1024} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--export-only", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if not args.export_only:
        try:
            exp = nf.Experiment.restore(EXP_ID)
            print(f"resuming {EXP_ID}: {len(exp._plan.records)} trials so far")  # type: ignore[union-attr]
        except nf.ExperimentNotFoundError:
            exp = make(args.epochs, args.concurrency)
            print(f"building {EXP_ID}: {exp.config.max_trials} architectures")
        anyio.run(exp.run)
        if exp.state is not nf.ExperimentState.DONE:
            sys.exit(f"the build stopped ({exp.state.value}: {exp.end_reason}); run again")
    export(args.epochs)


if __name__ == "__main__":
    os.environ.setdefault("NASFLOW_HOME", str(Path(__file__).resolve().parent / ".table-home"))
    main()
