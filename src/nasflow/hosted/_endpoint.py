"""The ``/hosted`` endpoint of a daemon: submit, follow, stop and status of hosted
experiments. The messages are in docs/protocol.md ("Hosted experiments").

A connection is authorized by the daemon's token in its upgrade request, like ``/tuner``
and ``/trial`` (the manager refuses it before this module sees it); then the client says
``{"type": "hello", "protocol": N}`` and each request gets one answer, except ``follow``,
which turns the connection into that experiment's feed: ``events`` frames (batches of
numbered events) until ``end``.
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import anyio
import orjson
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from nasflow.exceptions import NasflowError
from nasflow.hosted._host import Host, Hosted, add_paths

__all__ = ["HOSTED_PROTOCOL", "serve_hosted"]

_log = logging.getLogger("nasflow.hosted")

HOSTED_PROTOCOL = 1
"""The version of the ``/hosted`` messages (``hello`` carries it)."""
_BATCH = 1000  # events per frame at most
_HELLO_TIMEOUT = 10.0


async def _send(ws: ServerConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


def _error(message: str) -> dict[str, Any]:
    return {"type": "error", "message": message}


async def serve_hosted(host: Host, ws: ServerConnection) -> None:
    """Serve one authorized ``/hosted`` connection until the client closes it."""
    try:
        with anyio.fail_after(_HELLO_TIMEOUT):
            hello = orjson.loads(await ws.recv())
        if not isinstance(hello, dict) or hello.get("type") != "hello":
            await ws.close(1002, 'nasflow: say {"type": "hello", "protocol": 1} first')
            return
        if hello.get("protocol") != HOSTED_PROTOCOL:
            await ws.close(1002, f"nasflow: hosted protocol {hello.get('protocol')!r} is not "
                                 f"supported (this daemon speaks {HOSTED_PROTOCOL}); use the "
                                 "same nasflow version on both sides")
            return
        await _send(ws, {"type": "welcome", "protocol": HOSTED_PROTOCOL})
        while True:
            request = orjson.loads(await ws.recv())
            if not isinstance(request, dict):
                await _send(ws, _error("a request is a JSON object with a 'type'"))
                continue
            if request.get("type") == "follow":
                await _follow(host, ws, request)
                return
            await _send(ws, await _answer(host, ws, request))
    except (ConnectionClosed, TimeoutError):
        return
    except orjson.JSONDecodeError as exc:
        await ws.close(1007, f"nasflow: a frame is not JSON: {exc}")


async def _answer(host: Host, ws: ServerConnection, request: dict[str, Any]) -> dict[str, Any]:
    kind = request.get("type")
    try:
        if kind == "submit":
            # the experiment's parts follow in one binary frame (cloudpickle), like a setup
            data = await ws.recv()
            if not isinstance(data, bytes):
                return _error("submit: the next frame must be the binary payload")
            # unpickling and building run the submitter's code: off the loop that the
            # other hosted experiments share
            parts = await anyio.to_thread.run_sync(_unpickle, data)
            add_paths(list(parts.pop("sys_path", [])))
            return {"type": "submitted", "experiment_id": await host.submit(parts)}
        if kind == "submit_file":
            from nasflow.cli import ExperimentFileError, load_experiment_file

            try:
                exp = await anyio.to_thread.run_sync(
                    load_experiment_file, str(request.get("file")), request.get("experiment"))
            except ExperimentFileError as exc:
                return _error(f"{exc}\n{exc.details or ''}".rstrip())
            changes = {k: v for k, v in dict(request.get("overrides") or {}).items()
                       if v is not None}
            parts = {"space": exp.space, "evaluator": exp.evaluator,
                     "strategy": exp.strategy, "scheduler": exp.scheduler,
                     "config": exp.config.replace(**changes),
                     "name": None if exp.name == exp.id else exp.name, "id": exp.id}
            return {"type": "submitted", "experiment_id": await host.submit(parts)}
        if kind == "stop":
            hosted = host.find(str(request.get("experiment_id")))
            reason = str(request.get("reason") or "stopped by a client of the daemon")
            host.request_stop(hosted, reason)
            return {"type": "stopping", "experiment_id": hosted.exp.id}
        if kind == "status":
            return {"type": "status", **_status(host.find(str(request.get("experiment_id"))))}
        if kind == "list":
            return {"type": "experiments",
                    "experiments": [_status(h) for h in host.experiments.values()]}
    except (NasflowError, TypeError, ValueError) as exc:
        return _error(str(exc))
    return _error(f"unknown request type {kind!r} (submit, submit_file, follow, stop, "
                  "status, list)")


def _unpickle(data: bytes) -> dict[str, Any]:
    try:
        parts = pickle.loads(data)  # from an authenticated peer only (the token)
    except Exception as exc:  # what the submitter's objects need may be missing here
        raise ValueError(f"the submitted experiment cannot be loaded in the daemon: "
                         f"{type(exc).__name__}: {exc}. Modules it refers to by name must "
                         "be importable by the daemon") from exc
    if not isinstance(parts, dict) or "config" not in parts:
        raise ValueError("the submit payload is not an experiment's parts")
    return parts


def _status(hosted: Hosted) -> dict[str, Any]:
    exp = hosted.exp
    return {"experiment_id": exp.id, "state": exp.state.value, "events": hosted.durable,
            "ended": hosted.ended, "error": hosted.error, "directory": str(exp.directory)}


async def _follow(host: Host, ws: ServerConnection, request: dict[str, Any]) -> None:
    try:
        hosted = host.find(str(request.get("experiment_id")))
    except NasflowError as exc:
        await _send(ws, _error(str(exc)))
        return
    after = request.get("after", 0)
    cursor = after if isinstance(after, int) and after >= 0 else 0
    while True:
        changed = hosted.changed  # taken before reading: a wake after this is not missed
        if cursor < hosted.durable:
            batch = hosted.log[cursor: min(cursor + _BATCH, hosted.durable)]
            cursor += len(batch)
            await ws.send((b'{"type":"events","events":[' + b",".join(batch) + b"]}").decode())
            continue
        if hosted.ended:
            await _send(ws, {"type": "end", **_status(hosted)})
            return
        await changed.wait()
