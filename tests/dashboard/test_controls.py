"""The page's runtime controls in a real headless Chromium: change concurrency and budgets,
enqueue a sample; the server's refusals shown on the page; no change without the token.

Every change is checked where it lands: the experiment's config and trials, the store's
``changes`` table and ``nasflow show``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from nasflow.cli import main as nasflow_main
from nasflow.store import DB_NAME, StoreReader

from .conftest import LiveSearch
from .test_browser import STALE, WAIT, attribute, click, wait_for


def recorded(search: LiveSearch) -> list[tuple[str, Any, str]]:
    reader = StoreReader(search.exp.directory / DB_NAME)
    try:
        return [(c["op"], c["args"], c["source"]) for c in reader.changes()]
    finally:
        reader.close()


def type_into(browser: Any, css: str, text: str) -> None:
    field = browser.find_element(By.CSS_SELECTOR, css)
    field.clear()
    field.send_keys(text)


def open_controls(browser: Any, url: str, search: LiveSearch) -> None:
    browser.get(f"{url}#/experiments/{search.exp.id}")
    wait_for(browser, "#exp-state", "RUNNING")
    # the form is filled from the experiment's config once it is read
    WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
        lambda d: d.find_element(By.ID, "ctl-concurrency").get_attribute("value") == "2",
        "the concurrency field never showed the config's 2")
    assert browser.find_element(By.ID, "controls").is_displayed()


@pytest.mark.parametrize("attached", [True, False])
def test_concurrency_changed_from_the_page_is_applied_and_recorded(
        home: Path, portal: anyio.from_thread.BlockingPortal, browser: Any,
        capsys: pytest.CaptureFixture[str], attached: bool) -> None:
    # attached: the experiment's own desk; not: through its control endpoint, as for an
    # experiment another process runs
    search = LiveSearch(home, portal, attach=attached)
    try:
        exp = search.exp
        open_controls(browser, search.board.url, search)
        type_into(browser, "#ctl-concurrency", "3")
        click(browser, "#ctl-update")
        wait_for(browser, "#ctl-result.ctl-ok", "concurrency 2 -> 3")
        assert exp.config.concurrency == 3
        assert exp.config.max_trials == 6  # the field left as it was is not sent
        assert recorded(search) == [("update", {"concurrency": 3}, "dashboard")]
        # the third slot starts the grid's next sample without any trial ending
        wait_for(browser, ".trow[data-trial='2'] .cell-state", "RUNNING")

        capsys.readouterr()
        assert nasflow_main(["show", exp.id]) == 0
        assert "update by dashboard: concurrency 2 -> 3" in capsys.readouterr().out

        # a budget emptied means no limit; the form keeps what the server applied
        type_into(browser, "#ctl-max_trials", "")
        click(browser, "#ctl-update")
        wait_for(browser, "#ctl-result.ctl-ok", "max_trials 6 -> None")
        assert exp.config.max_trials is None
        assert attribute(browser, "#ctl-concurrency", "value") == "3"
        type_into(browser, "#ctl-max_duration", "1h")  # a duration as the config takes it
        click(browser, "#ctl-update")
        wait_for(browser, "#ctl-result.ctl-ok", "max_duration None -> 3600.0")
        assert exp.config.max_duration == 3600.0

        # a change made elsewhere (here exp.update) is pushed to the form
        portal.call(lambda: exp.update(concurrency=4))
        WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
            lambda d: attribute(d, "#ctl-concurrency", "value") == "4",
            "the form never showed the concurrency changed through the API")
    finally:
        search.close()


def test_refused_changes_show_the_servers_reason_and_change_nothing(
        live_search: LiveSearch, browser: Any) -> None:
    exp = live_search.exp
    open_controls(browser, live_search.board.url, live_search)
    type_into(browser, "#ctl-concurrency", "0")
    click(browser, "#ctl-update")
    wait_for(browser, "#ctl-result.ctl-error", "concurrency must be a whole number >= 1")
    type_into(browser, "#ctl-concurrency", "2")
    type_into(browser, "#ctl-max_trials", "1")  # two trials were submitted already
    click(browser, "#ctl-update")
    wait_for(browser, "#ctl-result.ctl-error", "below the 2 trials already submitted")
    type_into(browser, "#ctl-max_trials", "many")  # refused, never read as "no limit"
    click(browser, "#ctl-update")
    wait_for(browser, "#ctl-result.ctl-error", "'many'")

    type_into(browser, "#ctl-sample", json.dumps({"x": 7}))  # not one of the choices
    click(browser, "#ctl-enqueue")
    refusal = wait_for(browser, "#ctl-result.ctl-error", "enqueue refused: 409").text
    assert "x" in refusal and "7" in refusal
    type_into(browser, "#ctl-sample", "{x: 3")  # not JSON: said on the page, nothing sent
    click(browser, "#ctl-enqueue")
    wait_for(browser, "#ctl-result.ctl-error", "the sample is not JSON")

    assert (exp.config.concurrency, exp.config.max_trials) == (2, 6)
    assert recorded(live_search) == []
    assert sorted(t.sample["x"] for t in exp.trials()) == [1, 2]


def test_a_sample_enqueued_from_the_page_runs_next(live_search: LiveSearch,
                                                   browser: Any) -> None:
    exp = live_search.exp
    open_controls(browser, live_search.board.url, live_search)
    type_into(browser, "#ctl-sample", json.dumps({"x": 6}))
    click(browser, "#ctl-enqueue")
    wait_for(browser, "#ctl-result.ctl-ok", "enqueued: 1 queued")
    assert recorded(live_search) == [("enqueue", {"entries": [{"x": 6}]}, "dashboard")]
    live_search.release(1)  # a slot frees: the enqueued sample goes before the grid's x=3
    wait_for(browser, ".trow[data-trial='2']")
    assert next(t for t in exp.trials() if t.id == 2).sample == {"x": 6}


@pytest.fixture
def open_search(home: Path, portal: anyio.from_thread.BlockingPortal) -> Iterator[LiveSearch]:
    """A dashboard that lets the page read without the token (``--no-token``)."""
    search = LiveSearch(home, portal, read_token=False)
    try:
        yield search
    finally:
        search.close()


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_no_change_without_the_right_token(open_search: LiveSearch, browser: Any,
                                           token: str | None) -> None:
    board = open_search.board
    base = f"http://127.0.0.1:{board.port}/"
    if token is not None:
        # the page keeps a token from an earlier visit in sessionStorage
        browser.get(f"{base}static/style.css")
        browser.execute_script("sessionStorage.setItem('nasflow-token', arguments[0]);", token)
    open_controls(browser, base, open_search)
    type_into(browser, "#ctl-concurrency", "4")
    click(browser, "#ctl-update")
    status = "403: wrong token" if token else "401: this needs the dashboard's token"
    wait_for(browser, "#ctl-result.ctl-error", status)
    type_into(browser, "#ctl-sample", json.dumps({"x": 6}))
    click(browser, "#ctl-enqueue")
    wait_for(browser, "#ctl-result.ctl-error", f"enqueue refused: {status}")
    assert open_search.exp.config.concurrency == 2
    assert recorded(open_search) == []
    assert 6 not in [t.sample["x"] for t in open_search.exp.trials()]
