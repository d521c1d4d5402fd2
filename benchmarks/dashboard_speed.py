"""The dashboard's speed, measured in headless Chromium (Debian's chromium + chromedriver).

* ``latency``: event published -> page DOM updated, p50/p99, while one trial reports
  1,000 metrics/s. An event's ``time`` is stamped when it is made (``trial.report``); the
  page's own handler updates the DOM (the selected trial's curve at once, the table in
  its next animation frame), and an instrument handler registered after it takes
  ``Date.now()`` in a later callback of that same animation frame. Same machine, same clock.
* ``trials_100k``: a stored 100,000-trial experiment: first render of its page (navigation
  start -> the page's ``nasflow:table-rendered`` mark: HTML, the REST read of every trial,
  JSON parse, the table; and -> ``nasflow:experiment-rendered``: the charts too), the REST
  read alone (request -> response end) and sorting the table by a column (click ->
  re-sorted rows in the DOM, synchronous), median and max of 6 sorts.
* ``b1_overhead``: B1's no-op trials (async evaluator, store on) with and without a
  ``Dashboard(exp)`` that a browser page watches live, alternating, median trials/s of
  ``--runs``; the ratio is with / without.

    python benchmarks/dashboard_speed.py [--seconds 8] [--trials 100000] [--b1-trials 20000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
from _common import emit, nasflow_space, noop_objective

import nasflow as nf
from nasflow.dashboard import Dashboard
from nasflow.events import TrialStarted

RATE = 1000  # metrics per second, as in issue 12


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=Service(shutil.which("chromedriver") or "chromedriver"))
    driver.set_script_timeout(300)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: Any, js: str, timeout: float = 120) -> Any:
    """Wait (a MutationObserver-free wait: selenium re-evaluates) until ``js`` is truthy."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"return {js};"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- event -> DOM latency --------------------------------------------------------------------

INSTRUMENT = """
window.__lat = [];
live.handlers.push((frame) => {
  if (frame.type !== "events") return;
  const times = [];
  for (const e of frame.events) if (e.type === "intermediate") times.push(e.time);
  if (!times.length) return;
  // the page's own render was queued for this animation frame before this callback
  requestAnimationFrame(() => {
    const now = Date.now() / 1000;
    for (const t of times) window.__lat.push(now - t);
  });
});
"""


_GATE = threading.Event()  # module-level: the evaluator stays picklable (it is saved)


def _report_steadily(model: Any, trial: nf.Trial) -> float:
    _GATE.wait(120)
    t0 = time.perf_counter()
    for i in range(trial.sample["x"]):
        delay = t0 + i / RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        trial.report(float(i % 100) / 100, step=i)
    return 1.0


def latency(portal: anyio.from_thread.BlockingPortal, driver: Any, home: Path,
            seconds: float) -> dict[str, Any]:
    steps = int(seconds * RATE)
    gate = _GATE
    gate.clear()

    exp = nf.Experiment({"x": nf.Categorical([steps])}, _report_steadily,
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=1, home=str(home)))
    board = Dashboard(exp, home=home)
    started = threading.Event()

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            # closed after the first event: an unread subscription would fill and stall
            # the search
            async with exp.events(TrialStarted) as events:
                tg.start_soon(exp.run)
                async for _ in events:
                    break
            started.set()

    with portal.wrap_async_context_manager(board):
        done = portal.start_task_soon(run)
        started.wait(60)
        driver.get(f"{board.url}#/experiments/{exp.id}")
        wait_until(driver, "document.querySelector(\".trow[data-trial='0']\")")
        driver.find_element("css selector", ".trow[data-trial='0']").click()  # its curve
        wait_until(driver, "document.getElementById('detail').hidden === false")
        # subscribed: the feed has this page as a client
        deadline = time.monotonic() + 60
        while not any(f.clients for f in board.state.feeds.values()):
            if time.monotonic() > deadline:
                raise RuntimeError("the page never subscribed")
            time.sleep(0.05)
        driver.execute_script(INSTRUMENT)
        gate.set()
        done.result(timeout=seconds + 120)
        wait_until(driver, "document.getElementById('exp-state').textContent === 'DONE'")
        lat = driver.execute_script("return window.__lat;")
    # the first second warms up (JIT, first frames); measure the steady state after it
    ms = [v * 1000 for v in lat[RATE:]]
    return {"metrics_per_second": RATE, "seconds": seconds, "events_measured": len(ms),
            "events_reported": steps, "p50_ms": round(percentile(ms, 0.5), 1),
            "p99_ms": round(percentile(ms, 0.99), 1), "max_ms": round(max(ms), 1),
            "target": "p50 <= 50 ms, p99 <= 200 ms"}


# --- 100,000 trials -----------------------------------------------------------------------

