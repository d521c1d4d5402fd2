"""The dashboard's feed of a running experiment: a hub sink that never makes the search
wait, coalesced into frames encoded once for every page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from nasflow._kernel import ExperimentState
from nasflow.dashboard import _feed
from nasflow.dashboard._feed import Client, Feed
from nasflow.events import EventHub, ExperimentFinished, IntermediateMetric


class _Exp:
    """What ``Feed`` uses of a live experiment: its hub."""

    def __init__(self) -> None:
        self._hub = EventHub()


def _metric(i: int) -> IntermediateMetric:
    return IntermediateMetric(time=float(i), trial_id=0, step=i, value=float(i), metric=float(i))


async def _frames(client: Client, until: str) -> list[dict[str, Any]]:
    out = []
    async for data in client.frames():
        out.append(json.loads(data))
        if any(e.get("type") == until for e in out[-1].get("events", [])):
            return out
    raise AssertionError("the client's frames ended")


def test_a_watched_experiment_keeps_the_hubs_fast_path_and_one_frame_serves_every_page(
        tmp_path: Path) -> None:
    exp = _Exp()
    feed = Feed("e1", tmp_path, exp)  # type: ignore[arg-type]
    pages = [Client(), Client()]

    async def main() -> list[list[dict[str, Any]]]:
        async with anyio.create_task_group() as tg:
            assert await tg.start(feed.pump) is True
            for page in pages:
                feed.add(page)
            # a sink, not a subscription: publish() stays synchronous (no lock, no queue
            # for the search to wait on); the cause of B1's halving with a page attached
            assert exp._hub.subscriber_count == 0
            for i in range(500):  # a burst, published without yielding to the loop
                await exp._hub.publish(_metric(i))
            await exp._hub.publish(ExperimentFinished(time=1.0, state=ExperimentState.DONE,
                                                      reason="done"))
            exp._hub.close()
            with anyio.fail_after(30):
                got = [await _frames(p, "experiment_finished") for p in pages]
        return got

    first, second = anyio.run(main)
    assert first == second  # the same encoded frame for each page
    events = [e for f in first for e in f["events"]]
    assert [e["step"] for e in events if e["type"] == "intermediate"] == list(range(500))
    assert len(first) == 1  # coalesced: one frame for the whole burst
    assert first[0]["experiment"] == "e1"
    assert all(e["experiment"] == "e1" for e in events)
    assert not feed.running
    assert exp._hub._sinks == []  # the sink left with the feed


def test_a_feed_that_falls_too_far_behind_drops_to_the_latest_and_says_resync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_feed, "MAX_PENDING", 100)
    exp = _Exp()
    feed = Feed("e1", tmp_path, exp)  # type: ignore[arg-type]
    page = Client()
    feed.add(page)
    for i in range(250):  # the sender never ran: nothing was taken
        feed._sink(_metric(i))
    feed._flush(_feed.event_to_dict)
    frames = [json.loads(d) for d in page.pending]
    assert frames[0] == {"type": "resync"}
    steps = [e["step"] for e in frames[1]["events"]]
    assert steps == list(range(200, 250))  # only what came after the last drop
