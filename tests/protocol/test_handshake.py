"""The hello/welcome handshake, and what is refused before and around it."""

from __future__ import annotations

import orjson
import pytest

from nasflow.protocol import (
    PROTOCOL_VERSION,
    ClientSession,
    Connected,
    Hello,
    Metric,
    PeerError,
    Role,
    RunTrial,
    ServerSession,
    SessionState,
    Submit,
    UnauthorizedError,
    UnexpectedMessageError,
    VersionMismatchError,
    encode,
    read_hello,
)
from nasflow.protocol import Setup as SetupMessage

from ._examples import EXP
from ._link import Link, delivered

METRIC = Metric(experiment_id=EXP, trial_id=1, step=1, value=0.5, time=1.0)


def _hello(**fields: object) -> str:
    obj = {"type": "hello", "version": PROTOCOL_VERSION, "role": "worker", "session": "w-1"}
    return orjson.dumps({**obj, **fields}).decode()


def _server() -> ServerSession:
    server = ServerSession(Role.WORKER, "manager-1")
    server.connection_made(authenticated=True)
    return server


def test_handshake_opens_both_sides() -> None:
    pair = Link()
    pair.connect()
    assert pair.client.state is SessionState.OPEN
    assert pair.server.state is SessionState.OPEN
    assert pair.server_effects == [Connected("client-1", resumed=False, resent=0)]
    assert pair.client_effects == [Connected("manager-1", resumed=False, resent=0)]
    assert pair.client.peer_session == "manager-1"
    assert pair.server.peer_session == "client-1"
    assert [orjson.loads(f)["type"] for _, f in pair.wire] == ["hello", "welcome"]


def test_hello_names_version_role_session_and_resume_point() -> None:
    client = ClientSession(Role.EXPERIMENT, "exp-session")
    client.connection_made(authenticated=True)
    [frame] = client.data_to_send()
    assert orjson.loads(frame) == {
        "type": "hello",
        "version": PROTOCOL_VERSION,
        "role": "experiment",
        "session": "exp-session",
        "peer_session": None,
        "last_seq": 0,
        "resend_from": 1,
        "running": [],
    }


def test_client_session_ids_are_generated_unique_by_default() -> None:
    a, b = ClientSession(Role.WORKER), ClientSession(Role.WORKER)
    assert a.session_id != b.session_id
    assert a.session_id.startswith("worker-")


def test_version_mismatch_is_an_error_naming_both_versions() -> None:
    server = _server()
    [error] = server.receive_data(_hello(version=PROTOCOL_VERSION + 1))
    assert isinstance(error, VersionMismatchError)
    assert (error.ours, error.theirs) == (PROTOCOL_VERSION, PROTOCOL_VERSION + 1)
    assert f"speaks protocol version {PROTOCOL_VERSION}" in str(error)
    assert server.state is SessionState.CLOSED
    [frame] = server.data_to_send()
    sent = orjson.loads(frame)
    assert sent["type"] == "error" and sent["code"] == "version"
    assert str(PROTOCOL_VERSION + 1) in sent["message"]


def test_the_client_sees_the_servers_version_error_as_a_peer_error() -> None:
    pair = Link()
    pair.client.connection_made(authenticated=True)
    pair.server.connection_made(authenticated=True)
    pair.client.data_to_send()  # the real hello is replaced by one of another version
    [_version_error] = pair.server.receive_data(_hello(version=99, session="client-1"))
    [frame] = pair.server.data_to_send()
    [peer_error] = pair.client.receive_data(frame)
    assert isinstance(peer_error, PeerError)
    assert peer_error.peer_code == "version"
    assert pair.client.state is SessionState.CLOSED
    assert pair.client.data_to_send() == []  # no error about an error


@pytest.mark.parametrize(
    "frame",
    [
        encode(METRIC, 1).decode(),
        '{"type": "ack", "seq": 1}',
        '{"type": "heartbeat"}',
        '{"type": "bye", "reason": "x"}',
    ],
)
def test_messages_before_hello_are_unexpected(frame: str) -> None:
    server = _server()
    [error] = server.receive_data(frame)
    assert isinstance(error, UnexpectedMessageError)
    assert "before the handshake" in error.reason
    assert orjson.loads(server.data_to_send()[0])["code"] == "unexpected"


