"""Session state machines of both channels: frames in, effects and frames out, no I/O.

A session lives as long as its peer relationship, across reconnects: the I/O layer calls
``connection_made`` for every new WebSocket and ``connection_lost`` when it drops. Driving
one connection looks like this (the same on every side)::

    session.connection_made(authenticated=...)
    send_all(session.data_to_send())          # the client's hello
    for frame in websocket:
        for effect in session.receive_data(frame):
            match effect:
                case Deliver(): handle(effect.message); later: session.ack(effect)
                case Connected() | Acked() | PeerClosed(): ...
                case ProtocolError(): log(effect)
        send_all(session.data_to_send())       # after every receive, send, ack
        if session.state is not SessionState.OPEN: break   # error or bye: close
    session.connection_lost()

``send()`` may be called at any time before ``bye``: while disconnected the message waits
and goes out after the next handshake, together with every message the peer had not
acked. ``data_to_send()`` coalesces queued messages into ``batch`` frames.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from nasflow.protocol._codec import decode, encode, encode_error, weight
from nasflow.protocol._effects import Acked, Connected, Deliver, Effect, PeerClosed, SessionState
from nasflow.protocol._errors import (
    MessageTooLargeError,
    PeerError,
    ProtocolError,
    RateLimitError,
    SessionEndedError,
    UnauthorizedError,
    UnexpectedMessageError,
)
from nasflow.protocol._framing import Queued, pack
from nasflow.protocol._limits import DEFAULT_LIMITS, Limits, RateLimiter
from nasflow.protocol._messages import (
    Ack,
    Bye,
    ErrorMessage,
    Heartbeat,
    Hello,
    Role,
    SequencedMessage,
    Setup,
    TrialRef,
    Welcome,
    accepted_by_client,
    accepted_by_server,
)
from nasflow.protocol._reliable import Incoming, Outgoing

__all__ = ["ClientSession", "ServerSession", "new_session_id", "read_hello"]

_LIVE = (SessionState.CONNECTING, SessionState.OPEN)


def new_session_id(prefix: str) -> str:
    """A fresh, unique session id such as ``worker-3f2a...``: one per process and role."""
    return f"{prefix}-{uuid.uuid4().hex}"


def read_hello(data: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Hello:
    """The ``hello`` in a connection's first frame, so the server can pick its session.

    Raises ``ProtocolError`` (send ``encode_error(exc)`` and close) if the frame is not a
    valid ``hello`` of this protocol version.
    """
    frames = decode(data, limits)
    message = frames[0][1]
    if len(frames) != 1 or not isinstance(message, Hello):
        raise UnexpectedMessageError(
            f"expected 'hello' as the first message, got {message.TYPE!r}",
            offending_type=message.TYPE,
        )
    return message


class _Session:
    """What both sides share: sending, acking, batching, and the reliable streams."""

    def __init__(
        self,
        role: Role,
        session_id: str,
        *,
        sends: frozenset[type[Any]],
        accepts: frozenset[type[Any]],
        limits: Limits,
        rate_limit: RateLimiter | None,
    ) -> None:
        self.role = role
        """The client's role; it names the channel (tuner: experiment, trial: worker)."""
        self.session_id = session_id
        """This side's session id (sent in ``hello``/``welcome``)."""
        self.peer_session: str | None = None
        """The peer's session id, once known."""
        self.limits = limits
        """Frame size and batch limits (the same on both sides)."""
        self.state = SessionState.CLOSED
        """Where the session is; see ``SessionState``."""
        self.duplicates = 0
        """How many resent messages were dropped because they were delivered before."""
        self._sends = sends
        self._accepts = accepts
        self._rate_limit = rate_limit
        self._authenticated = False
        self._out = Outgoing()
        self._in = Incoming()
        # (weight, frame) in send order; sequenced frames (weight >= 1) may share a batch
        self._outbox: list[Queued] = []

    @property
    def unacked(self) -> int:
        """How many sent messages the peer has not acked (resent after a reconnect)."""
        return len(self._out)

    # ---- connection --------------------------------------------------------------------

    def _connect(self, authenticated: bool) -> None:
        if self.state is SessionState.ENDED:
            raise SessionEndedError("cannot reconnect: the session ended with 'bye'")
        self._outbox.clear()
        self._authenticated = authenticated
        self.state = SessionState.CONNECTING

    def connection_lost(self) -> None:
        """The WebSocket is gone; unacked messages wait for the next ``connection_made``."""
        if self.state is not SessionState.ENDED:
            self.state = SessionState.CLOSED
        self._outbox.clear()

    def close(self, reason: str = "") -> None:
        """Say ``bye``: the session ends for good (send ``data_to_send()``, then close).

        Messages the peer has not acked are dropped: wait until ``unacked == 0`` first if
        they matter.
        """
        if self.state is SessionState.OPEN:
            self._queue_ack()
        if self.state in _LIVE:
            self._outbox.append((0, encode(Bye(reason=reason))))
        self.state = SessionState.ENDED

    # ---- sending -----------------------------------------------------------------------

    def send(self, message: SequencedMessage) -> int:
        """Queue ``message`` with the next seq and keep it until the peer acks it.

        Returns the seq (``Acked`` effects refer to it). Raises ``UnexpectedMessageError``
        for a message this side does not send, ``MalformedMessageError`` or
        ``MessageTooLargeError`` for one the peer would reject (a ``metrics`` message of
        more than ``limits.max_batch`` entries among them: split it), ``SessionEndedError``
        after ``bye``.
        """
        if self.state is SessionState.ENDED:
            raise SessionEndedError("cannot send: the session ended with 'bye'")
        if type(message) not in self._sends:
            name = getattr(message, "TYPE", type(message).__name__)
            raise UnexpectedMessageError(
                f"{self._side()} does not send {name!r}", offending_type=name
            )
        seq = self._out.next_seq
        frame = encode(message, seq)
        limits = self.limits
        limit = limits.max_setup_size if type(message) is Setup else limits.max_message_size
        if len(frame) > limit:
            raise MessageTooLargeError(
                f"message of {len(frame)} bytes; the limit is {limit}",
                offending_type=message.TYPE,
                offending_seq=seq,
            )
        size = weight(message)
        if size > limits.max_batch:
            raise MessageTooLargeError(
                f"'metrics' message of {size} entries; the limit is {limits.max_batch}",
                offending_type=message.TYPE,
                offending_seq=seq,
            )
        self._out.add(frame, size)
        if self.state is SessionState.OPEN:
            self._outbox.append((size, frame))
        return seq

    def ack(self, delivery: Deliver) -> None:
        """The effect of ``delivery`` is durable: let the peer forget it.

        Acks may come in any order; the peer is told the highest seq below which all are
        acked. A delivery from before the peer restarted is ignored (its new incarnation
        resends what it still needs).
        """
        if delivery.epoch == self._in.epoch:
            self._in.ack(delivery.seq)

    def unacked_messages(self) -> list[tuple[int, SequencedMessage]]:
        """``(seq, message)`` of every sent message the peer has not acked, oldest first.

        For handing them to another session: a manager whose experiment came back as a
        new process (a new client session) forwards what the dead one never acked.
        """
        first = self._out.first_unacked
        out: list[tuple[int, SequencedMessage]] = []
        for i, frame in enumerate(self._out.unacked()):
            [(_, message)] = decode(frame, self.limits)  # our own frames: they decode
            out.append((first + i, message))  # type: ignore[arg-type]
        return out

    def heartbeat(self) -> None:
        """Queue a ``heartbeat`` (only while open; the peer ignores it)."""
        if self.state is SessionState.OPEN:
            self._outbox.append((0, encode(Heartbeat())))

    def data_to_send(self) -> list[str]:
        """The frames to send now, in order; send them as WebSocket text frames.

        Consecutive sequenced messages are coalesced into ``batch`` frames within
        ``limits``; a pending ack goes last.
        """
        if self.state is SessionState.OPEN:
            self._queue_ack()
        if not self._outbox:
            return []
        out = pack(self._outbox, self.limits)
        self._outbox.clear()
        return out

    def _queue_ack(self) -> None:
        if self._in.ack_pending:
            self._in.ack_pending = False
            self._outbox.append((0, encode(Ack(seq=self._in.acked))))

    # ---- receiving ---------------------------------------------------------------------

    def receive_data(self, data: str | bytes) -> list[Effect]:
        """Process one received frame; return what the I/O layer must do, in order.

        Never raises for what the peer sent: a protocol error is returned as the last
        effect, an ``error`` frame is queued for the peer and the state becomes CLOSED
        (close the connection). Frames arriving while CLOSED or ENDED are ignored.
        """
        if self.state not in _LIVE:
            return []
        effects: list[Effect] = []
        try:
            frames = decode(data, self.limits)
            if self._rate_limit is not None:
                count = sum(weight(message) for _, message in frames)
                if not self._rate_limit.allow(count):
                    raise RateLimitError(f"{count} more messages are over the rate limit")
            for seq, message in frames:
                if seq is not None:
                    self._receive_sequenced(seq, message, effects)
                else:
                    self._receive_control(message, effects)
                if self.state not in _LIVE:
                    break
        except ProtocolError as exc:
            effects.append(self._fail(exc))
        return effects

    def _receive_sequenced(self, seq: int, message: Any, effects: list[Effect]) -> None:
        if self.state is not SessionState.OPEN:
            raise UnexpectedMessageError(
                "a message before the handshake completed", offending_type=message.TYPE,
                offending_seq=seq,
            )
        if type(message) not in self._accepts:
            raise UnexpectedMessageError(
                f"{self._side()} does not accept {message.TYPE!r}",
                offending_type=message.TYPE,
                offending_seq=seq,
            )
        if type(message) is Setup and not self._authenticated:
            raise UnauthorizedError(
                "'setup' over a connection that did not authenticate",
                offending_type=message.TYPE,
                offending_seq=seq,
            )
        if self._in.accept(seq, message.TYPE):
            effects.append(Deliver(seq, message, self._in.epoch))
        else:
            self.duplicates += 1

    def _receive_control(self, message: Any, effects: list[Effect]) -> None:
        if isinstance(message, ErrorMessage):
            raise PeerError(
                message.code,
                message.message,
                offending_type=message.offending_type,
                offending_seq=message.offending_seq,
            )
        if isinstance(message, (Hello, Welcome)):
            if self.state is not SessionState.CONNECTING:
                raise UnexpectedMessageError("a second handshake", offending_type=message.TYPE)
            self._handshake(message, effects)
            return
        if self.state is not SessionState.OPEN:
            raise UnexpectedMessageError(
                "a message before the handshake completed", offending_type=message.TYPE
            )
        if isinstance(message, Ack):
            if self._out.acked(message.seq):
                effects.append(Acked(message.seq))
        elif isinstance(message, Bye):
            self.state = SessionState.ENDED
            self._outbox.clear()
            effects.append(PeerClosed(message.reason))
        # a Heartbeat needs nothing: receiving it was the point

    def _handshake(self, message: Hello | Welcome, effects: list[Effect]) -> None:
        raise NotImplementedError

    def _fail(self, error: ProtocolError) -> ProtocolError:
        self._outbox.clear()
        if not isinstance(error, PeerError):
            self._outbox.append((0, encode_error(error)))
        self.state = SessionState.CLOSED
        return error

    def _open(self, ack_told: int) -> int:
        """Queue every unacked message again; the connection is open.

        ``ack_told`` is the watermark the handshake told the peer; later acks still need
        an ``ack`` frame.
        """
        frames = self._out.unacked_weighted()
        self._outbox.extend(frames)
        self._in.ack_pending = self._in.acked > ack_told
        self.state = SessionState.OPEN
        return len(frames)

    def _side(self) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.session_id} {self.state.value} "
            f"peer={self.peer_session} unacked={self.unacked}>"
        )


