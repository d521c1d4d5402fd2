"""Where the dashboard's pushed updates come from, and how bursts are coalesced.

One ``Feed`` per experiment being watched. Its pump reads the experiment's events as they
are published, never the database on a timer:

* an experiment running in this process: a subscription to its event hub;
* one running in another process: the ``events`` feed of its control endpoint
  (``control.json`` in its directory, see ``nasflow._control``);
* a finished one has no feed: the page reads it from the store once.

Each browser connection is a ``Client``: the pump appends event dicts to every client's
pending list and wakes it; the client's sender takes everything pending at once and sends
it as one frame, at most ``FRAMES_PER_SECOND`` frames a second. So a burst of 10,000
metrics/s becomes ~20 frames/s of ~500 events, not 10,000 frames. A client that falls
``MAX_PENDING`` events behind is sent ``resync`` (re-read the REST API) instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson

from nasflow._control import CONTROL_FILE
from nasflow._event_json import event_to_dict

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["FRAMES_PER_SECOND", "MAX_PENDING", "Client", "Feed"]

_log = logging.getLogger("nasflow.dashboard")

FRAMES_PER_SECOND = 20
MAX_PENDING = 50_000
_LINE_LIMIT = 64 * 1024 * 1024  # one control-feed line (a batch of at most 1,000 events)


class Client:
    """One browser connection's pending events (see the module docstring)."""

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.overflowed = False
        self.wakeup = anyio.Event()

    def push(self, experiment: str, events: list[dict[str, Any]]) -> None:
        """Queue ``events`` of ``experiment`` and wake the sender."""
        if self.overflowed:
            return
        for e in events:
            e["experiment"] = experiment
        self.pending.extend(events)
        if len(self.pending) > MAX_PENDING:
            self.pending.clear()
            self.overflowed = True
        self.wakeup.set()

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """The frames to send: ``{"type": "events", "events": [...]}`` or ``resync``."""
        while True:
            await self.wakeup.wait()
            self.wakeup = anyio.Event()
            if self.overflowed:
                self.overflowed = False
                yield {"type": "resync"}
            elif self.pending:
                batch, self.pending = self.pending, []
                yield {"type": "events", "events": batch}
            # a rate limit, not an ordering device: events arriving meanwhile are sent
            # together in the next frame
            await anyio.sleep(1 / FRAMES_PER_SECOND)


class Feed:
    """The live events of one experiment, fanned out to the clients watching it."""

    def __init__(self, experiment_id: str, directory: Path,
                 live: Experiment | None = None) -> None:
        self.id = experiment_id
        self.directory = directory
        self.live = live
        self.clients: set[Client] = set()
        self.running = False
        """Whether the pump is connected to a source now."""

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def discard(self, client: Client) -> None:
        self.clients.discard(client)

    def _fan_out(self, events: list[dict[str, Any]]) -> None:
        for client in list(self.clients):
            # each client gets its own dicts: push() tags them in place
            client.push(self.id, [dict(e) for e in events])

    async def pump(self, *, task_status: anyio.abc.TaskStatus[bool] = anyio.TASK_STATUS_IGNORED,
                   ) -> None:
        """Forward the experiment's events until its run ends. Start it with ``tg.start``:
        it reports ``True`` once subscribed (every later event will be forwarded), or
        ``False`` when no source is reachable."""
        self.running = True
        try:
            if self.live is not None:
                await self._pump_live(self.live, task_status)
            else:
                await self._pump_remote(task_status)
        finally:
            self.running = False
            self._fan_out([{"type": "feed_closed"}])

    async def _pump_live(self, exp: Experiment, task_status: anyio.abc.TaskStatus[bool]
                         ) -> None:
        # unbounded buffer: the dashboard never makes the search wait; the per-client
        # pending cap bounds what a slow browser costs
        async with exp._hub.subscribe(buffer=0) as events:
            task_status.started(True)
            async for event in events:
                batch = [event_to_dict(event)]
                while len(batch) < 1000 and (more := events.take_nowait()) is not None:
                    batch.append(event_to_dict(more))
                self._fan_out(batch)

    async def _pump_remote(self, task_status: anyio.abc.TaskStatus[bool]) -> None:
        try:
            info = json.loads((self.directory / CONTROL_FILE).read_text())
            stream = await anyio.connect_tcp("127.0.0.1", int(info["port"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.info("experiment %s has no reachable control endpoint: %s", self.id, exc)
            task_status.started(False)
            return
        async with stream:
            await stream.send(orjson.dumps({"token": info.get("token"), "op": "events"}))
            buffer = b""
            first = True
            while True:
                try:
                    chunk = await stream.receive(1 << 20)
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    if first:
                        task_status.started(False)
                    return
                buffer += chunk
                if len(buffer) > _LINE_LIMIT:
                    _log.warning("experiment %s sent an oversized feed line", self.id)
                    return
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = orjson.loads(line)
                    if first:
                        first = False
                        ok = isinstance(message, dict) and bool(message.get("ok"))
                        task_status.started(ok)  # subscribed on its side: nothing missed
                        if not ok:
                            _log.warning("experiment %s refused its feed: %s", self.id,
                                         message)
                            return
                    elif isinstance(message, list):
                        self._fan_out(message)
                    elif isinstance(message, dict) and message.get("overflow"):
                        self._fan_out([{"type": "resync"}])
                        return
