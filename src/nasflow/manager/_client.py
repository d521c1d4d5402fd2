"""``SessionClient``: drives a protocol ``ClientSession`` over a WebSocket.

Workers and the ``ManagerEngine`` are clients of the manager. This class only moves text
frames between a ``websockets`` connection and the session, reconnects with backoff when
the connection drops, and hands what the session produces (``Effect``s) to the caller's
``on_effects``. Everything about *what* the messages mean stays with the caller.

Reconnecting: the first connection must succeed within ``connect_timeout``; once connected,
a lost connection is retried until ``reattach_timeout`` has passed since it was lost. Messages
sent while disconnected wait in the session and go out after the next handshake.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from nasflow.exceptions import NasflowError
from nasflow.protocol import (
    DEFAULT_LIMITS,
    ClientSession,
    Effect,
    Limits,
    PeerError,
    ProtocolError,
    SessionState,
    TrialRef,
)

__all__ = [
    "AUTH_CLOSE_CODE",
    "BAD_PATH_CLOSE_CODE",
    "ManagerConnectionError",
    "PID_HEADER",
    "SessionClient",
    "TOKEN_HINT",
]

_log = logging.getLogger("nasflow.manager.client")

AUTH_CLOSE_CODE = 4401
"""WebSocket close code the manager uses for a missing or wrong token."""
BAD_PATH_CLOSE_CODE = 4404
"""WebSocket close code the manager uses for an unknown endpoint."""
PID_HEADER = "X-Nasflow-Worker-Pid"
"""Tells the manager which process (and process group) a worker connection belongs to."""
TOKEN_HINT = "pass the token the manager printed (token=... or the NASFLOW_TOKEN variable)"

_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


class ManagerConnectionError(NasflowError):
    """The manager could not be reached, refused this client, or stayed away too long.

    ``url`` is the manager's address; ``fatal`` is True when retrying cannot help (a wrong
    token, a protocol error), False when the manager was simply not there in time.
    """

    def __init__(self, message: str, *, url: str, fatal: bool) -> None:
        self.url = url
        """The manager URL this client dialled."""
        self.fatal = fatal
        """Whether retrying could not help."""
        super().__init__(message)


class SessionClient:
    """Keeps ``session`` connected to the manager at ``url``; see the module docstring.

    ``on_effects`` is called (on the event loop, synchronously) with the effects of every
    received frame; it must not block. Call ``wake()`` after ``session.send()`` or
    ``session.ack()`` so that the frames go out. ``running()`` gives the trials in flight
    for each ``hello``. ``on_disconnected`` is called whenever a connection drops.
    """

    def __init__(
        self,
        url: str,
        token: str,
        session: ClientSession,
        *,
        on_effects: Callable[[list[Effect]], None],
        running: Callable[[], Iterable[TrialRef]] = tuple,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        reattach_timeout: float = 60.0,
        limits: Limits = DEFAULT_LIMITS,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 20.0,
        on_disconnected: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        """The manager endpoint (``ws://host:port/tuner`` or ``/trial``)."""
        self.session = session
        """The protocol session this client drives."""
        self.connections = 0
        """How many connections were opened so far (1 after the first)."""
        self._token = token
        self._on_effects = on_effects
        self._running = running
        self._headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        self._connect_timeout = connect_timeout
        self._reattach_timeout = reattach_timeout
        self._limits = limits
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._on_disconnected = on_disconnected
        self._wake = asyncio.Event()
        self._ws: ClientConnection | None = None

    def wake(self) -> None:
        """Send whatever the session has queued (call after ``send``/``ack``/``close``)."""
        self._wake.set()

    @property
    def connected(self) -> bool:
        """Whether a WebSocket is open right now."""
        return self._ws is not None

    async def run(self) -> None:
        """Stay connected until the session ends with ``bye`` (either side).

        Raises ``ManagerConnectionError`` when the manager refuses this client, breaks the
        protocol, or cannot be reached in time (see the module docstring).
        """
        session = self.session
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + self._connect_timeout
        delay = _FIRST_DELAY
        last_error = "no attempt yet"
        while session.state is not SessionState.ENDED:
            left = deadline - loop_time()
            if left <= 0:
                raise self._unreachable(last_error)
            try:
                ws = await connect(
                    self.url,
                    additional_headers=self._headers,
                    compression=None,  # loopback JSON: deflate costs more CPU than it saves
                    proxy=None,
                    open_timeout=max(left, 0.1),
                    ping_interval=self._ping_interval,
                    ping_timeout=self._ping_timeout,
                    max_size=self._limits.max_setup_size,
                    close_timeout=2,
                )
            except InvalidURI as exc:
                raise ManagerConnectionError(
                    f"{self.url!r} is not a manager URL ({exc}); expected ws://host:port",
                    url=self.url, fatal=True,
                ) from exc
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                # backoff between attempts: the only sleep here, bounded by the deadline
                await anyio.sleep(min(delay * (0.5 + random.random()), max(left, 0)))  # backoff
                delay = min(delay * 2, _MAX_DELAY)
                continue
            delay = _FIRST_DELAY
            self.connections += 1
            try:
                await self._serve(ws)
            finally:
                self._ws = None
                session.connection_lost()
                if self._on_disconnected is not None:
                    self._on_disconnected()
            code, reason = ws.close_code, ws.close_reason or ""
            if code == AUTH_CLOSE_CODE:
                raise ManagerConnectionError(
                    f"the manager at {self.url} refused this client: {reason}",
                    url=self.url, fatal=True,
                )
            if code == BAD_PATH_CLOSE_CODE:
                raise ManagerConnectionError(
                    f"the manager at {self.url} refused the connection: {reason}",
                    url=self.url, fatal=True,
                )
            last_error = f"the connection closed (code {code}{': ' + reason if reason else ''})"
            deadline = loop_time() + self._reattach_timeout

    def _unreachable(self, last_error: str) -> ManagerConnectionError:
        if self.connections == 0:
            text = (
                f"cannot reach the nasflow manager at {self.url} within "
                f"{self._connect_timeout:g}s ({last_error}). Is it running? Start one with "
                "`nasflow manager`, or leave manager=None to use an embedded one."
            )
        else:
            text = (
                f"lost the nasflow manager at {self.url} and it did not come back within "
                f"reattach_timeout={self._reattach_timeout:g}s ({last_error})"
            )
        return ManagerConnectionError(text, url=self.url, fatal=False)

    async def _serve(self, ws: ClientConnection) -> None:
        session = self.session
        session.connection_made(authenticated=True, running=self._running())
        self._ws = ws
        self._wake.set()  # the hello
        fatal: ProtocolError | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer, ws)
            try:
                async for frame in ws:
                    effects = session.receive_data(frame)
                    if effects:
                        self._on_effects(effects)
                        error = effects[-1]
                        if isinstance(error, ProtocolError):
                            fatal = error
                    self._wake.set()  # acks and anything the handler queued
                    if session.state is not SessionState.OPEN:
                        break
            except ConnectionClosed:
                pass
            finally:
                tg.cancel_scope.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(2):
            await send_last_frames(ws, session)
            await ws.close()
        if fatal is not None and not _retryable(fatal):
            raise ManagerConnectionError(
                f"protocol error with the manager at {self.url}: {fatal}",
                url=self.url, fatal=True,
            ) from fatal

    async def _writer(self, ws: ClientConnection) -> None:
        wake, session = self._wake, self.session
        try:
            while True:
                await wake.wait()
                wake.clear()  # before taking the frames: a later wake() is not lost
                for frame in session.data_to_send():
                    await ws.send(frame)
        except ConnectionClosed:
            return


def _retryable(error: ProtocolError) -> bool:
    # a rate-limited client is only slowed down: it reconnects and resends
    return isinstance(error, PeerError) and error.peer_code == "rate_limited"


async def send_last_frames(ws: Any, session: Any) -> None:
    """Send what ``session`` queued last (an error frame, a bye) before the connection
    closes; a connection already gone is not an error. The caller bounds the time."""
    try:
        for frame in session.data_to_send():
            await ws.send(frame)
    except ConnectionClosed:
        pass
