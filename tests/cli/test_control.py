"""``nasflow run / stop / resume``: a file runs as a config, signals stop it gracefully,
another process can read and stop it, and resume completes what was stopped or killed."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import nasflow as nf
from nasflow.cli._loadfile import ExperimentFileError, load_experiment_file

from .conftest import TIMEOUT, Cli, read_id, wait_for_trial_line, write_search

Spawn = Callable[..., subprocess.Popen[str]]


def test_run_a_file_end_to_end_with_overrides(cli: Cli, tmp_path: Path) -> None:
    search = write_search(tmp_path, sleep=0.01, max_trials=50)
    out = cli("run", str(search), "--max-trials", "5", "--concurrency", "2", "--name", "toy",
              "--plain")
    assert out.returncode == 0, out.stderr
    assert "THE MAIN BLOCK RAN" not in out.stdout  # loaded as a config, not as __main__
    exp_id = out.stdout.splitlines()[0].rsplit(" ", 1)[-1]
    assert "max_trials=5, 2 at a time" in out.stdout.splitlines()[0]
    assert out.stdout.count("SUCCEEDED") >= 5 and "best 3 architectures" in out.stdout
    (info,) = nf.list_experiments()
    assert info.id == exp_id and info.name == "toy" and info.state is nf.ExperimentState.DONE
    assert info.total == 5 and info.trials["SUCCEEDED"] == 5

    again = cli("run", str(search), "--id", exp_id, "--quiet")
    assert again.returncode == 1 and "already exists" in again.stderr


def test_the_experiment_is_found_or_the_error_says_what_to_define(tmp_path: Path) -> None:
    def file(name: str, body: str) -> str:
        path = tmp_path / name
        path.write_text("import nasflow as nf\n"
                        "SPACE = {'a': nf.Categorical([1, 2])}\n"
                        "def ev(model, trial):\n    return 1.0\n" + textwrap.dedent(body))
        return str(path)

    one = file("one.py", "mine = nf.Experiment(SPACE, ev, nf.strategy.Random())\n")
    assert load_experiment_file(one).search_space.labels == ["a"]
    made = file("made.py", "def make_experiment(trials=3):\n"
                           "    return nf.Experiment(SPACE, ev, nf.strategy.Random(), "
                           "nf.ExperimentConfig(max_trials=trials))\n")
    assert load_experiment_file(made).config.max_trials == 3
    two = file("two.py", "x = nf.Experiment(SPACE, ev, nf.strategy.Random())\n"
                         "y = nf.Experiment(SPACE, ev, nf.strategy.GridSearch())\n")
    with pytest.raises(ExperimentFileError, match=r"2 experiments \(x, y\).*--experiment"):
        load_experiment_file(two)
    assert isinstance(load_experiment_file(two, "y").strategy, nf.strategy.GridSearch)

    cases = {
        "none.py": ("width = 3\n", r"defines no nf.Experiment \(its top-level names: .*width"),
        "wrong.py": ("experiment = 42\n", r"`experiment` is a int, not an nf.Experiment"),
        "args.py": ("def make_experiment(n):\n    pass\n", r"needs arguments"),
        "raises.py": ("raise RuntimeError('boom')\n", r"raised RuntimeError .*: boom"),
        "exits.py": ("import sys\nsys.exit(3)\n", r"sys.exit\(3\)"),
    }
    for name, (body, message) in cases.items():
        with pytest.raises(ExperimentFileError, match=message):
            load_experiment_file(file(name, body))
    with pytest.raises(ExperimentFileError, match="no such file"):
        load_experiment_file(str(tmp_path / "missing.py"))


def test_run_errors_exit_1_with_the_traceback_of_the_file(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nasflow as nf\n\nnf.Categorical([])\n")
    out = cli("run", str(bad))
    assert out.returncode == 1
    assert f'File "{bad}", line 3' in out.stderr and "error:" in out.stderr
    assert "runpy" not in out.stderr  # the file's frames, not ours


def test_sigint_stops_run_and_resume_completes_it(spawn: Spawn, cli: Cli,
                                                  tmp_path: Path) -> None:
    search = write_search(tmp_path, sleep=0.2, max_trials=16, concurrency=2)
    proc = spawn("run", str(search), "--plain")
    exp_id = read_id(proc)
    wait_for_trial_line(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "SIGINT: stopping" in err
    with nf.load_experiment(exp_id) as exp:
        assert exp.state is nf.ExperimentState.STOPPED
        before = {t.id: t for t in exp.trials()}
    canceled = [t for t in before.values() if t.state is nf.TrialState.CANCELED]
    assert canceled and all(t.error is not None and t.error.type == "Interrupted"
                            for t in canceled)
    done = {i: t for i, t in before.items() if t.state is nf.TrialState.SUCCEEDED}

    out = cli("resume", exp_id, "--plain")
    assert out.returncode == 0, out.stderr
    assert f"resuming experiment {exp_id} (STOPPED)" in out.stdout
    assert f"{len(canceled)} interrupted to run again" in out.stdout
    with nf.load_experiment(exp_id) as exp:
        assert exp.state is nf.ExperimentState.DONE
        after = {t.id: t for t in exp.trials()}
    assert sorted(after) == list(range(16))  # ids continue, the budget holds
    assert all(t.state is nf.TrialState.SUCCEEDED for t in after.values())
    for i, t in done.items():  # kept as they were, never run again
        assert after[i].attempt == 0 and after[i].ended_at == t.ended_at
    assert all(after[t.id].attempt == 1 for t in canceled)  # run again, same id
    assert cli("resume", exp_id).stdout.startswith(f"experiment {exp_id} is DONE")


def test_stop_from_another_process_while_reading_it(spawn: Spawn, cli: Cli,
                                                    tmp_path: Path) -> None:
    search = write_search(tmp_path, sleep=0.2, max_trials=10_000, concurrency=2)
    # (far more than it can run: only the stop ends it, however slow the CLI calls are)
    proc = spawn("run", str(search), "--plain")
    exp_id = read_id(proc)
    wait_for_trial_line(proc)

    seen = []  # the CLI reads the database while the run writes it
    for _ in range(3):
        (info,) = json.loads(cli("list", "--json").stdout)
        assert info["state"] == "RUNNING" and info["id"] == exp_id
        trials = json.loads(cli("trials", exp_id, "--json").stdout)
        assert all(t["trial_id"] == i for i, t in enumerate(trials))
        seen.append(sum(t["state"] == "SUCCEEDED" for t in trials))
    assert seen == sorted(seen) and seen[-1] > 0
    shown = cli("show", exp_id)
    assert shown.returncode == 0 and "RUNNING" in shown.stdout

    stop = cli("stop", exp_id[:5], "--wait")
    assert stop.returncode == 0, stop.stderr
    assert f"experiment {exp_id} STOPPED (stopped with nasflow stop)" in stop.stdout
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err  # a requested stop is a clean end for the run
    assert "experiment STOPPED: stopped with nasflow stop" in out
    with nf.load_experiment(exp_id) as exp:
        assert exp.state is nf.ExperimentState.STOPPED
        states = {t.state for t in exp.trials()}
    assert states <= {nf.TrialState.SUCCEEDED, nf.TrialState.CANCELED}
    again = cli("stop", exp_id)
    assert again.returncode == 1 and "not running (STOPPED)" in again.stderr
    assert cli("stop", "--all").stdout.strip() == "no running experiments"


def test_a_killed_run_is_crashed_then_resumed(cli: Cli, tmp_path: Path) -> None:
    extra = textwrap.dedent("""\
        import os, signal

        async def evaluate(model, trial):
            await anyio.sleep(0.02)
            if trial.id == 5 and trial.attempt == 0:
                await anyio.sleep(0.2)  # its start is committed by now (within 50 ms)
                os.kill(os.getpid(), signal.SIGKILL)  # the machine went away mid-trial
            return trial.sample["a"] * 10 + trial.sample["b"]

        experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                                   nf.ExperimentConfig(max_trials=10, concurrency=2))
        """)
    search = write_search(tmp_path, extra=extra)
    out = cli("run", str(search), "--plain")
    assert out.returncode == -signal.SIGKILL
    exp_id = out.stdout.splitlines()[0].rsplit(" ", 1)[-1]
    (info,) = json.loads(cli("list", "--json").stdout)
    assert info["state"] == "CRASHED" and info["trials"]["RUNNING"] >= 1  # trial 5

    resumed = cli("resume", exp_id, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming experiment {exp_id} (CRASHED)" in resumed.stdout
    trials = json.loads(cli("trials", exp_id, "--json").stdout)
    assert [t["trial_id"] for t in trials] == list(range(10))
    assert all(t["state"] == "SUCCEEDED" for t in trials), trials
    assert trials[5]["attempt"] == 1  # the trial in flight ran again under its id
    (info,) = nf.list_experiments()
    assert info.state is nf.ExperimentState.DONE and info.resumed == 1