class ClientSession(_Session):
    """The connecting side: the experiment (tuner channel) or a worker (trial channel).

    ``session_id`` must stay the same across reconnects of this process and must not be
    reused by another process (the default is a fresh random one).
    """

    def __init__(
        self,
        role: Role,
        session_id: str | None = None,
        *,
        limits: Limits = DEFAULT_LIMITS,
        rate_limit: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            role,
            session_id or new_session_id(role.value),
            sends=accepted_by_server(role),
            accepts=accepted_by_client(role),
            limits=limits,
            rate_limit=rate_limit,
        )
        self._hello_acked = 0

    def connection_made(self, *, authenticated: bool, running: Iterable[TrialRef] = ()) -> None:
        """A new WebSocket to the server is up: queue the ``hello``.

        ``authenticated``: whether this side trusts the server with pickled code (it
        dialled a known manager with its token). ``running``: the trials this client has
        in flight, for a manager that lost its memory.
        """
        self._connect(authenticated)
        self._hello_acked = self._in.acked
        hello = Hello(
            role=self.role,
            session=self.session_id,
            peer_session=self.peer_session,
            last_seq=self._in.acked,
            resend_from=self._out.first_unacked,
            running=tuple(running),
        )
        self._outbox.append((0, encode(hello)))

    def _handshake(self, message: Hello | Welcome, effects: list[Effect]) -> None:
        if not isinstance(message, Welcome):
            raise UnexpectedMessageError("a client does not accept 'hello'", offending_type="hello")
        resumed = message.session == self.peer_session
        if resumed:
            self._in.skip_to(message.resend_from - 1)
        else:
            # a new server incarnation numbers its messages afresh
            self._in.reset(message.resend_from - 1)
        self._out.acked(message.last_seq)
        self.peer_session = message.session
        told = self._hello_acked if resumed else self._in.acked
        effects.append(Connected(message.session, resumed, self._open(told)))

    def _side(self) -> str:
        return f"a {self.role.value} client"