def trials_100k(portal: anyio.from_thread.BlockingPortal, driver: Any, home: Path,
                trials: int) -> dict[str, Any]:
    async def evaluate(model: None, trial: nf.Trial) -> float:
        return noop_objective(**trial.sample)

    exp = nf.Experiment(nasflow_space(), nf.FunctionalEvaluator(evaluate),
                        nf.strategy.Random(seed=0, dedup=False),
                        nf.ExperimentConfig(max_trials=trials, home=str(home)))
    t0 = time.perf_counter()
    portal.call(exp.run)
    made = time.perf_counter() - t0
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        renders, tables, fetches = [], [], []
        for _ in range(3):
            driver.get("about:blank")
            driver.get(f"{board.url}#/experiments/{exp.id}")
            wait_until(driver, "performance.getEntriesByName('nasflow:experiment-rendered')"
                               ".length > 0")
            table, done, fetch = driver.execute_script("""
                const at = (n) => performance.getEntriesByName(n)[0].startTime;
                const r = performance.getEntriesByType('resource')
                  .find((e) => e.name.includes('/trials'));
                return [at('nasflow:table-rendered'), at('nasflow:experiment-rendered'),
                        r.responseEnd - r.requestStart];""")
            tables.append(table)
            renders.append(done)
            fetches.append(fetch)
        shown = driver.execute_script("return document.getElementById('shown').textContent;")
        rows = driver.execute_script("return document.querySelectorAll('.trow').length;")
        sorts = []
        for key in ("m:default", "m:default", "l:width", "l:act", "duration", "id"):
            sorts.append(driver.execute_script(f"""
                const h = document.querySelector("#trials-head [data-key='{key}']");
                const t0 = performance.now();
                h.click();
                document.body.offsetHeight;  // layout included
                return performance.now() - t0;"""))
    return {"trials": trials, "made_in_s": round(made, 1), "shown": shown,
            "rows_in_dom": rows,
            "table_rendered_median_ms": round(statistics.median(tables)),
            "first_render_ms": [round(r) for r in renders],
            "first_render_median_ms": round(statistics.median(renders)),
            "trials_request_median_ms": round(statistics.median(fetches)),
            "sort_median_ms": round(statistics.median(sorts), 1),
            "sort_max_ms": round(max(sorts), 1),
            "target": "first render <= 1500 ms, sort <= 300 ms"}


# --- B1 with and without a dashboard ---------------------------------------------------------

def b1_once(portal: anyio.from_thread.BlockingPortal, driver: Any | None, home: Path,
            trials: int) -> float:
    gate = anyio.Event()

    async def evaluate(model: None, trial: nf.Trial) -> float:
        if trial.id == 0:
            await gate.wait()  # until the page watches (both variants alike)
        return noop_objective(**trial.sample)

    exp = nf.Experiment(nasflow_space(), nf.FunctionalEvaluator(evaluate),
                        nf.strategy.Random(seed=0, dedup=False),
                        nf.ExperimentConfig(max_trials=trials, home=str(home)))
    started = threading.Event()
    span: list[float] = []

    async def run() -> None:
        async with anyio.create_task_group() as tg:
            # closed after the first event: an unread subscription would fill and stall
            # the search
            async with exp.events(TrialStarted) as events:
                tg.start_soon(exp.run)
                async for _ in events:
                    break
            started.set()

    async def release() -> None:
        span.append(time.perf_counter())
        gate.set()
        await exp.wait()
        span.append(time.perf_counter())

    if driver is None:
        done = portal.start_task_soon(run)
        started.wait(60)
        portal.call(release)
        done.result(60)
    else:
        board = Dashboard(exp, home=home)
        with portal.wrap_async_context_manager(board):
            done = portal.start_task_soon(run)
            started.wait(60)
            driver.get(f"{board.url}#/experiments/{exp.id}")
            wait_until(driver, "document.querySelector(\".trow[data-trial='0']\")")
            deadline = time.monotonic() + 60
            while not any(f.clients for f in board.state.feeds.values()):
                if time.monotonic() > deadline:
                    raise RuntimeError("the page never subscribed")
                time.sleep(0.05)
            portal.call(release)
            done.result(60)
            wait_until(driver, "document.getElementById('exp-state').textContent === 'DONE'")
    assert len(exp.trials(["SUCCEEDED"])) == trials
    return (trials - 1) / (span[1] - span[0])


def b1_overhead(portal: anyio.from_thread.BlockingPortal, driver: Any, home: Path,
                trials: int, runs: int) -> dict[str, Any]:
    b1_once(portal, None, home, 2000)  # warm-up
    b1_once(portal, driver, home, 2000)
    raw: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(runs):  # alternate so that machine noise hits both alike
        raw["without"].append(b1_once(portal, None, home, trials))
        raw["with"].append(b1_once(portal, driver, home, trials))
    med = {k: statistics.median(v) for k, v in raw.items()}
    return {"trials": trials, "runs": runs,
            "trials_per_s_without": round(med["without"]),
            "trials_per_s_with_dashboard": round(med["with"]),
            "ratio": round(med["with"] / med["without"], 3),
            "raw": {k: [round(x) for x in v] for k, v in raw.items()},
            "target": "ratio >= 0.90"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--b1-trials", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["latency", "trials", "b1"], default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            anyio.from_thread.start_blocking_portal() as portal, \
            chromium(Path(tmp) / "profile") as driver:
        root = Path(tmp)
        if args.only in (None, "latency"):
            results["latency"] = latency(portal, driver, root / "lat", args.seconds)
        if args.only in (None, "trials"):
            results["trials_100k"] = trials_100k(portal, driver, root / "big", args.trials)
        if args.only in (None, "b1"):
            results["b1_overhead"] = b1_overhead(portal, driver, root / "b1", args.b1_trials,
                                                 args.runs)
        results["chromium"] = driver.capabilities.get("browserVersion")
    emit("dashboard_speed", results)


if __name__ == "__main__":
    main()
