"""Rate limiting: a token bucket per connection, and what exceeding it does."""

from __future__ import annotations

import orjson
import pytest

from nasflow.protocol import (
    ClientSession,
    Deliver,
    Metric,
    RateLimitError,
    Role,
    ServerSession,
    SessionState,
    TokenBucket,
)

from ._examples import EXP
from ._link import Link


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def metric(step: int) -> Metric:
    return Metric(experiment_id=EXP, trial_id=1, step=step, value=0.5, time=1.0)


def test_a_token_bucket_allows_bursts_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.allow(5)
    assert not bucket.allow(1)
    clock.now = 0.25  # 2.5 tokens back
    assert bucket.allow(2)
    assert not bucket.allow(1)
    clock.now = 100.0  # never more than the burst
    assert not bucket.allow(6)
    assert bucket.allow(5)


def test_a_token_bucket_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0, burst=1)


def test_a_peer_over_the_rate_limit_is_disconnected_and_resends_later() -> None:
    clock = FakeClock()
    pair = Link()
    pair.server = ServerSession(Role.WORKER, "manager-1",
                                rate_limit=TokenBucket(rate=2, burst=3, clock=clock))
    pair.client = ClientSession(Role.WORKER, "client-1")
    pair.connect()  # the hello takes one token
    pair.client.send(metric(1))
    pair.client.send(metric(2))
    pair.pump(auto_ack=True)  # one batch of two: two tokens; the bucket is empty
    pair.client.send(metric(3))
    _, got = pair.pump(auto_ack=True)
    [error] = got
    assert isinstance(error, RateLimitError)
    assert pair.server.state is SessionState.CLOSED
    sent_error = [orjson.loads(f) for d, f in pair.wire if d == "s>c"][-1]
    assert sent_error["code"] == "rate_limited"
    # later, on a new connection, the message comes back: slowed down, not lost
    pair.drop()
    clock.now = 10.0
    pair.connect(auto_ack=True)
    messages = [e.message for e in pair.server_effects if isinstance(e, Deliver)]
    assert messages == [metric(1), metric(2), metric(3)]
    assert pair.client.unacked == 0
