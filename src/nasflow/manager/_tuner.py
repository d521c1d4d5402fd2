"""``TunerLink``: the experiment's end of the tuner channel to a manager daemon.

It wraps a ``ClientSession(Role.EXPERIMENT)`` in a ``SessionClient`` and turns the
session's effects into calls on the ``ManagerEngine``: deliveries to ``receive`` (with an
ack callback for after they were published), a new manager incarnation to ``restarted``,
the manager's goodbye to ``gone``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from typing import Any

import anyio

from nasflow.manager._client import SessionClient
from nasflow.protocol import (
    Acked,
    ClientSession,
    Connected,
    Deliver,
    Effect,
    Limits,
    PeerClosed,
    Role,
    SequencedMessage,
    SessionState,
    TrialRef,
)

__all__ = ["TunerLink"]


def tuner_endpoint(url: str) -> str:
    """``ws://host:port`` -> ``ws://host:port/tuner`` (an explicit ``/tuner`` is kept)."""
    base = url.rstrip("/")
    return base if base.endswith("/tuner") else base + "/tuner"


class TunerLink:
    """An experiment attached to the manager at ``url``; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        receive: Callable[[Any, str | None, int | None, Callable[[], None] | None], None],
        running: Callable[[], Iterable[TrialRef]],
        restarted: Callable[[], None],
        gone: Callable[[str], None],
        connect_timeout: float,
        reattach_timeout: float,
        limits: Limits,
    ) -> None:
        self.session = ClientSession(Role.EXPERIMENT, limits=limits)
        self.client = SessionClient(
            tuner_endpoint(url), token, self.session, on_effects=self._on_effects,
            running=running, connect_timeout=connect_timeout,
            reattach_timeout=reattach_timeout, limits=limits,
        )
        self._receive = receive
        self._restarted = restarted
        self._gone = gone
        self._welcomed = False
        self._all_acked = asyncio.Event()
        self._stopped = asyncio.Event()

    def send(self, message: SequencedMessage) -> None:
        self.session.send(message)
        self.client.wake()

    async def run(self) -> None:
        """Keep the channel up (raises ``ManagerConnectionError`` when that fails)."""
        try:
            await self.client.run()
        finally:
            self._stopped.set()

    async def detach(self, reason: str) -> None:
        """Wait (briefly) until the manager holds what was sent, then say goodbye."""
        session = self.session
        if session.state is SessionState.ENDED or self._stopped.is_set():
            return
        with anyio.move_on_after(2):
            while session.unacked:
                self._all_acked.clear()
                await self._all_acked.wait()
        session.close(reason)
        self.client.wake()
        with anyio.move_on_after(2):
            await self._stopped.wait()

    def _on_effects(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Deliver):
                m = effect.message
                self._receive(m, getattr(m, "origin", None), getattr(m, "origin_seq", None),
                              functools.partial(self._ack, effect))
            elif isinstance(effect, Acked):
                if self.session.unacked == 0:
                    self._all_acked.set()
            elif isinstance(effect, Connected):
                if self._welcomed and not effect.resumed:
                    self._restarted()  # a new manager incarnation: it knows nothing of us
                self._welcomed = True
            elif isinstance(effect, PeerClosed):
                self._gone(effect.reason or "it closed the session")

    def _ack(self, delivery: Deliver) -> None:
        self.session.ack(delivery)
        self.client.wake()
