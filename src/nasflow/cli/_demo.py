"""``nasflow demo``: a real architecture search on the bundled digits data."""

from __future__ import annotations

import argparse

import anyio

from nasflow.cli._running import print_best, run_experiment

__all__ = ["add_parser"]

EXAMPLES = """examples:
  nasflow demo                       # 24 trials, 2 at a time, live table
  nasflow demo --trials 8 --epochs 3 # a quicker look
  nasflow demo --plain               # one line per finished trial (logs, CI)
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo", help="search CNN architectures for sklearn's digits (no download)",
        description="Run a real architecture search: a CNN space on scikit-learn's bundled "
        "8x8 digits, trained for real, 2 trials at a time, then print the best "
        "architectures. Results stay under NASFLOW_HOME like any experiment.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--trials", type=int, default=24, help="trials to run (default 24)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once (default 2)")
    p.add_argument("--epochs", type=int, default=8, help="training epochs per trial (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--plain", action="store_true", help="plain lines instead of a live table")
    p.add_argument("--dashboard", action="store_true",
                   help="also serve the web dashboard while it runs (prints its address)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import torch

    from nasflow.demo import make_experiment

    # trials run side by side in threads: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)
    exp = make_experiment(trials=args.trials, concurrency=args.concurrency,
                          epochs=args.epochs, seed=args.seed)
    print(f"searching {exp.space.size()} architectures of DigitsNet "  # type: ignore[attr-defined]
          f"({args.trials} trials, {args.concurrency} at a time, {args.epochs} epochs each); "
          f"experiment {exp.id}")
    live = False if args.plain else None
    if args.dashboard:
        from nasflow.cli._dashboard import with_dashboard

        code = anyio.run(lambda: with_dashboard(exp, run_experiment(exp, live=live)))
    else:
        code = anyio.run(lambda: run_experiment(exp, live=live))
    print_best(exp)
    return code
