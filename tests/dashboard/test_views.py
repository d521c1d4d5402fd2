"""The analysis views in headless Chromium, each checked against the stored trials: best
so far, the timeline per slot, parallel coordinates, objective vs a label, label
importance, compare side by side, and the trials table over thousands of rows."""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

import nasflow as nf
from nasflow._plots import label_importance
from nasflow.dashboard import Dashboard

from .test_browser import STALE, WAIT, click, wait_for

OPS = {"conv": 0.5, "pool": 0.2, "skip": 0.0}


def _evaluate(model: Any, trial: nf.Trial) -> float:
    s = trial.sample
    value = s["width"] / 256 + OPS[s["op"]] + 0.1 * s["depth"]
    for step in range(3):
        trial.report(value * (step + 1) / 3, step=step)
    time.sleep(0.01)  # simulated work: trials overlap on the timeline
    return value


class Stored:
    """A finished experiment (two trials at a time) and a dashboard serving it."""

    def __init__(self, home: Path, portal: anyio.from_thread.BlockingPortal) -> None:
        self.exp = nf.Experiment(
            {"width": nf.Categorical([8, 16, 32, 64, 128, 256]),
             "op": nf.Categorical(list(OPS)), "depth": nf.Categorical([1, 2])},
            _evaluate, nf.strategy.Random(seed=5),
            nf.ExperimentConfig(max_trials=20, concurrency=2, home=str(home)))
        portal.call(self.exp.run)
        self.res = nf.load_experiment(self.exp.id, home=home)
        self.trials = {t.id: t for t in self.res.trials()}
        self.labels = list(self.exp.search_space.labels)  # as stored in its meta


@pytest.fixture
def stored(home: Path, portal: anyio.from_thread.BlockingPortal, browser: Any
           ) -> Iterator[Stored]:
    s = Stored(home, portal)
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        browser.get(f"{board.url}#/experiments/{s.exp.id}")
        wait_for(browser, "#exp-state", "DONE")
        yield s


def _all(browser: Any, css: str, attr: str) -> list[str]:
    """``attr`` of every element matching ``css``, read in one go (re-renders tolerated)."""
    return WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
        lambda d: [[e.get_attribute(attr) for e in d.find_elements(By.CSS_SELECTOR, css)]])[0]


def test_best_so_far_follows_the_stored_metrics(stored: Stored, browser: Any) -> None:
    ended = sorted((t for t in stored.trials.values() if t.state is nf.TrialState.SUCCEEDED),
                   key=lambda t: (t.ended_at, t.id))
    wait_for(browser, "#history path.best")
    values = [float(v) for v in _all(browser, "#history circle.dot", "data-value")]
    assert values == pytest.approx([t.metric for t in ended])
    last = float(_all(browser, "#history path.best", "data-last")[0])
    assert last == pytest.approx(max(t.metric for t in ended))


def test_the_timeline_puts_each_trial_in_a_free_slot(stored: Stored, browser: Any) -> None:
    wait_for(browser, "#timeline rect.span")
    ids = [int(v) for v in _all(browser, "#timeline rect.span", "data-trial")]
    lanes = [int(v) for v in _all(browser, "#timeline rect.span", "data-lane")]
    assert sorted(ids) == sorted(stored.trials)
    assert set(lanes) == {0, 1}  # concurrency 2: two slots, both used
    by_lane: dict[int, list[nf.TrialRecord]] = {}
    for tid, lane in zip(ids, lanes, strict=True):
        by_lane.setdefault(lane, []).append(stored.trials[tid])
    for spans in by_lane.values():  # trials in one slot never overlap in time
        spans.sort(key=lambda t: t.started_at)
        for a, b in itertools.pairwise(spans):
            assert a.ended_at <= b.started_at + 1e-6


