"""The wire format: one JSON object per WebSocket text frame, encoded with orjson.

A frame is either one message ``{"type": "metric", "seq": 7, ...}`` or a batch of
sequenced messages ``{"type": "batch", "messages": [{...}, {...}]}``. Decoding is orjson
plus plain dict checks against the schema; anything wrong raises a ``ProtocolError``
subclass and nothing else.

A frame holds at most ``Limits.max_batch`` messages, where each entry of a ``metrics``
message counts as one (``weight``): the work a frame makes and what a rate limiter is
asked for grow with the metrics it carries, not with how they were packed.
"""

from __future__ import annotations

import binascii
import math
import reprlib
from typing import Any

import orjson

from nasflow.protocol._errors import (
    MalformedMessageError,
    MessageTooLargeError,
    ProtocolError,
    UnknownMessageTypeError,
    VersionMismatchError,
)
from nasflow.protocol._limits import DEFAULT_LIMITS, Limits
from nasflow.protocol._messages import PROTOCOL_VERSION, ErrorMessage, Message
from nasflow.protocol._messages import Metric as _Metric
from nasflow.protocol._messages import Metrics as _Metrics
from nasflow.protocol._schema import BY_CLASS, BY_TYPE, Invalid, MessageSpec

__all__ = ["Frame", "decode", "encode", "encode_batch", "encode_error", "weight"]

Frame = tuple[int | None, Message]
"""A decoded message with its seq (``None`` for control messages)."""

_MISSING: Any = object()
_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60
_REPR.maxlist = _REPR.maxdict = 4
_BATCH_HEAD = b'{"type":"batch","messages":['
_HANDSHAKE = ("hello", "welcome")


def _default(value: Any) -> Any:
    # orjson calls this only for what it cannot encode itself: a setup payload
    if isinstance(value, bytes):
        return binascii.b2a_base64(value, newline=False).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


# ---- encoding --------------------------------------------------------------------------


def encode(message: Message, seq: int | None = None) -> bytes:
    """``message`` as a UTF-8 JSON frame; ``seq`` is required for sequenced messages.

    Raises ``MalformedMessageError`` for a message the peer would reject (a field of the
    wrong type, a NaN metric, a sample that is not JSON); a session refuses to queue it.
    """
    spec = BY_CLASS.get(type(message))
    if spec is None:
        raise UnknownMessageTypeError(f"{type(message).__name__} is not a protocol message")
    if spec.sequenced != (seq is not None):
        need = "needs a seq" if spec.sequenced else "takes no seq"
        raise MalformedMessageError(f"{spec.type!r} {need}", offending_type=spec.type)
    for name, kind, _ in spec.fields:
        value = getattr(message, name)
        if not kind.check(value):
            raise MalformedMessageError(
                f"field {name!r} is {_show(value)}; expected {kind.expected}",
                offending_type=spec.type,
                offending_seq=seq,
            )
    if spec.validate is not None:
        problem = spec.validate(message)
        if problem is not None:
            raise MalformedMessageError(problem, offending_type=spec.type, offending_seq=seq)
    try:
        body = orjson.dumps(message, default=_default)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise MalformedMessageError(
            f"cannot be encoded as JSON: {exc}", offending_type=spec.type, offending_seq=seq
        ) from exc
    head = spec.head if seq is None else b'%s,"seq":%d' % (spec.head, seq)
    # body is "{...fields}" (or "{}"): splice the type (and seq) in front of the fields
    return head + (b"," + body[1:] if len(body) > 2 else b"}")


def weight(message: Message) -> int:
    """How many messages ``message`` counts as against ``Limits.max_batch`` and a rate
    limiter: its entries for ``metrics``, else 1."""
    return len(message.steps) if type(message) is _Metrics else 1


def encode_batch(frames: list[bytes]) -> bytes:
    """One ``batch`` frame holding already encoded sequenced ``frames`` (in order)."""
    return _BATCH_HEAD + b",".join(frames) + b"]}"


def encode_error(error: ProtocolError) -> bytes:
    """The ``error`` frame that tells the peer about ``error``."""
    return encode(
        ErrorMessage(
            code=error.code,
            message=str(error),
            offending_type=error.offending_type,
            offending_seq=error.offending_seq,
        )
    )


# ---- decoding --------------------------------------------------------------------------


