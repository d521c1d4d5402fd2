"""Fixtures for the ``nasflow`` command: run it for real (``python -m nasflow`` in a
subprocess, with the test's ``NASFLOW_HOME``), experiments to look at, experiment files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nasflow as nf

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 90  # seconds any one command may take before the test fails (never hangs)

SPACE = {"a": nf.Categorical([0, 1, 2, 3]), "op": nf.Categorical(["conv", "pool", "skip"])}


def score(sample: dict[str, Any]) -> float:
    return float(sample["a"]) + {"conv": 0.5, "pool": 0.25, "skip": 0.0}[sample["op"]]


def evaluate(model: None, trial: nf.Trial) -> float:
    if trial.sample["op"] == "skip" and trial.sample["a"] == 3:
        raise ValueError("skip needs a < 3")
    trial.report(score(trial.sample) / 2, step=0)
    return score(trial.sample)


Cli = Callable[..., subprocess.CompletedProcess[str]]


def env_for(home: Path) -> dict[str, str]:
    """The environment of a subprocess: the test's home, no terminal width surprises."""
    return {**os.environ, "NASFLOW_HOME": str(home), "COLUMNS": "200"}


@pytest.fixture
def cli(home: Path) -> Cli:
    """``cli("list", "--json")``: run ``nasflow`` to completion; returns the result."""

    def run(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nasflow", *args], capture_output=True,
                              text=True, timeout=timeout, env=env_for(home), cwd=ROOT)

    return run


@pytest.fixture
def spawn(home: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """``spawn("run", file)``: start ``nasflow`` in the background (stdout as a pipe).
    A watchdog kills it after ``TIMEOUT`` seconds, so a blocked ``readline`` ends; whatever
    still runs at the end of the test is killed."""
    procs: list[tuple[subprocess.Popen[str], threading.Timer]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "nasflow", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env_for(home), cwd=ROOT)
        watchdog = threading.Timer(TIMEOUT, proc.kill)
        watchdog.start()
        procs.append((proc, watchdog))
        return proc

    yield start
    for proc, watchdog in procs:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


@pytest.fixture
def finished() -> str:
    """A finished experiment (12 trials: grid order, one FAILED); returns its id."""
    exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=12), name="grid")
    nf.run(exp)
    return exp.id


def write_search(directory: Path, *, sleep: float = 0.2, max_trials: int = 20,
                 concurrency: int = 2, extra: str = "") -> Path:
    """A search file for ``nasflow run``: a torch-free space, an async evaluator that
    sleeps ``sleep`` seconds per trial, then ``extra`` (code that may redefine them), and
    a main block that must not run."""
    path = directory / "search.py"
    path.write_text(textwrap.dedent(f"""\
        import anyio
        import nasflow as nf

        SPACE = {{"a": nf.Categorical(list(range(10))), "b": nf.Categorical(list(range(10)))}}


        async def evaluate(model, trial):
            await anyio.sleep({sleep})
            return trial.sample["a"] * 10 + trial.sample["b"]


        experiment = nf.Experiment(
            SPACE, evaluate, nf.strategy.Random(seed=1),
            nf.ExperimentConfig(max_trials={max_trials}, concurrency={concurrency}))
        """) + extra + textwrap.dedent("""

        if __name__ == "__main__":
            print("THE MAIN BLOCK RAN")
            nf.run(experiment)
        """))
    return path


def read_id(proc: subprocess.Popen[str]) -> str:
    """The experiment id from the first line ``nasflow run``/``resume`` prints."""
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "experiment" in first, first
    return first.strip().rsplit(" ", 1)[-1]


def wait_for_trial_line(proc: subprocess.Popen[str]) -> str:
    """Block until ``--plain`` progress printed a finished trial: the search runs."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("trial"), line
    return line
