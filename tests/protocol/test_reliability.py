"""Seq, ack, resend, dedup: every sequenced message is made durable exactly once."""

from __future__ import annotations

import orjson
import pytest

from nasflow._kernel import TrialState
from nasflow.protocol import (
    Acked,
    Capacity,
    ClientSession,
    Connected,
    Deliver,
    Limits,
    MalformedMessageError,
    MessageTooLargeError,
    Metric,
    PeerClosed,
    PeerError,
    Role,
    RunTrial,
    SequenceError,
    ServerSession,
    SessionEndedError,
    SessionState,
    Setup,
    TrialEnded,
    TrialRef,
    encode,
    encode_batch,
)

from ._examples import EXP
from ._link import Link, delivered, deliveries


def metric(step: int) -> Metric:
    return Metric(experiment_id=EXP, trial_id=1, step=step, value=step / 10, time=float(step))


def types_on_wire(pair: Link, direction: str) -> list[str]:
    return [orjson.loads(f)["type"] for d, f in pair.wire if d == direction]


# ---- sending and acking ----------------------------------------------------------------


def test_a_sent_message_is_delivered_and_forgotten_once_acked(link: Link) -> None:
    assert link.client.send(metric(1)) == 1
    _, got = link.pump()
    [delivery] = got
    assert isinstance(delivery, Deliver) and delivery.seq == 1 and delivery.message == metric(1)
    assert link.client.unacked == 1  # delivered is not durable
    link.server.ack(delivery)
    got_client, _ = link.pump()
    assert got_client == [Acked(1)]
    assert link.client.unacked == 0


def test_acks_are_cumulative_and_coalesced(link: Link) -> None:
    for step in range(1, 6):
        link.client.send(metric(step))
    for delivery in deliveries(link.pump()[1]):
        link.server.ack(delivery)
    assert [orjson.loads(f) for f in link.server.data_to_send()] == [{"type": "ack", "seq": 5}]


def test_acks_may_come_in_any_order(link: Link) -> None:
    for step in range(1, 4):
        link.client.send(metric(step))
    first, second, third = deliveries(link.pump()[1])
    link.server.ack(third)
    link.server.ack(second)
    assert link.server.data_to_send() == []  # seq 1 is not durable yet
    link.server.ack(first)
    assert link.server.data_to_send() == ['{"type":"ack","seq":3}']
    link.server.ack(first)  # acking twice is harmless
    assert link.server.data_to_send() == []


def test_acking_what_was_never_delivered_is_a_bug() -> None:
    server = ServerSession(Role.WORKER, "m")
    with pytest.raises(ValueError, match="cannot ack seq 4"):
        server.ack(Deliver(4, metric(4)))


def test_consecutive_messages_are_batched_within_the_limits() -> None:
    pair = Link()
    pair.client = ClientSession(Role.WORKER, "client-1", limits=Limits(max_batch=3))
    pair.connect()
    for step in range(1, 8):
        pair.client.send(metric(step))
    frames = pair.client.data_to_send()
    sizes = [len(orjson.loads(f).get("messages", [None])) for f in frames]
    assert sizes == [3, 3, 1]
    got = deliveries([e for f in frames for e in pair.server.receive_data(f)])
    assert [e.seq for e in got] == list(range(1, 8))


def test_batches_are_split_to_fit_the_frame_size_limit() -> None:
    limits = Limits(max_message_size=4096)
    pair = Link()
    pair.client = ClientSession(Role.WORKER, "client-1", limits=limits)
    pair.connect()
    for step in range(1, 101):
        pair.client.send(metric(step))
    frames = pair.client.data_to_send()
    assert len(frames) > 1
    assert all(len(f) <= limits.max_message_size for f in frames)
    got = [e for f in frames for e in pair.server.receive_data(f)]
    assert len(got) == 100 and all(isinstance(e, Deliver) for e in got)


def test_send_refuses_a_message_the_peer_would_refuse_as_too_large(link: Link) -> None:
    huge = TrialEnded(experiment_id=EXP, trial_id=1, state=TrialState.FAILED, time=1.0,
                      error=None)
    huge_metric = Metric(experiment_id=EXP, trial_id=1, step=1, time=1.0,
                         value={f"m{i}": 1.0 for i in range(100_000)})
    with pytest.raises(MessageTooLargeError):
        link.client.send(huge_metric)
    assert link.client.unacked == 0  # nothing poisonous was kept for resending
    assert link.client.send(huge) == 1  # and the sequence has no hole


# ---- reconnect and resend --------------------------------------------------------------


