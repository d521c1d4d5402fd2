"""``nasflow dashboard``: a real process serving the page for the experiments on disk."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio

import nasflow as nf


def evaluate(model: Any, trial: nf.Trial) -> float:
    return float(trial.sample["x"])


def test_nasflow_dashboard_prints_its_url_and_serves_the_store(home: Path) -> None:
    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3])}, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, home=str(home)))
    anyio.run(exp.run)
    proc = subprocess.Popen([sys.executable, "-m", "nasflow", "dashboard", exp.id[:4],
                             "--port", "0", "--home", str(home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)#/experiments/(\w+)", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        port, token, opened = match.groups()
        assert opened == exp.id
        base = f"http://127.0.0.1:{port}/api/experiments/{exp.id}/trials"
        with urllib.request.urlopen(f"{base}?token={token}", timeout=30) as res:
            trials = json.loads(res.read())["trials"]
        assert [t["metric"] for t in trials] == [1.0, 2.0, 3.0]
        try:
            urllib.request.urlopen(base, timeout=30)
            raise AssertionError("read without a token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # also closes the pipes


def test_a_bad_port_is_refused() -> None:
    out = subprocess.run([sys.executable, "-m", "nasflow", "dashboard", "--port", "70000"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "a port is 0 (a free one) to 65535, got '70000'" in out.stderr


def test_nasflow_demo_dashboard_serves_the_demo_while_it_runs(home: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "nasflow", "demo", "--dashboard", "--trials",
                          "1", "--epochs", "1", "--plain"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    match = re.search(r"nasflow dashboard: http://127\.0\.0\.1:\d+/\?token=[\w-]+"
                      r"#/experiments/(\w+)", out.stdout)
    assert match, out.stdout
    assert nf.load_experiment(match.group(1), home=home).state is nf.ExperimentState.DONE
