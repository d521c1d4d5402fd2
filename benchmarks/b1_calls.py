"""B1's work counted instead of timed: Python function calls per no-op trial.

cProfile's call count over one B1 run (after a warm-up run), divided by the trials, for
the three nasflow variants of ``b1_noop_trials.py``. A count does not move with the
machine's load, so it compares two revisions where wall-clock rates cannot (run it with
``PYTHONPATH`` pointing at each revision's ``src/``).

    python benchmarks/b1_calls.py [--trials 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile

from _common import emit
from b1_noop_trials import run_nasflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    variants = {"nasflow_store_async": dict(store=True, sync=False),
                "nasflow_store_sync": dict(store=True, sync=True),
                "nasflow_nostore_async": dict(store=False, sync=False)}
    calls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as home:
        for name, kwargs in variants.items():
            run_nasflow(args.trials, home=home, **kwargs)  # warm-up: imports, first open
            profile = cProfile.Profile()
            profile.enable()
            run_nasflow(args.trials, home=home, **kwargs)
            profile.disable()
            calls[name] = round(pstats.Stats(profile).total_calls / args.trials, 1)  # type: ignore[attr-defined]
    emit("B1_calls", {"trials": args.trials, "calls_per_trial": calls})


if __name__ == "__main__":
    main()
