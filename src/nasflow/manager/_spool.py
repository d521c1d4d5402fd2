"""Setups too large for a frame: the manager hands them to its workers as files.

A worker's setup frame is limited (``Limits.max_setup_size``, 16 MiB by default) so that a
peer never buffers an unbounded frame; an experiment's pickled space and evaluator is not
(a data set inside a ``Classification`` evaluator is hundreds of MB). The local training
service's workers run on the manager's machine, so a large setup is written once to a file
in the manager's directory (mode 0600, renamed into place) and each worker gets a ``setup``
frame that names the file with its size and SHA-256; the worker maps the file and checks
both before unpickling anything. Small setups still travel inline.

A setup that arrives already out of band (an experiment attached to a daemon writes its
own file) is passed on as it came. Files the spool wrote are removed when the experiment
leaves and when the manager stops.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from nasflow.manager._state import payload_digest
from nasflow.protocol import Limits, Setup
from nasflow.worker._payload import spill

__all__ = ["SetupSpool", "fits_inline"]

_log = logging.getLogger("nasflow.manager")
_FRAME_OVERHEAD = 4096  # the setup frame's JSON around the base64 payload, generously


def fits_inline(size: int, limits: Limits) -> bool:
    """Whether a payload of ``size`` bytes fits a ``setup`` frame (base64 inside JSON)."""
    return 4 * ((size + 2) // 3) + _FRAME_OVERHEAD <= limits.max_setup_size


class SetupSpool:
    """Turns an experiment's ``setup`` into the one its workers get."""

    def __init__(self, directory: Path | None, limits: Limits) -> None:
        self._directory = directory
        self._limits = limits
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._files: dict[str, Path] = {}  # experiment id -> the file written for it

    def for_workers(self, message: Setup) -> tuple[Setup, str]:
        """The ``setup`` to send workers for ``message``, and its fingerprint."""
        if message.payload_file is not None:
            assert message.payload_sha256 is not None
            return message, message.payload_sha256
        digest = payload_digest(message.payload)
        if fits_inline(len(message.payload), self._limits):
            self.drop(message.experiment_id)
            return Setup(experiment_id=message.experiment_id, payload=message.payload), digest
        spilled = spill(message.payload, self._where(), message.experiment_id)
        old = self._files.get(message.experiment_id)
        if old is not None and old != spilled.path:
            old.unlink(missing_ok=True)
        self._files[message.experiment_id] = spilled.path
        _log.info("setup of experiment %s (%d bytes) goes to workers as %s",
                  message.experiment_id, spilled.size, spilled.path)
        return Setup(experiment_id=message.experiment_id, payload_file=str(spilled.path),
                     payload_sha256=spilled.sha256, payload_size=spilled.size), spilled.sha256

    def drop(self, experiment_id: str) -> None:
        """Remove the file written for ``experiment_id`` (it left)."""
        path = self._files.pop(experiment_id, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Remove every file written."""
        for experiment_id in list(self._files):
            self.drop(experiment_id)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _where(self) -> Path:
        if self._directory is not None:
            return self._directory / "setups"
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="nasflow-setups-")
        return Path(self._tmp.name)