def decode(data: str | bytes, limits: Limits = DEFAULT_LIMITS) -> list[Frame]:
    """The messages of one frame, in order, each with its seq.

    Raises a ``ProtocolError`` subclass (and nothing else) for a frame that is too large,
    not JSON, not an object, of unknown type, with missing or ill-typed fields, or of
    another protocol version (``VersionMismatchError``, checked first in ``hello``/``welcome``).
    """
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise MalformedMessageError(f"a frame must be text, got {type(data).__name__}")
    size = len(data)
    if size > limits.max_setup_size:
        raise MessageTooLargeError(f"frame of {size} bytes; the limit is {limits.max_setup_size}")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessageError(f"not valid JSON ({exc})") from None
    if type(obj) is not dict:
        raise MalformedMessageError(f"a frame must be a JSON object, got {_json_kind(obj)}")
    kind = obj.get("type")
    if size > limits.max_message_size and kind != "setup":
        raise MessageTooLargeError(
            f"frame of {size} bytes; the limit is {limits.max_message_size} "
            f"(only 'setup' may be up to {limits.max_setup_size})",
            offending_type=kind if isinstance(kind, str) else None,
        )
    if kind == "batch":
        return _decode_batch(obj, limits)
    frame = _decode_one(obj, in_batch=False)
    if type(frame[1]) is _Metrics and len(frame[1].steps) > limits.max_batch:
        raise _too_many(len(frame[1].steps), "metrics", limits, frame[0])
    return [frame]


def _too_many(count: int, what: str, limits: Limits, seq: int | None = None
              ) -> MessageTooLargeError:
    text = (f"'metrics' message of {count} entries" if what == "metrics" else
            f"batch of {count} messages (each entry of a 'metrics' message counts as one)")
    return MessageTooLargeError(f"{text}; the limit is {limits.max_batch}",
                                offending_type=what, offending_seq=seq)


def _decode_batch(obj: dict[str, Any], limits: Limits) -> list[Frame]:
    items = obj.get("messages")
    if type(items) is not list or not items:
        raise MalformedMessageError(
            f"field 'messages' is {_show(items)}; expected a non-empty list of messages",
            offending_type="batch",
        )
    if len(items) > limits.max_batch:
        raise MessageTooLargeError(
            f"batch of {len(items)} messages; the limit is {limits.max_batch}",
            offending_type="batch",
        )
    out: list[Frame] = []
    total = 0
    for item in items:
        if type(item) is not dict:
            raise MalformedMessageError(
                f"a batch item must be a JSON object, got {_json_kind(item)}",
                offending_type="batch",
            )
        frame = _decode_one(item, in_batch=True)
        total += len(frame[1].steps) if type(frame[1]) is _Metrics else 1
        out.append(frame)
    if total > limits.max_batch:
        raise _too_many(total, "batch", limits)
    return out


_INT_MAX = 2**63 - 1  # what orjson can encode (as in _schema)
_MAX_ID = 256  # the longest id _schema.ID accepts


def _fast_metric(obj: dict[str, Any]) -> Frame | None:
    """The hot message, decoded without the generic field loop: a plain-float ``metric``
    from a worker. ``None`` for anything else, which the generic path then validates (with
    its precise errors); what it accepts, the generic path accepts too (unknown fields are
    ignored by both)."""
    if obj.get("origin") is not None or obj.get("origin_seq") is not None:
        return None  # forwarded by a manager: rare here, let the generic path check it
    seq, eid, tid = obj.get("seq"), obj.get("experiment_id"), obj.get("trial_id")
    attempt, step, value, t = obj.get("attempt"), obj.get("step"), obj.get("value"), obj.get("time")
    if (type(seq) is int and 1 <= seq <= _INT_MAX
            and type(eid) is str and 0 < len(eid) <= _MAX_ID
            and type(tid) is int and 0 <= tid <= _INT_MAX
            and type(attempt) is int and 0 <= attempt <= _INT_MAX
            and type(step) is int and -_INT_MAX - 1 <= step <= _INT_MAX
            and type(value) is float and math.isfinite(value)
            and type(t) is float and math.isfinite(t)):
        return seq, _Metric(experiment_id=eid, trial_id=tid, attempt=attempt, step=step,
                            value=value, time=t)
    return None


_FLOAT, _INT = frozenset({float}), frozenset({int})
_isfinite = math.isfinite


