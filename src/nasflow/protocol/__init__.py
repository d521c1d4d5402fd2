"""The command channels' protocol, sans-I/O: messages, codec and session state machines.

Nothing here does I/O or imports anyio, asyncio or websockets: frames (text) go in through
``Session.receive_data``, effects come out, frames to send come out of
``Session.data_to_send``. The manager, the ``ManagerEngine`` and the worker wrap these
objects in their WebSocket code; tests drive them with plain strings. The wire format is
documented, message by message, in ``docs/protocol.md``.
"""

from __future__ import annotations

from nasflow.protocol._codec import Frame as Frame
from nasflow.protocol._codec import decode as decode
from nasflow.protocol._codec import encode as encode
from nasflow.protocol._codec import encode_batch as encode_batch
from nasflow.protocol._codec import encode_error as encode_error
from nasflow.protocol._effects import Acked as Acked
from nasflow.protocol._effects import Connected as Connected
from nasflow.protocol._effects import Deliver as Deliver
from nasflow.protocol._effects import Effect as Effect
from nasflow.protocol._effects import PeerClosed as PeerClosed
from nasflow.protocol._effects import SessionState as SessionState
from nasflow.protocol._errors import MalformedMessageError as MalformedMessageError
from nasflow.protocol._errors import MessageTooLargeError as MessageTooLargeError
from nasflow.protocol._errors import PeerError as PeerError
from nasflow.protocol._errors import ProtocolError as ProtocolError
from nasflow.protocol._errors import RateLimitError as RateLimitError
from nasflow.protocol._errors import SequenceError as SequenceError
from nasflow.protocol._errors import SessionEndedError as SessionEndedError
from nasflow.protocol._errors import UnauthorizedError as UnauthorizedError
from nasflow.protocol._errors import UnexpectedMessageError as UnexpectedMessageError
from nasflow.protocol._errors import UnknownMessageTypeError as UnknownMessageTypeError
from nasflow.protocol._errors import VersionMismatchError as VersionMismatchError
from nasflow.protocol._errors import close_code as close_code
from nasflow.protocol._limits import DEFAULT_LIMITS as DEFAULT_LIMITS
from nasflow.protocol._limits import WORKER_SETUPS as WORKER_SETUPS
from nasflow.protocol._limits import Limits as Limits
from nasflow.protocol._limits import RateLimiter as RateLimiter
from nasflow.protocol._limits import TokenBucket as TokenBucket
from nasflow.protocol._messages import PROTOCOL_VERSION as PROTOCOL_VERSION
from nasflow.protocol._messages import Ack as Ack
from nasflow.protocol._messages import Bye as Bye
from nasflow.protocol._messages import Cancel as Cancel
from nasflow.protocol._messages import Capacity as Capacity
from nasflow.protocol._messages import Checkpoint as Checkpoint
from nasflow.protocol._messages import Concurrency as Concurrency
from nasflow.protocol._messages import ControlMessage as ControlMessage
from nasflow.protocol._messages import ErrorMessage as ErrorMessage
from nasflow.protocol._messages import FinalMetric as FinalMetric
from nasflow.protocol._messages import Heartbeat as Heartbeat
from nasflow.protocol._messages import HeldTrial as HeldTrial
from nasflow.protocol._messages import Hello as Hello
from nasflow.protocol._messages import Message as Message
from nasflow.protocol._messages import Metric as Metric
from nasflow.protocol._messages import Metrics as Metrics
from nasflow.protocol._messages import MetricValue as MetricValue
from nasflow.protocol._messages import Role as Role
from nasflow.protocol._messages import RunTrial as RunTrial
from nasflow.protocol._messages import SequencedMessage as SequencedMessage
from nasflow.protocol._messages import Setup as Setup
from nasflow.protocol._messages import SetupFailed as SetupFailed
from nasflow.protocol._messages import Submit as Submit
from nasflow.protocol._messages import TrialEnded as TrialEnded
from nasflow.protocol._messages import TrialRef as TrialRef
from nasflow.protocol._messages import TrialStarted as TrialStarted
from nasflow.protocol._messages import Welcome as Welcome
from nasflow.protocol._messages import accepted_by_client as accepted_by_client
from nasflow.protocol._messages import accepted_by_server as accepted_by_server
from nasflow.protocol._session import ClientSession as ClientSession
from nasflow.protocol._session import ServerSession as ServerSession
from nasflow.protocol._session import new_session_id as new_session_id
from nasflow.protocol._session import read_hello as read_hello

__all__ = [
    "Ack",
    "Acked",
    "Bye",
    "Cancel",
    "Capacity",
    "Checkpoint",
    "ClientSession",
    "Concurrency",
    "Connected",
    "ControlMessage",
    "DEFAULT_LIMITS",
    "Deliver",
    "Effect",
    "ErrorMessage",
    "FinalMetric",
    "Frame",
    "Heartbeat",
    "HeldTrial",
    "Hello",
    "Limits",
    "MalformedMessageError",
    "Message",
    "MessageTooLargeError",
    "Metric",
    "MetricValue",
    "Metrics",
    "PROTOCOL_VERSION",
    "PeerClosed",
    "PeerError",
    "ProtocolError",
    "RateLimitError",
    "RateLimiter",
    "Role",
    "RunTrial",
    "SequenceError",
    "SequencedMessage",
    "ServerSession",
    "SessionEndedError",
    "SessionState",
    "Setup",
    "SetupFailed",
    "Submit",
    "TokenBucket",
    "TrialEnded",
    "TrialRef",
    "TrialStarted",
    "UnauthorizedError",
    "UnexpectedMessageError",
    "UnknownMessageTypeError",
    "VersionMismatchError",
    "WORKER_SETUPS",
    "Welcome",
    "accepted_by_client",
    "accepted_by_server",
    "close_code",
    "decode",
    "encode",
    "encode_batch",
    "encode_error",
    "new_session_id",
    "read_hello",
]
