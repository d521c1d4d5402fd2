"""A killed owner that nobody has reaped yet is dead (the detached-resume flake).

``nasflow run --detach`` starts the run in a new session; once its launcher exits, the
run's parent is whatever reaps orphans, and in a container that may be late or never. A
run killed with SIGKILL then stays a zombie: ``kill(pid, 0)`` succeeds and its start time
is unchanged, so ``resume`` said "still running" although the run's lock was free (about
1 CI run in 5 failed tests/cli/test_detach.py on it).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
from tests.faults._crash import crash_experiment

import nasflow as nf
from nasflow._persist import owner_alive, process_start_time


def _zombie() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGKILL)
    # not reaped (no wait): it stays a zombie until the test's end; wait for the kill
    while "zombie" not in Path(f"/proc/{proc.pid}/status").read_text().lower():
        pass
    return proc


def test_an_unreaped_killed_owner_is_not_alive() -> None:
    proc = _zombie()
    try:
        assert owner_alive(proc.pid, process_start_time(proc.pid), None) is False
    finally:
        proc.wait()


def test_resume_takes_over_from_an_unreaped_killed_owner(tmp_path: Path, home: Path) -> None:
    directory = crash_experiment(tmp_path, home, "zombie")
    proc = _zombie()
    try:
        with sqlite3.connect(directory / "experiment.db") as conn:  # the owner: the zombie
            for key, value in (("pid", proc.pid), ("pid_start", process_start_time(proc.pid))):
                conn.execute("UPDATE meta SET value = ? WHERE key = ?",
                             (orjson.dumps(value).decode(), key))
        assert nf.load_experiment("zombie").state is nf.ExperimentState.CRASHED
        exp = nf.Experiment.restore("zombie")
        nf.run(exp)
        assert nf.load_experiment("zombie").state is nf.ExperimentState.DONE
    finally:
        proc.wait()
