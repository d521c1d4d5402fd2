"""How a ``ManagerEngine`` reaches its manager: in memory (an embedded manager) here; over a
socket in ``nasflow.manager`` (``TunerLink``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from nasflow.protocol import Cancel, Concurrency, Setup, Submit

if TYPE_CHECKING:
    from collections.abc import Callable

    from nasflow.protocol import SequencedMessage

__all__ = ["Link", "LocalLink"]


class Link(Protocol):
    """How the engine reaches its manager (in memory, or ``TunerLink`` over a socket)."""

    def send(self, message: SequencedMessage) -> None:
        """Send ``setup``, ``submit``, ``cancel`` or ``concurrency`` (delivery is the
        link's business)."""

    async def detach(self, reason: str) -> None:
        """Leave the manager for good (after what was sent has arrived)."""


class LocalLink:
    """An embedded manager: calls into its core, which answers through ``deliver``
    (handed on to ``receive``) and ``close`` (to ``gone``)."""

    def __init__(self, core: Any, experiment_id: str, *,
                 receive: Callable[[SequencedMessage, str | None, int | None,
                                    Callable[[], None] | None], None],
                 gone: Callable[[str], None]) -> None:
        self._core = core
        self._experiment_id = experiment_id
        self._receive = receive
        self._gone = gone

    # the manager's side: an ExperimentPort
    def deliver(self, message: SequencedMessage, origin: str | None, origin_seq: int | None,
                done: Callable[[], None] | None) -> None:
        self._receive(message, origin, origin_seq, done)

    def close(self, reason: str) -> None:
        self._gone(reason)

    def hand_over(self, reason: str) -> list[Any]:
        self.close(reason)  # in memory: nothing is ever left undelivered
        return []

    # the engine's side
    def send(self, message: SequencedMessage) -> None:
        if isinstance(message, Setup):
            self._core.port_setup(self, message)
        elif isinstance(message, Submit):
            self._core.submit(self, message)
        elif isinstance(message, Cancel):
            self._core.cancel(self, message)
        elif isinstance(message, Concurrency):
            self._core.set_concurrency(self, message)

    async def detach(self, reason: str) -> None:
        self._core.detach(self._experiment_id, reason)
