"""``TrialManager``: the manager's WebSocket server and its local worker pool.

Two endpoints on one port: ``/tuner`` (experiments, role ``experiment``) and ``/trial``
(workers, role ``worker``). Every connection must present the token in its upgrade
request (``Authorization: Bearer <token>``), compared in constant time; a connection
without it is closed at once with code 4401 and a reason saying what to do. Frames are
limited to ``limits.max_setup_size`` by websockets itself (close code 1009 "message too
big"), and to ``limits.max_message_size`` for anything but ``setup`` by the protocol.
WebSocket pings every ``ping_interval`` seconds detect dead peers.

This module only moves frames between sockets and sessions; ``ManagerCore`` decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import logging
import os
import secrets
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup, TaskStatus
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from nasflow.manager._client import (
    AUTH_CLOSE_CODE,
    BAD_PATH_CLOSE_CODE,
    PID_HEADER,
    TOKEN_HINT,
    send_last_frames,
)
from nasflow.manager._core import ManagerCore
from nasflow.manager._gpus import plan_slots
from nasflow.manager._pool import LocalPool
from nasflow.manager._ray import RayPool, RayWorkers
from nasflow.manager._state import Held
from nasflow.protocol import (
    DEFAULT_LIMITS,
    Acked,
    Cancel,
    Capacity,
    Concurrency,
    Connected,
    Deliver,
    Effect,
    Hello,
    Limits,
    PeerClosed,
    ProtocolError,
    RateLimitError,
    Role,
    SequencedMessage,
    ServerSession,
    SessionState,
    Setup,
    Submit,
    TokenBucket,
    TrialRef,
    close_code,
    encode_error,
    read_hello,
)

__all__ = ["SessionPort", "TrialManager", "new_token"]

_log = logging.getLogger("nasflow.manager")

_HELLO_TIMEOUT = 10.0  # seconds a new connection has to say hello
_ENDPOINTS = {"/tuner": Role.EXPERIMENT, "/trial": Role.WORKER}


def new_token() -> str:
    """A fresh random token (256 bits, hex)."""
    # hex, not urlsafe base64: a token starting with "-" would read as an option in
    # `nasflow manager --token TOKEN`
    return secrets.token_hex(32)


class SessionPort:
    """An experiment attached over the tuner channel: its session, kept across reconnects."""

    def __init__(self, core: ManagerCore, session: ServerSession) -> None:
        self.core = core
        self.session = session
        self.experiment_id: str | None = None
        self.running: tuple[TrialRef, ...] = ()
        self.wake: Callable[[], None] = _noop
        self.connection: object | None = None
        self._done: deque[tuple[int, Callable[[], None]]] = deque()

    def deliver(self, message: SequencedMessage, origin: str | None, origin_seq: int | None,
                done: Callable[[], None] | None) -> None:
        if self.session.state is SessionState.ENDED:
            return  # the experiment left (or was told goodbye): nobody reads this
        if origin is not None:
            # say which worker (and which of its seqs) this came from, so the experiment can
            # drop a copy a restarted manager forwards again
            message = dataclasses.replace(  # only trial events get here with an origin
                message, origin=origin, origin_seq=origin_seq)  # type: ignore[arg-type]
        seq = self.session.send(message)
        if done is not None:
            self._done.append((seq, done))
        self.wake()

    def close(self, reason: str) -> None:
        self.session.close(reason)
        self.wake()

    def hand_over(self, reason: str) -> list[Held]:
        done = dict(self._done)
        self._done.clear()
        moved: list[Held] = []
        if self.session.state is not SessionState.ENDED:
            for seq, message in self.session.unacked_messages():
                if type(message) is Capacity:
                    continue  # the new client gets a grant of its own
                moved.append((message, getattr(message, "origin", None),
                              getattr(message, "origin_seq", None), done.get(seq)))
        self.close(reason)
        return moved

    def effects(self, effects: list[Effect]) -> None:
        """Act on what the experiment's session produced for one frame."""
        core = self.core
        for effect in effects:
            if isinstance(effect, Deliver):
                message = effect.message
                if isinstance(message, Setup):
                    self.experiment_id = message.experiment_id
                    core.port_setup(self, message, self.running)
                elif isinstance(message, Submit):
                    core.submit(self, message)
                elif isinstance(message, Cancel):
                    core.cancel(self, message)
                elif isinstance(message, Concurrency):
                    core.set_concurrency(self, message)
                self.session.ack(effect)  # held in memory: that is all a manager promises
            elif isinstance(effect, Acked):
                done = self._done
                while done and done[0][0] <= effect.seq:
                    done.popleft()[1]()
            elif isinstance(effect, Connected):
                self.running = effect.running
                if effect.resumed:
                    core.port_reconnected(self.experiment_id)
            elif isinstance(effect, PeerClosed):
                if self.experiment_id is not None:
                    core.detach(self.experiment_id, effect.reason or "it said goodbye")
            elif isinstance(effect, Exception):
                _log.warning("experiment %s: %s", self.experiment_id, effect)


