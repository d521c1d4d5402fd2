"""B6: time per supernet epoch of the one-shot strategies on the example's space and data.

The space and data of ``examples/oneshot_digits.py`` (a two-cell DARTS-like space, 16
channels, 3 nodes; 1,077 training and 360 validation digits, batch 64). For each
strategy an ``nf.Experiment`` runs ``--epochs + 1`` epochs and the median of the epoch
times it streams (``StrategyProgress.values["seconds"]``) is reported, the first epoch
left out (warm-up). For DARTS the same steps are also timed in a bare loop (no
experiment, no event loop, no threads) to show what the async machinery costs.

NNI 3.0's figure comes from ``--nni``, run in an environment where ``nni`` and
``pytorch_lightning`` import (see docs/benchmarks-oneshot.md); without them the JSON
says why it is missing.

    python benchmarks/b6_oneshot_epoch.py [--epochs 3] [--strategies DARTS,Proxyless]
                                          [--threads 1] [--device cpu] [--nni]
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
    steps = 0

    async def main() -> None:
        nonlocal steps
        stream = exp.events(StrategyProgress)
        async with anyio.create_task_group() as tg:
            tg.start_soon(exp.run)
            async for ev in stream:
                assert isinstance(ev, StrategyProgress)
                if ev.values.get("phase") == "train":
                    seconds.append(ev.values["seconds"])
                    steps = ev.values["steps"]

    anyio.run(main)
    timed = seconds[1:] or seconds
    return {"epoch_seconds": statistics.median(timed), "all_epochs": seconds,
            "steps_per_epoch": steps}


def bare_darts_epochs(epochs: int, device: str) -> dict[str, Any]:
    """The same DARTS steps in a plain loop: the cost of the steps themselves."""
    from oneshot_digits import CellNet, search_data

    import nasflow as nf

    train, val, _ = search_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=64, lr=3e-3,
                                            device=device)
    strategy = _strategy("DARTS")
    rt = strategy._setup(CellNet(), evaluator)
    seconds = []
    for epoch in range(1, epochs + 2):
        rt.epoch = epoch
        t0 = time.perf_counter()
        for x, y in rt.train:
            strategy._step(rt, x, y)
        strategy._validate(rt)
        seconds.append(time.perf_counter() - t0)
    return {"epoch_seconds": statistics.median(seconds[1:]), "all_epochs": seconds}


def nni_epochs(epochs: int, device: str) -> dict[str, Any]:
    """NNI 3.0's DARTS on the same space and data, if NNI is importable here."""
    try:
        import nni  # noqa: F401
        import pytorch_lightning  # noqa: F401
    except ImportError as exc:
        return {"available": False, "reason": f"{exc!r}: NNI 3.0 needs its own environment "
                "(see docs/benchmarks-oneshot.md)"}
    from _nni_b6 import run_nni_darts  # lives beside this file; imports NNI

    return {"available": True, **run_nni_darts(epochs, device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nni", action="store_true", help="also time NNI 3.0's DARTS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"epochs_timed": args.epochs, "threads": args.threads,
                               "device": args.device, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()
    results["nasflow"] = {name: nasflow_epochs(name, args.epochs, args.device)
                          for name in args.strategies.split(",") if name}
    results["bare_darts_loop"] = bare_darts_epochs(args.epochs, args.device)
    darts = results["nasflow"].get("DARTS")
    if darts:
        results["darts_overhead_vs_bare_loop"] = (
            darts["epoch_seconds"] / results["bare_darts_loop"]["epoch_seconds"])
    if args.nni:
        with contextlib.redirect_stdout(sys.stderr):  # NNI and Lightning print; stdout is JSON
            results["nni_darts"] = nni_epochs(args.epochs, args.device)
        if darts and results["nni_darts"].get("available"):
            results["darts_time_ratio_vs_nni"] = (
                darts["epoch_seconds"] / results["nni_darts"]["epoch_seconds"])
    else:
        results["nni_darts"] = {"available": False, "reason": "not requested (--nni)"}
    emit("b6_oneshot_epoch", results)


if __name__ == "__main__":
    main()
