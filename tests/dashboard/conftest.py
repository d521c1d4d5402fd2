"""A real experiment served by a real dashboard, driven from synchronous test code.

``LiveSearch`` runs an experiment and a ``Dashboard`` on an event loop in a background
thread (an anyio blocking portal). Its evaluator reports three intermediate metrics, then
waits until the test releases that trial, so a test decides when each trial finishes.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest

import nasflow as nf
from nasflow.dashboard import Dashboard
from nasflow.events import TrialStarted

VALUES = [1, 2, 3, 4, 5, 6]


class LiveSearch:
    """An experiment over ``x`` in ``VALUES`` (metric ``x``), two trials at a time."""

    def __init__(self, home: Path, portal: anyio.from_thread.BlockingPortal, *,
                 attach: bool = True, read_token: bool = True) -> None:
        self.gates = {x: threading.Event() for x in VALUES}
        self.portal = portal
        self.exp = nf.Experiment({"x": nf.Categorical(VALUES)}, self._evaluate,
                                 nf.strategy.GridSearch(),
                                 nf.ExperimentConfig(max_trials=len(VALUES), concurrency=2,
                                                     home=str(home)))
        # attach=False: the dashboard sees the experiment only as a directory, as if another
        # process ran it, and follows it through its control endpoint
        self.board = Dashboard(*([self.exp] if attach else []), home=home,
                               read_token=read_token)
        self.started = threading.Event()
        self.run = portal.start_task_soon(self._run)
        self.started.wait(60)
        self._board_cm = portal.wrap_async_context_manager(self.board)
        self._board_cm.__enter__()

    async def _run(self) -> None:
        async with self.exp.events() as events, anyio.create_task_group() as tg:
            tg.start_soon(self.exp.run)
            async for event in events:
                if isinstance(event, TrialStarted):
                    break  # the store and the control endpoint are up
            self.started.set()

    def _evaluate(self, model: Any, trial: nf.Trial) -> float:
        x = trial.sample["x"]
        for step in range(3):
            trial.report(x * 0.1 * (step + 1), step=step)
        # a generous bound so a broken test cannot hang the suite
        self.gates[x].wait(120)
        return float(x)

    def release(self, x: int) -> None:
        self.gates[x].set()

    def trial_of(self, x: int) -> int:
        """The id of the trial that evaluates ``x`` (once it was submitted)."""
        return next(t.id for t in self.exp.trials() if t.sample["x"] == x)

    def close(self) -> None:
        for gate in self.gates.values():
            gate.set()
        if self.exp.state is nf.ExperimentState.RUNNING:
            self.portal.call(self.exp.stop)
        self.run.result(timeout=60)
        self._board_cm.__exit__(None, None, None)


@pytest.fixture
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.fixture
def live_search(home: Path, portal: anyio.from_thread.BlockingPortal) -> Iterator[LiveSearch]:
    search = LiveSearch(home, portal)
    try:
        yield search
    finally:
        search.close()


@pytest.fixture
def remote_search(home: Path, portal: anyio.from_thread.BlockingPortal
                  ) -> Iterator[LiveSearch]:
    """The dashboard follows the search through its control endpoint only."""
    search = LiveSearch(home, portal, attach=False)
    try:
        yield search
    finally:
        search.close()


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("NASFLOW_SKIP_BROWSER") == "1":
            pytest.skip(f"NASFLOW_SKIP_BROWSER=1 and no {name} on PATH")
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver ({name} is "
                    "not on PATH): scripts/test.sh installs them (apt-get install -y chromium "
                    "chromium-driver); set NASFLOW_SKIP_BROWSER=1 to skip these tests")
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium under selenium, with a fresh profile and no network chatter."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(_binary("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()