def _fast_metrics(obj: dict[str, Any]) -> Frame | None:
    """The hottest message, decoded without the generic field loop: a ``metrics`` batch of
    plain floats from a worker. ``None`` for anything else, which the generic path then
    validates (with its precise errors); what it accepts, the generic path accepts too."""
    if obj.get("origin") is not None or obj.get("origin_seq") is not None:
        return None
    seq, eid, tid, attempt = (obj.get("seq"), obj.get("experiment_id"), obj.get("trial_id"),
                              obj.get("attempt"))
    steps, values, times = obj.get("steps"), obj.get("values"), obj.get("times")
    if (type(seq) is int and 1 <= seq <= _INT_MAX
            and type(eid) is str and 0 < len(eid) <= _MAX_ID
            and type(tid) is int and 0 <= tid <= _INT_MAX
            and type(attempt) is int and 0 <= attempt <= _INT_MAX
            and type(steps) is list and type(values) is list and type(times) is list
            and 0 < len(steps) == len(values) == len(times)
            # C-level loops: the types first, then what the types allow
            and set(map(type, steps)) == _INT and set(map(type, values)) == _FLOAT
            and set(map(type, times)) == _FLOAT
            and min(steps) >= -_INT_MAX - 1 and max(steps) <= _INT_MAX
            and all(map(_isfinite, values)) and all(map(_isfinite, times))):
        return seq, _Metrics(experiment_id=eid, trial_id=tid, attempt=attempt,
                             steps=tuple(steps), values=tuple(values), times=tuple(times))
    return None


def _decode_one(obj: dict[str, Any], *, in_batch: bool) -> Frame:
    kind = obj.get("type")
    if kind == "metrics":  # most metrics travel in batches: put the common case first
        fast = _fast_metrics(obj)
        if fast is not None:
            return fast
    elif kind == "metric":
        fast = _fast_metric(obj)
        if fast is not None:
            return fast
    spec = BY_TYPE.get(kind) if type(kind) is str else None
    if spec is None:
        if type(kind) is not str:
            raise MalformedMessageError(f"field 'type' is {_show(kind)}; expected a message type")
        if kind == "batch":
            raise MalformedMessageError("a batch cannot hold another batch", offending_type=kind)
        raise UnknownMessageTypeError(
            f"unknown message type {_show(kind)}; known: {', '.join(sorted(BY_TYPE))}",
            offending_type=kind,
        )
    seq: int | None = None
    if spec.sequenced:
        seq = obj.get("seq")
        if type(seq) is not int or seq < 1:
            raise MalformedMessageError(
                f"field 'seq' is {_show(seq)}; expected an integer >= 1",
                offending_type=spec.type,
            )
    elif in_batch:
        raise MalformedMessageError(
            f"a batch holds only sequenced messages, not {spec.type!r}",
            offending_type=spec.type,
        )
    elif spec.type in _HANDSHAKE:
        # before any other field: a peer of another version may have other fields
        version = obj.get("version", _MISSING)
        if version is _MISSING:
            raise MalformedMessageError(
                f"field 'version' is missing; expected {PROTOCOL_VERSION}",
                offending_type=spec.type,
            )
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise VersionMismatchError(PROTOCOL_VERSION, version, offending_type=spec.type)
    return seq, _build(spec, obj, seq)


def _build(spec: MessageSpec, obj: dict[str, Any], seq: int | None) -> Any:
    kwargs: dict[str, Any] = {}
    for name, kind, required in spec.fields:
        value = obj.get(name, _MISSING)
        if value is _MISSING:
            if required:
                raise MalformedMessageError(
                    f"field {name!r} is missing; expected {kind.expected}",
                    offending_type=spec.type,
                    offending_seq=seq,
                )
            continue
        parse = kind.parse
        if parse is None:
            if kind.check(value):
                kwargs[name] = value
                continue
        else:
            try:
                kwargs[name] = parse(value)
                continue
            except Invalid:
                pass
        raise MalformedMessageError(
            f"field {name!r} is {_show(value)}; expected {kind.expected}",
            offending_type=spec.type,
            offending_seq=seq,
        )
    message = spec.cls(**kwargs)
    if spec.validate is not None:
        problem = spec.validate(message)
        if problem is not None:
            raise MalformedMessageError(problem, offending_type=spec.type, offending_seq=seq)
    return message


def _show(value: Any) -> str:
    """A short repr for error messages: a peer may send megabytes, or lists nested deeper
    than ``repr`` can recurse."""
    return _REPR.repr(value)


def _json_kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")
