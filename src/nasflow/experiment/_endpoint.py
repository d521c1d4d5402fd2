"""The ops a running experiment's control endpoint serves (``_control.py`` knows none):
``stop``, ``status``, ``events``, and one per change of its ``ChangeDesk``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from nasflow._control import ControlOp, Reply, feed_events
from nasflow.events import EventHub
from nasflow.experiment._changes import ChangeDesk

__all__ = ["control_ops"]


def control_ops(hub: EventHub, changes: ChangeDesk, *,
                on_stop: Callable[[str], Awaitable[None]],
                status: Callable[[], dict[str, Any]]) -> dict[str, ControlOp]:
    """``{op: handler}`` for one run's control endpoint."""

    async def stop(args: dict[str, Any], reply: Reply) -> dict[str, Any] | None:
        reason = str(args.get("reason") or "stopped from the CLI")
        if not args.get("wait"):
            await reply.send({"ok": True, "stopping": True})
            await on_stop(reason)
            return None
        await on_stop(reason)  # returns once the run has ended and saved
        return {"ok": True, "stopped": True, **status()}

    async def status_op(args: dict[str, Any], reply: Reply) -> dict[str, Any]:
        return {"ok": True, **status()}

    async def events(args: dict[str, Any], reply: Reply) -> None:
        # unbounded: a feed's reader (the dashboard) must never make the search wait; the
        # feed drops a reader that falls far behind instead
        await feed_events(hub.subscribe(buffer=0), reply)

    def change(op: str) -> ControlOp:
        async def apply(args: dict[str, Any], reply: Reply) -> dict[str, Any]:
            source = str(args.pop("source", None) or "cli")[:40]
            return {"ok": True, **await changes.apply(op, args, source=source)}
        return apply

    ops: dict[str, ControlOp] = {"stop": stop, "status": status_op, "events": events}
    for op in changes.ops:
        ops[op] = change(op)
    return ops
