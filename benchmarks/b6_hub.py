"""B6 on hub spaces: seconds per DARTS supernet epoch on ``hub.NasBench201`` and
``hub.DARTS`` (small sizes, generated 32x32 images, one batch size), nasflow vs NNI 3.0's
DARTS on NNI's same spaces, alternating in one run. Target (issue 11): <= 0.7x NNI.

    python benchmarks/b6_hub.py [--epochs 2] [--rounds 1] [--threads 1] [--nni]
                                [--spaces NasBench201,DARTS]

``--nni`` needs NNI 3.0 importable (its own environment, docs/benchmarks-oneshot.md).
NNI's DARTS trains on the training batches and steps the architecture on validation
batches, with no validation loop; nasflow's ``train_epoch_seconds`` is the comparable
figure (its ``epoch_seconds`` adds validation). With ``--rounds`` the runs alternate
(nasflow, NNI, again) and each round's ratio is reported; on a shared machine the
process CPU seconds per epoch (``cpu``) are steadier than wall-clock ones (nasflow's
CPU epoch includes its validation pass and checkpoint, so its CPU ratio is an upper
bound).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import sys
import time
from typing import Any

import anyio
import torch
from _common import emit

SIZES: dict[str, dict[str, Any]] = {
    "NasBench201": {"C": 8, "N": 2},
    "DARTS": {"width": 4, "num_cells": 3},
}
BATCH = 64


def generated_images(n: int) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(10, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    x = patterns[y] + torch.randn(n, 3, 32, 32, generator=g)
    cut = n // 2
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def nasflow_epochs(name: str, data: tuple[Any, Any], epochs: int) -> dict[str, Any]:
    import nasflow as nf
    from nasflow import hub
    from nasflow.events import StrategyProgress

    if name == "NasBench201":
        space: Any = hub.NasBench201(stem_out_channels=SIZES[name]["C"],
                                     num_modules_per_stack=SIZES[name]["N"])
    else:
        space = hub.DARTS(dataset="cifar", **SIZES[name])
    train, val = data
    evaluator = nf.evaluator.Classification(train, val, epochs=epochs + 1, batch_size=BATCH,
                                            lr=3e-3)
    exp = nf.Experiment(space, evaluator, nf.strategy.DARTS(arc_learning_rate=3e-3),
                        nf.ExperimentConfig(store=False))
    seconds: list[float] = []
    train_seconds: list[float] = []
    cpu_marks: list[float] = []  # process CPU time at each epoch's end

    async def run() -> None:
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                if ev.values.get("phase") == "train":
                    cpu_marks.append(time.process_time())
                    seconds.append(ev.values["seconds"])
                    train_seconds.append(ev.values["train_seconds"])

    anyio.run(run)
    cpu = [b - a for a, b in itertools.pairwise(cpu_marks)]
    return {"epochs": seconds[1:], "train_epochs": train_seconds[1:], "cpu_epochs": cpu}


def nni_epochs(name: str, data: tuple[Any, Any], epochs: int) -> dict[str, Any]:
    with contextlib.redirect_stdout(sys.stderr):  # NNI logs to the stdout it finds
        try:
            import nni  # noqa: F401
            import pytorch_lightning  # noqa: F401
        except ImportError as exc:
            return {"available": False, "reason": f"{exc!r}: NNI 3.0 needs its own "
                    "environment (see docs/benchmarks-oneshot.md)"}
        from _nni_b6_hub import run_nni_hub_darts

        result = run_nni_hub_darts(name, data, epochs, BATCH, SIZES[name])
    return {"available": True, **result, "epochs": result["all_epochs"][1:],
            "cpu_epochs": result["all_cpu_epochs"][1:]}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(x for run in runs for x in run[key]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of nasflow / NNI runs, alternating")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spaces", default=",".join(SIZES))
    parser.add_argument("--nni", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = generated_images(args.samples)
    names = [n for n in args.spaces.split(",") if n]
    results: dict[str, Any] = {"epochs_timed": args.epochs, "rounds": args.rounds,
                               "batch_size": BATCH, "train_samples": args.samples // 2,
                               "sizes": {n: SIZES[n] for n in names},
                               "threads": args.threads, "torch": torch.__version__}
    for name in names:
        ours: list[dict[str, Any]] = []
        theirs: list[dict[str, Any]] = []
        for _ in range(args.rounds):  # alternate, so that a noisy machine hits both alike
            ours.append(nasflow_epochs(name, data, args.epochs))
            if args.nni:
                theirs.append(nni_epochs(name, data, args.epochs))
        entry: dict[str, Any] = {
            "epoch_seconds": _median(ours, "epochs"),
            "train_epoch_seconds": _median(ours, "train_epochs"),
            "cpu_epoch_seconds": _median(ours, "cpu_epochs"),
            "runs": [{k: r[k] for k in ("epochs", "train_epochs", "cpu_epochs")}
                     for r in ours],
        }
        if theirs and all(t["available"] for t in theirs):
            nni_s = _median(theirs, "epochs")
            entry["nni_epoch_seconds"] = nni_s
            entry["nni_cpu_epoch_seconds"] = _median(theirs, "cpu_epochs")
            entry["nni_runs"] = [{k: t[k] for k in ("epochs", "cpu_epochs")} for t in theirs]
            entry["train_time_ratio_vs_nni"] = entry["train_epoch_seconds"] / nni_s
            entry["time_ratio_vs_nni"] = entry["epoch_seconds"] / nni_s
            # each round's ratio (its two runs minutes apart, under the same load)
            for key, a_key, b_key in (("round_train_ratios_vs_nni", "train_epochs", "epochs"),
                                      ("round_cpu_ratios_vs_nni", "cpu_epochs", "cpu_epochs")):
                ratios = [statistics.median(a[a_key]) / statistics.median(b[b_key])
                          for a, b in zip(ours, theirs, strict=True)]
                entry[key] = ratios
                entry["median_" + key.replace("ratios", "ratio")] = statistics.median(ratios)
            entry["nni"] = theirs[0]["nni"]
        elif theirs:
            entry["nni"] = next(t for t in theirs if not t["available"])
        results[name] = entry
    emit("b6_hub", results)


if __name__ == "__main__":
    main()
