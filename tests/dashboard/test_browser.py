"""The dashboard page in a real headless Chromium: live updates, curves, Pareto, stop, token.

Waits use selenium's ``WebDriverWait`` with a generous bound: it is how long a broken page
may take to fail, never an assertion about speed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio.from_thread
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import nasflow as nf
from nasflow.dashboard import Dashboard

from .conftest import LiveSearch

WAIT = 30
# pushed events re-render rows and charts: an element found a moment ago may be replaced
STALE = (StaleElementReferenceException,)


def wait_for(browser: Any, css: str, text: str | None = None) -> Any:
    """The first element matching ``css`` (whose text contains ``text``, if given)."""
    def found(driver: Any) -> Any:
        for el in driver.find_elements(By.CSS_SELECTOR, css):
            if text is None or text in el.text:
                return el
        return False
    return WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
        found, f"no {css!r} with text {text!r}")


def click(browser: Any, css: str) -> None:
    """Click the element matching ``css``, finding it again if a re-render replaced it."""
    def clicked(driver: Any) -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True
    WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(clicked, f"cannot click {css!r}")


def attribute(browser: Any, css: str, name: str) -> str | None:
    """The attribute ``name`` of the element matching ``css``, read on a current element."""
    return WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
        lambda d: [d.find_element(By.CSS_SELECTOR, css).get_attribute(name)],
        f"no {css!r}")[0]


def test_the_list_shows_a_running_experiment(live_search: LiveSearch, browser: Any) -> None:
    browser.get(live_search.board.url)
    wait_for(browser, f"tr.exp-row[data-id='{live_search.exp.id}'] .state", "RUNNING")
    shot = os.environ.get("NASFLOW_SCREENSHOT_LIST")
    if shot:
        browser.save_screenshot(shot)


def test_a_finished_trial_appears_and_its_curve_shows(live_search: LiveSearch,
                                                      browser: Any) -> None:
    exp = live_search.exp
    browser.get(f"{live_search.board.url}#/experiments/{exp.id}")
    wait_for(browser, "#exp-state", "RUNNING")
    # grid search submits x=1 and x=2 first; both are held at their gates
    wait_for(browser, ".trow[data-trial='0'] .cell-state", "RUNNING")
    browser.execute_script("window.__notReloaded = true;")
    live_search.release(1)
    wait_for(browser, ".trow[data-trial='0'] .cell-state", "SUCCEEDED")
    # the next trial (x=3) was submitted when a slot freed: it appears too, pushed
    wait_for(browser, ".trow[data-trial='2']")
    assert browser.execute_script("return window.__notReloaded === true;")

    click(browser, ".trow[data-trial='0']")
    wait_for(browser, "#curve path.curve[data-trial='0']")
    # the three reported steps
    assert attribute(browser, "#curve path.curve[data-trial='0']", "data-points") == "3"
    wait_for(browser, "#detail-body", "SUCCEEDED")
    shot = os.environ.get("NASFLOW_SCREENSHOT")
    if shot:
        for x in (2, 3, 4):
            live_search.release(x)
        wait_for(browser, ".trow[data-trial='3'] .cell-state", "SUCCEEDED")
        click(browser, ".trow[data-trial='3']")
        wait_for(browser, "#curve path.curve[data-trial='3']")
        browser.save_screenshot(shot)


def test_stop_from_the_page_stops_the_experiment(live_search: LiveSearch,
                                                 browser: Any) -> None:
    exp = live_search.exp
    browser.get(f"{live_search.board.url}#/experiments/{exp.id}")
    button = wait_for(browser, "#stop")
    WebDriverWait(browser, WAIT).until(lambda d: button.is_displayed())
    button.click()
    browser.switch_to.alert.accept()  # "Stop experiment ...?"
    live_search.run.result(timeout=WAIT)  # the run ends...
    assert exp.state is nf.ExperimentState.STOPPED
    assert exp.end_reason == "stopped from the dashboard"
    wait_for(browser, "#exp-state", "STOPPED")  # ...and the page says so, pushed


def test_a_wrong_token_gets_nothing(live_search: LiveSearch, browser: Any) -> None:
    board = live_search.board
    browser.get(f"http://127.0.0.1:{board.port}/?token=wrong-token")
    assert "wrong token" in browser.page_source
    assert live_search.exp.id not in browser.page_source
    # the API from a page without the token: 401, and no experiment in the answer
    browser.get(f"http://127.0.0.1:{board.port}/static/style.css")
    status = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('/api/experiments').then(async r => done([r.status, await r.text()]));
    """)
    assert status[0] == 401
    assert live_search.exp.id not in status[1]


def _brute_front(points: dict[int, tuple[float, float]]) -> set[int]:
    """Ids of the points no other point dominates (maximise acc, minimise cost)."""
    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and a != b
    return {i for i, p in points.items()
            if not any(dominates(q, p) for j, q in points.items() if j != i)}


def test_the_pareto_view_shows_exactly_the_front(home: Path, browser: Any,
                                                 portal: anyio.from_thread.BlockingPortal
                                                 ) -> None:
    def evaluate(model: Any, trial: nf.Trial) -> dict[str, float]:
        a, b = trial.sample["a"], trial.sample["b"]
        return {"acc": float(a * b % 7 + a), "cost": float(a + b % 3)}

    exp = nf.Experiment({"a": nf.Categorical([1, 2, 3, 4]), "b": nf.Categorical([1, 2, 3, 4])},
                        evaluate, nf.strategy.Random(seed=3),
                        nf.ExperimentConfig(objective={"acc": "maximize", "cost": "minimize"},
                                            max_trials=14, home=str(home)))
    portal.call(exp.run)
    stored = nf.load_experiment(exp.id, home=home)
    points = {t.id: (t.metrics["acc"], t.metrics["cost"]) for t in stored.trials()}
    expected = _brute_front(points)
    assert 0 < len(expected) < len(points)  # the check can tell front from the rest

    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        browser.get(f"{board.url}#/experiments/{exp.id}")
        wait_for(browser, "#pareto circle")
        front = {int(c.get_attribute("data-trial"))
                 for c in browser.find_elements(By.CSS_SELECTOR, "#pareto circle.front")}
        rest = {int(c.get_attribute("data-trial"))
                for c in browser.find_elements(By.CSS_SELECTOR, "#pareto circle.dominated")}
    assert front == expected
    assert rest == set(points) - expected


def test_a_running_trials_log_is_followed_and_its_checkpoint_named(
        live_search: LiveSearch, browser: Any) -> None:
    exp = live_search.exp
    trial_dir = exp.directory / "trials" / "0"
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "stdout.log").write_text("epoch 1\n")
    browser.get(f"{live_search.board.url}#/experiments/{exp.id}")
    click(browser, ".trow[data-trial='0']")
    wait_for(browser, "pre.log[data-log='stdout.log']", "epoch 1")
    # printed while it runs, with no event about it: the page reads it again by itself
    with (trial_dir / "stdout.log").open("a") as f:
        f.write("epoch 2\n")
    (trial_dir / "checkpoint.0-abc.pt").write_bytes(b"w" * 2048)
    wait_for(browser, "pre.log[data-log='stdout.log']", "epoch 2")
    wait_for(browser, "#detail-body .ckpt", "checkpoint.0-abc.pt")