def test_messages_before_welcome_are_unexpected_on_the_client() -> None:
    client = ClientSession(Role.WORKER, "w")
    client.connection_made(authenticated=True)
    run = RunTrial(experiment_id=EXP, trial_id=1, sample={})
    [error] = client.receive_data(encode(run, 1))
    assert isinstance(error, UnexpectedMessageError)


def test_a_second_hello_is_unexpected(link: Link) -> None:
    [error] = link.server.receive_data(_hello(session="client-1"))
    assert isinstance(error, UnexpectedMessageError) and "second handshake" in error.reason


def test_a_client_refuses_hello_and_a_server_refuses_welcome() -> None:
    client = ClientSession(Role.WORKER, "w")
    client.connection_made(authenticated=True)
    [error] = client.receive_data(_hello())
    assert isinstance(error, UnexpectedMessageError)
    server = _server()
    welcome = orjson.dumps({"type": "welcome", "version": PROTOCOL_VERSION, "session": "m"})
    [error] = server.receive_data(welcome)
    assert isinstance(error, UnexpectedMessageError)


def test_a_worker_cannot_open_the_tuner_channel() -> None:
    server = ServerSession(Role.EXPERIMENT, "manager-1")
    server.connection_made(authenticated=True)
    [error] = server.receive_data(_hello(role="worker"))
    assert isinstance(error, UnexpectedMessageError)
    assert "serves experiment clients, not worker" in error.reason


def test_a_bound_session_refuses_another_clients_hello() -> None:
    server = ServerSession(Role.WORKER, "manager-1", peer_session="w-1")
    server.connection_made(authenticated=True)
    [error] = server.receive_data(_hello(session="w-2"))
    assert isinstance(error, UnexpectedMessageError) and "'w-2'" in error.reason


def test_read_hello_lets_the_server_route_a_new_connection() -> None:
    hello = read_hello(_hello(session="w-9"))
    assert hello == Hello(role=Role.WORKER, session="w-9")
    with pytest.raises(UnexpectedMessageError, match="expected 'hello'"):
        read_hello(encode(METRIC, 1))
    with pytest.raises(VersionMismatchError):
        read_hello(_hello(version=0))


def test_messages_in_the_wrong_direction_are_unexpected(link: Link) -> None:
    # a worker never receives a metric, a manager never receives run_trial from a worker
    [error] = link.client.receive_data(encode(METRIC, 1))
    assert isinstance(error, UnexpectedMessageError) and "does not accept 'metric'" in error.reason
    assert error.offending_seq == 1


def test_sending_a_message_of_the_other_direction_raises() -> None:
    worker = ClientSession(Role.WORKER, "w")
    with pytest.raises(UnexpectedMessageError, match="worker client does not send 'submit'"):
        worker.send(Submit(experiment_id=EXP, trial_id=1, sample={}))


def test_setup_needs_an_authenticated_connection() -> None:
    pair = Link(Role.EXPERIMENT)
    pair.connect(authenticated=False)
    pair.client.send(SetupMessage(experiment_id=EXP, payload=b"pickle"))
    _, got_server = pair.pump()
    [error] = got_server
    assert isinstance(error, UnauthorizedError)
    assert "Authorization: Bearer" in str(error)
    assert pair.server.state is SessionState.CLOSED
    # the client learns why and keeps the message for a better connection
    assert isinstance(pair.client_effects[-1], PeerError)
    assert pair.client.unacked == 1


def test_setup_is_delivered_over_an_authenticated_connection(tuner_link: Link) -> None:
    setup = SetupMessage(experiment_id=EXP, payload=b"pickle", concurrency=2)
    tuner_link.client.send(setup)
    _, got_server = tuner_link.pump()
    assert delivered(got_server) == [setup]


def test_sending_something_that_is_not_a_message_raises_a_protocol_error() -> None:
    worker = ClientSession(Role.WORKER, "w")
    with pytest.raises(UnexpectedMessageError, match="does not send 'dict'"):
        worker.send({"type": "metric"})  # type: ignore[arg-type]
