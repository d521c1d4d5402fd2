"""Sequence bookkeeping of one session: what we sent and the peer has not acked, and what
the peer sent that we delivered and acked.

Each direction of a session is one stream of seqs ``1, 2, 3...`` with no gaps. Acks are
cumulative: ``ack n`` means every seq up to ``n`` is durable on the receiver. The receiver
delivers each seq once and drops what it delivered before (duplicates after a resend).
"""

from __future__ import annotations

from collections import deque

from nasflow.protocol._errors import SequenceError

__all__ = ["Incoming", "Outgoing"]


class Outgoing:
    """Our sequenced messages: the next seq, and the encoded frames not yet acked (each
    with its weight, for packing them into batches again when they are resent)."""

    __slots__ = ("_frames", "next_seq")

    def __init__(self) -> None:
        self.next_seq = 1
        """The seq the next sent message gets."""
        # seqs are contiguous, so frames[i] has seq first_unacked + i: (weight, frame)
        self._frames: deque[tuple[int, bytes]] = deque()

    @property
    def first_unacked(self) -> int:
        """The oldest seq the peer has not acked (``next_seq`` when all are acked)."""
        return self.next_seq - len(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def add(self, frame: bytes, weight: int = 1) -> int:
        """Keep ``frame`` (encoded with seq ``next_seq``) until acked; return its seq."""
        seq = self.next_seq
        self._frames.append((weight, frame))
        self.next_seq = seq + 1
        return seq

    def acked(self, upto: int) -> int:
        """Forget frames up to ``upto``; return how many. Stale acks are harmless."""
        if upto >= self.next_seq:
            raise SequenceError(
                f"the peer acked seq {upto}, but this side has sent only up to "
                f"{self.next_seq - 1}",
                offending_type="ack",
            )
        count = upto - self.first_unacked + 1
        for _ in range(count):
            self._frames.popleft()
        return max(count, 0)

    def unacked(self) -> list[bytes]:
        """The frames to resend after a reconnect, oldest first."""
        return [frame for _, frame in self._frames]

    def unacked_weighted(self) -> list[tuple[int, bytes]]:
        """``(weight, frame)`` of every frame to resend, oldest first."""
        return list(self._frames)


class Incoming:
    """The peer's sequenced messages: the highest seq delivered, and the acked watermark.

    ``epoch`` changes when the peer turns out to be a new incarnation (a manager that
    restarted): deliveries of an older epoch can no longer be acked.
    """

    __slots__ = ("_done", "ack_pending", "acked", "delivered", "epoch")

    def __init__(self) -> None:
        self.delivered = 0
        """The highest seq delivered; every lower one was delivered too."""
        self.acked = 0
        """The highest seq acked; every lower one was acked too."""
        self.ack_pending = False
        """Whether ``acked`` moved since the peer was last told."""
        self.epoch = 0
        self._done: set[int] = set()  # acked out of order, above the watermark

    def accept(self, seq: int, message_type: str) -> bool:
        """True to deliver ``seq``; False for a duplicate; ``SequenceError`` for a gap."""
        # put the most common case first: the next seq in order
        if seq == self.delivered + 1:
            self.delivered = seq
            return True
        if seq <= self.delivered:
            return False
        raise SequenceError(
            f"expected seq {self.delivered + 1}, got {seq}: messages "
            f"{self.delivered + 1}..{seq - 1} are missing",
            offending_type=message_type,
            offending_seq=seq,
        )

    def ack(self, seq: int) -> None:
        """Record that the effect of delivered ``seq`` is durable (in any order)."""
        if seq <= self.acked:
            return
        if seq > self.delivered:
            raise ValueError(f"cannot ack seq {seq}: only up to {self.delivered} were delivered")
        if seq == self.acked + 1 and not self._done:
            self.acked = seq
            self.ack_pending = True
            return
        self._done.add(seq)
        while self.acked + 1 in self._done:
            self.acked += 1
            self._done.remove(self.acked)
            self.ack_pending = True

    def skip_to(self, seq: int) -> None:
        """The peer says everything up to ``seq`` was acked: we lost our record of it."""
        if seq > self.delivered:
            self.delivered = self.acked = seq
            self._done.clear()

    def reset(self, seq: int) -> None:
        """A new incarnation of the peer: its stream restarts after ``seq``."""
        self.delivered = self.acked = seq
        self._done.clear()
        self.ack_pending = False
        self.epoch += 1
