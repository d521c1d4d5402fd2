"""What ``Session.receive_data`` hands back: effects for the I/O layer to carry out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from nasflow.protocol._errors import ProtocolError
from nasflow.protocol._messages import SequencedMessage, TrialRef

__all__ = ["Acked", "Connected", "Deliver", "Effect", "PeerClosed", "SessionState"]


class SessionState(enum.Enum):
    """Where a session is: ``CLOSED -> CONNECTING -> OPEN -> CLOSED ... -> ENDED``."""

    CLOSED = "closed"
    """No connection (before the first one, or after one was lost or failed)."""
    CONNECTING = "connecting"
    """Connected, handshake not done: only ``hello``/``welcome``/``error`` are accepted."""
    OPEN = "open"
    """Handshake done: messages flow both ways."""
    ENDED = "ended"
    """``bye`` was sent or received: the session is over for good."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The handshake completed; unacked messages were queued again.

    ``resumed`` is True when the peer's record refers to this session (a re-attach),
    False on first contact or when the peer is a new incarnation (a restarted manager, or
    a manager meeting a worker it never knew). On the server, ``running`` is the client's
    ``hello.running``.
    """

    peer_session: str
    resumed: bool
    resent: int
    """How many unacked messages were queued for resending."""
    running: tuple[TrialRef, ...] = ()


@dataclass(frozen=True, slots=True)
class Deliver:
    """Carry out ``message``; once its effect is durable, call ``session.ack(this)``.

    Each seq is delivered once per session: a resent duplicate is dropped, even if this
    delivery was not acked yet. If the effect cannot be made durable, do not ack: end the
    session (or the process) so that the peer resends it to a fresh receiver.
    """

    seq: int
    message: SequencedMessage
    epoch: int = field(default=0, repr=False)
    """Which incarnation of the peer's stream this came from (stale acks are ignored)."""


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer made every message we sent up to ``seq`` durable; they are forgotten."""

    seq: int


@dataclass(frozen=True, slots=True)
class PeerClosed:
    """The peer said ``bye``: it will not come back with this session; close the socket."""

    reason: str


Effect = Connected | Deliver | Acked | PeerClosed | ProtocolError
"""Anything ``receive_data`` returns. A ``ProtocolError`` means: send what
``data_to_send()`` returns (the ``error`` frame) and close the connection."""
