"""Two versions of nasflow side by side: B1, B3, B7 and the loop lag, alternated in one run.

The old version is a git revision checked out into a temporary worktree; the new one is
this working tree. Both run the same benchmark scripts (this tree's ``benchmarks/``) with
``PYTHONPATH`` pointing at their own ``src/``, round after round, old and new alternating
so that machine noise hits both alike. The output is one JSON document: each figure's
median per side and the ratio new / old, with "better" saying which way is good.

    python benchmarks/compare_revs.py --old main~5 [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import emit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (script, its arguments, [(figure name, path into its JSON, "higher" or "lower")])
RUNS: list[tuple[str, list[str], list[tuple[str, tuple[str, ...], str]]]] = [
    ("b1_noop_trials.py", ["--trials", "1000", "--runs", "3"], [
        ("B1 trials/s, store on", ("trials_per_s_median", "nasflow_store_async"), "higher"),
        ("B1 trials/s, sync evaluator", ("trials_per_s_median", "nasflow_store_sync"), "higher"),
    ]),
    ("b1_per_trial.py", ["--trials", "2000", "--runs", "5"], [
        ("B1 us per trial, min", ("us_per_trial", "async", "min_us"), "lower"),
        ("B1 us per trial, median", ("us_per_trial", "async", "median_us"), "lower"),
        ("B1 us per trial, sync, min", ("us_per_trial", "sync", "min_us"), "lower"),
    ]),
    ("b3_metric_throughput.py", ["--runs", "3"], [
        ("B3 metrics/s durable, in-process",
         ("metrics_per_s_median", "inprocess_durable"), "higher"),
        ("B3 metrics/s durable, local worker",
         ("metrics_per_s_median", "local_durable"), "higher"),
    ]),
    ("b7_launch_latency.py", ["--trials", "200"], [
        ("B7 p50 ms, local", ("latency_submit_to_evaluator", "local", "p50_ms"), "lower"),
        ("B7 p99 ms, local", ("latency_submit_to_evaluator", "local", "p99_ms"), "lower"),
        ("B7 p50 ms, in-process",
         ("latency_submit_to_evaluator", "inprocess", "p50_ms"), "lower"),
    ]),
    ("loop_lag.py", ["--seconds", "4"], [
        ("loop lag p99 ms, torch", ("results", "torch", "p99_ms"), "lower"),
    ]),
]


def run_one(src: Path, script: str, args: list[str]) -> dict[str, Any]:
    """Run one benchmark against the nasflow in ``src`` and return its JSON document."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"}
    out = subprocess.run([sys.executable, str(HERE / script), *args], env=env, cwd=HERE,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{"):])


def dig(doc: dict[str, Any], path: tuple[str, ...]) -> float:
    for key in path:
        doc = doc[key]
    return float(doc)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--old", required=True, help="the git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="benchmark scripts to run (default: all)")
    args = parser.parse_args()
    runs = [r for r in RUNS if not args.only or r[0] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q",
                        str(old_tree), args.old], check=True)
        try:
            sides = {"old": old_tree / "src", "new": ROOT / "src"}
            raw: dict[str, dict[str, list[float]]] = {s: {} for s in sides}
            for _ in range(args.rounds):
                for script, script_args, figures in runs:
                    for side, src in sides.items():
                        doc = run_one(src, script, script_args)
                        for name, path, _better in figures:
                            raw[side].setdefault(name, []).append(dig(doc, path))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(old_tree)], check=False)
    old_rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.old],
                             capture_output=True, text=True).stdout.strip()
    figures: dict[str, Any] = {}
    for _script, _args, figs in runs:
        for name, _path, better in figs:
            old, new = (statistics.median(raw[s][name]) for s in ("old", "new"))
            figures[name] = {"old": round(old, 3), "new": round(new, 3),
                             "new_over_old": round(new / old, 3) if old else None,
                             "better": better}
    emit("compare_revs", {"old": old_rev, "new": "working tree", "rounds": args.rounds,
                          "figures": figures, "raw": raw})


if __name__ == "__main__":
    main()
