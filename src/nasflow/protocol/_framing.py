"""What goes on the wire: a session's queued frames packed into ``batch`` frames.

Consecutive sequenced messages share a ``batch`` frame as long as it stays within
``Limits``: ``max_message_size`` characters and ``max_batch`` messages, each entry of a
``metrics`` message counting as one (its *weight*, ``codec.weight``). Control messages
(``hello``, ``ack``, ...) always travel alone, in their place in the order.
"""

from __future__ import annotations

from nasflow.protocol._codec import encode_batch
from nasflow.protocol._limits import Limits

__all__ = ["Queued", "pack"]

Queued = tuple[int, bytes]
"""A frame waiting to be sent, with its weight; weight 0 marks a control message."""

_BATCH_OVERHEAD = len(encode_batch([]))


def pack(queued: list[Queued], limits: Limits) -> list[str]:
    """The text frames to send for ``queued``, in order."""
    out: list[bytes] = []
    run: list[bytes] = []
    room = limits.max_message_size - _BATCH_OVERHEAD
    most = limits.max_batch
    used = count = 0
    batching = most > 1
    for weight, frame in queued:
        if weight and batching and len(frame) < room:
            if run and (count + weight > most or used + len(frame) + 1 > room):
                out.append(run[0] if len(run) == 1 else encode_batch(run))
                run, used, count = [], 0, 0
            run.append(frame)
            used += len(frame) + 1
            count += weight
            continue
        if run:
            out.append(run[0] if len(run) == 1 else encode_batch(run))
            run, used, count = [], 0, 0
        out.append(frame)
    if run:
        out.append(run[0] if len(run) == 1 else encode_batch(run))
    return [frame.decode() for frame in out]
