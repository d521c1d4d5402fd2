"""``nasflow update`` and ``nasflow trial kill`` against an experiment running in another
process; the changes are recorded, listed by ``nasflow show``, and kept by a resume after
``kill -9`` of the experiment's process."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import nasflow as nf

from .conftest import Cli, read_id, wait_for_trial_line, write_search

Spawn = Callable[..., subprocess.Popen[str]]


def test_update_and_kill_from_another_process_survive_kill_9_and_resume(
        spawn: Spawn, cli: Cli, tmp_path: Path) -> None:
    # the file's budget (10,000) is never reached: the space has 100 samples, and the
    # update makes it 95
    search = write_search(tmp_path, sleep=0.3, max_trials=10_000, concurrency=1)
    proc = spawn("run", str(search), "--plain")
    exp_id = read_id(proc)
    wait_for_trial_line(proc)

    refused = cli("update", exp_id, "--concurrency", "0")
    assert refused.returncode == 1 and "concurrency must be" in refused.stderr
    unknown = cli("trial", "kill", exp_id, "9999")
    assert unknown.returncode == 1 and "has no trial 9999" in unknown.stderr
    done = cli("update", exp_id, "--concurrency", "3", "--max-trials", "95")
    assert done.returncode == 0, done.stderr
    assert "concurrency 1 -> 3" in done.stdout and "max_trials 10000 -> 95" in done.stdout
    killed = cli("trial", "kill", exp_id, "0")  # ended long ago: a no-op with a message
    assert killed.returncode == 0 and "already ended" in killed.stdout

    proc.send_signal(signal.SIGKILL)  # kill -9: nothing is saved on the way out
    proc.wait()
    shown = cli("show", exp_id)
    assert shown.returncode == 0
    assert "update by cli: concurrency 1 -> 3, max_trials 10000 -> 95" in shown.stdout
    assert "kill by cli: trial 0 had already ended" in shown.stdout

    out = cli("resume", exp_id, "--plain")
    assert out.returncode == 0, out.stderr
    info = json.loads(cli("show", exp_id, "--json").stdout)
    assert info["config"]["concurrency"] == 3 and info["config"]["max_trials"] == 95
    assert [c["op"] for c in info["changes"]] == ["update", "kill"]  # the refused: none
    with nf.load_experiment(exp_id) as exp:
        assert exp.state is nf.ExperimentState.DONE
        assert len(exp.trials()) == 95  # the updated budget held after the resume
