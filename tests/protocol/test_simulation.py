"""Random runs of sends, acks, lost connections and manager restarts: every message the
worker sends becomes durable on the manager side exactly once.

The manager app makes deliveries durable in seq order and stores the seq with them (one
writer, one transaction), so a restarted manager knows its ``durable_seq``; the worker app
acks in any order.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nasflow.protocol import (
    ClientSession,
    Deliver,
    Effect,
    Metric,
    ProtocolError,
    Role,
    RunTrial,
    ServerSession,
    SessionState,
)

from ._examples import EXP

OPS = [
    "send_c", "send_s", "flush_c", "flush_s", "ack_c", "ack_s",
    "drop", "connect", "handshake", "restart",
]
LIVE = (SessionState.CONNECTING, SessionState.OPEN)


class World:
    """A worker and a manager whose process may restart; each app makes deliveries durable
    (appends them to its log) only when it acks them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.client = ClientSession(Role.WORKER, "worker-1")
        self.server = ServerSession(Role.WORKER, "manager-0")
        self.incarnation = 0
        self.sent_c: list[int] = []  # metric steps the worker sent
        self.sent_s: list[list[int]] = [[]]  # trial ids each manager incarnation sent
        self.durable_s: list[int] = []  # metric steps made durable by any manager
        self.durable_c: list[tuple[int, int]] = []  # (incarnation, trial id) on the worker
        self.pending_c: list[Deliver] = []
        self.pending_s: list[Deliver] = []
        self.durable_seq = 0  # stored by the manager app with each effect

    def do(self, op: str, n: int) -> None:
        getattr(self, op)(n)

    def send_c(self, n: int) -> None:
        for _ in range(n):
            step = len(self.sent_c)
            self.client.send(
                Metric(experiment_id=EXP, trial_id=0, step=step, value=1.0, time=0.0)
            )
            self.sent_c.append(step)

    def send_s(self, n: int) -> None:
        for _ in range(n):
            trial = len(self.sent_s[-1])
            self.server.send(RunTrial(experiment_id=EXP, trial_id=trial,
                                      attempt=self.incarnation, sample={}))
            self.sent_s[-1].append(trial)

    def flush_c(self, _: int = 0) -> None:
        for frame in self.client.data_to_send():
            if self.server.state in LIVE:
                self.pending_s += self._deliveries(self.server.receive_data(frame))

    def flush_s(self, _: int = 0) -> None:
        for frame in self.server.data_to_send():
            if self.client.state in LIVE:
                self.pending_c += self._deliveries(self.client.receive_data(frame))

    def ack_c(self, n: int) -> None:
        for _ in range(min(n, len(self.pending_c))):
            delivery = self.pending_c.pop(self.rng.randrange(len(self.pending_c)))
            message: Any = delivery.message
            self.durable_c.append((message.attempt, message.trial_id))
            self.client.ack(delivery)

    def ack_s(self, n: int) -> None:
        for _ in range(min(n, len(self.pending_s))):
            delivery = self.pending_s.pop(0)
            assert isinstance(delivery.message, Metric)
            self.durable_s.append(delivery.message.step)
            self.durable_seq = delivery.seq
            self.server.ack(delivery)

    def drop(self, _: int = 0) -> None:
        self.client.connection_lost()
        self.server.connection_lost()

    def connect(self, _: int = 0) -> None:
        self.drop()
        self.client.connection_made(authenticated=True)
        self.server.connection_made(authenticated=True)

    def handshake(self, _: int = 0) -> None:
        self.connect()
        self.flush_c()
        self.flush_s()

    def restart(self, _: int = 0) -> None:
        """The manager process dies: what it had not acked is gone with it."""
        self.drop()
        self.incarnation += 1
        self.server = ServerSession(
            Role.WORKER,
            f"manager-{self.incarnation}",
            peer_session=self.client.session_id,
            durable_seq=self.durable_seq,
        )
        self.pending_s = []
        self.sent_s.append([])

    def settle(self) -> None:
        """Reconnect and run until both sides have nothing unacked."""
        self.connect()
        for _ in range(50):
            self.flush_c()
            self.flush_s()
            self.ack_c(len(self.pending_c))
            self.ack_s(len(self.pending_s))
            if not (self.client.unacked or self.server.unacked or self.pending_c
                    or self.pending_s):
                self.flush_c()
                self.flush_s()
                return
        raise AssertionError("did not settle")

    @staticmethod
    def _deliveries(effects: list[Effect]) -> list[Deliver]:
        errors = [e for e in effects if isinstance(e, ProtocolError)]
        assert not errors, errors
        return [e for e in effects if isinstance(e, Deliver)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(OPS), st.integers(1, 5)), max_size=60),
    st.integers(0, 2**32),
)
def test_exactly_once_through_drops_and_restarts(ops: list[tuple[str, int]], seed: int) -> None:
    world = World(seed)
    world.connect()
    for op, n in ops:
        world.do(op, n)
    world.settle()
    # worker -> manager: every metric durable exactly once, whatever happened
    assert world.durable_s == world.sent_c
    # manager -> worker: no duplicates; everything of the last incarnation arrived
    assert len(set(world.durable_c)) == len(world.durable_c)
    last = [t for inc, t in world.durable_c if inc == world.incarnation]
    assert sorted(last) == world.sent_s[-1]
    assert world.client.state is SessionState.OPEN and world.server.state is SessionState.OPEN


def test_a_manager_that_restarts_right_after_making_a_message_durable() -> None:
    """The ack never left; the restarted manager knows its durable_seq and drops the resend."""
    world = World(0)
    for op in ["handshake", "send_c", "flush_c", "ack_s", "restart"]:
        world.do(op, 1)
    world.settle()
    assert world.durable_s == world.sent_c == [0]