def test_unacked_messages_are_resent_after_a_reconnect_and_delivered_once(link: Link) -> None:
    for step in (1, 2, 3):
        link.client.send(metric(step))
    _, got = link.pump()
    assert len(delivered(got)) == 3
    link.drop()  # before anything was acked
    for step in (4, 5):
        link.client.send(metric(step))  # while disconnected: kept for later
    assert link.client.data_to_send() == []
    link.connect()
    connected, *rest = link.server_effects[-3:]
    assert connected == Connected("client-1", resumed=True, resent=0)
    assert link.client_effects[-1] == Connected("manager-1", resumed=True, resent=5)
    assert delivered(rest) == [metric(4), metric(5)]
    assert link.server.duplicates == 3


def test_acked_messages_are_not_resent(link: Link) -> None:
    for step in (1, 2, 3):
        link.client.send(metric(step))
    got = deliveries(link.pump()[1])
    link.server.ack(got[0])
    link.server.ack(got[1])
    link.drop()  # the ack frame was never sent: the welcome carries it instead
    link.connect()
    assert link.client_effects[-1] == Connected("manager-1", resumed=True, resent=1)
    assert link.client.unacked == 1
    assert link.server.duplicates == 1


def test_a_worker_reattaches_to_a_restarted_manager(link: Link) -> None:
    """Nothing lost, nothing doubled: the new manager gets what the old one had not acked,
    and the worker accepts the new manager's own numbering."""
    link.server.send(RunTrial(experiment_id=EXP, trial_id=1, sample={"x": 1}))
    [run] = deliveries(link.pump()[0])
    link.client.ack(run)
    for step in (1, 2, 3):
        link.client.send(metric(step))
    got = deliveries(link.pump()[1])
    link.server.ack(got[0])
    link.pump()  # the old manager made metric 1 durable, then died
    link.drop()
    link.client.send(metric(4))

    link.server = ServerSession(Role.WORKER, "manager-2")  # fresh, knows nothing
    link.client.connection_made(authenticated=True,
                                running=[TrialRef(experiment_id=EXP, trial_id=1)])
    link.server.connection_made(authenticated=True)
    got_client, got_server = link.pump(auto_ack=True)
    assert got_server[0] == Connected("client-1", resumed=False, resent=0,
                                      running=(TrialRef(experiment_id=EXP, trial_id=1),))
    assert delivered(got_server) == [metric(2), metric(3), metric(4)]
    assert got_client[0] == Connected("manager-2", resumed=False, resent=3)
    assert link.client.unacked == 0
    # the new manager numbers from 1 again; the worker must not take it for a duplicate
    link.server.send(RunTrial(experiment_id=EXP, trial_id=2, sample={}))
    [new_run] = deliveries(link.pump()[0])
    assert (new_run.seq, new_run.message) == (1, RunTrial(experiment_id=EXP, trial_id=2,
                                                          sample={}))
    # an ack of the old manager's delivery means nothing to the new one
    link.client.ack(run)
    assert link.client.data_to_send() == []


def test_an_experiment_gets_what_the_manager_sent_while_it_was_away(tuner_link: Link) -> None:
    tuner_link.drop()
    tuner_link.server.send(Capacity(slots=4))
    tuner_link.server.send(TrialEnded(experiment_id=EXP, trial_id=1,
                                      state=TrialState.TIMEOUT, time=9.0))
    tuner_link.connect()
    assert [type(m).__name__ for m in delivered(tuner_link.client_effects)] == [
        "Capacity", "TrialEnded"]


def test_what_a_dead_client_never_acked_can_go_to_its_successor() -> None:
    """An experiment process dies; a new one (a new client session) takes its experiment
    over: the manager hands it what the dead one had not acked, and only that."""
    old = Link(Role.EXPERIMENT)
    old.connect()
    sent = [Capacity(slots=1), *(metric(step) for step in range(4))]
    for message in sent:
        old.server.send(message)
    got, _ = old.pump()
    for delivery in deliveries(got)[:3]:  # made durable: capacity, steps 0 and 1
        old.client.ack(delivery)
    old.pump()
    old.drop()  # kill -9: the client never acks the rest
    old.server.send(metric(4))  # reported while nobody was attached
    pending = old.server.unacked_messages()
    assert pending == [(4, metric(2)), (5, metric(3)), (6, metric(4))]
    old.server.close("another client took over")
    assert old.server.unacked_messages() == pending  # bye changes nothing about it

    new = Link(Role.EXPERIMENT)
    new.connect()
    for _, message in pending:
        new.server.send(message)
    got, _ = new.pump(auto_ack=True)
    assert delivered(got) == [metric(2), metric(3), metric(4)]
    assert new.server.unacked_messages() == []


def test_a_manager_can_queue_for_a_worker_before_it_connects() -> None:
    pair = Link()
    pair.server = ServerSession(Role.WORKER, "manager-1", peer_session="client-1")
    pair.server.send(Setup(experiment_id=EXP, payload=b"pickle"))
    pair.server.send(RunTrial(experiment_id=EXP, trial_id=1, sample={}))
    pair.connect()
    assert pair.server_effects[0] == Connected("client-1", resumed=False, resent=2)
    assert [m.TYPE for m in delivered(pair.client_effects)] == ["setup", "run_trial"]
    assert types_on_wire(pair, "s>c") == ["welcome", "batch"]


