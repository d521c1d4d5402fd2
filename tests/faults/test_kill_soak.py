"""A bounded soak: kill -9 at random moments across in-process, local-worker and daemon
runs of a checkpointing search, each resumed to its end (issue 10).

Asserts 0 completed trials lost (each keeps its metric and attempt from the moment it is
first seen SUCCEEDED), 0 doubled (continuous ids, unique architectures, no completed
trial run again) and 0 foreign checkpoints (``load_checkpoint()`` never returns another
trial's or another sample's object).

``NASFLOW_KILL_SOAK`` kills (default 3: one per kind of run, for CI); the full count for
``docs/benchmarks.md`` is ``NASFLOW_KILL_SOAK=20 PYTHONPATH=src .venv/bin/python -m
pytest -q -s tests/faults/test_kill_soak.py``. ``NASFLOW_KILL_SEED`` picks the moments.
A process says it is ready through a FIFO written by the experiment's own process (a
trial's stdout goes to its ``stdout.log``, not to the test).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tests.faults._crash import read_fifo

import nasflow as nf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "manager"))
from _mgr_helpers import free_port


def _budget(kills: int) -> int:
    """Trials per kind of run: enough that every kill lands before the search ends."""
    return 8 + 6 * kills

SEARCH = textwrap.dedent("""
    import os, sys, time
    import nasflow as nf

    mode, kind, exp_id, budget, ready, log, foreign = sys.argv[1:8]
    manager = os.environ.get("SOAK_MANAGER")

    def evaluate(model, trial):
        state = trial.load_checkpoint()
        if state is not None and (state["id"], state["sample"]) != (trial.id, trial.sample):
            with open(foreign, "a") as f:
                f.write(f"{trial.id} {trial.sample} got {state}\\n")
        with open(log, "a") as f:
            f.write(f"start {trial.id} {trial.attempt}\\n")
        for step in range(state["step"] if state else 0, 4):
            time.sleep(0.05)  # the work
            trial.report(step / 10, step=step)
            trial.save_checkpoint({"id": trial.id, "sample": trial.sample,
                                   "step": step + 1}, step=step)
        return float(trial.sample["a"] * 20 + trial.sample["b"])

    if mode == "new":
        config = {"inprocess": nf.ExperimentConfig(max_trials=int(budget), concurrency=2),
                  "local": nf.ExperimentConfig(max_trials=int(budget), concurrency=2,
                                               training_service="local"),
                  "daemon": nf.ExperimentConfig(max_trials=int(budget), concurrency=2,
                                                manager=manager)}[kind]
        space = {"a": nf.Categorical(list(range(20))), "b": nf.Categorical(list(range(20)))}
        exp = nf.Experiment(space, evaluate, nf.strategy.Random(seed=3), config, id=exp_id)
    else:
        exp = nf.Experiment.restore(exp_id, evaluator=evaluate)
    with open(ready, "w") as f:  # a FIFO: the test reads it, then picks its moment
        f.write("ready")
    nf.run(exp)
""")

KINDS = ("inprocess", "local", "daemon")


def _kills() -> int:
    return int(os.environ.get("NASFLOW_KILL_SOAK", "3"))


@pytest.mark.slow
def test_kill_9_soak_loses_doubles_and_crosses_nothing(tmp_path: Path, home: Path) -> None:
    kills = _kills()
    rng = random.Random(int(os.environ.get("NASFLOW_KILL_SEED", "2026")))
    script = tmp_path / "search.py"
    script.write_text(SEARCH)
    token, port = "soak-token", free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "nasflow.manager", "--port", str(port), f"--token={token}",
         "--workers", "2", "--log-dir", str(tmp_path / "daemon-logs")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    env = {**os.environ, "NASFLOW_HOME": str(home), "NASFLOW_TOKEN": token,
           "SOAK_MANAGER": f"ws://127.0.0.1:{port}"}
    began = time.monotonic()
    figures = {"kills": 0, "landed": 0, "mid_trial": 0, "restarts": 0, "trials": 0}
    try:
        assert daemon.stdout is not None
        for line in daemon.stdout:  # it prints its URL once it listens
            if "url: " in line:
                break
        plan = [KINDS[i % len(KINDS)] for i in range(kills)]
        for kind in KINDS:
            figures_kind = _soak_one(kind, plan.count(kind), script, tmp_path, home, env, rng)
            for k, v in figures_kind.items():
                figures[k] += v
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        assert daemon.stdout is not None
        daemon.stdout.close()
    assert figures["kills"] == kills
    print(f"\nkill -9 soak: {figures['kills']} kills ({figures['landed']} on a live run, "
          f"{figures['mid_trial']} with trials in flight in the store), "
          f"{figures['restarts']} restarts (resumes), {figures['trials']} trials checked: "
          f"0 lost, 0 doubled, 0 foreign checkpoints in {time.monotonic() - began:.0f} s")


def _soak_one(kind: str, kills: int, script: Path, tmp_path: Path, home: Path,
              env: dict[str, str], rng: random.Random) -> dict[str, int]:
    exp_id = f"soak-{kind}"
    db = home / "experiments" / exp_id / "experiment.db"
    log, foreign = tmp_path / f"{kind}.log", tmp_path / f"{kind}.foreign"
    completed: dict[int, tuple[float | None, int]] = {}
    budget = _budget(kills)
    figures = {"kills": 0, "landed": 0, "mid_trial": 0, "restarts": 0, "trials": budget}
    for round_ in range(kills + 1):
        mode = "resume" if db.exists() else "new"
        figures["restarts"] += mode == "resume"
        ready = tmp_path / f"ready-{kind}-{round_}"
        os.mkfifo(ready)
        proc = subprocess.Popen([sys.executable, str(script), mode, kind, exp_id,
                                 str(budget), str(ready), str(log), str(foreign)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert read_fifo(ready, proc) == "ready", proc.communicate(timeout=60)[1][-2000:]
            if round_ < kills:
                time.sleep(rng.uniform(0.2, 2.5))  # a random moment of the run
                proc.send_signal(signal.SIGKILL)
                figures["kills"] += 1
            _, err = proc.communicate(timeout=300)
            figures["landed"] += proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if round_ == kills:
            assert proc.returncode == 0, err.decode()[-3000:]
        if not db.exists():
            continue  # killed before the store existed: the next round starts anew
        with nf.load_experiment(exp_id) as exp:
            trials = exp.trials()
        if round_ < kills and any(not t.state.finished for t in trials):
            figures["mid_trial"] += 1
        for t in trials:
            if t.state is nf.TrialState.SUCCEEDED:
                if t.id in completed:  # kept exactly as it was: not lost, never re-run
                    assert (t.metric, t.attempt) == completed[t.id], (kind, t)
                else:
                    completed[t.id] = (t.metric, t.attempt)
    with nf.load_experiment(exp_id) as exp:
        final = exp.trials()
        assert exp.state is nf.ExperimentState.DONE, kind
    assert [t.id for t in final] == list(range(budget)), kind  # nothing lost or doubled
    assert all(t.state is nf.TrialState.SUCCEEDED for t in final), (kind, final)
    assert len({t.hash for t in final}) == budget, kind
    starts = [tuple(map(int, line.split()[1:])) for line in log.read_text().splitlines()]
    for trial_id, (_, attempt) in completed.items():
        later = [a for i, a in starts if i == trial_id and a > attempt]
        assert not later, f"{kind}: completed trial {trial_id} ran again: attempts {later}"
    assert not foreign.exists(), foreign.read_text()
    return figures
