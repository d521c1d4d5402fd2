"""The codec: every message round-trips; every bad frame is a typed ProtocolError."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import orjson
import pytest

from nasflow._kernel import TrialError, TrialState
from nasflow.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Capacity,
    HeldTrial,
    Hello,
    Limits,
    MalformedMessageError,
    Message,
    MessageTooLargeError,
    Metric,
    ProtocolError,
    Role,
    SequencedMessage,
    Setup,
    TrialEnded,
    UnknownMessageTypeError,
    VersionMismatchError,
    decode,
    encode,
    encode_batch,
    encode_error,
)
from nasflow.protocol._schema import BY_CLASS

from ._examples import EXAMPLES, EXP


def _seq_for(message: Message) -> int | None:
    return 7 if BY_CLASS[type(message)].sequenced else None


def _metric(**changes: Any) -> Metric:
    fields = {"experiment_id": EXP, "trial_id": 1, "step": 1, "value": 0.5, "time": 1.0}
    return Metric(**{**fields, **changes})


def _wire(**fields: Any) -> bytes:
    return orjson.dumps(fields)


# ---- round trips -----------------------------------------------------------------------


def test_every_message_class_has_an_example() -> None:
    assert {type(m) for m in EXAMPLES} == set(BY_CLASS)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    seq = _seq_for(message)
    frame = encode(message, seq)
    assert decode(frame) == [(seq, message)]
    assert decode(frame.decode()) == [(seq, message)]  # text frames as well as bytes


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_frames_are_flat_readable_json_with_type_first(message: Message) -> None:
    seq = _seq_for(message)
    obj = orjson.loads(encode(message, seq))
    assert next(iter(obj)) == "type"
    assert obj["type"] == message.TYPE
    if seq is not None:
        assert obj["seq"] == seq


def test_setup_payload_travels_as_base64() -> None:
    frame = encode(Setup(experiment_id=EXP, payload=b"\x00\xffpickle"), 1)
    assert orjson.loads(frame)["payload"] == "AP9waWNrbGU="


def test_trial_ended_carries_state_and_error_as_plain_json() -> None:
    error = TrialError(type="RuntimeError", message="CUDA OOM", traceback="tb")
    frame = encode(
        TrialEnded(experiment_id=EXP, trial_id=3, state=TrialState.FAILED, error=error, time=2.0),
        1,
    )
    obj = orjson.loads(frame)
    assert obj["state"] == "FAILED"
    assert obj["error"] == {"type": "RuntimeError", "message": "CUDA OOM", "traceback": "tb"}


def test_a_batch_decodes_to_its_messages_in_order() -> None:
    frames = [encode(_metric(step=i), i) for i in range(1, 4)]
    assert [seq for seq, _ in decode(encode_batch(frames))] == [1, 2, 3]


def test_integer_metric_values_and_times_are_accepted() -> None:
    [(_, message)] = decode(_wire(type="metric", seq=1, experiment_id=EXP, trial_id=1,
                                  step=1, value=1, time=5))
    assert message == _metric(value=1, time=5)


def test_missing_optional_fields_take_their_defaults() -> None:
    [(_, message)] = decode(_wire(type="trial_ended", seq=1, experiment_id=EXP, trial_id=1,
                                  state="CANCELED", time=1.0))
    assert message == TrialEnded(experiment_id=EXP, trial_id=1, state=TrialState.CANCELED,
                                 time=1.0)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    frame = encode(_metric(), 1)[:-1] + b',"added_in_a_later_minor":true}'
    assert decode(frame) == [(1, _metric())]


def test_capacity_held_is_optional_both_ways() -> None:
    """A manager that predates ``held`` sends none (``None``: nothing is known about held
    trials); a client that predates it ignores it like any unknown field."""
    assert decode(_wire(type="capacity", seq=1, slots=2)) == [(1, Capacity(slots=2))]
    [(_, message)] = decode(_wire(type="capacity", seq=1, slots=2, held=[{"trial_id": 3}]))
    assert message == Capacity(slots=2, held=(HeldTrial(trial_id=3),))
    assert orjson.loads(encode(Capacity(slots=2, held=()), 1))["held"] == []


def test_the_schema_covers_every_dataclass_field() -> None:
    for cls, spec in BY_CLASS.items():
        assert [name for name, _, _ in spec.fields] == [f.name for f in dataclasses.fields(cls)]


# ---- encoding refuses what the peer would reject ---------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        _metric(value=math.nan),
        _metric(value=math.inf),
        _metric(value={"acc": math.nan}),
        _metric(value={}),
        _metric(value=True),
        _metric(step=True),
        _metric(trial_id=-1),
        _metric(experiment_id=""),
        _metric(experiment_id="x" * 257),
        TrialEnded(experiment_id=EXP, trial_id=1, state=TrialState.RUNNING, time=1.0),
    ],
    ids=lambda m: repr(m)[:60],
)
def test_encode_refuses_invalid_fields(message: SequencedMessage) -> None:
    with pytest.raises(MalformedMessageError, match="field"):
        encode(message, 1)


def test_encode_refuses_a_sample_that_is_not_json() -> None:
    from nasflow.protocol import Submit

    with pytest.raises(MalformedMessageError, match="cannot be encoded as JSON"):
        encode(Submit(experiment_id=EXP, trial_id=1, sample={"x": object()}), 1)


def test_encode_insists_on_seq_for_sequenced_messages_only() -> None:
    with pytest.raises(MalformedMessageError, match="needs a seq"):
        encode(_metric())
    with pytest.raises(MalformedMessageError, match="takes no seq"):
        encode(Ack(seq=1), 3)


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(UnknownMessageTypeError):
        encode({"type": "metric"})  # type: ignore[arg-type]


def test_encode_error_names_code_and_offender() -> None:
    error = VersionMismatchError(1, 2, offending_type="hello")
    obj = orjson.loads(encode_error(error))
    assert obj["type"] == "error" and obj["code"] == "version"
    assert obj["offending_type"] == "hello"
    assert "1" in obj["message"] and "2" in obj["message"]


# ---- decoding: bad frames are typed protocol errors ------------------------------------


@pytest.mark.parametrize(
    ("frame", "error", "words"),
    [
        (b"{not json", MalformedMessageError, "not valid JSON"),
        (b"", MalformedMessageError, "not valid JSON"),
        (b"\xff\xfe", MalformedMessageError, "not valid JSON"),
        (b"[1, 2]", MalformedMessageError, "must be a JSON object, got an array"),
        (b'"hello"', MalformedMessageError, "got a string"),
        (b"{}", MalformedMessageError, "field 'type'"),
        (b'{"type": 3}', MalformedMessageError, "field 'type'"),
        (b'{"type": "teleport"}', UnknownMessageTypeError, "unknown message type 'teleport'"),
        (b'{"type": "metric", "experiment_id": "e"}', MalformedMessageError, "field 'seq'"),
        (b'{"type": "metric", "seq": 0}', MalformedMessageError, "field 'seq'"),
        (b'{"type": "metric", "seq": true}', MalformedMessageError, "field 'seq'"),
        (b'{"type": "capacity", "seq": 1}', MalformedMessageError, "field 'slots' is missing"),
        (b'{"type": "capacity", "seq": 1, "slots": -1}', MalformedMessageError, ">= 0"),
        (b'{"type": "capacity", "seq": 1, "slots": 1.5}', MalformedMessageError, "integer"),
        (b'{"type": "capacity", "seq": 1, "slots": 1, "held": {"trial_id": 1}}',
         MalformedMessageError, "field 'held'"),
        (b'{"type": "capacity", "seq": 1, "slots": 1, "held": [{"trial_id": -1}]}',
         MalformedMessageError, "field 'held'"),
        (b'{"type": "capacity", "seq": 1, "slots": 1, "held": [{"trial_id": 1, '
         b'"queued": "no"}]}', MalformedMessageError, "queued"),
        (b'{"type": "ack", "seq": "3"}', MalformedMessageError, "field 'seq'"),
        (b'{"type": "bye", "reason": null}', MalformedMessageError, "field 'reason'"),
        (b'{"type": "batch"}', MalformedMessageError, "non-empty list"),
        (b'{"type": "batch", "messages": []}', MalformedMessageError, "non-empty list"),
        (b'{"type": "batch", "messages": [1]}', MalformedMessageError, "batch item"),
        (b'{"type": "batch", "messages": [{"type": "batch", "messages": []}]}',
         MalformedMessageError, "cannot hold another batch"),
        (b'{"type": "batch", "messages": [{"type": "heartbeat"}]}', MalformedMessageError,
         "only sequenced"),
        (b'{"type": "hello", "role": "worker", "session": "w"}', MalformedMessageError,
         "'version' is missing"),
        (b'{"type": "hello", "version": 99}', VersionMismatchError, "speaks 99"),
        (b'{"type": "welcome", "version": "1"}', VersionMismatchError, "speaks '1'"),
        (b'{"type": "hello", "version": 2, "role": "admin", "session": "s"}',
         MalformedMessageError, "field 'role'"),
    ],
)
def test_bad_frames_raise_typed_protocol_errors(
    frame: bytes, error: type[ProtocolError], words: str
) -> None:
    with pytest.raises(error, match=words.replace("(", r"\(")):
        decode(frame)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("experiment_id", ""),
        ("experiment_id", 5),
        ("trial_id", "1"),
        ("trial_id", -3),
        ("attempt", None),
        ("step", 1.5),
        ("step", False),
        ("value", "0.5"),
        ("value", None),
        ("value", {}),
        ("value", {"acc": "high"}),
        ("value", [0.5]),
        ("time", "now"),
        ("time", True),
    ],
)
def test_ill_typed_metric_fields_are_malformed(field: str, value: Any) -> None:
    obj = orjson.loads(encode(_metric(), 1))
    obj[field] = value
    with pytest.raises(MalformedMessageError, match=f"field '{field}'"):
        decode(orjson.dumps(obj))


def test_numbers_too_large_for_a_double_are_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="not valid JSON"):
        decode(encode(_metric(), 1).replace(b'"time":1.0', b'"time":1e400'))


def test_malformed_errors_name_the_field_type_and_seq() -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode(_wire(type="trial_ended", seq=9, experiment_id=EXP, trial_id=1, state="DONE",
                     time=1.0))
    error = info.value
    assert (error.offending_type, error.offending_seq) == ("trial_ended", 9)
    assert "'state'" in error.reason and "'DONE'" in error.reason and "SUCCEEDED" in error.reason


def test_error_messages_quote_huge_values_briefly() -> None:
    with pytest.raises(MalformedMessageError) as info:
        decode(_wire(type="capacity", seq=1, slots="x" * 100_000))
    assert len(str(info.value)) < 500


def test_deeply_nested_values_do_not_crash_error_reporting() -> None:
    deep = b"[" * 1000 + b"]" * 1000
    with pytest.raises(MalformedMessageError):
        decode(b'{"type": "capacity", "seq": 1, "slots": ' + deep + b"}")


def test_a_bad_payload_is_malformed() -> None:
    with pytest.raises(MalformedMessageError, match="base64"):
        decode(_wire(type="setup", seq=1, experiment_id=EXP, payload="not base64!"))


# ---- sizes -----------------------------------------------------------------------------

SMALL = Limits(max_message_size=2048, max_setup_size=8192, max_batch=3)


def test_frames_over_the_message_limit_are_too_large() -> None:
    frame = encode(_metric(experiment_id="e" * 200, value={f"m{i}": 1.0 for i in range(300)}), 1)
    with pytest.raises(MessageTooLargeError, match="limit is 2048") as info:
        decode(frame, SMALL)
    assert info.value.offending_type == "metric"


def test_setup_frames_may_be_larger_up_to_the_setup_limit() -> None:
    frame = encode(Setup(experiment_id=EXP, payload=b"x" * 4000), 1)
    assert len(frame) > SMALL.max_message_size
    assert decode(frame, SMALL)[0][1] == Setup(experiment_id=EXP, payload=b"x" * 4000)
    with pytest.raises(MessageTooLargeError, match="limit is 8192"):
        decode(encode(Setup(experiment_id=EXP, payload=b"x" * 7000), 1), SMALL)


def test_oversized_text_is_refused_before_parsing() -> None:
    with pytest.raises(MessageTooLargeError):
        decode("{" * 10_000, SMALL)  # not JSON either: the size check comes first


def test_batches_over_the_count_limit_are_too_large() -> None:
    frames = [encode(_metric(step=i), i) for i in range(1, 5)]
    with pytest.raises(MessageTooLargeError, match="batch of 4"):
        decode(encode_batch(frames), SMALL)


def test_limits_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="max_setup_size"):
        Limits(max_message_size=4096, max_setup_size=2048)
    with pytest.raises(ValueError, match="max_batch"):
        Limits(max_batch=0)


def test_decode_refuses_non_text() -> None:
    with pytest.raises(MalformedMessageError, match="must be text"):
        decode(12)  # type: ignore[arg-type]


def test_protocol_version_is_in_every_hello() -> None:
    obj = orjson.loads(encode(Hello(role=Role.WORKER, session="w")))
    assert obj["version"] == PROTOCOL_VERSION
