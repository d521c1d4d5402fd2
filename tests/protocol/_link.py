"""A client and a server session wired back to back: strings in, strings out."""

from __future__ import annotations

from typing import Any

from nasflow.protocol import (
    ClientSession,
    Deliver,
    Effect,
    Role,
    ServerSession,
    SessionState,
)


class Link:
    """One client and one server session, and the frames in flight between them.

    ``pump()`` moves frames until neither side has anything to send and returns what each
    side's ``receive_data`` produced. Nothing is acked unless a test says so (or passes
    ``auto_ack=True``).
    """

    def __init__(self, role: Role = Role.WORKER, **server_kwargs: Any) -> None:
        self.client = ClientSession(role, "client-1")
        self.server = ServerSession(role, "manager-1", **server_kwargs)
        self.client_effects: list[Effect] = []
        self.server_effects: list[Effect] = []
        self.wire: list[tuple[str, str]] = []
        """Every frame sent, as ``(direction, text)`` with direction ``c>s`` or ``s>c``."""

    def connect(self, *, authenticated: bool = True, auto_ack: bool = False) -> None:
        """A new connection: both sides are told, the handshake runs."""
        self.client.connection_made(authenticated=True)
        self.server.connection_made(authenticated=authenticated)
        self.pump(auto_ack=auto_ack)

    def drop(self) -> None:
        """The connection is lost (frames in flight are lost too)."""
        self.client.connection_lost()
        self.server.connection_lost()

    def pump(self, *, auto_ack: bool = False) -> tuple[list[Effect], list[Effect]]:
        got_client: list[Effect] = []
        got_server: list[Effect] = []
        live = (SessionState.CONNECTING, SessionState.OPEN)
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                break
            for frame in to_server:
                self.wire.append(("c>s", frame))
                if self.server.state in live:
                    got_server += self._receive(self.server, frame, auto_ack)
            for frame in to_client:
                self.wire.append(("s>c", frame))
                if self.client.state in live:
                    got_client += self._receive(self.client, frame, auto_ack)
        self.client_effects += got_client
        self.server_effects += got_server
        return got_client, got_server

    @staticmethod
    def _receive(
        session: ClientSession | ServerSession, frame: str, auto_ack: bool
    ) -> list[Effect]:
        effects = session.receive_data(frame)
        if auto_ack:
            for effect in effects:
                if isinstance(effect, Deliver):
                    session.ack(effect)
        return effects


def deliveries(effects: list[Effect]) -> list[Deliver]:
    """The ``Deliver`` effects, in order (asserting that there is no error among them)."""
    assert not [e for e in effects if isinstance(e, Exception)], effects
    return [e for e in effects if isinstance(e, Deliver)]


def delivered(effects: list[Effect]) -> list[Any]:
    """The messages of the ``Deliver`` effects, in order."""
    return [e.message for e in deliveries(effects)]