class TrialManager:
    """The trial manager: WebSocket server, scheduler and local worker pool.

    Use as an async context manager (or run ``serve`` in a task group)::

        async with TrialManager(workers=4) as manager:
            print(manager.url, manager.token)

    ``workers`` local worker processes are kept warm (one per slot; with ``gpus``, at most
    ``len(gpus) * trials_per_gpu``, spread over the GPUs). ``host``/``port`` default to
    loopback and a free port. ``token`` defaults to a fresh random one. ``embedded``: the
    manager runs inside an experiment process, whose workers then exit with it.
    ``preload``: modules each worker imports when it starts (``["torch"]``), so that a
    daemon's first trial of every experiment does not pay for the import. ``ray``: the
    workers are Ray actors (``RayWorkers``: their resources), ``workers`` of them at
    most; the manager then listens on this node's Ray address (see docs/ray.md).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        workers: int = 1,
        gpus: Sequence[int] | None = None,
        trials_per_gpu: int = 1,
        max_trials_per_worker: int | None = None,
        kill_grace: float = 5.0,
        reattach_timeout: float = 60.0,
        adopt_grace: float | None = None,
        log_dir: str | Path | None = None,
        limits: Limits = DEFAULT_LIMITS,
        ping_interval: float | None = 10.0,
        ping_timeout: float | None = 20.0,
        embedded: bool = False,
        preload: Sequence[str] = (),
        ray: RayWorkers | None = None,
    ) -> None:
        if ray is not None and host == "127.0.0.1":
            import ray as ray_module

            # the actors dial in from the cluster's nodes: listen on the address Ray uses
            # for this node (the token guards it; see docs/ray.md)
            host = ray_module.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.host = host
        """The interface the server binds."""
        self.port = port
        """The port (the real one once started)."""
        self.token = token or new_token()
        """The shared secret every client must present."""
        self.limits = limits
        """Frame size limits (clients should use the same)."""
        # Ray assigns GPUs itself (trial_resources): every slot leaves them alone
        slots: list[str | None] = (plan_slots(gpus, trials_per_gpu, workers) if ray is None
                                   else [None] * workers)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nasflow-manager-")
            log_dir = self._tmp.name
        self.log_dir = Path(log_dir)
        """Where workers write their own output (outside trials)."""
        if ray is not None:
            self._pool: LocalPool = RayPool(
                ray, token=self.token, reattach_timeout=reattach_timeout,
                log_dir=self.log_dir, on_exit=self._worker_exited)
        else:
            self._pool = LocalPool(
                token=self.token, reattach_timeout=reattach_timeout, log_dir=self.log_dir,
                parent_pid=os.getpid() if embedded else None, on_exit=self._worker_exited,
                threads=max(1, _cpus() // workers), preload=preload,
            )
        self.core = ManagerCore(
            pool=self._pool, slots=slots, max_trials_per_worker=max_trials_per_worker,
            kill_grace=kill_grace, reattach_timeout=reattach_timeout,
            adopt_grace=adopt_grace, limits=limits, spool_dir=self.log_dir,
            grow=None if not embedded else (
                functools.partial(plan_slots, gpus, trials_per_gpu) if ray is None
                else lambda n: [None] * n),
        )
        """The scheduler (an embedded engine talks to it directly)."""
        self._ping = (ping_interval, ping_timeout)
        self._tg: TaskGroup | None = None
        self._outer: TaskGroup | None = None
        self._stop = asyncio.Event()
        self.stopped = asyncio.Event()
        """Set once ``serve`` has returned (workers gone, server closed)."""
        self._ports: dict[str, SessionPort] = {}
        self.endpoints: dict[str, Callable[[ServerConnection], Awaitable[None]]] = {}
        """More endpoints on this port (path -> handler of an authorized connection), e.g.
        ``/hosted`` of a daemon that hosts experiments; the token rule is the same."""

    @property
    def url(self) -> str:
        """``ws://host:port`` (experiments use ``/tuner``, workers ``/trial``)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"ws://{host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind, start the workers, report ``started``, and serve until ``stop()`` (or until
        cancelled); then say goodbye to experiments and workers and stop the workers.

        Run it in a task group: ``await tg.start(manager.serve)``. Raises ``OSError`` if the
        address cannot be bound.
        """
        server = await serve(
            self._handle, self.host, self.port,
            compression=None,  # loopback JSON: deflate costs more CPU than it saves
            max_size=self.limits.max_setup_size,
            ping_interval=self._ping[0], ping_timeout=self._ping[1],
            close_timeout=2,
        )
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._pool.bind(tg, self.url + "/trial")
                self.core.start()
                task_status.started()
                try:
                    await self._stop.wait()
                finally:
                    # a cancelled manager still stops its workers: no orphans
                    with anyio.CancelScope(shield=True):
                        await self.core.shutdown()
                        server.close()
                        await server.wait_closed()
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            if self._tmp is not None:
                self._tmp.cleanup()
            self.stopped.set()

    def stop(self) -> None:
        """Make ``serve`` shut down (it returns once the workers are gone)."""
        self._stop.set()

    async def hand_over(self) -> int:
        """Go away for a successor on this address (``nasflow manager`` on SIGTERM).

        Nothing is said goodbye to but idle workers: busy workers keep their trials
        running and their events, experiments keep their sessions, and both re-attach to
        the next manager on this address within ``reattach_timeout``, as after a crash.
        Returns how many workers were left running. The process must end right after,
        without ``stop()`` (which stops the workers): ``os._exit``.
        """
        kept = await self.core.hand_over()
        for port in self._ports.values():
            connection = port.connection
            if isinstance(connection, ServerConnection):
                # 1012 "service restart": the client re-dials (only a bye ends a session)
                with anyio.move_on_after(1):
                    await connection.close(1012, "nasflow: the manager is restarting")
        return kept

    async def __aenter__(self) -> TrialManager:
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self.serve)
        except BaseException as exc:
            await tg.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._outer = tg
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
        assert self._outer is not None
        await self._outer.__aexit__(exc_type, exc, tb)

    async def _worker_exited(self, process: Any) -> None:
        await self.core.fleet.exited(process)

    # --- connections ------------------------------------------------------------------------

    def _authorized(self, ws: ServerConnection) -> bool:
        given = (ws.request.headers.get("Authorization", "") if ws.request else "").encode()
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        path = urlsplit(request.path if request else "/").path.rstrip("/")
        if not self._authorized(ws):
            await ws.close(AUTH_CLOSE_CODE, f"nasflow: wrong or missing token; {TOKEN_HINT}")
            return
        extra = self.endpoints.get(path)
        if extra is not None:
            await extra(ws)
            return
        role = _ENDPOINTS.get(path)
        if role is None:
            await ws.close(BAD_PATH_CLOSE_CODE,
                           f"nasflow: no endpoint {path or '/'!r}; use /tuner or /trial")
            return
        try:
            with anyio.fail_after(_HELLO_TIMEOUT):
                first = await ws.recv()
            hello = read_hello(first, self.limits)
            if hello.role is not role:
                raise _wrong_role(hello, path)
        except (TimeoutError, ConnectionClosed):
            return
        except ProtocolError as exc:
            await _refuse(ws, exc)
            return
        if role is Role.WORKER:
            await self._serve_worker(ws, hello, first)
        else:
            await self._serve_experiment(ws, hello, first)

    def _drop(self, connection: object) -> None:
        if isinstance(connection, ServerConnection) and self._tg is not None:
            self._tg.start_soon(connection.close)

    async def _serve_worker(self, ws: ServerConnection, hello: Hello, first: str | bytes) -> None:
        core = self.core
        pid_text = ws.request.headers.get(PID_HEADER) if ws.request else None
        pid = int(pid_text) if pid_text and pid_text.isdigit() else None
        worker = core.fleet.for_session(hello.session, pid)
        if worker is None:
            await ws.close(1008, "nasflow: unknown worker session (workers are started by "
                                 "the manager)")
            return
        if worker.session.state is SessionState.ENDED:
            await _goodbye(ws, hello, first, "the manager retired this worker")
            return
        wake = asyncio.Event()
        if worker.connection is not None:  # a newer connection of the same worker wins
            self._drop(worker.connection)
            worker.session.connection_lost()
            core.fleet.disconnected(worker)
        worker.connection = ws
        core.fleet.connected(worker, wake.set)
        try:
            await _drive(ws, worker.session, first, wake, core.fleet.effects, worker,
                         lambda: worker.connection is ws)
        finally:
            if worker.connection is ws:
                worker.connection = None
                worker.session.connection_lost()
                core.fleet.disconnected(worker)

    async def _serve_experiment(self, ws: ServerConnection, hello: Hello,
                                first: str | bytes) -> None:
        # forget sessions that ended while disconnected (their experiment left or timed out)
        for key in [k for k, p in self._ports.items()
                    if p.connection is None and p.session.state is SessionState.ENDED]:
            del self._ports[key]
        port = self._ports.get(hello.session)
        if port is None or port.session.state is SessionState.ENDED:
            session = ServerSession(Role.EXPERIMENT, limits=self.limits)
            port = self._ports[hello.session] = SessionPort(self.core, session)
        if port.connection is not None:  # a newer connection of the same experiment wins
            self._drop(port.connection)
            port.session.connection_lost()
        wake = asyncio.Event()
        port.connection, port.wake = ws, wake.set
        try:
            await _drive(ws, port.session, first, wake, lambda _owner, e: port.effects(e),
                         port, lambda: port.connection is ws)
        finally:
            if port.connection is ws:
                port.connection, port.wake = None, _noop
                port.session.connection_lost()
                if port.session.state is SessionState.ENDED:
                    self._ports.pop(hello.session, None)
                else:
                    self.core.port_disconnected(port.experiment_id)


async def _drive(ws: ServerConnection, session: ServerSession, first: str | bytes,
                 wake: asyncio.Event, on_effects: Callable[[Any, list[Effect]], None],
                 owner: Any, current: Callable[[], bool]) -> None:
    """Move frames between ``ws`` and ``session`` until either side ends the connection."""
    session.connection_made(authenticated=True)  # the token was checked on connect

    async def writer() -> None:
        try:
            while True:
                await wake.wait()
                wake.clear()  # before taking the frames: a later wake is not lost
                if not current():
                    return
                for frame in session.data_to_send():
                    await ws.send(frame)
        except ConnectionClosed:
            return

    limits = session.limits
    bucket = TokenBucket(limits.max_frame_rate, limits.max_frame_burst)
    failure: ProtocolError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        try:
            frame = first
            while current():
                effects = session.receive_data(frame)
                failure = next((e for e in effects if isinstance(e, ProtocolError)), None)
                on_effects(owner, effects)
                wake.set()
                if session.state is not SessionState.OPEN:
                    break
                frame = await ws.recv()
                if not bucket.allow(1):
                    failure = RateLimitError(
                        f"more than {limits.max_frame_burst} frames at once, or over "
                        f"{limits.max_frame_rate:g} a second on average (Limits."
                        "max_frame_rate, max_frame_burst); reconnect and send slower")
                    _log.warning("closing a %s connection: %s", session.role.value, failure)
                    break
        except ConnectionClosed:
            pass
        finally:
            tg.cancel_scope.cancel()
    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
        if current():
            await send_last_frames(ws, session)
            if isinstance(failure, RateLimitError):  # the session did not see this one
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(encode_error(failure).decode())
    code, reason = close_code(failure)
    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
        await ws.close(code, reason)


async def _goodbye(ws: ServerConnection, hello: Hello, first: str | bytes, reason: str) -> None:
    """Answer a client whose session this manager already ended: handshake, then ``bye``
    (so it leaves instead of dialling again)."""
    session = ServerSession(hello.role, peer_session=hello.session)
    session.connection_made(authenticated=True)
    session.receive_data(first)
    session.close(reason)
    with anyio.move_on_after(2):
        try:
            for frame in session.data_to_send():
                await ws.send(frame)
            await ws.close()
        except ConnectionClosed:
            return


async def _refuse(ws: ServerConnection, error: ProtocolError) -> None:
    with anyio.move_on_after(2):
        try:
            await ws.send(encode_error(error).decode())
        except ConnectionClosed:
            return
        await ws.close(*close_code(error))


def _wrong_role(hello: Hello, path: str) -> ProtocolError:
    from nasflow.protocol import UnexpectedMessageError

    return UnexpectedMessageError(
        f"a {hello.role.value} client connected to {path}; experiments use /tuner, "
        "workers /trial", offending_type="hello",
    )


def _cpus() -> int:
    """The CPUs this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _noop() -> None:
    return None
