"""B5: 100,000 no-op trials with the store on: throughput must not decay with the number
of trials, and memory must stay bounded.

Each size runs in a fresh interpreter (so peak RSS is that run's). Targets: trials/s at
100k >= 0.8x trials/s at 1k; peak RSS <= 300 MB.

    python benchmarks/b5_scale.py [--sizes 1000 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from _common import emit

CHILD = """
import json, resource, sys, time
import anyio
sys.path.insert(0, {bench_dir!r})
from _common import nasflow_space, noop_objective
import nasflow as nf

async def evaluate(model, trial):
    return noop_objective(**trial.sample)

n = int(sys.argv[1])
exp = nf.Experiment(nasflow_space(), evaluate, nf.strategy.Random(seed=0, dedup=False),
                    nf.ExperimentConfig(max_trials=n))
t0 = time.perf_counter()
anyio.run(exp.run)
elapsed = time.perf_counter() - t0
assert len(exp.trials(["SUCCEEDED"])) == n
with nf.load_experiment(exp.id) as saved:
    stored = len(saved.trials())
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"trials": n, "seconds": elapsed, "trials_per_s": n / elapsed,
                  "peak_rss_mb": rss_mb, "stored": stored}}))
"""


def run(n: int, home: str) -> dict:
    code = CHILD.format(bench_dir=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True,
                         env={**os.environ, "NASFLOW_HOME": home}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        results = [run(n, home) for n in args.sizes]
    small, large = results[0], results[-1]
    emit("B5", {
        "runs": results,
        "rate_ratio_large_vs_small": round(large["trials_per_s"] / small["trials_per_s"], 2),
        "peak_rss_mb_large": round(large["peak_rss_mb"], 1),
        "targets": "rate ratio >= 0.8; peak RSS <= 300 MB",
    })


if __name__ == "__main__":
    main()
