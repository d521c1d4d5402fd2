"""B2: 100 torch trials, 2 at a time, each outside the orchestrator's process.

Each trial builds the MLP of ``shared/reference/benchmarks.md`` from its sample (``depth``
x (Linear(d_in -> width) + act), then Linear(width -> 1), input size 16), runs 10 forward
passes on ``torch.randn(64, 16)`` under ``no_grad`` and reports the mean output after each
as an intermediate metric; the last one is the final metric.

* nasflow: ``training_service="local"``, ``concurrency=2`` (two warm worker processes),
  random search, the SQLite store on. Wall time of ``exp.run()``, worker start included.
  While it runs, a probe task measures the experiment's event-loop lag: it sleeps 1 ms
  and records how late it wakes.
* Optuna: two ``multiprocessing`` processes, each ``study.optimize(..., n_trials=50)`` on
  one ``JournalStorage(JournalFileBackend(path))``; wall time from starting the processes
  to joining them. Twice: as it comes (torch uses one thread per core in each process),
  and with ``OMP_NUM_THREADS=1`` -- what nasflow's local service gives each of its two
  workers on a 2-core machine (its share of the CPUs) -- so the comparison does not hinge
  on thread oversubscription.

* nasflow, daemon (``nasflow_daemon``): the same experiment attached to a ``nasflow
  manager --workers 2 --preload torch`` daemon started once before the runs (what a GPU
  box running nasflow as a service has): its workers imported torch when they started,
  not while a run was timed.

Every run of either happens in a fresh interpreter (``--variant``); the cold variants
(nasflow, Optuna) pay for importing torch in their trial processes alike. Variants
alternate; median of ``--runs``. Targets: nasflow <= 0.5x Optuna's wall time; event-loop
lag p99 <= 10 ms.

    python benchmarks/b2_torch_trials.py [--runs 3] [--trials 100]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from _common import ACTS, DEPTHS, WIDTHS, emit, nasflow_space


def forward_passes(width: int, depth: int, act: str) -> list[float]:
    """The B2 trial: build the MLP, run 10 forward passes, return the 10 means."""
    import torch
    from torch import nn

    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}
    layers: list[nn.Module] = []
    d_in = 16
    for _ in range(depth):
        layers += [nn.Linear(d_in, width), acts[act]()]
        d_in = width
    layers.append(nn.Linear(width, 1))
    model = nn.Sequential(*layers)
    out = []
    with torch.no_grad():
        for _ in range(10):
            out.append(float(model(torch.randn(64, 16)).mean()))
    return out


# --- nasflow ------------------------------------------------------------------------------


def nasflow_evaluator(model: Any, trial: Any) -> float:
    values = forward_passes(**trial.sample)
    for step, value in enumerate(values):
        trial.report(value, step=step)
    return values[-1]


def run_nasflow(trials: int, home: str) -> dict[str, Any]:
    import anyio

    import nasflow as nf

    daemon = os.environ.get("B2_MANAGER")  # nasflow_daemon: attach to a running daemon
    exp = nf.Experiment(
        nasflow_space(), nasflow_evaluator, nf.strategy.Random(seed=0, dedup=False),
        nf.ExperimentConfig(max_trials=trials, concurrency=2, training_service="local",
                            home=home, manager=daemon,
                            token=os.environ.get("NASFLOW_TOKEN") if daemon else None),
    )
    lags: list[float] = []

    async def probe(done: anyio.Event) -> None:
        while not done.is_set():
            t = time.perf_counter()
            await anyio.sleep(0.001)  # the measurement itself: how late does a 1 ms sleep wake?
            lags.append(time.perf_counter() - t - 0.001)

    async def main() -> float:
        done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(probe, done)
            t0 = time.perf_counter()
            await exp.run()
            elapsed = time.perf_counter() - t0
            done.set()
        return elapsed

    elapsed = anyio.run(main)
    ok = len(exp.trials(["SUCCEEDED"]))
    assert ok == trials, exp.trials()[:3]
    ms = sorted(x * 1000 for x in lags)
    q = statistics.quantiles(ms, n=100)
    return {"seconds": elapsed, "lag_p50_ms": q[49], "lag_p99_ms": q[98], "lag_max_ms": ms[-1]}


# --- Optuna -------------------------------------------------------------------------------


def _optuna_objective(trial: Any) -> float:
    values = forward_passes(
        trial.suggest_categorical("width", WIDTHS),
        trial.suggest_categorical("depth", DEPTHS),
        trial.suggest_categorical("act", ACTS),
    )
    for step, value in enumerate(values):
        trial.report(value, step)
    return values[-1]


def _optuna_process(path: str, n_trials: int, seed: int) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(path))
    study = optuna.load_study(study_name="b2", storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(_optuna_objective, n_trials=n_trials)


def run_optuna(trials: int, home: str) -> dict[str, Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = os.path.join(home, f"optuna-{time.time_ns()}.log")
    optuna.create_study(study_name="b2", direction="maximize",
                        storage=JournalStorage(JournalFileBackend(path)))
    t0 = time.perf_counter()
    procs = [multiprocessing.Process(target=_optuna_process, args=(path, trials // 2, seed))
             for seed in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    assert all(p.exitcode == 0 for p in procs)
    study = optuna.load_study(study_name="b2", storage=JournalStorage(JournalFileBackend(path)))
    assert len(study.trials) == trials
    return {"seconds": elapsed}


# --- driver -------------------------------------------------------------------------------


def start_daemon() -> tuple[subprocess.Popen[str], str, str]:
    """``nasflow manager --workers 2 --preload torch`` on a free port: (process, url, token),
    once its workers have had time to import torch."""
    token = secrets.token_hex(16)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasflow", "manager", "--workers", "2", "--preload", "torch"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "NASFLOW_TOKEN": token})
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("url: "):
            url = line.split(None, 1)[1].strip()
            break
    else:
        raise RuntimeError("the daemon did not start")
    time.sleep(10)  # its workers import torch (not part of any timed run)
    return proc, url, token


def _variant(name: str, trials: int, daemon: tuple[str, str] | None = None) -> dict[str, Any]:
    """Run one variant in a fresh interpreter and return its JSON line."""
    env = dict(os.environ)
    if name == "optuna_1thread":
        env["OMP_NUM_THREADS"] = "1"
    if name == "nasflow_daemon":
        assert daemon is not None
        env["B2_MANAGER"], env["NASFLOW_TOKEN"] = daemon
    out = subprocess.run(
        [sys.executable, __file__, "--variant", name.split("_")[0], "--trials", str(trials)],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--variant", choices=["nasflow", "optuna"], default=None)
    args = parser.parse_args()
    if args.variant is not None:
        with tempfile.TemporaryDirectory() as home:
            run = run_nasflow if args.variant == "nasflow" else run_optuna
            print(json.dumps(run(args.trials, home)))
        return
    raw: dict[str, list[dict[str, Any]]] = {"nasflow": [], "nasflow_daemon": [], "optuna": [],
                                            "optuna_1thread": []}
    proc, url, token = start_daemon()
    try:
        for _ in range(args.runs):  # alternate so that machine noise hits all alike
            for name in raw:
                raw[name].append(_variant(name, args.trials, (url, token)))
    finally:
        proc.terminate()
        proc.wait(30)
    med = {name: statistics.median(r["seconds"] for r in runs) for name, runs in raw.items()}
    emit("B2", {
        "trials": args.trials,
        "runs": args.runs,
        "seconds_median": {k: round(v, 2) for k, v in med.items()},
        "ratio_nasflow_vs_optuna": round(med["nasflow"] / med["optuna"], 2),
        "ratio_nasflow_vs_optuna_1thread": round(med["nasflow"] / med["optuna_1thread"], 2),
        "ratio_nasflow_daemon_vs_optuna": round(med["nasflow_daemon"] / med["optuna"], 2),
        "ratio_nasflow_daemon_vs_optuna_1thread": round(
            med["nasflow_daemon"] / med["optuna_1thread"], 2),
        "cpus": len(os.sched_getaffinity(0)),
        "event_loop_lag_ms_median_of_runs": {
            key: round(statistics.median(r[key] for r in raw["nasflow"]), 3)
            for key in ("lag_p50_ms", "lag_p99_ms", "lag_max_ms")
        },
        "target": "nasflow <= 0.5x optuna; lag p99 <= 10 ms",
        "raw": {k: [{kk: round(vv, 3) for kk, vv in r.items()} for r in v]
                for k, v in raw.items()},
    })


if __name__ == "__main__":
    main()