class ServerSession(_Session):
    """The manager's side of one client session, kept across that client's reconnects.

    ``session_id`` must be new for every ``ServerSession`` object (the default is a fresh
    random one): clients take a new id for a new numbering of the server's messages, so a
    session a manager forgot (or lost in a restart) must not come back under its old id.

    For a connection whose client is not known yet, use ``read_hello`` on its first frame,
    then find or create the session for ``hello.session`` and pass the frame to its
    ``receive_data``. ``peer_session`` binds the session to a client ahead of time (a
    worker the manager spawns): messages sent before it connects go out after its
    ``hello``.

    ``durable_seq`` is for a manager that restarted: the highest seq of ``peer_session``
    whose effect an earlier incarnation made durable, read back from the store that holds
    those effects (write the seq in the same transaction, and in seq order). Without it, a
    message made durable just before a crash, whose ack never left, is delivered again.
    """

    def __init__(
        self,
        role: Role,
        session_id: str | None = None,
        *,
        peer_session: str | None = None,
        durable_seq: int = 0,
        limits: Limits = DEFAULT_LIMITS,
        rate_limit: RateLimiter | None = None,
    ) -> None:
        super().__init__(
            role,
            session_id or new_session_id("manager"),
            sends=accepted_by_client(role),
            accepts=accepted_by_server(role),
            limits=limits,
            rate_limit=rate_limit,
        )
        self.peer_session = peer_session
        if durable_seq:
            if peer_session is None:
                raise ValueError("durable_seq needs the peer_session it belongs to")
            self._in.skip_to(durable_seq)

    def connection_made(self, *, authenticated: bool) -> None:
        """A new WebSocket from this session's client is up; wait for its ``hello``.

        ``authenticated``: whether the client presented the manager's token (only then is
        a ``setup`` accepted). A still-open older connection of the same client must be
        dropped first (``connection_lost``).
        """
        self._connect(authenticated)

    def _handshake(self, message: Hello | Welcome, effects: list[Effect]) -> None:
        if not isinstance(message, Hello):
            raise UnexpectedMessageError(
                "a server does not accept 'welcome'", offending_type="welcome"
            )
        if message.role is not self.role:
            raise UnexpectedMessageError(
                f"this channel serves {self.role.value} clients, not {message.role.value}",
                offending_type="hello",
            )
        if self.peer_session is not None and message.session != self.peer_session:
            raise UnexpectedMessageError(
                f"this session serves client {self.peer_session!r}, not {message.session!r}; "
                "route each connection to the session named in its hello",
                offending_type="hello",
            )
        self.peer_session = message.session
        # the client's stream is keyed by its stable id; catch up if it says more was acked
        # than we remember (this manager restarted and lost its record)
        self._in.skip_to(message.resend_from - 1)
        resumed = message.peer_session == self.session_id
        if resumed:
            self._out.acked(message.last_seq)
        welcome = Welcome(
            session=self.session_id,
            last_seq=self._in.acked,
            resend_from=self._out.first_unacked,
        )
        self._outbox.append((0, encode(welcome)))
        effects.append(
            Connected(message.session, resumed, self._open(self._in.acked), message.running)
        )

    def _side(self) -> str:
        return f"the manager of a {self.role.value} client"
