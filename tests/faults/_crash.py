"""A crashed experiment, made the way a user gets one: its process killed (SIGKILL) while a
trial runs. The trial tells the test it is running through a FIFO, never through stdout:
a trial's output goes to its own ``stdout.log``."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

CRASHER = textwrap.dedent("""
    import os, sys, time
    import nasflow as nf

    exp_id, budget, stop_at, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    space = {"a": nf.Categorical(list(range(4))), "b": nf.Categorical(list(range(30)))}

    def evaluate(model, trial):
        trial.report(0.1, step=0)
        # once: a resume may give this id to a fresh trial (the kill can land before the
        # store committed this one), and it runs this (pickled) function again
        if trial.id == stop_at and not os.path.exists(ready + ".crashed"):
            open(ready + ".crashed", "w").close()
            with open(ready, "w") as f:  # a FIFO: blocks until the test reads it
                f.write("ready")
            time.sleep(3600)  # killed here
        trial.report(0.2, step=1)
        return float(trial.sample["a"] * 30 + trial.sample["b"])

    exp = nf.Experiment(space, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=budget), id=exp_id)
    nf.run(exp)
""")


def crash_experiment(tmp_path: Path, home: Path, exp_id: str, *, budget: int = 12,
                     stop_at: int = 4) -> Path:
    """Run experiment ``exp_id`` (a grid search of ``budget`` trials, one at a time) in a
    subprocess and SIGKILL it while trial ``stop_at`` runs; returns its directory."""
    script, ready = tmp_path / f"crash-{exp_id}.py", tmp_path / f"ready-{exp_id}"
    script.write_text(CRASHER)
    os.mkfifo(ready)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, str(script), exp_id, str(budget), str(stop_at),
                             str(ready)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        got = read_fifo(ready, proc)
        assert got == "ready", proc.communicate(timeout=60)[1].decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    return home / "experiments" / exp_id


def read_fifo(path: Path, proc: subprocess.Popen[bytes], bound: float = 120.0) -> str:
    """What a process writes into the FIFO ``path`` (once it closes it), or ``""`` if the
    process ends first or ``bound`` seconds pass (a hang, not a timing: tests never reach
    it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks on a writer that died
    chunks: list[bytes] = []
    waited = 0.0
    try:
        while waited < bound:
            readable, _, _ = select.select([fd], [], [], 1.0)
            if not readable:
                waited += 1.0
                if proc.poll() is not None:
                    return b"".join(chunks).decode()
                continue
            data = os.read(fd, 4096)
            if not data:  # the writer closed it
                if chunks:
                    return b"".join(chunks).decode()
                if proc.poll() is not None:
                    return ""
                continue
            chunks.append(data)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)
