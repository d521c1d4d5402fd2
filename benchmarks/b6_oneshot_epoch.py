"""B6: time per supernet epoch of the one-shot strategies on the example's space and data.

The space and data of ``examples/oneshot_digits.py`` (a two-cell DARTS-like space, 16
channels, 3 nodes; 1,077 training and 360 validation digits, batch 64). For each
strategy an ``nf.Experiment`` runs ``--epochs + 1`` epochs and the median of the epoch
times it streams is reported (``seconds``: the whole epoch, validation and checkpoint
included; ``train_seconds``: the training steps only), the first epoch of each run left
out (warm-up). For DARTS the same steps are also timed in a bare loop (no experiment, no
event loop, no threads) to show what the async machinery costs. With ``--rounds`` the
runs alternate (nasflow, bare loop, NNI, again), as the other benchmarks do on these
noisy machines; ``darts_round_ratios_vs_nni`` then holds each round's DARTS / NNI ratio
and ``darts_median_round_ratio_vs_nni`` their median.

NNI 3.0's figure comes from ``--nni``, run in an environment where ``nni`` and
``pytorch_lightning`` import (see docs/benchmarks-oneshot.md); without them the JSON
says why it is missing.

    python benchmarks/b6_oneshot_epoch.py [--epochs 3] [--rounds 1] [--threads 1]
                                          [--strategies DARTS,Proxyless] [--device cpu]
                                          [--nni]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

import anyio
import torch
from _common import emit

STRATEGIES = ("DARTS", "GumbelDARTS", "Proxyless", "ENAS", "RandomOneShot")


def _strategy(name: str) -> Any:
    import nasflow as nf

    cls = getattr(nf.strategy, name)
    if name in ("DARTS", "GumbelDARTS", "Proxyless"):
        return cls(arc_learning_rate=1e-2, evaluate_top=False, top_k=1)
    if name == "ENAS":
        return cls(num_candidates=1, top_k=1)
    return cls(search_trials=1, top_k=1)


def nasflow_epochs(name: str, epochs: int, device: str) -> dict[str, Any]:
    """Epoch times of one strategy run through an experiment."""
    from oneshot_digits import CellNet, search_data

    import nasflow as nf
    from nasflow.events import StrategyProgress

    train, val, _ = search_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=epochs + 1, batch_size=64,
                                            lr=3e-3, device=device)
    exp = nf.Experiment(CellNet(), evaluator, _strategy(name), nf.ExperimentConfig(store=False))
    seconds: list[float] = []
    train_seconds: list[float] = []
    steps = 0

    async def run() -> None:
        nonlocal steps
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                if ev.values.get("phase") == "train":
                    seconds.append(ev.values["seconds"])
                    train_seconds.append(ev.values["train_seconds"])
                    steps = ev.values["steps"]

    anyio.run(run)
    return {"epochs": seconds[1:], "train_epochs": train_seconds[1:], "steps_per_epoch": steps}


def bare_darts_epochs(epochs: int, device: str) -> dict[str, Any]:
    """The same DARTS steps in a plain loop: the cost of the steps themselves."""
    from oneshot_digits import CellNet, search_data

    import nasflow as nf

    train, val, _ = search_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=64, lr=3e-3,
                                            device=device)
    strategy = _strategy("DARTS")
    rt = strategy._setup(CellNet(), evaluator)
    seconds, train_seconds = [], []
    for epoch in range(1, epochs + 2):
        rt.epoch = epoch
        t0 = time.perf_counter()
        for x, y in rt.train:
            strategy._step(rt, x, y)
        train_seconds.append(time.perf_counter() - t0)
        strategy._validate(rt)
        seconds.append(time.perf_counter() - t0)
    return {"epochs": seconds[1:], "train_epochs": train_seconds[1:]}


def nni_epochs(epochs: int, device: str) -> dict[str, Any]:
    """NNI 3.0's DARTS on the same space and data, if NNI is importable here."""
    # NNI's log handler keeps the stdout it finds at import: give it stderr (stdout is JSON)
    with contextlib.redirect_stdout(sys.stderr):
        try:
            import nni  # noqa: F401
            import pytorch_lightning  # noqa: F401
        except ImportError as exc:
            return {"available": False, "reason": f"{exc!r}: NNI 3.0 needs its own "
                    "environment (see docs/benchmarks-oneshot.md)"}
        from _nni_b6 import run_nni_darts  # lives beside this file; imports NNI

        result = run_nni_darts(epochs, device)
    return {"available": True, **result, "epochs": result["all_epochs"][1:]}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(x for run in runs for x in run[key]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per run")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds of nasflow / bare loop / NNI runs, alternating")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nni", action="store_true", help="also time NNI 3.0's DARTS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"epochs_timed": args.epochs, "rounds": args.rounds,
                               "threads": args.threads, "device": args.device,
                               "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    names = [n for n in args.strategies.split(",") if n]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in [*names, "bare", "nni"]}
    nni_missing: dict[str, Any] = {"available": False, "reason": "not requested (--nni)"}
    for _ in range(args.rounds):  # alternate, so that a noisy machine hits all alike
        for name in names:
            runs[name].append(nasflow_epochs(name, args.epochs, args.device))
        runs["bare"].append(bare_darts_epochs(args.epochs, args.device))
        if args.nni:
            nni = nni_epochs(args.epochs, args.device)
            if nni["available"]:
                runs["nni"].append(nni)
            else:
                nni_missing = nni
                args.nni = False
    results["nasflow"] = {
        name: {"epoch_seconds": _median(runs[name], "epochs"),
               "train_epoch_seconds": _median(runs[name], "train_epochs"),
               "steps_per_epoch": runs[name][0]["steps_per_epoch"],
               "runs": [r["epochs"] for r in runs[name]]}
        for name in names
    }
    results["bare_darts_loop"] = {
        "epoch_seconds": _median(runs["bare"], "epochs"),
        "train_epoch_seconds": _median(runs["bare"], "train_epochs"),
        "runs": [r["epochs"] for r in runs["bare"]],
    }
    darts = results["nasflow"].get("DARTS")
    if darts:
        results["darts_overhead_vs_bare_loop"] = (
            darts["epoch_seconds"] / results["bare_darts_loop"]["epoch_seconds"])
    if runs["nni"]:
        first = runs["nni"][0]
        nni_seconds = _median(runs["nni"], "epochs")
        results["nni_darts"] = {"available": True, "epoch_seconds": nni_seconds,
                                "runs": [r["epochs"] for r in runs["nni"]],
                                "nni": first["nni"],
                                "pytorch_lightning": first["pytorch_lightning"],
                                "note": first["note"]}
        if darts:
            results["darts_time_ratio_vs_nni"] = darts["epoch_seconds"] / nni_seconds
            results["darts_train_time_ratio_vs_nni"] = darts["train_epoch_seconds"] / nni_seconds
            # each round's ratio (its runs ran minutes apart at most, under the same load)
            # and their median: steadier than the ratio of medians on a shared machine
            rounds = [statistics.median(a["epochs"]) / statistics.median(b["epochs"])
                      for a, b in zip(runs["DARTS"], runs["nni"], strict=True)]
            results["darts_round_ratios_vs_nni"] = rounds
            results["darts_median_round_ratio_vs_nni"] = statistics.median(rounds)
    else:
        results["nni_darts"] = nni_missing
    emit("b6_oneshot_epoch", results)


if __name__ == "__main__":
    main()
