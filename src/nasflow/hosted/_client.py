"""The client side of hosted experiments: ``nf.submit``, ``nf.attach`` and the handle.

``handle.events()`` follows the experiment from the daemon: every event from the start
(or after the number given), then the live ones, as the same typed events
``exp.events()`` gives. A dropped connection (a daemon restart) is re-dialled and the feed
continues after the last event received, so a client never misses one or sees one twice.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from nasflow._event_json import event_from_dict
from nasflow._kernel import ExperimentState
from nasflow.events import Event
from nasflow.exceptions import NasflowError
from nasflow.hosted._endpoint import HOSTED_PROTOCOL
from nasflow.manager import AUTH_CLOSE_CODE, TOKEN_HINT
from nasflow.protocol import DEFAULT_LIMITS

__all__ = ["HostedExperiment", "attach", "submit"]

RECONNECT_SECONDS = 120.0
"""How long a follower keeps re-dialling a daemon that went away (a restart)."""


def _endpoint(manager: str) -> str:
    base = manager.rstrip("/")
    for suffix in ("/tuner", "/hosted"):
        base = base.removesuffix(suffix)
    return base + "/hosted"


async def _open(manager: str, token: str | None) -> ClientConnection:
    token = token or os.environ.get("NASFLOW_TOKEN")
    if not token:
        raise NasflowError(f"no token for the daemon at {manager}: {TOKEN_HINT}")
    try:
        ws = await connect(_endpoint(manager), additional_headers={
            "Authorization": f"Bearer {token}"}, max_size=DEFAULT_LIMITS.max_setup_size,
            compression=None, open_timeout=10)
    except InvalidURI as exc:
        raise NasflowError(f"manager must be a ws://host:port address, got {manager!r}"
                           ) from exc
    try:
        await ws.send(orjson.dumps({"type": "hello", "protocol": HOSTED_PROTOCOL}).decode())
        welcome = orjson.loads(await ws.recv())
    except ConnectionClosed as exc:
        raise _closed(manager, exc) from exc
    if welcome.get("type") != "welcome":
        raise NasflowError(f"the daemon at {manager} answered {welcome!r}")
    return ws


def _closed(manager: str, exc: ConnectionClosed) -> NasflowError:
    rcvd = exc.rcvd
    if rcvd is not None and rcvd.code == AUTH_CLOSE_CODE:
        return NasflowError(f"the daemon at {manager} refused the token: {rcvd.reason}")
    reason = rcvd.reason if rcvd is not None else "no close frame"
    return NasflowError(f"the daemon at {manager} closed the connection ({reason})")


async def _request(manager: str, token: str | None, message: dict[str, Any],
                   payload: bytes | None = None) -> dict[str, Any]:
    ws = await _open(manager, token)
    try:
        await ws.send(orjson.dumps(message).decode())
        if payload is not None:
            await ws.send(payload)
        answer: dict[str, Any] = orjson.loads(await ws.recv())
    except ConnectionClosed as exc:
        raise _closed(manager, exc) from exc
    finally:
        await ws.close()
    if answer.get("type") == "error":
        raise NasflowError(f"the daemon at {manager}: {answer.get('message')}")
    return answer


class HostedExperiment:
    """A handle on an experiment that a daemon hosts (``nf.submit`` / ``nf.attach``)."""

    def __init__(self, experiment_id: str, *, manager: str, token: str | None = None) -> None:
        self.id = experiment_id
        """The experiment id (its directory under the daemon's ``NASFLOW_HOME``)."""
        self.manager = manager
        """The daemon's address."""
        self._token = token
        self.state: ExperimentState | None = None
        """The state its last ``ExperimentFinished`` (or ``status``) said."""

    def __repr__(self) -> str:
        return f"HostedExperiment({self.id!r}, manager={self.manager!r})"

    async def status(self) -> dict[str, Any]:
        """What the daemon says of it now: state, events so far, its directory there."""
        answer = await _request(self.manager, self._token,
                                {"type": "status", "experiment_id": self.id})
        self.state = ExperimentState(answer["state"])
        return answer

    async def stop(self, reason: str = "stopped by a client of the daemon") -> None:
        """Ask the daemon to stop it (running trials CANCELED, everything saved; a daemon
        restart does not resume it). Returns at once; ``wait()`` waits for the end."""
        await _request(self.manager, self._token,
                       {"type": "stop", "experiment_id": self.id, "reason": reason})

    async def wait(self) -> ExperimentState:
        """Follow it to its end; returns its final state."""
        async for _ in self.events():
            pass
        answer = await self.status()
        return ExperimentState(answer["state"])

    async def events(self, after: int = 0) -> AsyncIterator[Event]:
        """Its events after the ``after``-th (0: all of them, from its start), then the
        live ones, until it ends (by itself or a stop; a daemon restart is not an end)."""
        async for _, event in self.numbered_events(after):
            yield event

    async def numbered_events(self, after: int = 0) -> AsyncIterator[tuple[int, Event]]:
        """``events()`` with each event's number (pass the last one as ``after`` to go on
        from there later, from any process)."""
        seen = after
        gone_since: float | None = None
        while True:
            try:
                ws = await _open(self.manager, self._token)
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                # the daemon is restarting: try again for a while
                now = anyio.current_time()
                gone_since = now if gone_since is None else gone_since
                if now - gone_since > RECONNECT_SECONDS:
                    raise NasflowError(f"the daemon at {self.manager} is unreachable: {exc}"
                                       ) from exc
                await anyio.sleep(0.2)  # reconnect backoff: nothing to await on a dead socket
                continue
            gone_since = None
            try:
                await ws.send(orjson.dumps({"type": "follow", "experiment_id": self.id,
                                            "after": seen}).decode())
                async for frame in ws:
                    message = orjson.loads(frame)
                    kind = message.get("type")
                    if kind == "events":
                        for data in message["events"]:
                            seq = int(data.pop("seq"))
                            if seq <= seen:
                                continue  # never twice, whatever a daemon resends
                            seen = seq
                            yield seq, event_from_dict(data)
                    elif kind == "end":
                        self.state = ExperimentState(message["state"])
                        return
                    elif kind == "error":
                        raise NasflowError(f"the daemon at {self.manager}: "
                                           f"{message.get('message')}")
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                if rcvd is not None and rcvd.code == AUTH_CLOSE_CODE:
                    raise _closed(self.manager, exc) from exc
                continue  # a restart: re-dial and go on after `seen`
            finally:
                await ws.close()


def _pack(exp: Any) -> bytes:
    import cloudpickle

    from nasflow.exceptions import PayloadError

    parts = {"space": exp.space, "evaluator": exp.evaluator, "strategy": exp.strategy,
             "scheduler": exp.scheduler, "config": exp.config,
             "name": None if exp.name == exp.id else exp.name, "id": exp.id,
             "sys_path": [p for p in sys.path if p]}
    try:
        data: bytes = cloudpickle.dumps(parts)
    except Exception as exc:
        raise PayloadError(
            f"the experiment cannot be sent to the daemon: {type(exc).__name__}: {exc}. "
            "Its space, evaluator and strategy must pickle (open files, locks, sockets and "
            "connections are made inside evaluate(), not captured)") from exc
    limit = DEFAULT_LIMITS.max_setup_size
    if len(data) > limit:
        raise PayloadError(
            f"the experiment pickles to {len(data)} bytes, more than the {limit} a submit "
            "may carry; keep data sets out of the evaluator (load them inside evaluate()), "
            "or put the experiment in a file and use nasflow submit FILE")
    return data


async def submit(exp: Any, *, manager: str, token: str | None = None) -> HostedExperiment:
    """Hand ``exp`` (an ``nf.Experiment`` that has not run) to the daemon at ``manager``,
    which runs it -- strategy, store, events -- on its workers; returns at once with a
    handle. ``token`` defaults to ``$NASFLOW_TOKEN``."""
    answer = await _request(manager, token, {"type": "submit"}, _pack(exp))
    return HostedExperiment(str(answer["experiment_id"]), manager=manager, token=token)


async def submit_file(file: str, *, manager: str, token: str | None = None,
                      experiment: str | None = None,
                      overrides: dict[str, Any] | None = None) -> HostedExperiment:
    """Have the daemon load the experiment ``file`` defines (as ``nasflow run`` loads one)
    and host it."""
    path = str(await anyio.Path(file).absolute())
    answer = await _request(manager, token, {
        "type": "submit_file", "file": path, "experiment": experiment,
        "overrides": overrides or {}})
    return HostedExperiment(str(answer["experiment_id"]), manager=manager, token=token)


def attach(experiment_id: str, *, manager: str, token: str | None = None) -> HostedExperiment:
    """A handle on experiment ``experiment_id`` that the daemon at ``manager`` hosts
    (submitted earlier, from here or anywhere); nothing is sent until it is used."""
    return HostedExperiment(experiment_id, manager=manager, token=token)
