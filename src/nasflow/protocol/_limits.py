"""Size and rate limits of a command channel connection."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["DEFAULT_LIMITS", "Limits", "RateLimiter", "TokenBucket", "WORKER_SETUPS"]

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How large frames may be and how many messages a batch may hold.

    Both sides of a channel should use the same limits: a sender splits its batches to
    fit ``max_message_size``, and ``send()`` refuses a single message that would not fit,
    so a message the peer would reject is never queued (it would be resent forever).
    Give the transport ``max_setup_size`` as its own frame limit (websockets: ``max_size``)
    so an oversized frame is refused before it is buffered. Text sizes are counted in
    characters (at most the UTF-8 byte count).
    """

    max_message_size: int = 1 * MiB
    """The largest frame that is not a ``setup`` (batches included)."""
    max_setup_size: int = 16 * MiB
    """The largest ``setup`` frame (a cloudpickled space and evaluator, base64)."""
    max_batch: int = 1024
    """The most messages one frame may hold, each entry of a ``metrics`` message counting
    as one (so also the most entries of one ``metrics``); 1 turns batching off when
    sending."""
    max_payload_size: int = 2 * GiB
    """The largest pickled space and evaluator an experiment may ship to workers. A setup
    larger than a frame travels out of band (a file the workers read); past this limit the
    experiment fails at once with ``PayloadError``."""
    max_frame_rate: float = 5000.0
    """Frames per second a manager accepts from one connection, on average (a token
    bucket; a ``batch`` frame counts once). A peer over it is disconnected with close code
    1008; it reconnects and resends, so nothing is lost."""
    max_frame_burst: int = 10000
    """Frames a manager accepts from one connection at once, above ``max_frame_rate``."""

    def __post_init__(self) -> None:
        if self.max_message_size < 1024:
            raise ValueError(f"max_message_size must be at least 1024, got {self.max_message_size}")
        if self.max_setup_size < self.max_message_size:
            raise ValueError(
                f"max_setup_size ({self.max_setup_size}) must be at least "
                f"max_message_size ({self.max_message_size})"
            )
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_payload_size < 1:
            raise ValueError(f"max_payload_size must be at least 1, got {self.max_payload_size}")
        if not self.max_frame_rate > 0 or self.max_frame_burst < 1:
            raise ValueError(
                "need max_frame_rate > 0 and max_frame_burst >= 1, got "
                f"{self.max_frame_rate} and {self.max_frame_burst}"
            )


DEFAULT_LIMITS = Limits()

WORKER_SETUPS = 16
"""How many experiments' setups a worker keeps loaded, the last ones it was sent (a setup
sent again counts as sent last): it drops the oldest beyond that. The manager keeps the
same account, and sends a dropped one again before that experiment's next trial."""
"""1 MiB per frame, 16 MiB per ``setup`` frame, 2 GiB per payload, 1024 messages per
batch, 5,000 frames per second (bursts of 10,000) per connection."""


class RateLimiter(Protocol):
    """Decides whether a connection may receive ``messages`` more messages now.

    A session asks once per frame, counting each entry of a ``metrics`` message as one
    message; answering False makes it a ``RateLimitError``
    protocol error (the connection closes; the peer reconnects and resends, so nothing is
    lost, it is only slowed down).
    """

    def allow(self, messages: int) -> bool: ...


class TokenBucket:
    """``rate`` messages per second on average, bursts of up to ``burst`` messages.

    ``clock`` returns seconds (``time.monotonic`` by default); tests pass a fake one.
    Make ``burst`` at least the peer's ``Limits.max_batch``: a batch larger than the
    burst could never pass.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        """Messages per second refilled."""
        self.burst = burst
        """The most messages allowed at once."""
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def allow(self, messages: int) -> bool:
        """Take ``messages`` tokens if there are that many; False (taking none) otherwise."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if messages > self._tokens:
            return False
        self._tokens -= messages
        return True
