"""``nasflow log``, ``nasflow delete`` and ``nasflow export --intermediate``: a trial's
captured output (also followed while it runs), deleting an experiment (never a running
one), and the intermediate metrics as CSV/JSON."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import nasflow as nf

from .conftest import TIMEOUT, Cli, read_id, wait_for_trial_line, write_search

Spawn = Callable[..., subprocess.Popen[str]]

SPACE = {"a": nf.Categorical([0, 1, 2])}


def printing(model: None, trial: nf.Trial) -> dict[str, float] | float:
    print(f"trial {trial.id} says hello")
    print(f"trial {trial.id} warns", file=__import__("sys").stderr)
    for step in range(3):
        if trial.sample["a"] == 2:
            trial.report({"default": step / 10, "loss": 1 - step / 10}, step=step)
        else:
            trial.report(step + trial.sample["a"], step=step)
    return float(trial.sample["a"])


def _finished(service: str = "inprocess") -> str:
    exp = nf.Experiment(SPACE, printing, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, training_service=service))
    nf.run(exp)
    return exp.id


@pytest.mark.parametrize("service", ["inprocess", "local"])
def test_log_prints_a_trials_stdout_or_stderr(cli: Cli, service: str) -> None:
    exp_id = _finished(service)  # local: printed in a worker process
    out = cli("log", exp_id, "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "trial 1 says hello\n"
    err = cli("log", exp_id[:4], "2", "--stderr")
    assert err.returncode == 0 and err.stdout == "trial 2 warns\n"
    missing = cli("log", exp_id, "7")
    assert missing.returncode == 1
    assert f"experiment {exp_id} has no trial 7 (its trials are 0..2" in missing.stderr
    assert cli("log", "nope", "1").returncode == 1


def test_log_follow_tails_a_running_trial_until_it_ends(spawn: Spawn, cli: Cli,
                                                        tmp_path: Path) -> None:
    extra = textwrap.dedent("""\
        async def evaluate(model, trial):
            for i in range(5):
                print(f"line {i} of trial {trial.id}", flush=True)
                await anyio.sleep(0.1)
            print("the end", flush=True)
            return 1.0

        experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                                   nf.ExperimentConfig(max_trials=4, concurrency=1))
        """)
    proc = spawn("run", str(write_search(tmp_path, extra=extra)), "--plain")
    exp_id = read_id(proc)
    # trial 3 does not exist yet: --follow waits for it, then tails it to its end
    out = cli("log", exp_id, "3", "--follow")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "".join(f"line {i} of trial 3\n" for i in range(5)) + "the end\n"
    with nf.load_experiment(exp_id) as exp:
        assert exp.trials()[3].state.finished  # it returned once the trial had ended
    proc.communicate(timeout=TIMEOUT)
    late = cli("log", exp_id, "9", "--follow")  # never submitted: the run ended
    assert late.returncode == 1 and "has no trial 9" in late.stderr


def test_delete_removes_the_experiment_and_refuses_a_running_one(spawn: Spawn, cli: Cli,
                                                                tmp_path: Path,
                                                                home: Path) -> None:
    done = _finished()
    asked = cli("delete", done)  # not a terminal: --yes is required, nothing removed
    assert asked.returncode == 1 and "needs --yes" in asked.stderr
    assert (home / "experiments" / done).is_dir()

    proc = spawn("run", str(write_search(tmp_path, max_trials=10_000)), "--plain")
    running = read_id(proc)
    wait_for_trial_line(proc)
    refused = cli("delete", running, "--yes")
    assert refused.returncode == 1 and "is RUNNING" in refused.stderr
    assert "nasflow stop" in refused.stderr
    assert json.loads(cli("list", "--json").stdout)[-1]["state"] == "RUNNING"

    out = cli("delete", done, "--yes")
    assert out.returncode == 0, out.stderr
    assert f"deleted experiment {done}" in out.stdout
    assert not (home / "experiments" / done).exists()
    assert [i["id"] for i in json.loads(cli("list", "--json").stdout)] == [running]
    assert cli("show", done).returncode == 1

    assert cli("stop", running, "--wait").returncode == 0
    proc.communicate(timeout=TIMEOUT)
    assert cli("delete", running, "-y").returncode == 0  # stopped: it may go now
    assert json.loads(cli("list", "--json").stdout) == []
    assert sorted(p.name for p in (home / "experiments").iterdir()) == []


def test_export_intermediate_metrics_as_csv_and_json(cli: Cli) -> None:
    exp_id = _finished()
    out = cli("export", exp_id, "--intermediate", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0]) == ["trial_id", "attempt", "step", "time", "value", "default",
                            "loss"]
    assert [(r["trial_id"], r["step"]) for r in rows] == [
        (str(t), str(s)) for t in range(3) for s in range(3)]
    assert [float(r["value"]) for r in rows[:6]] == [0, 1, 2, 1, 2, 3]
    assert rows[7]["value"] == "" and float(rows[7]["default"]) == 0.1
    assert float(rows[8]["loss"]) == 0.8 and all(float(r["time"]) > 0 for r in rows)
    assert cli("export", exp_id, "--intermediate").stdout == out.stdout  # csv by default

    data = json.loads(cli("export", exp_id, "--intermediate", "--json").stdout)
    assert data[0] == {"trial_id": 0, "attempt": 0, "step": 0, "time": data[0]["time"],
                       "value": 0}
    assert data[8]["value"] == {"default": 0.2, "loss": 0.8}

    wrong = cli("export", exp_id, "--intermediate", "--format", "code", "-o", "x")
    assert wrong.returncode == 2 and "--format csv" in wrong.stderr
    no_curves = cli("export", exp_id, "--format", "csv")
    assert no_curves.returncode == 2 and "nasflow trials ID --csv" in no_curves.stderr
    assert cli("export", exp_id, "--format", "json").returncode == 0  # unchanged
