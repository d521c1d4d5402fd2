"""The CLI's progress view and its graceful stop on signals."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import nasflow as nf
from nasflow.cli._progress import ProgressView

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("live", [True, False])
async def test_progress_view_renders_a_run(live: bool) -> None:
    async def evaluate(model: None, trial: nf.Trial) -> float:
        trial.report(0.1)
        if trial.sample["x"] == 3:
            raise ValueError("bad x")
        return float(trial.sample["x"])

    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, evaluate, nf.strategy.GridSearch())
    out = io.StringIO()
    view = ProgressView(total=3, out=out, live=live)
    events = exp.events()
    async with anyio.create_task_group() as tg:
        tg.start_soon(view.run, events)
        await exp.run()
    text = out.getvalue()
    assert view.best is not None and view.best.metric == 2.0
    assert "SUCCEEDED" in text and "FAILED" in text
    assert "3/3 done" in text


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_demo_gracefully(signum: int, home: Path) -> None:
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nasflow", "demo", "--trials", "40", "--epochs", "6", "--plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "searching ... experiment <id>"
    exp_id = first.strip().rsplit(" ", 1)[-1]
    proc.stdout.readline()  # a trial finished: the search is under way
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
    assert "stopping" in err
    with nf.load_experiment(exp_id) as exp:
        assert exp.state is nf.ExperimentState.STOPPED
        states = {t.state for t in exp.trials()}
        assert nf.TrialState.CANCELED in states
        assert states <= {nf.TrialState.SUCCEEDED, nf.TrialState.CANCELED}