# ---- duplicates and order --------------------------------------------------------------


def test_a_duplicate_frame_is_dropped(link: Link) -> None:
    frame = encode(metric(1), 1).decode()
    assert len(link.server.receive_data(frame)) == 1
    assert link.server.receive_data(frame) == []
    assert link.server.duplicates == 1


def test_a_gap_in_sequence_numbers_is_a_sequence_error(link: Link) -> None:
    [error] = link.server.receive_data(encode(metric(3), 3))
    assert isinstance(error, SequenceError)
    assert error.reason.startswith("expected seq 1, got 3")
    assert (error.offending_type, error.offending_seq) == ("metric", 3)
    assert orjson.loads(link.server.data_to_send()[0])["code"] == "sequence"


def test_an_ack_of_something_never_sent_is_a_sequence_error(link: Link) -> None:
    [error] = link.client.receive_data('{"type":"ack","seq":1}')
    assert isinstance(error, SequenceError) and "sent only up to 0" in error.reason


def test_a_reused_session_id_is_detected() -> None:
    pair = Link()
    pair.connect()
    pair.client.send(metric(1))
    pair.pump(auto_ack=True)
    pair.drop()
    pair.client = ClientSession(Role.WORKER, "client-1")  # a new process, same id: a bug
    pair.client.connection_made(authenticated=True)
    pair.server.connection_made(authenticated=True)
    got_client, _ = pair.pump()
    [error] = got_client
    assert isinstance(error, SequenceError)
    assert "session id" in str(error)


def test_a_malformed_batch_is_refused_as_a_whole(link: Link) -> None:
    frame = b'{"type":"batch","messages":[%s,{"type":"metric","seq":2}]}' % encode(metric(1), 1)
    [error] = link.server.receive_data(frame)
    assert isinstance(error, MalformedMessageError)


def test_messages_before_a_gap_in_a_batch_are_still_delivered(link: Link) -> None:
    frame = encode_batch([encode(metric(1), 1), encode(metric(3), 3)])
    first, error = link.server.receive_data(frame)
    assert isinstance(first, Deliver) and first.seq == 1
    assert isinstance(error, SequenceError) and link.server.state is SessionState.CLOSED


# ---- ending ----------------------------------------------------------------------------


def test_bye_ends_the_session_on_both_sides(link: Link) -> None:
    link.client.close("worker shutting down")
    assert link.client.state is SessionState.ENDED
    _, got = link.pump()
    assert got == [PeerClosed("worker shutting down")]
    assert link.server.state is SessionState.ENDED
    with pytest.raises(SessionEndedError):
        link.client.send(metric(1))
    with pytest.raises(SessionEndedError):
        link.server.connection_made(authenticated=True)
    assert link.server.receive_data(encode(metric(1), 1)) == []


def test_close_sends_pending_acks_before_bye(link: Link) -> None:
    link.client.send(metric(1))
    [got] = deliveries(link.pump()[1])
    link.server.ack(got)
    link.server.close()
    assert [orjson.loads(f)["type"] for f in link.server.data_to_send()] == ["ack", "bye"]


def test_a_peer_error_closes_the_connection_but_not_the_session(link: Link) -> None:
    [error] = link.client.receive_data('{"type":"error","code":"too_large","message":"big"}')
    assert isinstance(error, PeerError) and error.peer_code == "too_large"
    assert link.client.state is SessionState.CLOSED
    assert link.client.receive_data('{"type":"heartbeat"}') == []  # ignored once closed
    link.client.connection_made(authenticated=True)
    assert link.client.state.value == "connecting"


def test_heartbeats_keep_quiet(link: Link) -> None:
    link.client.heartbeat()
    link.server.heartbeat()
    assert link.pump() == ([], [])
    assert types_on_wire(link, "c>s")[-1] == "heartbeat"


def test_a_session_the_manager_forgot_and_recreated_is_a_new_numbering(link: Link) -> None:
    link.server.send(RunTrial(experiment_id=EXP, trial_id=1, sample={}))
    link.server.send(RunTrial(experiment_id=EXP, trial_id=2, sample={}))
    link.pump()  # delivered to the worker, not acked yet
    link.drop()
    link.server = ServerSession(Role.WORKER)  # a fresh object gets a fresh id
    link.server.send(RunTrial(experiment_id=EXP, trial_id=3, sample={}))
    link.connect()
    # seq 1 of the new session is not mistaken for seq 1 of the old one
    assert delivered(link.client_effects)[-1] == RunTrial(experiment_id=EXP, trial_id=3,
                                                         sample={})
    assert link.client_effects[-2] == Connected(link.server.session_id, resumed=False, resent=0)
