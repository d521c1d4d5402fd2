"""The ``metrics`` message: many steps of one trial in one sequenced message.

Strings in, strings out: what it looks like on the wire, what a receiver refuses, how the
limits count it, and that a batch resent after a reconnect is delivered exactly once.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from nasflow.protocol import (
    ClientSession,
    Connected,
    Limits,
    MalformedMessageError,
    MessageTooLargeError,
    Metric,
    Metrics,
    Role,
    ServerSession,
    TrialRef,
    decode,
    encode,
    encode_batch,
)

from ._examples import EXP
from ._link import Link, delivered, deliveries


def batch(first: int, count: int, **changes: Any) -> Metrics:
    """Steps ``first .. first + count - 1`` of trial 1."""
    steps = tuple(range(first, first + count))
    fields: dict[str, Any] = {
        "experiment_id": EXP, "trial_id": 1, "steps": steps,
        "values": tuple(s / 10 for s in steps), "times": tuple(float(s) for s in steps)}
    return Metrics(**{**fields, **changes})


def wire(**fields: Any) -> bytes:
    obj = {"type": "metrics", "seq": 1, "experiment_id": EXP, "trial_id": 1, "attempt": 0,
           "steps": [1, 2], "values": [0.5, 0.25], "times": [1.0, 2.0], **fields}
    return orjson.dumps({k: v for k, v in obj.items() if v is not _DROP})


_DROP: Any = object()
SMALL = Limits(max_message_size=2048, max_setup_size=8192, max_batch=4)


# ---- the wire format -------------------------------------------------------------------


def test_a_metrics_message_is_three_parallel_arrays() -> None:
    frame = encode(batch(5, 3), 9)
    assert orjson.loads(frame) == {
        "type": "metrics", "seq": 9, "experiment_id": EXP, "trial_id": 1, "attempt": 0,
        "steps": [5, 6, 7], "values": [0.5, 0.6, 0.7], "times": [5.0, 6.0, 7.0],
        "origin": None, "origin_seq": None}
    assert decode(frame) == [(9, batch(5, 3))]
    assert decode(frame.decode()) == [(9, batch(5, 3))]


def test_values_may_be_objects_and_numbers_may_be_integers() -> None:
    [(_, message)] = decode(wire(values=[{"acc": 0.5, "loss": 1}, 3], times=[1, 2.5]))
    assert message == batch(1, 2, values=({"acc": 0.5, "loss": 1}, 3), times=(1, 2.5))


def test_a_forwarded_batch_keeps_its_origin() -> None:
    forwarded = batch(1, 2, origin="worker-3f2a9c", origin_seq=14)
    assert decode(encode(forwarded, 88)) == [(88, forwarded)]


def test_a_batch_can_travel_in_a_batch_frame() -> None:
    frame = encode_batch([encode(batch(1, 2), 1), encode(Metric(
        experiment_id=EXP, trial_id=1, step=3, value=0.3, time=3.0), 2)])
    assert [seq for seq, _ in decode(frame)] == [1, 2]


# ---- what a receiver refuses -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"steps": [1], "values": [0.5, 0.25]}, "hold 1, 2 and 2 items"),
        ({"times": [1.0]}, "hold 2, 2 and 1 items"),
        ({"steps": [], "values": [], "times": []}, "field 'steps'"),
        ({"steps": [1, True]}, "field 'steps'"),
        ({"steps": [1, 2.0]}, "field 'steps'"),
        ({"steps": [1, 2**63]}, "field 'steps'"),
        ({"values": [0.5, None]}, "field 'values'"),
        ({"values": [0.5, {}]}, "field 'values'"),
        ({"values": [0.5, {"acc": "high"}]}, "field 'values'"),
        ({"values": [0.5, [0.1]]}, "field 'values'"),
        ({"times": [1.0, "now"]}, "field 'times'"),
        ({"times": {"0": 1.0}}, "field 'times'"),
        ({"steps": _DROP}, "field 'steps' is missing"),
        ({"trial_id": -1}, "field 'trial_id'"),
        ({"seq": 0}, "field 'seq'"),
    ],
)
def test_malformed_batches_are_refused_with_the_field_named(fields: dict[str, Any],
                                                            words: str) -> None:
    with pytest.raises(MalformedMessageError, match=words.replace("(", r"\(")) as info:
        decode(wire(**fields))
    assert info.value.offending_type == "metrics"


def test_json_cannot_carry_a_nan_and_send_refuses_one(link: Link) -> None:
    with pytest.raises(MalformedMessageError):
        decode(wire().replace(b"0.25", b"NaN"))
    with pytest.raises(MalformedMessageError, match="field 'values'"):
        link.client.send(batch(1, 2, values=(0.5, float("nan"))))
    with pytest.raises(MalformedMessageError, match="hold 2, 1 and 2 items"):
        link.client.send(batch(1, 2, values=(0.5,)))
    with pytest.raises(MalformedMessageError, match="field 'steps'"):
        link.client.send(batch(1, 2, steps=[1, 2]))  # type: ignore[arg-type]  # a list
    assert link.client.unacked == 0  # nothing the peer would refuse was kept


def test_a_receiving_session_turns_a_bad_batch_into_a_protocol_error(link: Link) -> None:
    [error] = link.server.receive_data(wire(times=[1.0]))
    assert isinstance(error, MalformedMessageError)
    sent = orjson.loads(link.server.data_to_send()[0])
    assert (sent["code"], sent["offending_type"], sent["offending_seq"]) == (
        "malformed", "metrics", 1)


def test_a_manager_accepts_batches_from_workers_only() -> None:
    pair = Link(Role.EXPERIMENT)
    pair.connect()
    [error] = pair.server.receive_data(encode(batch(1, 2), 1))
    assert "does not accept 'metrics'" in str(error)
    with pytest.raises(Exception, match="does not send 'metrics'"):
        pair.client.send(batch(1, 2))


# ---- limits: each entry counts as one message ------------------------------------------


def test_a_batch_of_more_than_max_batch_entries_is_too_large() -> None:
    assert decode(encode(batch(1, 4), 1), SMALL)
    with pytest.raises(MessageTooLargeError, match="'metrics' message of 5 entries"):
        decode(encode(batch(1, 5), 1), SMALL)
    session = ClientSession(Role.WORKER, limits=SMALL)
    with pytest.raises(MessageTooLargeError, match="5 entries; the limit is 4"):
        session.send(batch(1, 5))
    assert session.send(batch(1, 4)) == 1  # refused ones took no seq


def test_a_batch_frame_counts_the_entries_of_its_metrics() -> None:
    frame = encode_batch([encode(batch(1, 3), 1), encode(batch(4, 2), 2)])
    with pytest.raises(MessageTooLargeError, match="batch of 5 messages"):
        decode(frame, SMALL)


def test_sending_packs_frames_by_entries_not_by_messages() -> None:
    pair = Link()
    pair.client = ClientSession(Role.WORKER, "client-1", limits=SMALL)
    pair.server = ServerSession(Role.WORKER, "manager-1", limits=SMALL)
    pair.connect()
    for first, count in ((1, 3), (4, 1), (5, 2), (7, 2), (9, 4)):
        pair.client.send(batch(first, count))
    frames = pair.client.data_to_send()
    shapes = [[len(m.get("steps", [0])) for m in orjson.loads(f).get("messages", [orjson.loads(f)])]
              for f in frames]
    assert shapes == [[3, 1], [2, 2], [4]]
    got = [e for f in frames for e in pair.server.receive_data(f)]
    steps = [s for m in delivered(got) for s in m.steps]
    assert steps == list(range(1, 13))


def test_a_rate_limiter_is_asked_for_every_entry() -> None:
    asked: list[int] = []

    class Recorder:
        def allow(self, messages: int) -> bool:
            asked.append(messages)
            return True

    pair = Link(rate_limit=Recorder())
    pair.connect()
    pair.client.send(batch(1, 7))
    pair.client.send(Metric(experiment_id=EXP, trial_id=1, step=8, value=0.8, time=8.0))
    pair.pump()
    assert asked == [1, 8]  # the hello, then one frame: 7 entries and a metric


# ---- delivered once, resent whole ------------------------------------------------------


def test_a_batch_resent_after_a_reconnect_is_delivered_once(link: Link) -> None:
    link.client.send(batch(1, 3))
    link.client.send(batch(4, 3))
    [first, second] = deliveries(link.pump()[1])
    link.server.ack(first)  # durable; its ack is lost with the connection
    link.drop()
    link.client.send(batch(7, 2))  # reported while away
    link.connect(auto_ack=True)
    assert link.client_effects[-1] == Connected("manager-1", resumed=True, resent=2)
    steps = [s for m in [first.message, second.message, *delivered(link.server_effects[-2:])]
             for s in m.steps]
    assert steps == list(range(1, 9))  # batch 4-6 came again: dropped, not doubled
    assert link.server.duplicates == 1
    link.server.ack(second)  # the first delivery of 4-6, made durable now
    link.pump()
    assert link.client.unacked == 0


def test_a_restarted_manager_gets_every_unacked_batch_whole(link: Link) -> None:
    link.client.send(batch(1, 3))
    link.client.send(batch(4, 3))
    first, _ = deliveries(link.pump()[1])
    link.server.ack(first)
    link.pump()  # the old manager made steps 1-3 durable, then died
    link.drop()
    link.server = ServerSession(Role.WORKER, "manager-2")
    link.client.connection_made(authenticated=True,
                                running=[TrialRef(experiment_id=EXP, trial_id=1)])
    link.server.connection_made(authenticated=True)
    _, got = link.pump(auto_ack=True)
    assert delivered(got) == [batch(4, 3)]  # whole, once; 1-3 were durable already