def test_parallel_coordinates_draw_every_trial_on_its_values(stored: Stored,
                                                             browser: Any) -> None:
    wait_for(browser, "#parallel polyline.pc")
    axes = _all(browser, "#parallel text.axis-name", "data-axis")
    assert axes == [*stored.labels, "default"]
    lines = dict(zip((int(v) for v in _all(browser, "#parallel polyline.pc", "data-trial")),
                     (json.loads(v) for v in _all(browser, "#parallel polyline.pc",
                                                  "data-values")), strict=True))
    succeeded = {i: t for i, t in stored.trials.items() if t.state is nf.TrialState.SUCCEEDED}
    assert set(lines) == set(succeeded)
    for tid, values in lines.items():
        t = succeeded[tid]
        assert values[:-1] == [t.sample[label] for label in stored.labels]
        assert values[-1] == pytest.approx(t.metric)


def test_the_scatter_plots_the_objective_against_the_chosen_label(stored: Stored,
                                                                  browser: Any) -> None:
    Select(wait_for(browser, "#scatter-label")).select_by_visible_text("op")
    WebDriverWait(browser, WAIT, ignored_exceptions=STALE).until(
        lambda d: all(json.loads(c.get_attribute("data-x")) in OPS
                      for c in d.find_elements(By.CSS_SELECTOR, "#scatter circle")) or None)
    xs = [json.loads(v) for v in _all(browser, "#scatter circle", "data-x")]
    ys = [float(v) for v in _all(browser, "#scatter circle", "data-y")]
    ids = [int(v) for v in _all(browser, "#scatter circle", "data-trial")]
    assert len(ids) == sum(t.state is nf.TrialState.SUCCEEDED for t in stored.trials.values())
    for tid, x, y in zip(ids, xs, ys, strict=True):
        assert x == stored.trials[tid].sample["op"]
        assert y == pytest.approx(stored.trials[tid].metric)


def test_label_importance_matches_the_plot_of_it(stored: Stored, browser: Any) -> None:
    wait_for(browser, "#importance g.imp")
    shown = dict(zip(_all(browser, "#importance g.imp", "data-label"),
                     (float(v) for v in _all(browser, "#importance g.imp", "data-value")),
                     strict=True))
    done = [t for t in stored.trials.values() if t.state is nf.TrialState.SUCCEEDED]
    expected = label_importance(done)
    assert shown == pytest.approx(expected)
    assert list(shown) == list(expected)  # largest first, as the plot


def test_compare_shows_the_ticked_trials_side_by_side(stored: Stored, browser: Any) -> None:
    a, b = sorted(stored.trials)[:2]
    click(browser, f".trow[data-trial='{a}'] input.cmp")
    click(browser, f".trow[data-trial='{b}'] input.cmp")
    wait_for(browser, "#compare-ids", f"#{a} #{b}")
    for tid in (a, b):
        t = stored.trials[tid]
        for label in stored.labels:
            cell = wait_for(browser, f"#compare tr[data-row='{label}'] td[data-trial='{tid}']")
            assert json.loads(cell.text) == t.sample[label]
        cell = wait_for(browser, f"#compare tr[data-row='default'] td[data-trial='{tid}']")
        assert float(cell.text) == pytest.approx(t.metric, rel=1e-3)
        wait_for(browser, f"#compare-curves path[data-trial='{tid}']")
        assert _all(browser, f"#compare-curves path[data-trial='{tid}']",
                    "data-points") == ["3"]
    shot = os.environ.get("NASFLOW_SCREENSHOT_VIEWS")
    if shot:  # docs/img/dashboard.png: the whole page
        height = browser.execute_script("return document.body.scrollHeight")
        browser.set_window_size(1400, height + 40)
        click(browser, f".trow[data-trial='{b}']")
        wait_for(browser, f"#curve path.curve[data-trial='{b}']")
        browser.execute_script("window.scrollTo(0, 0);")
        browser.save_screenshot(shot)


def _many(model: Any, trial: nf.Trial) -> float:
    x = trial.sample["x"]
    if x % 7 == 0:
        raise ValueError("a multiple of seven")
    return float(x % 97)


N = 2000


