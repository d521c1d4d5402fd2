"""Many hosted experiments on one daemon: do they all progress, and how late is its loop?

An in-process daemon (``TrialManager`` with ``--workers W`` and its ``Host``) hosts N
experiments submitted with ``nf.submit`` (cheap async evaluators: one report and a 10 ms
sleep; concurrency 2 each; T trials each). A probe task on the daemon's loop asks to wake
1 ms later, over and over, and records how late it wakes (the sleep is the measurement).
Lag is reported for the search once every experiment is in (``lag_*``) and for the
submissions (``submit_lag_*``; this process also pickles the experiments, a cost a real
client pays in its own process). The same run measures one hosted experiment first, so
the two sit side by side (ratios).

Reported per case: wall time, trials per second, whether every experiment finished DONE
with its T trials, when each experiment's first trial ended (every one progresses from the
start: fair shares) and the loop lag p50/p99/max. Target: p99 <= 10 ms with N = 20.

    python benchmarks/hosted_many.py [--experiments 20] [--trials 30] [--workers 4]

30 trials each (15 before): the search with all 20 in then lasts long enough (~1000 lag
samples) for a p99 that is not the run's third-largest sample.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
from _common import emit


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def cheap(model: None, trial: Any) -> float:
    trial.report(0.5, step=0)
    await anyio.sleep(0.01)
    return float(trial.sample["a"])


async def measure(experiments: int, trials: int, workers: int) -> dict[str, Any]:
    import nasflow as nf
    from nasflow.hosted import hosting
    from nasflow.manager import TrialManager

    lags: list[float] = []

    async def probe() -> None:
        while True:
            t = time.perf_counter()
            await anyio.sleep(0.001)  # the measurement itself
            lags.append((time.perf_counter() - t - 0.001) * 1000)

    with tempfile.TemporaryDirectory() as home:
        async with TrialManager(workers=workers) as manager:
            host = hosting(manager, home)
            async with anyio.create_task_group() as tg:
                await tg.start(host.run)
                tg.start_soon(probe)
                start = time.perf_counter()
                ids = []
                for _ in range(experiments):
                    exp = nf.Experiment({"a": nf.Categorical(list(range(1000)))}, cheap,
                                        nf.strategy.Random(seed=0),
                                        nf.ExperimentConfig(max_trials=trials, concurrency=2))
                    ids.append((await nf.submit(exp, manager=manager.url,
                                                token=manager.token)).id)
                submitted = len(lags)  # lag samples taken while submitting
                submit_s = time.perf_counter() - start
                first_end: dict[str, float] = {}
                for exp_id in ids:
                    hosted = host.experiments[exp_id]
                    while not hosted.done:
                        await hosted.changed.wait()
                    ended = [e for e in hosted.exp.trials() if e.ended_at is not None]
                    first_end[exp_id] = min(e.ended_at for e in ended) if ended else -1.0
                wall = time.perf_counter() - start
                states = [host.experiments[i].exp.state.value for i in ids]
                counts = [len(host.experiments[i].exp.trials()) for i in ids]
                await host.close()
                tg.cancel_scope.cancel()
    t0 = min(first_end.values())
    return {
        "experiments": experiments, "trials_each": trials, "wall_s": round(wall, 2),
        "submit_s": round(submit_s, 2),  # until the last nf.submit returned
        "trials_per_s": round(experiments * trials / wall, 1),
        "all_done": all(s == "DONE" for s in states) and all(c == trials for c in counts),
        "first_trial_end_s": {"max": round(max(first_end.values()) - t0, 2),
                              "median": round(statistics.median(first_end.values()) - t0, 2)},
        # the search once every experiment is in (the daemon's steady state), and the
        # submissions (this process also pickles the clients' experiments: a client's
        # cost, which a real client pays in its own process)
        "lag_samples": len(lags) - submitted, **_lag("lag", lags[submitted:]),
        **_lag("submit_lag", lags[:submitted] or [0.0]),
    }


def _lag(name: str, lags: list[float]) -> dict[str, float]:
    return {f"{name}_p50_ms": round(statistics.median(lags), 2),
            f"{name}_p99_ms": round(percentile(lags, 0.99), 2),
            f"{name}_max_ms": round(max(lags), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    one = anyio.run(measure, 1, args.trials, args.workers)
    many = anyio.run(measure, args.experiments, args.trials, args.workers)
    emit("hosted_many", {
        "workers": args.workers, "one": one, "many": many,
        "ratios": {"lag_p99": round(many["lag_p99_ms"] / max(one["lag_p99_ms"], 0.01), 2),
                   "trials_per_s": round(many["trials_per_s"] / one["trials_per_s"], 2)},
        "target": "many.lag_p99_ms <= 10, many.all_done",
    })


if __name__ == "__main__":
    main()
