"""Field kinds and per-message schemas: plain checks, no validation library.

Each field has a *kind*: ``check`` says whether a Python value may be sent (so a message
the peer would reject, e.g. a NaN metric that JSON would turn into ``null``, is refused
when sent instead of being resent forever) and, for most kinds, whether a decoded JSON
value is valid as it is; the few kinds whose Python value differs from the JSON value
(states, errors, payload bytes) also ``parse``. Required fields are those without a dataclass
default; a test pins that every dataclass field has a kind.
"""

from __future__ import annotations

import binascii
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasflow._kernel import TrialError, TrialState
from nasflow.protocol import _messages as m

__all__ = ["BY_CLASS", "BY_TYPE", "Invalid", "Kind", "MessageSpec"]


class Invalid(Exception):  # noqa: N818 - internal signal, never escapes the codec
    """A value does not fit its kind (the codec turns it into ``MalformedMessageError``)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """How one field is checked before sending and parsed from JSON."""

    expected: str
    """What a valid value looks like, for error messages."""
    check: Callable[[Any], bool]
    """Whether a Python value is valid (to send, and as decoded when ``parse`` is None)."""
    parse: Callable[[Any], Any] | None = None
    """Turns a decoded JSON value into the Python value or raises ``Invalid``; ``None``
    when the JSON value is the Python value (the fast path: one check, no conversion)."""


_INT_MAX = 2**63 - 1  # what orjson can encode


def _is_int(v: Any) -> bool:
    # bool is an int subclass; JSON true is not a number here
    return type(v) is int and -_INT_MAX - 1 <= v <= _INT_MAX


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _INT_MAX


def _is_number(v: Any) -> bool:
    # ints stay ints: an int is a valid float (PEP 484), and converting costs time
    return (type(v) is float and math.isfinite(v)) or _is_int(v)


def _optional(kind: Kind) -> Kind:
    check = kind.check
    parse = kind.parse
    if parse is None:
        return Kind(f"null or {kind.expected}", lambda v: v is None or check(v))
    return Kind(
        f"null or {kind.expected}",
        lambda v: v is None or check(v),
        lambda v: None if v is None else parse(v),
    )


ID = Kind(
    "a non-empty string of at most 256 characters",
    lambda v: type(v) is str and 0 < len(v) <= 256,
)
TEXT = Kind("a string", lambda v: isinstance(v, str))
INT = Kind("an integer", _is_int)
COUNT = Kind("an integer >= 0", _is_count)
POSITIVE = Kind("an integer >= 1", lambda v: type(v) is int and 1 <= v <= _INT_MAX)
SAMPLE = Kind("a JSON object (label -> value)", lambda v: type(v) is dict)
NUMBER = Kind("a finite number", _is_number)


def _is_metric(v: Any) -> bool:
    # put the most common case first: a plain float
    if type(v) is float:
        return math.isfinite(v)
    if type(v) is dict:
        return bool(v) and all(type(k) is str and _is_number(x) for k, x in v.items())
    return _is_int(v)


METRIC = Kind("a finite number or a non-empty object of finite numbers", _is_metric)


# ---- the columns of a ``metrics`` message ---------------------------------------------
# Checked with C-level loops (``map``, ``set``, ``min``/``max``) where the common case
# allows it: a batch holds up to ``max_batch`` entries and is the hot message.

_FLOAT, _INT = frozenset({float}), frozenset({int})


def _all_ints(v: tuple[Any, ...] | list[Any]) -> bool:
    return (set(map(type, v)) == _INT  # bool is not int here: type(True) is bool
            and min(v) >= -_INT_MAX - 1 and max(v) <= _INT_MAX)


def _all_numbers(v: tuple[Any, ...] | list[Any]) -> bool:
    if set(map(type, v)) == _FLOAT:
        return all(map(math.isfinite, v))
    return all(map(_is_number, v))


def _all_metrics(v: tuple[Any, ...] | list[Any]) -> bool:
    if set(map(type, v)) == _FLOAT:
        return all(map(math.isfinite, v))
    return all(map(_is_metric, v))


def _column(expected: str, items_ok: Callable[[Any], bool]) -> Kind:
    """A non-empty tuple of items (a JSON array on the wire)."""

    def parse(v: Any) -> tuple[Any, ...]:
        if type(v) is list and v and items_ok(v):
            return tuple(v)
        raise Invalid

    return Kind(f"a non-empty list of {expected}",
                lambda v: type(v) is tuple and bool(v) and items_ok(v), parse)


STEPS = _column("integers", _all_ints)
VALUES = _column("metric values (finite numbers or objects of finite numbers)", _all_metrics)
TIMES = _column("finite numbers", _all_numbers)


def _same_lengths(message: Any) -> str | None:
    """A ``metrics`` message's columns must line up."""
    n, v, t = len(message.steps), len(message.values), len(message.times)
    if n == v == t:
        return None
    return (f"fields 'steps', 'values' and 'times' hold {n}, {v} and {t} items; "
            "expected one item each per metric")