def test_the_trials_table_sorts_filters_and_searches_thousands_of_rows(
        home: Path, portal: anyio.from_thread.BlockingPortal, browser: Any) -> None:
    exp = nf.Experiment({"x": nf.Categorical(list(range(N)))}, _many,
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=N, home=str(home)))
    portal.call(exp.run)
    stored = nf.load_experiment(exp.id, home=home).trials()
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        browser.get(f"{board.url}#/experiments/{exp.id}")
        wait_for(browser, "#shown", f"{N} of {N}")
        # virtualised: only the rows in view are in the DOM
        assert len(browser.find_elements(By.CSS_SELECTOR, ".trow")) < 60
        # sort by the metric, largest first (second click)
        click(browser, "#trials-head [data-key='m:default']")
        click(browser, "#trials-head [data-key='m:default']")
        ranked = sorted((t for t in stored if t.metric is not None),
                        key=lambda t: (-t.metric, t.id))
        first = [int(v) for v in _all(browser, ".trow", "data-trial")[:5]]
        tops = _all(browser, ".trow", "style")
        order = [tid for _, tid in sorted(zip((float(s.split("top:")[1].split("px")[0])
                                                for s in tops), first, strict=False))]
        assert order == [t.id for t in ranked[:5]]
        # scrolled to the end: the last rows are drawn, the first ones are gone
        browser.execute_script("const s = document.getElementById('trials-scroll');"
                               "s.scrollTop = s.scrollHeight;")
        failed = [t for t in stored if t.state is nf.TrialState.FAILED]
        wait_for(browser, f".trow[data-trial='{failed[-1].id}']")  # no metric: sorted last
        # filter by state
        Select(wait_for(browser, "#state-filter")).select_by_value("FAILED")
        wait_for(browser, "#shown", f"{len(failed)} of {N}")
        assert len(failed) == math.ceil(N / 7)
        Select(wait_for(browser, "#state-filter")).select_by_value("")
        # text search over the samples
        box = wait_for(browser, "#search")
        box.send_keys(":123}")
        wait_for(browser, "#shown", f"1 of {N}")
        (match,) = _all(browser, ".trow", "data-trial")
        assert next(t for t in stored if t.id == int(match)).sample == {"x": 123}


def _shown_ids(browser: Any) -> set[int]:
    """Every trial the table lists now (scrolled through: it draws only the rows in view)."""
    return set(browser.execute_script("return view.order.map((t) => t.id);"))


def test_the_table_filters_by_a_label_value_and_a_metric_range(stored: Stored,
                                                               browser: Any) -> None:
    trials = stored.trials
    Select(wait_for(browser, "#label-filter")).select_by_value("op")
    Select(wait_for(browser, "#label-value")).select_by_value('"conv"')
    conv = {i for i, t in trials.items() if t.sample["op"] == "conv"}
    wait_for(browser, "#shown", f"{len(conv)} of {len(trials)}")
    assert _shown_ids(browser) == conv
    rows = {int(v) for v in _all(browser, ".trow", "data-trial")}
    assert rows <= conv and rows  # the rows drawn are of the filtered trials

    # and a metric range on top (bounds inclusive)
    metrics = sorted(t.metric for t in trials.values() if t.metric is not None)
    lo, hi = metrics[len(metrics) // 4], metrics[3 * len(metrics) // 4]
    wait_for(browser, "#metric-min").send_keys(repr(lo))
    wait_for(browser, "#metric-max").send_keys(repr(hi))
    both = {i for i in conv if trials[i].metric is not None and lo <= trials[i].metric <= hi}
    wait_for(browser, "#shown", f"{len(both)} of {len(trials)}")
    assert _shown_ids(browser) == both

    # any label again: the metric range alone; a number label's values in numeric order
    Select(wait_for(browser, "#label-filter")).select_by_value("")
    ranged = {i for i, t in trials.items() if t.metric is not None and lo <= t.metric <= hi}
    wait_for(browser, "#shown", f"{len(ranged)} of {len(trials)}")
    assert _shown_ids(browser) == ranged
    assert 0 < len(both) < len(ranged) < len(trials)  # each filter told trials apart
    Select(wait_for(browser, "#label-filter")).select_by_value("width")
    offered = [json.loads(o.get_attribute("value")) for o in
               wait_for(browser, "#label-value").find_elements(By.TAG_NAME, "option")[1:]]
    assert offered == sorted({t.sample["width"] for t in trials.values()})
