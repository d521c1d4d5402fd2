"""The one-shot views: a strategy's per-epoch reports and the architecture weights of
every choice over the epochs, from ``/progress`` and in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio.from_thread

import nasflow as nf
from nasflow.dashboard import Dashboard
from nasflow.strategy import StrategyContext, oneshot_context

from .test_api import call
from .test_browser import wait_for
from .test_views import _all

EPOCHS = 4


def _weights(epoch: int) -> dict[str, dict[str, float]]:
    conv = round(0.4 + 0.1 * epoch, 5)
    return {"op": {"conv": conv, "pool": round(1 - conv, 5)},
            "width": {"8": 0.5, "16": 0.5}}


class Supernetish(nf.strategy.Strategy):
    """Reports epochs as a one-shot strategy does (no supernet: the views are the point)."""

    async def run(self, ctx: StrategyContext) -> None:
        tools = oneshot_context(ctx)
        for epoch in range(EPOCHS):
            await tools.progress(step=epoch, strategy="Supernetish", phase="train",
                                 epoch=epoch, epochs=EPOCHS, train_loss=1.0 / (epoch + 1),
                                 val_accuracy=0.5 + 0.1 * epoch, probs=_weights(epoch))
        await tools.record({"op": "conv", "width": 16}, 0.8)


def _run(home: Path, portal: anyio.from_thread.BlockingPortal) -> nf.Experiment:
    exp = nf.Experiment({"op": nf.Categorical(["conv", "pool"]),
                         "width": nf.Categorical([8, 16])},
                        lambda model, trial: 0.0, Supernetish(),
                        nf.ExperimentConfig(max_trials=1, home=str(home)))
    portal.call(exp.run)
    return exp


def test_the_progress_route_returns_the_reports_in_order(
        home: Path, portal: anyio.from_thread.BlockingPortal) -> None:
    exp = _run(home, portal)
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        path = f"/api/experiments/{exp.id}/progress"
        assert call(board, path, token=None)[0] == 401
        status, body = call(board, path)
    assert status == 200
    assert [step for _, step, _ in body["progress"]] == list(range(EPOCHS))
    assert [v["probs"] for _, _, v in body["progress"]] == [_weights(e) for e in range(EPOCHS)]


def test_the_page_draws_each_choice_weight_and_each_epoch(
        home: Path, portal: anyio.from_thread.BlockingPortal, browser: Any) -> None:
    exp = _run(home, portal)
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        browser.get(f"{board.url}#/experiments/{exp.id}")
        wait_for(browser, "#oneshot-summary", f"epoch {EPOCHS}/{EPOCHS}")
        # the validation score is the number shown by default, one point per epoch
        wait_for(browser, "#epochs path[data-series='val_accuracy']")
        shown = json.loads(_all(browser, "#epochs path", "data-values")[0])
        assert shown == [0.5 + 0.1 * e for e in range(EPOCHS)]
        wait_for(browser, "#probs path[data-series='conv']")
        lines = dict(zip(_all(browser, "#probs path", "data-series"),
                         (json.loads(v) for v in _all(browser, "#probs path", "data-values")),
                         strict=True))
    assert lines == {c: [_weights(e)["op"][c] for e in range(EPOCHS)] for c in ("conv", "pool")}
