"""Hypothesis: nothing a peer can send makes the decoder or a session raise anything but a
ProtocolError (and sessions raise nothing at all)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasflow.protocol import (
    Limits,
    ProtocolError,
    Role,
    ServerSession,
    SessionState,
    decode,
    encode,
)
from nasflow.protocol._schema import BY_TYPE

from ._examples import EXAMPLES
from ._link import Link
from .test_fast_metric import batch_like

LIMITS = Limits(max_message_size=4096, max_setup_size=16384, max_batch=8)
TYPES = [*BY_TYPE, "batch", "nope"]
FIELDS = sorted({name for spec in BY_TYPE.values() for name, _, _ in spec.fields} | {"seq"})

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)


@st.composite
def message_like(draw: st.DrawFn) -> dict[str, Any]:
    """An object with a real type and real field names, holding arbitrary values."""
    obj: dict[str, Any] = {"type": draw(st.sampled_from(TYPES))}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=8)):
        obj[name] = draw(json_values)
    return obj


@st.composite
def mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    """A valid message with one field replaced, removed or added."""
    message = draw(st.sampled_from(EXAMPLES))
    spec = BY_TYPE[message.TYPE]
    obj: dict[str, Any] = orjson.loads(encode(message, 1 if spec.sequenced else None))
    key = draw(st.sampled_from([*obj, *FIELDS]))
    if draw(st.booleans()):
        obj.pop(key, None)
    else:
        obj[key] = draw(json_values)
    return obj


def only_protocol_errors(data: str | bytes) -> None:
    try:
        frames = decode(data, LIMITS)
    except ProtocolError:
        return
    assert frames and all(seq is None or seq >= 1 for seq, _ in frames)


@given(st.sampled_from(["1e400", "-1e400", "123456789012345678901234567890", "NaN", "Infinity"]))
def test_numbers_json_cannot_hold(number: str) -> None:
    only_protocol_errors('{"type":"metric","seq":1,"experiment_id":"e","trial_id":1,'
                         f'"step":1,"value":{number},"time":{number}}}')


@given(st.text(max_size=200))
def test_arbitrary_text(data: str) -> None:
    only_protocol_errors(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    only_protocol_errors(data)


@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    only_protocol_errors(orjson.dumps(value))


@given(message_like())
def test_arbitrary_objects_shaped_like_messages(obj: dict[str, Any]) -> None:
    only_protocol_errors(orjson.dumps(obj))


@given(mutated_example())
def test_valid_messages_with_one_field_broken(obj: dict[str, Any]) -> None:
    only_protocol_errors(orjson.dumps(obj))


@given(st.lists(message_like() | mutated_example(), min_size=1, max_size=6))
def test_arbitrary_batches(items: list[dict[str, Any]]) -> None:
    only_protocol_errors(orjson.dumps({"type": "batch", "messages": items}))


@given(batch_like())
def test_metrics_batches_with_broken_columns(obj: dict[str, Any]) -> None:
    # the stdlib encoder: it also writes what orjson refuses (NaN, 2**64), as a peer might
    only_protocol_errors(json.dumps(obj))


@given(st.lists(batch_like() | mutated_example(), min_size=1, max_size=4))
def test_batch_frames_of_metrics_batches(items: list[dict[str, Any]]) -> None:
    only_protocol_errors(json.dumps({"type": "batch", "messages": items}))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            (message_like() | mutated_example()).map(
                lambda o: orjson.dumps(o).decode()
            ),
            batch_like().map(json.dumps),
        ),
        max_size=8,
    ),
    st.booleans(),
)
def test_sessions_never_raise_on_what_a_peer_sends(frames: list[str], handshake: bool) -> None:
    pair = Link()
    if handshake:
        pair.connect()
    else:
        pair.server = ServerSession(Role.WORKER, "manager-1")
        pair.server.connection_made(authenticated=True)
    for session in (pair.server, pair.client):
        for frame in frames:
            effects = session.receive_data(frame)
            errors = [e for e in effects if isinstance(e, ProtocolError)]
            if errors:
                assert effects[-1] is errors[0]
                assert session.state is SessionState.CLOSED
                session.data_to_send()  # the error frame is encodable
        session.data_to_send()