def _state_kind(states: tuple[TrialState, ...]) -> Kind:
    by_name = {s.value: s for s in states}

    def parse(v: Any) -> TrialState:
        state = by_name.get(v) if isinstance(v, str) else None
        if state is None:
            raise Invalid
        return state

    return Kind(f"one of {', '.join(by_name)}", lambda v: v in states, parse)


FINISHED_STATE = _state_kind(tuple(s for s in TrialState if s.finished))
STOP_STATE = _state_kind((TrialState.CANCELED, TrialState.EARLY_STOPPED, TrialState.TIMEOUT))
_ROLES = {r.value: r for r in m.Role}


def _parse_role(v: Any) -> m.Role:
    role = _ROLES.get(v) if isinstance(v, str) else None
    if role is None:
        raise Invalid
    return role


ROLE = Kind(f"one of {', '.join(_ROLES)}", lambda v: isinstance(v, m.Role), _parse_role)


def _parse_trial_error(v: Any) -> TrialError:
    if isinstance(v, dict):
        kind, message, tb = v.get("type"), v.get("message"), v.get("traceback", "")
        if isinstance(kind, str) and isinstance(message, str) and isinstance(tb, str):
            return TrialError(type=kind, message=message, traceback=tb)
    raise Invalid


def _check_trial_error(v: Any) -> bool:
    return (
        isinstance(v, TrialError)
        and isinstance(v.type, str)
        and isinstance(v.message, str)
        and isinstance(v.traceback, str)
    )


TRIAL_ERROR = Kind(
    'an object {"type": str, "message": str, "traceback": str}',
    _check_trial_error,
    _parse_trial_error,
)


def _parse_payload(v: Any) -> bytes:
    if isinstance(v, str):
        try:
            return binascii.a2b_base64(v, strict_mode=True)
        except (binascii.Error, ValueError):
            pass
    raise Invalid


PAYLOAD = Kind("a base64 string", lambda v: isinstance(v, bytes), _parse_payload)
SHA256 = Kind(
    "64 lowercase hex digits",
    lambda v: isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v),
)


def _one_payload(message: m.Setup) -> str | None:
    """A setup carries its payload inline or names a file with its size and hash."""
    if message.payload_file is None:
        if message.payload_sha256 is not None or message.payload_size is not None:
            return "'payload_sha256' and 'payload_size' go with 'payload_file'"
        return None
    if message.payload:
        return "either 'payload' or 'payload_file', not both"
    if message.payload_sha256 is None or message.payload_size is None:
        return "'payload_file' needs 'payload_sha256' and 'payload_size'"
    if not os.path.isabs(message.payload_file):
        return f"'payload_file' must be an absolute path, got {message.payload_file!r}"
    return None


def _parse_running(v: Any) -> tuple[m.TrialRef, ...]:
    if not isinstance(v, list):
        raise Invalid
    refs = []
    for item in v:
        if not isinstance(item, dict):
            raise Invalid
        experiment_id: Any = item.get("experiment_id")
        trial_id: Any = item.get("trial_id")
        attempt: Any = item.get("attempt", 0)
        if not (ID.check(experiment_id) and COUNT.check(trial_id) and COUNT.check(attempt)):
            raise Invalid
        refs.append(m.TrialRef(experiment_id=experiment_id, trial_id=trial_id, attempt=attempt))
    return tuple(refs)


RUNNING = Kind(
    'a list of {"experiment_id": str, "trial_id": int, "attempt": int}',
    lambda v: isinstance(v, tuple)
    and all(
        isinstance(r, m.TrialRef)
        and ID.check(r.experiment_id)
        and COUNT.check(r.trial_id)
        and COUNT.check(r.attempt)
        for r in v
    ),
    _parse_running,
)


def _parse_held(v: Any) -> tuple[m.HeldTrial, ...]:
    if not isinstance(v, list):
        raise Invalid
    held = []
    for item in v:
        if not isinstance(item, dict):
            raise Invalid
        trial_id: Any = item.get("trial_id")
        attempt: Any = item.get("attempt", 0)
        queued: Any = item.get("queued", False)
        if not (COUNT.check(trial_id) and COUNT.check(attempt) and type(queued) is bool):
            raise Invalid
        held.append(m.HeldTrial(trial_id=trial_id, attempt=attempt, queued=queued))
    return tuple(held)


