"""A running experiment's control endpoint: how ``nasflow stop ID`` reaches it.

The experiment listens on 127.0.0.1 (a free port) and writes ``control.json`` (port, a
random token, pid; readable by the owner only) into its directory; a request is one JSON
line ``{"token": ..., "op": "stop" | "status", "wait": bool}`` answered by one JSON line
(``stop`` with ``wait`` answers once the run has ended and everything is saved). The file
is removed when the run ends.

``{"op": "kill", "trial": ID}`` cancels one running trial. ``{"op": "events"}`` turns the
connection into a feed (what the dashboard follows another process's experiment through):
one ``{"ok": true}`` line, then one JSON list of events (``event_to_dict``) per line, as
they happen, batched when they come faster than the reader takes them, until the run ends.
A reader that falls ``EVENTS_BACKLOG`` events behind gets ``{"overflow": true}`` and the
connection closes (it should re-read the store); it never makes the search wait.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import orjson

from nasflow._event_json import event_to_dict
from nasflow.events import EventStream
from nasflow.exceptions import NasflowError

__all__ = ["CONTROL_FILE", "ControlServer", "send_request"]

CONTROL_FILE = "control.json"
_MAX_REQUEST = 4096
DRAIN_SECONDS = 5.0
EVENTS_BACKLOG = 100_000


class ControlServer:
    """Serves ``stop``/``status`` requests for one running experiment."""

    def __init__(self, directory: Path, on_stop: Callable[[str], Awaitable[None]],
                 status: Callable[[], dict[str, Any]], *,
                 events: Callable[[], EventStream] | None = None,
                 kill: Callable[[int, str], bool] | None = None,
                 extra: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]] | None = None
                 ) -> None:
        self.directory = directory
        self._on_stop = on_stop
        self._status = status
        self._events = events
        self._kill = kill
        self._extra = dict(extra or {})  # op -> handler(request) -> reply (enqueue, ...)
        self._token = secrets.token_urlsafe(24)
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._active = 0  # requests being answered
        self._quiet = anyio.Event()
        self._quiet.set()

    async def serve(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
                    ) -> None:
        """Listen until cancelled (start it with ``tg.start``)."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self._listener = listener
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        info = {"port": port, "token": self._token, "pid": os.getpid()}
        path = self.directory / CONTROL_FILE
        fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        os.replace(path.with_suffix(".tmp"), path)
        task_status.started()
        try:
            async with listener:
                await listener.serve(self._handle)
        finally:
            path.unlink(missing_ok=True)

    async def drain(self) -> None:
        """Let requests in progress be answered (e.g. a ``stop`` waiting for the end); a
        client that does not read its answer gets at most ``DRAIN_SECONDS``."""
        with anyio.move_on_after(DRAIN_SECONDS):
            await self._quiet.wait()

    async def _feed(self, stream: anyio.abc.SocketStream) -> None:
        assert self._events is not None
        events = self._events()
        await stream.send(b'{"ok": true}\n')
        try:
            async with events:
                async for event in events:
                    batch = [event_to_dict(event)]
                    # take what is already queued: one line for a burst, not one per event
                    while len(batch) < 1000 and (more := events.take_nowait()) is not None:
                        batch.append(event_to_dict(more))
                    if events.pending > EVENTS_BACKLOG:
                        await stream.send(b'{"overflow": true}\n')
                        return
                    await stream.send(orjson.dumps(batch) + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the reader went away

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        self._active += 1
        self._quiet = anyio.Event()
        try:
            await self._answer(stream)
        finally:
            self._active -= 1
            if self._active == 0:
                self._quiet.set()

    async def _answer(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(5):
                    data = await stream.receive(_MAX_REQUEST)
                request = json.loads(data.decode())
                token = str(request.get("token", ""))
                if not hmac.compare_digest(token.encode(), self._token.encode()):
                    reply: dict[str, Any] = {"ok": False, "error": "bad token"}
                elif request.get("op") == "stop":
                    reason = str(request.get("reason") or "stopped from the CLI")
                    if not request.get("wait"):
                        await stream.send(json.dumps({"ok": True, "stopping": True}).encode()
                                          + b"\n")
                        await self._on_stop(reason)
                        return
                    await self._on_stop(reason)  # returns once the run has ended and saved
                    reply = {"ok": True, "stopped": True, **self._status()}
                elif request.get("op") == "status":
                    reply = {"ok": True, **self._status()}
                elif request.get("op") == "kill" and self._kill is not None:
                    trial = request.get("trial")
                    if not isinstance(trial, int) or isinstance(trial, bool):
                        reply = {"ok": False, "error": f"trial must be an id, got {trial!r}"}
                    else:
                        reason = str(request.get("reason") or "killed from the dashboard")
                        killed = self._kill(trial, reason)
                        reply = {"ok": killed, **({} if killed else {
                            "error": f"trial {trial} is not running"})}
                elif request.get("op") == "events" and self._events is not None:
                    await self._feed(stream)
                    return
                elif request.get("op") in self._extra:
                    reply = self._extra[request["op"]](request)
                else:
                    reply = {"ok": False, "error": f"unknown op {request.get('op')!r}"}
            except (TimeoutError, ValueError, AttributeError, anyio.EndOfStream) as exc:
                reply = {"ok": False, "error": f"bad request: {exc!r}"}
            try:
                await stream.send(json.dumps(reply).encode() + b"\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass


def send_request(directory: Path, op: str, *, timeout: float = 10.0, **extra: Any
                 ) -> dict[str, Any]:
    """Send ``op`` to the experiment running from ``directory`` (blocking; for the CLI)."""
    path = directory / CONTROL_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NasflowError(
            f"experiment {directory.name} is not running here (no readable {path}: {exc})"
        ) from exc
    try:
        with socket.create_connection(("127.0.0.1", info["port"]), timeout=timeout) as sock:
            sock.sendall(json.dumps({"token": info["token"], "op": op, **extra}).encode())
            sock.shutdown(socket.SHUT_WR)
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except TimeoutError as exc:
        raise NasflowError(
            f"experiment {directory.name} did not answer within {timeout:g}s"
        ) from exc
    except OSError as exc:
        raise NasflowError(
            f"cannot reach experiment {directory.name} on port {info.get('port')}: {exc}; "
            "its process may have died (nasflow list shows it as CRASHED then)"
        ) from exc
    try:
        reply: dict[str, Any] = json.loads(data.decode())
    except ValueError as exc:
        raise NasflowError(f"experiment {directory.name} sent a bad reply: {data!r}") from exc
    return reply
