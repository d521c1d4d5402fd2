"""B1r/B7r/B2r/B3r: nasflow's Ray training service side by side with Ray Tune, one run,
on the same local Ray cluster (a head with no CPUs and two nodes of ``--cpus`` CPUs).

Needs ``ray[tune]`` next to nasflow (a separate venv: Ray Tune is not a dependency) and a
network namespace holding only loopback (Ray advertises the outward address)::

    unshare -rn bash -c 'ip link set lo up && exec /opt/rayvenv/bin/python benchmarks/b_ray.py'

- B1r: no-op trials, trials/s (nasflow: ``--b1`` trials; Ray Tune: ``--tune-b1``).
- B7r: a slot frees -> the evaluator is entered on a warm actor (p50, p99); nasflow only
  (a Tune trial is a new actor each time: its figure is B1's per-trial time).
- B2r: small torch trials (an MLP, 3 epochs on 1,000 random samples) on 2 workers, wall.
- B3r: metrics reported by one trial, until the subscriber has them (nasflow: stored).
Ratios are nasflow / Ray Tune (trials/s, metrics/s) or Ray Tune / nasflow (wall).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import emit

# --- workloads (module level: workers import them by reference) --------------------------


def noop(model: Any, trial: Any) -> float:
    return float(trial.sample["x"])


def entered_at(model: Any, trial: Any) -> float:
    return time.time()


def many_metrics(model: Any, trial: Any) -> float:
    n = trial.sample["n"]
    first = time.time()
    for i in range(n):
        trial.report(float(i), step=i)
    return first


def torch_trial(width: int) -> float:
    import torch

    torch.manual_seed(0)
    x, y = torch.randn(1000, 32), torch.randint(0, 4, (1000,))
    net = torch.nn.Sequential(torch.nn.Linear(32, width), torch.nn.ReLU(),
                              torch.nn.Linear(width, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        for i in range(0, 1000, 100):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 100]), y[i:i + 100])
            loss.backward()
            opt.step()
    return float(loss)


def torch_eval(model: Any, trial: Any) -> float:
    return torch_trial(trial.sample["width"])


# --- nasflow ------------------------------------------------------------------------------


def _cfg(**kw: Any) -> Any:
    import nasflow as nf

    return nf.ExperimentConfig(training_service="ray", trial_resources={"CPU": 1}, **kw)


async def nasflow_b1(n: int, workers: int) -> float:
    import nasflow as nf

    exp = nf.Experiment({"x": nf.Categorical(list(range(20 * n)))}, noop,
                        nf.strategy.Random(seed=0), _cfg(max_trials=n, concurrency=workers,
                                                         objective="maximize"))
    started = time.perf_counter()
    first = None

    async def follow() -> None:
        nonlocal first
        async for ev in exp.events():
            if isinstance(ev, nf.events.TrialStarted) and first is None:
                first = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await exp.run()
    end = time.perf_counter()
    assert len(exp.trials()) == n, len(exp.trials())
    return n / (end - (first or started))  # the search, not the actors' start-up


async def nasflow_b7(n: int, workers: int, root: Path) -> list[float]:
    from nasflow._kernel import Objective
    from nasflow.engine import EngineSetup, ManagerEngine, TrialSpec
    from nasflow.evaluator import FunctionalEvaluator
    from nasflow.events import FinalMetric
    from nasflow.testing import EngineHarness

    harness = EngineHarness()
    setup = EngineSetup(space={}, evaluator=FunctionalEvaluator(entered_at),
                        objective=Objective({"default": "maximize"}),
                        publish=harness.publish, experiment_id="b7r",
                        trial_directory=lambda i: root / "b7r" / str(i), concurrency=workers)
    latencies = []
    async with ManagerEngine(setup, ray=True) as engine:
        for i in range(n + workers):
            await engine.wait_capacity()  # the slot is free: the clock starts
            submitted = time.time()
            await engine.submit(TrialSpec(i, {}))
            await harness.ended(i)
            final = next(e for e in harness.of(i) if isinstance(e, FinalMetric))
            if i >= workers:
                latencies.append(final.value - submitted)
    return latencies


async def nasflow_b2(n: int) -> float:
    import nasflow as nf

    exp = nf.Experiment({"width": nf.Categorical(list(range(8, 8 + 20 * n)))}, torch_eval,
                        nf.strategy.Random(seed=0),
                        _cfg(max_trials=n, concurrency=2, objective="minimize"))
    started = time.perf_counter()
    await exp.run()
    assert len(exp.trials()) == n, len(exp.trials())
    return time.perf_counter() - started


async def nasflow_b3(n: int) -> float:
    import nasflow as nf

    exp = nf.Experiment({"n": nf.Categorical([n])}, many_metrics, nf.strategy.Random(),
                        _cfg(max_trials=1, objective={"default": "maximize"}))
    seen: list[float] = []

    async def follow() -> None:
        async for ev in exp.events():
            if isinstance(ev, nf.events.IntermediateMetric):
                seen.append(time.time())
    async with anyio.create_task_group() as tg:
        tg.start_soon(follow)
        await exp.run()
    (trial,) = exp.trials()
    assert len(seen) == n
    return n / (seen[-1] - float(trial.metric or 0.0))


# --- Ray Tune -------------------------------------------------------------------------------


def _tune(trainable: Any, space: dict[str, Any], samples: int, concurrency: int,
          root: Path) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(num_samples=samples, max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(storage_path=str(root / "tune"), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    assert len(results) == samples and not results.errors, results.errors
    return wall


def tune_noop(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"score": float(config["x"])})


def tune_torch(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"loss": torch_trial(config["width"])})


def tune_metrics(config: dict[str, Any]) -> None:
    from ray import tune

    for i in range(config["n"]):
        tune.report({"value": float(i), "first": time.time() if i == 0 else 0.0})


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100)
    return {"p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3), "n": len(ms)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--b1", type=int, default=500)
    p.add_argument("--tune-b1", type=int, default=40)
    p.add_argument("--b7", type=int, default=300)
    p.add_argument("--b2", type=int, default=100)
    p.add_argument("--tune-b2", type=int, default=20)
    p.add_argument("--b3", type=int, default=10_000)
    p.add_argument("--tune-b3", type=int, default=1_000)
    p.add_argument("--cpus", type=int, default=2)
    args = p.parse_args()

    from ray.cluster_utils import Cluster

    import ray
    from ray import tune

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=args.cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING", configure_logging=False)
    workers = 2 * args.cpus
    out: dict[str, Any] = {"cluster": f"head (0 CPU) + 2 nodes x {args.cpus} CPU, 127.0.0.1"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            nf_b1 = anyio.run(nasflow_b1, args.b1, workers)
            t_b1 = args.tune_b1 / _tune(tune_noop, {"x": tune.randint(0, 10**6)},
                                        args.tune_b1, workers, root)
            out["B1r"] = {"nasflow_trials_per_s": round(nf_b1, 1),
                          "tune_trials_per_s": round(t_b1, 2),
                          "ratio": round(nf_b1 / t_b1, 1), "target": ">= 20"}
            out["B7r"] = {"nasflow": summary(anyio.run(nasflow_b7, args.b7, 2, root)),
                          "target": "p50 <= 5 ms, p99 <= 20 ms"}
            nf_b2 = anyio.run(nasflow_b2, args.b2)
            t_b2 = _tune(tune_torch, {"width": tune.randint(8, 200)}, args.tune_b2, 2, root)
            t_b2_scaled = t_b2 * args.b2 / args.tune_b2
            out["B2r"] = {"nasflow_wall_s": round(nf_b2, 2),
                          "tune_wall_s": round(t_b2, 2), "tune_trials": args.tune_b2,
                          "tune_wall_s_per_nasflow_count": round(t_b2_scaled, 2),
                          "ratio": round(nf_b2 / t_b2_scaled, 3), "target": "<= 0.3"}
            nf_b3 = anyio.run(nasflow_b3, args.b3)
            t_b3 = args.tune_b3 / _tune(tune_metrics, {"n": args.tune_b3}, 1, 1, root)
            out["B3r"] = {"nasflow_metrics_per_s": round(nf_b3), "tune_metrics_per_s":
                          round(t_b3), "ratio": round(nf_b3 / t_b3, 1),
                          "target": ">= 50k/s", "tune_note": "Tune's wall includes its "
                          "trial's start-up"}
    finally:
        ray.shutdown()
        cluster.shutdown()
    emit("b_ray", out)


if __name__ == "__main__":
    main()
