"""Where the dashboard's pushed updates come from, and how bursts are coalesced.

One ``Feed`` per experiment being watched. Its pump reads the experiment's events as they
are published, never the database on a timer:

* an experiment running in this process: a *sink* of its event hub. The sink only appends
  the event object to a list (no conversion, no await, no task switch), so the search pays
  next to nothing: the hub keeps its no-subscriber fast path, and a dashboard can never
  make it wait (there is no queue to fill). A list ``MAX_PENDING`` long is dropped and
  the pages told to ``resync``;
* one running in another process: the ``events`` feed of its control endpoint
  (``control.json`` in its directory, see ``nasflow._control``);
* a finished one has no feed: the page reads it from the store once.

The feed's sender wakes when events are pending, converts and encodes them **once** into
one frame, and hands the same bytes to every ``Client`` (browser connection) watching; then
it waits ``1 / FRAMES_PER_SECOND``. So a burst of 10,000 metrics/s becomes ~20 frames/s of
~500 events, not 10,000 frames, and the first event after a quiet spell goes out at once.
A client that falls ``MAX_PENDING`` events behind is sent ``resync`` (re-read the REST
API) instead.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson

from nasflow._control import CONTROL_FILE
from nasflow._event_json import event_to_dict
from nasflow.events import Event, ExperimentFinished

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["FRAMES_PER_SECOND", "MAX_PENDING", "Client", "Feed", "frame"]

_log = logging.getLogger("nasflow.dashboard")

FRAMES_PER_SECOND = 20
MAX_PENDING = 50_000
_LINE_LIMIT = 64 * 1024 * 1024  # one control-feed line (a batch of at most 1,000 events)
_RESYNC = orjson.dumps({"type": "resync"})


def frame(experiment: str, events: list[dict[str, Any]]) -> bytes:
    """One ``{"type": "events", "experiment", "events": [...]}`` frame, each event tagged
    with its experiment too."""
    for e in events:
        e["experiment"] = experiment
    return orjson.dumps({"type": "events", "experiment": experiment, "events": events})


class Client:
    """One browser connection's frames waiting to be sent (see the module docstring)."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.backlog = 0
        """Events in ``pending``."""
        self.overflowed = False
        self.wakeup = anyio.Event()

    def push_frame(self, data: bytes, events: int) -> None:
        """Queue an encoded frame of ``events`` events and wake the sender."""
        if self.overflowed:
            return
        self.pending.append(data)
        self.backlog += events
        if self.backlog > MAX_PENDING:
            self.pending.clear()
            self.backlog = 0
            self.overflowed = True
        self.wakeup.set()

    def push(self, experiment: str, events: list[dict[str, Any]]) -> None:
        """Queue ``events`` of ``experiment`` as one frame."""
        self.push_frame(frame(experiment, events), len(events))

    async def frames(self) -> AsyncIterator[bytes]:
        """The encoded frames to send, in order (``resync`` after an overflow)."""
        while True:
            await self.wakeup.wait()
            self.wakeup = anyio.Event()
            if self.overflowed:
                self.overflowed = False
                yield _RESYNC
                continue
            batch, self.pending, self.backlog = self.pending, [], 0
            for data in batch:
                yield data


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
        self._pending: list[Any] = []  # Event objects (live) or event dicts (remote)
        self._dropped = False
        self._ended = False
        self._wake = anyio.Event()

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def discard(self, client: Client) -> None:
        self.clients.discard(client)

    # --- the source side: cheap, synchronous -------------------------------------------

    def _sink(self, event: Event) -> None:
        """The hub sink: runs inside the experiment's ``publish``; appends and returns."""
        pending = self._pending
        if len(pending) >= MAX_PENDING:
            pending.clear()
            self._dropped = True
        pending.append(event)
        if isinstance(event, ExperimentFinished):
            self._ended = True
        if len(pending) == 1 or self._ended:
            self._wake.set()

    def _add(self, events: list[dict[str, Any]]) -> None:
        if len(self._pending) + len(events) > MAX_PENDING:
            self._pending.clear()
            self._dropped = True
        self._pending.extend(events)
        self._wake.set()

    # --- the sending side ---------------------------------------------------------------

    def _fan_out(self, data: bytes, events: int) -> None:
        for client in list(self.clients):
            client.push_frame(data, events)

    def _flush(self, convert: Callable[[Any], dict[str, Any]]) -> None:
        batch, self._pending = self._pending, []
        if self._dropped:
            self._dropped = False
            self._fan_out(_RESYNC, 1)
        if batch and self.clients:
            self._fan_out(frame(self.id, [convert(e) for e in batch]), len(batch))

    async def _send(self, convert: Callable[[Any], dict[str, Any]],
                    closed: Callable[[], bool]) -> None:
        """Send what is pending, at most ``FRAMES_PER_SECOND`` times a second, until the
        source ended (``closed()``) and everything was sent."""
        while True:
            with anyio.move_on_after(1):  # a source that closed without a last event
                await self._wake.wait()
            self._wake = anyio.Event()
            self._flush(convert)
            if self._ended or closed():
                self._flush(convert)
                return
            await anyio.sleep(1 / FRAMES_PER_SECOND)  # coalescing: at most one frame a tick

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
            self._fan_out(frame(self.id, [{"type": "feed_closed"}]), 1)

    async def _pump_live(self, exp: Experiment, task_status: anyio.abc.TaskStatus[bool]
                         ) -> None:
        hub = exp._hub
        hub.add_sink(self._sink)
        try:
            task_status.started(True)
            await self._send(event_to_dict, lambda: hub.closed)
        finally:
            hub.remove_sink(self._sink)

    async def _pump_remote(self, task_status: anyio.abc.TaskStatus[bool]) -> None:
        try:
            info = json.loads((self.directory / CONTROL_FILE).read_text())
            stream = await anyio.connect_tcp("127.0.0.1", int(info["port"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.info("experiment %s has no reachable control endpoint: %s", self.id, exc)
            task_status.started(False)
            return
        closed = False

        def ended() -> bool:
            return closed

        async with stream, anyio.create_task_group() as tg:
            tg.start_soon(self._send, lambda e: e, ended)
            try:
                await self._read_remote(stream, info.get("token"), task_status)
            finally:
                closed = True
                self._wake.set()

    async def _read_remote(self, stream: anyio.abc.ByteStream, token: Any,
                           task_status: anyio.abc.TaskStatus[bool]) -> None:
        await stream.send(orjson.dumps({"token": token, "op": "events"}))
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
                        _log.warning("experiment %s refused its feed: %s", self.id, message)
                        return
                elif isinstance(message, list):
                    self._add(message)
                elif isinstance(message, dict) and message.get("overflow"):
                    self._dropped = True
                    self._wake.set()
                    return
