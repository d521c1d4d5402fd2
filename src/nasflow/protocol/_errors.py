"""Protocol errors: what a peer (or a caller of the session API) got wrong.

The tree::

    NasflowError
    └── ProtocolError                something on a command channel was not acceptable
        ├── MalformedMessageError    not JSON, not an object, a field missing or ill-typed
        ├── UnknownMessageTypeError  "type" names no message of this protocol version
        ├── UnexpectedMessageError   a valid message this side does not accept now
        │                            (before the handshake, wrong direction, wrong session)
        ├── UnauthorizedError        a ``setup`` payload over an unauthenticated connection
        ├── MessageTooLargeError     a frame or message over the configured limit
        ├── SequenceError            a gap in sequence numbers, or an ack of something unsent
        ├── VersionMismatchError     the peer speaks another protocol version
        ├── RateLimitError           the peer sent faster than this connection allows
        ├── SessionEndedError        the session said or heard ``bye``; it cannot be used
        └── PeerError                the peer sent us an ``error`` message

Sessions never raise these for data that came from the network: they return them as
effects (and send the peer an ``error`` message). The codec functions raise them. Every
error carries ``code`` (the wire name, also used in ``error`` messages), ``reason`` (what
was wrong, with the offending value), ``offending_type`` and ``offending_seq`` (the message
it was about, when known).
"""

from __future__ import annotations

from typing import ClassVar

from nasflow.exceptions import NasflowError

__all__ = [
    "MalformedMessageError",
    "MessageTooLargeError",
    "PeerError",
    "ProtocolError",
    "RateLimitError",
    "SequenceError",
    "SessionEndedError",
    "UnauthorizedError",
    "UnexpectedMessageError",
    "UnknownMessageTypeError",
    "VersionMismatchError",
    "close_code",
]

# What to do, appended to the message of errors a correct peer never causes.
_BUG_HINT = (
    "this is a bug in the sending side or the two sides run different nasflow versions; "
    "run the same nasflow version on both"
)


class ProtocolError(NasflowError):
    """Something on a command channel was not acceptable; the connection should close.

    ``str(error)`` says what was wrong and what to do; the fields say the same for code.
    """

    code: ClassVar[str] = "protocol"
    """The wire name of this kind of error (the ``code`` of an ``error`` message)."""

    hint: ClassVar[str] = _BUG_HINT
    """What to do about it, appended to the message."""

    def __init__(
        self,
        reason: str,
        *,
        offending_type: str | None = None,
        offending_seq: int | None = None,
    ) -> None:
        self.reason = reason
        """What was wrong, naming the offending value."""
        self.offending_type = offending_type
        """The ``type`` of the message this is about, when known."""
        self.offending_seq = offending_seq
        """The ``seq`` of the message this is about, when it had one."""
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.offending_type is not None:
            where = f" in {self.offending_type!r} message"
            if self.offending_seq is not None:
                where += f" seq {self.offending_seq}"
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.code}{where}: {self.reason}{hint}"


class MalformedMessageError(ProtocolError):
    """Not JSON, not a JSON object, or a field missing or of the wrong type."""

    code = "malformed"


class UnknownMessageTypeError(ProtocolError):
    """The ``type`` field names no message of this protocol version."""

    code = "unknown_type"


class UnexpectedMessageError(ProtocolError):
    """A well-formed message this side does not accept in its current state.

    E.g. anything before the ``hello``/``welcome`` handshake, a worker message on the tuner
    channel, a ``hello`` from a different session id than the one this session serves.
    """

    code = "unexpected"


class UnauthorizedError(ProtocolError):
    """A ``setup`` (pickled code) came over a connection that did not authenticate."""

    code = "unauthorized"
    hint = (
        "pickled payloads are only accepted from authenticated peers: connect with "
        "'Authorization: Bearer <token>' (the manager's token)"
    )


class MessageTooLargeError(ProtocolError):
    """A frame or a single message is over the configured size limit."""

    code = "too_large"
    hint = (
        "keep samples, tracebacks and metrics small (large artefacts belong in files; "
        "send their path in a 'checkpoint' message), or raise the limits on both sides"
    )


class SequenceError(ProtocolError):
    """Sequence numbers do not line up: a gap, or an ack of a message never sent."""

    code = "sequence"
    hint = (
        "a message was lost or a session id was reused by a process that lost its state; "
        "give every process its own session id"
    )


class VersionMismatchError(ProtocolError):
    """The peer speaks another protocol version; ``ours`` and ``theirs`` name both."""

    code = "version"
    hint = "install the same nasflow version for the experiment, the manager and the workers"

    def __init__(self, ours: int, theirs: object, *, offending_type: str | None = None) -> None:
        self.ours = ours
        """Our protocol version."""
        self.theirs = theirs
        """The version the peer announced (as sent)."""
        super().__init__(
            f"this side speaks protocol version {ours}, the peer speaks {theirs!r}",
            offending_type=offending_type,
        )


class RateLimitError(ProtocolError):
    """The peer sent more messages per second than this connection allows."""

    code = "rate_limited"
    hint = "slow down (batch metrics, report less often) or raise the rate limit"


class SessionEndedError(ProtocolError):
    """The session sent or received ``bye``; it can neither send nor reconnect."""

    code = "ended"
    hint = "start a new session (with a new session id) to talk to the peer again"


class PeerError(ProtocolError):
    """The peer sent an ``error`` message: it found something wrong with what we sent.

    ``peer_code`` is the peer's error code (e.g. ``"version"``), ``reason`` its message.
    """

    code = "peer_error"
    hint = ""

    def __init__(
        self,
        peer_code: str,
        reason: str,
        *,
        offending_type: str | None = None,
        offending_seq: int | None = None,
    ) -> None:
        self.peer_code = peer_code
        """The ``code`` the peer sent (one of the codes of this module, or newer)."""
        super().__init__(
            f"the peer reported {peer_code!r}: {reason}",
            offending_type=offending_type,
            offending_seq=offending_seq,
        )


def close_code(failure: ProtocolError | None) -> tuple[int, str]:
    """The WebSocket close code and reason for a connection that ends with ``failure``.

    1000 without a failure, or when the peer reported one (its ``error`` frame says it);
    1008 (policy violation) for a rate limit or a ``setup`` without authentication; 1009
    for a message over the limits; 1002 (protocol error) otherwise. The reason (at most
    123 bytes) names the error's code and what was wrong.
    """
    if failure is None or isinstance(failure, PeerError):
        return 1000, ""
    if isinstance(failure, (RateLimitError, UnauthorizedError)):
        code = 1008
    elif isinstance(failure, MessageTooLargeError):
        code = 1009
    else:
        code = 1002
    reason = f"nasflow {failure.code}: {failure}"
    return code, reason.encode()[:123].decode(errors="ignore")
