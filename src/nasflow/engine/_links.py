"""How a ``ManagerEngine`` reaches its manager: in memory (an embedded manager) here; over a
socket in ``nasflow.manager`` (``TunerLink``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from nasflow.protocol import Cancel, Concurrency, Setup, Submit

if TYPE_CHECKING:
    from collections.abc import Callable

    from nasflow.protocol import SequencedMessage

__all__ = ["Link", "LocalLink"]

_log = logging.getLogger("nasflow.engine")


class Link(Protocol):
    """How the engine reaches its manager (in memory, or ``TunerLink`` over a socket)."""

    def send(self, message: SequencedMessage) -> None:
        """Send ``setup``, ``submit``, ``cancel`` or ``concurrency`` (delivery is the
        link's business)."""

    async def detach(self, reason: str) -> None:
        """Leave the manager for good (after what was sent has arrived)."""


class LocalLink:
    """A manager in this process: calls into its core, which answers through ``deliver``
    (handed on to ``receive``) and ``close`` (to ``gone``).

    With ``restarted`` (a daemon's hosted experiment: the core serves every client of the
    daemon), an error the core raises never reaches the caller, as over a socket, where it
    would drop one connection: it is logged and the link starts again a moment later --
    ``restarted()`` sets up again, resubmits what has not started and repeats the cancels,
    which the core ignores where it has them already. Without it (an embedded manager, the
    experiment's own) the error is the caller's.
    """

    RETRY_SECONDS = 0.05
    """The first pause before starting again after a core error (doubled up to 5 s while
    the errors go on)."""

    def __init__(self, core: Any, experiment_id: str, *,
                 receive: Callable[[SequencedMessage, str | None, int | None,
                                    Callable[[], None] | None], None],
                 gone: Callable[[str], None],
                 restarted: Callable[[], None] | None = None) -> None:
        self._core = core
        self._experiment_id = experiment_id
        self._receive = receive
        self._gone = gone
        self._restarted = restarted
        self._retry: asyncio.TimerHandle | None = None
        self._pause = self.RETRY_SECONDS
        self.errors = 0
        """Core errors isolated so far."""

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
        core = self._core
        try:
            if isinstance(message, Setup):
                core.port_setup(self, message)
            elif isinstance(message, Submit):
                core.submit(self, message)
            elif isinstance(message, Cancel):
                core.cancel(self, message)
            elif isinstance(message, Concurrency):
                core.set_concurrency(self, message)
        except Exception:
            if self._restarted is None:
                raise
            self.errors += 1
            _log.exception("the manager failed on %s of experiment %s; the experiment "
                           "sets up again in %g s", message.TYPE, self._experiment_id,
                           self._pause)
            if self._retry is None:
                self._retry = asyncio.get_running_loop().call_later(self._pause, self._again)
                self._pause = min(self._pause * 2, 5.0)

    def _again(self) -> None:
        self._retry = None
        errors = self.errors
        assert self._restarted is not None
        self._restarted()
        if self.errors == errors:
            self._pause = self.RETRY_SECONDS

    async def detach(self, reason: str) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        try:
            self._core.detach(self._experiment_id, reason)
        except Exception:
            if self._restarted is None:
                raise
            _log.exception("the manager failed to let experiment %s go",
                           self._experiment_id)
