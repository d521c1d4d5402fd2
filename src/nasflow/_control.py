"""A running experiment's control endpoint: how ``nasflow stop ID`` (and ``update``,
``trial kill``, the dashboard of another process) reaches it.

The experiment listens on 127.0.0.1 (a free port) and writes ``control.json`` (port, a
random token, pid; readable by the owner only) into its directory; a request is one JSON
object ``{"token": ..., "op": ..., <the op's fields>}`` answered by one JSON line, ``{"ok":
true, ...}`` or ``{"ok": false, "error": "..."}``. The file is removed when the run ends.

The server knows no op itself: it is handed a table ``{op name: handler}`` (the run's:
``stop``, ``status``, ``events``, and one entry per runtime change of the experiment's
``ChangeDesk`` -- ``update``, ``kill``, ...). A handler gets the request's fields (without
the token and the op) and the ``Reply`` it may answer on early; it returns the answer, or
``None`` once it has answered itself. An error of nasflow's (``ChangeRefusedError`` among them)
becomes ``{"ok": false, "error": str(exc)}``. The ops are documented in docs/protocol.md
("The control endpoint").

``feed_events`` turns a connection into a feed (the ``events`` op, what the dashboard
follows another process's experiment through): one ``{"ok": true}`` line, then one JSON
list of events (``event_to_dict``) per line, as they happen, batched when they come faster
than the reader takes them, until the run ends. A reader that falls ``EVENTS_BACKLOG``
events behind gets ``{"overflow": true}`` and the connection closes (it should re-read the
store); it never makes the search wait.
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

__all__ = ["CONTROL_FILE", "ControlOp", "ControlServer", "Reply", "feed_events",
           "send_request"]

CONTROL_FILE = "control.json"
_MAX_REQUEST = 4096
DRAIN_SECONDS = 5.0
EVENTS_BACKLOG = 100_000


class Reply:
    """The connection a request came on, for a handler that answers before it returns (a
    ``stop`` without ``wait``) or streams (``events``)."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        self.stream = stream
        """The connection."""

    async def send(self, answer: dict[str, Any]) -> None:
        """Send one JSON line."""
        await self.stream.send(json.dumps(answer).encode() + b"\n")


ControlOp = Callable[[dict[str, Any], Reply], Awaitable[dict[str, Any] | None]]
"""A handler: ``(the request's fields, the reply) -> the answer``, or ``None`` once it has
answered on the reply itself."""


class ControlServer:
    """Serves the requests of ``ops`` for one running experiment."""

    def __init__(self, directory: Path, ops: Mapping[str, ControlOp]) -> None:
        self.directory = directory
        self._ops = ops
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
            reply = Reply(stream)
            answer: dict[str, Any] | None
            try:
                with anyio.fail_after(5):
                    data = await stream.receive(_MAX_REQUEST)
                request = json.loads(data.decode())
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                token = str(request.pop("token", ""))
                op = request.pop("op", None)
                handler = self._ops.get(op) if isinstance(op, str) else None
                if not hmac.compare_digest(token.encode(), self._token.encode()):
                    answer = {"ok": False, "error": "bad token"}
                elif handler is None:
                    answer = {"ok": False, "error": f"unknown op {op!r}; this experiment "
                              f"answers {', '.join(sorted(self._ops))}"}
                else:
                    try:
                        answer = await handler(request, reply)
                    except NasflowError as exc:
                        answer = {"ok": False, "error": str(exc)}
                    if answer is None:
                        return  # the handler answered (or fed events) itself
            except (TimeoutError, ValueError, AttributeError, anyio.EndOfStream) as exc:
                answer = {"ok": False, "error": f"bad request: {exc!r}"}
            try:
                await reply.send(answer)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass


async def feed_events(events: EventStream, reply: Reply) -> None:
    """Send ``events`` on ``reply`` until they end (see the module docstring)."""
    stream = reply.stream
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
