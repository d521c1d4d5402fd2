"""``nasflow run FILE --detach``: a background process owns the experiment, the command
returns with its id, and ``show``/``log``/``stop``/``resume`` work on it (also after a
``kill -9`` of that process)."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import nasflow as nf

from .conftest import Cli, write_search

SLOW = textwrap.dedent("""\
    import os, signal

    SPACE = {"a": nf.Categorical(list(range(100))), "b": nf.Categorical(list(range(100)))}

    async def evaluate(model, trial):
        print(f"trial {trial.id} starts", flush=True)
        await anyio.sleep(0.05)
        if trial.id == KILL_AT and trial.attempt == 0:
            await anyio.sleep(0.2)  # its start is committed by now
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 of the background process
        return trial.sample["a"] * 10 + trial.sample["b"]

    experiment = nf.Experiment(SPACE, evaluate, nf.strategy.Random(seed=1),
                               nf.ExperimentConfig(max_trials=MAX, concurrency=2))
    """)


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Processes a test detached; any still alive at its end is killed."""
    started: list[int] = []
    yield started
    for pid in started:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _gone(pid: int) -> None:
    """Return once process ``pid`` no longer exists (at most 60 s)."""
    for _ in range(600):
        try:
            if "zombie" in Path(f"/proc/{pid}/status").read_text().lower():
                return
        except FileNotFoundError:
            return
        time.sleep(0.1)  # waiting on another process's exit, which nothing announces here
    pytest.fail(f"process {pid} did not exit")


def _detach(cli: Cli, *args: str) -> str:
    out = cli(*args, "--detach")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert "runs in the background" in first and "run.log" in first
    return first.rsplit(" ", 1)[-1]


def test_detach_show_log_and_stop(cli: Cli, tmp_path: Path, home: Path,
                                  pids: list[int]) -> None:
    search = write_search(tmp_path, extra=SLOW.replace("MAX", "100000").replace("KILL_AT", "-1"))
    exp_id = _detach(cli, "run", str(search))
    # the command has returned: the experiment is RUNNING in a process of its own
    (info,) = json.loads(cli("list", "--json").stdout)
    pids.append(info["pid"])
    assert info["id"] == exp_id and info["state"] == "RUNNING"
    assert info["pid"] != os.getpid()
    shown = cli("show", exp_id)
    assert shown.returncode == 0 and "RUNNING" in shown.stdout
    first = cli("log", exp_id, "0", "--follow")  # trial 0 ends while we follow it
    assert first.returncode == 0 and first.stdout == "trial 0 starts\n"

    stop = cli("stop", exp_id, "--wait")
    assert stop.returncode == 0, stop.stderr
    assert f"experiment {exp_id} STOPPED" in stop.stdout
    log = (home / "experiments" / exp_id / "run.log").read_text()
    assert f"experiment {exp_id}" in log.splitlines()[0]  # from its very first line
    assert "experiment STOPPED: stopped with nasflow stop" in log
    assert not list((home / "experiments").glob(".detached-*"))  # moved into run.log


def test_a_detached_run_killed_is_resumed_detached(cli: Cli, tmp_path: Path, home: Path,
                                                    pids: list[int]) -> None:
    search = write_search(tmp_path, extra=SLOW.replace("MAX", "60").replace("KILL_AT", "5"))
    exp_id = _detach(cli, "run", str(search))
    pid = nf.list_experiments()[0].pid
    assert pid is not None
    pids.append(pid)
    # trial 5 kills its process mid-trial: following it returns once the run is gone
    assert cli("log", exp_id, "5", "--follow").returncode == 0
    (info,) = nf.list_experiments()
    assert info.state is nf.ExperimentState.CRASHED and info.trials["RUNNING"] >= 1

    _gone(pid)  # the kernel frees its lock once the process has exited
    # the killed run may stay an unreaped zombie (its parent is gone): still it is dead
    # (tests/faults/test_zombie_owner.py)
    out = cli("resume", exp_id, "--detach")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].rsplit(" ", 1)[-1] == exp_id
    again = nf.list_experiments()[0].pid
    assert again is not None and again != pid
    pids.append(again)
    assert cli("log", exp_id, "59", "--follow").returncode == 0  # the last trial ran
    stop = cli("stop", exp_id, "--wait")  # DONE by now, or stopped on its last trial
    with nf.load_experiment(exp_id) as exp:
        trials = exp.trials()
    assert stop.returncode in (0, 1)
    assert [t.id for t in trials] == list(range(60))
    assert sum(t.state is nf.TrialState.SUCCEEDED for t in trials) >= 59
    log = (home / "experiments" / exp_id / "run.log").read_text()
    assert f"resuming experiment {exp_id} (CRASHED)" in log  # appended to the first run's


def test_a_detached_run_that_cannot_start_says_why(cli: Cli, tmp_path: Path,
                                                    home: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nasflow as nf\n\nnf.Categorical([])\n")
    out = cli("run", str(bad), "--detach")
    assert out.returncode == 1
    assert f'File "{bad}", line 3' in out.stderr
    assert "ended before its experiment started" in out.stderr
    assert not list((home / "experiments").glob(".detached-*"))