HELD = Kind(
    'a list of {"trial_id": int, "attempt": int, "queued": bool}',
    lambda v: isinstance(v, tuple)
    and all(
        isinstance(h, m.HeldTrial)
        and COUNT.check(h.trial_id)
        and COUNT.check(h.attempt)
        and type(h.queued) is bool
        for h in v
    ),
    _parse_held,
)


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """The schema of one message type."""

    cls: type[Any]
    type: str
    sequenced: bool
    fields: tuple[tuple[str, Kind, bool], ...]
    """``(name, kind, required)`` in dataclass order."""
    head: bytes
    """``{"type":"<name>"`` — the start of every encoded frame of this type."""
    validate: Callable[[Any], str | None] | None = None
    """Checks across fields, on a message whose fields are valid: an error text, or None."""


def _spec(cls: type[Any], *, sequenced: bool, **kinds: Kind) -> MessageSpec:
    fields = []
    for f in dataclasses.fields(cls):
        if f.name not in kinds:
            raise TypeError(f"{cls.__name__}.{f.name} has no kind in the schema")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields.append((f.name, kinds.pop(f.name), required))
    if kinds:
        raise TypeError(f"{cls.__name__} has no fields {sorted(kinds)}")
    head = b'{"type":"' + cls.TYPE.encode() + b'"'
    return MessageSpec(cls, cls.TYPE, sequenced, tuple(fields), head)


_TRIAL = {"experiment_id": ID, "trial_id": COUNT, "attempt": COUNT}
# where a forwarded trial event came from (set by the manager; see ``TrialStarted.origin``)
_ORIGIN = {"origin": _optional(ID), "origin_seq": _optional(POSITIVE)}

_SPECS = (
    _spec(
        m.Hello,
        sequenced=False,
        version=INT,
        role=ROLE,
        session=ID,
        peer_session=_optional(ID),
        last_seq=COUNT,
        resend_from=POSITIVE,
        running=RUNNING,
    ),
    _spec(
        m.Welcome,
        sequenced=False,
        version=INT,
        session=ID,
        last_seq=COUNT,
        resend_from=POSITIVE,
    ),
    _spec(m.Ack, sequenced=False, seq=COUNT),
    _spec(
        m.ErrorMessage,
        sequenced=False,
        code=TEXT,
        message=TEXT,
        offending_type=_optional(TEXT),
        offending_seq=_optional(INT),
    ),
    _spec(m.Bye, sequenced=False, reason=TEXT),
    _spec(m.Heartbeat, sequenced=False),
    dataclasses.replace(
        _spec(
            m.Setup,
            sequenced=True,
            experiment_id=ID,
            payload=PAYLOAD,
            concurrency=_optional(POSITIVE),
            trial_timeout=_optional(NUMBER),
            payload_file=_optional(TEXT),
            payload_sha256=_optional(SHA256),
            payload_size=_optional(COUNT),
            devices=_optional(POSITIVE),
        ),
        validate=_one_payload,
    ),
    _spec(m.SetupFailed, sequenced=True, experiment_id=ID, error=TRIAL_ERROR, **_ORIGIN),
    _spec(m.Submit, sequenced=True, **_TRIAL, sample=SAMPLE),
    _spec(m.RunTrial, sequenced=True, **_TRIAL, sample=SAMPLE, gpus=_optional(TEXT)),
    _spec(m.Cancel, sequenced=True, **_TRIAL, state=STOP_STATE, reason=TEXT),
    _spec(m.Concurrency, sequenced=True, experiment_id=ID, concurrency=POSITIVE),
    _spec(m.Capacity, sequenced=True, slots=COUNT, held=_optional(HELD)),
    _spec(m.TrialStarted, sequenced=True, **_TRIAL, time=NUMBER, **_ORIGIN),
    _spec(
        m.Metric, sequenced=True, **_TRIAL, step=INT, value=METRIC, time=NUMBER, **_ORIGIN
    ),
    dataclasses.replace(
        _spec(m.Metrics, sequenced=True, **_TRIAL, steps=STEPS, values=VALUES, times=TIMES,
              **_ORIGIN),
        validate=_same_lengths,
    ),
    _spec(m.FinalMetric, sequenced=True, **_TRIAL, value=METRIC, time=NUMBER, **_ORIGIN),
    _spec(
        m.Checkpoint,
        sequenced=True,
        **_TRIAL,
        path=TEXT,
        step=_optional(INT),
        time=NUMBER,
        **_ORIGIN,
    ),
    _spec(
        m.TrialEnded,
        sequenced=True,
        **_TRIAL,
        state=FINISHED_STATE,
        error=_optional(TRIAL_ERROR),
        time=NUMBER,
        **_ORIGIN,
    ),
)

BY_TYPE: dict[str, MessageSpec] = {s.type: s for s in _SPECS}
"""Message specs by wire type name."""
BY_CLASS: dict[type[Any], MessageSpec] = {s.cls: s for s in _SPECS}
"""Message specs by dataclass."""
