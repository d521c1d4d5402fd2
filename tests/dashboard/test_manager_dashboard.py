"""``nasflow manager --dashboard``: a real daemon subprocess serves the page of the
experiments that attach to it, and only those."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nasflow as nf

from .test_browser import wait_for


class _Daemon:
    def __init__(self, home: Path) -> None:
        self.token = "test-manager-token"
        env = {**os.environ, "NASFLOW_HOME": str(home)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nasflow.manager", "--workers", "2", "--dashboard",
             f"--token={self.token}"], stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        self.url = self.page = ""
        for line in self.process.stdout:  # ends if the daemon dies: then the asserts fail
            if line.startswith("url: "):
                self.url = line.split()[1]
            if line.startswith("dashboard: "):
                self.page = line.split()[1]
                break
        assert self.url.startswith("ws://127.0.0.1:"), self.url
        assert self.page.startswith("http://127.0.0.1:"), self.page
        self.base, _, query = self.page.partition("/?")
        self.board_token = query.removeprefix("token=")

    def get(self, path: str, *, token: str | None = None) -> tuple[int, Any]:
        req = urllib.request.Request(
            self.base + path, headers={"X-Nasflow-Token": token or self.board_token})
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def close(self) -> None:
        self.process.terminate()  # SIGTERM: a restart hand-over; nothing runs by now
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def daemon(home: Path) -> Iterator[_Daemon]:
    d = _Daemon(home)
    try:
        yield d
    finally:
        d.close()


def _search(home: Path, manager: str | None = None, token: str | None = None
            ) -> nf.Experiment:
    def evaluate(model: Any, trial: nf.Trial) -> float:
        trial.report(trial.sample["x"] / 2, step=0)
        return float(trial.sample["x"])

    config = nf.ExperimentConfig(max_trials=4, home=str(home),
                                 **({"manager": manager, "token": token, "concurrency": 2}
                                    if manager else {}))
    return nf.Experiment({"x": nf.Categorical([1, 2, 3, 4])}, evaluate,
                         nf.strategy.GridSearch(), config)


def test_the_daemon_serves_the_page_of_its_experiments(home: Path, daemon: _Daemon,
                                                       browser: Any) -> None:
    other = nf.run(_search(home))  # in the same NASFLOW_HOME, but not run by the daemon
    status, body = daemon.get("/api/experiments")
    assert status == 200 and body["experiments"] == []
    assert daemon.get("/api/experiments", token="wrong")[0] == 403

    browser.get(daemon.page)
    wait_for(browser, "#no-experiments")
    browser.execute_script("window.__notReloaded = true;")
    exp = nf.run(_search(home, daemon.url, daemon.token))
    assert exp.state is nf.ExperimentState.DONE
    # the page learnt of it without a reload (pushed when it attached to the daemon)
    wait_for(browser, f"tr.exp-row[data-id='{exp.id}'] .state", "DONE")
    wait_for(browser, f"tr.exp-row[data-id='{exp.id}'] .progress", "4 / 4")
    assert browser.execute_script("return window.__notReloaded === true;")

    status, body = daemon.get("/api/experiments")
    assert [e["id"] for e in body["experiments"]] == [exp.id]
    assert body["experiments"][0]["state"] == "DONE"
    status, body = daemon.get(f"/api/experiments/{exp.id}/trials")
    assert sorted(t["metric"] for t in body["trials"]) == [1.0, 2.0, 3.0, 4.0]
    assert daemon.get(f"/api/experiments/{other.id}")[0] == 404
