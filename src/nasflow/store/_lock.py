"""Who runs an experiment: an exclusive ``flock`` on ``experiment.lock`` in its directory,
held for the whole run by the process that runs it.

The kernel drops the lock when its holder exits, however it exits (``kill -9`` included),
so a crashed owner leaves nothing stale to clean up, and two runs -- two processes, or two
``Experiment`` objects in one process (a ``flock`` belongs to an open file, not to a
process) -- can never both hold it. The file is opened ``O_CLOEXEC``: worker processes
that a run starts (``subprocess``: fork then exec) do not keep it.

The holder writes ``{"pid", "host", "since"}`` into the file. Taking the lock and reading
who holds it both happen under a second, momentary ``flock`` on the directory itself, so a
contender never reads the file between the holder's lock and its write: the loser always
names the winner.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from typing import Any

import orjson

__all__ = ["LOCK_NAME", "ExperimentLock", "lock_owner", "take_lock"]

LOCK_NAME = "experiment.lock"
"""The lock file in each experiment directory."""


class ExperimentLock:
    """The held lock of one run; ``release()`` (or the process's exit) gives it up."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path
        """The lock file."""

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None

    def release(self) -> None:
        """Give up the lock (idempotent). The file stays: removing it would let a
        contender that opened it a moment before lock a file nobody else can see."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _under_guard(directory: Path, shared: bool) -> tuple[int | None, dict[str, Any]]:
    """Try the lock under the directory's momentary guard: ``(fd, {})`` with it held
    (exclusively, or for a probe ``shared`` and to be released at once), else
    ``(None, owner)``."""
    guard = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # held for microseconds by whoever locks
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            return None, owner
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, orjson.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "since": time.time()}), 0)
        return fd, {}
    finally:
        os.close(guard)  # closing drops the guard's flock


def _read_owner(fd: int) -> dict[str, Any]:
    data = os.pread(fd, 4096, 0)
    try:
        owner = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        owner = {}
    return owner if isinstance(owner, dict) else {}


def take_lock(directory: Path) -> ExperimentLock | dict[str, Any]:
    """The lock of ``directory`` (created 0700 if needed), or the holder's
    ``{"pid", "host", "since"}`` when another run holds it. Never waits."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, owner = _under_guard(directory, shared=False)
    return ExperimentLock(fd, directory / LOCK_NAME) if fd is not None else owner


def lock_owner(directory: Path) -> dict[str, Any] | None:
    """The holder of ``directory``'s lock (``{"pid", "host", "since"}``), or ``None`` when
    no run holds it. Raises ``OSError`` when it cannot be told (no such directory, no
    permission)."""
    if not (directory / LOCK_NAME).is_file():
        return None
    fd, owner = _under_guard(directory, shared=True)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        return None
    return owner
