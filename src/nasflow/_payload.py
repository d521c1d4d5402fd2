"""The ``setup`` payload: an experiment's space and evaluator, cloudpickled once.

``pack`` runs in the experiment process, ``load`` in each worker. cloudpickle pickles what
lives in ``__main__`` (a script, a notebook) by value, so spaces and evaluators defined
there work. Everything else is pickled by reference and imported in the worker: the
payload carries the experiment's ``sys.path`` so that modules next to the user's script
import there too (NNI's "ModuleNotFoundError in the trial", gone).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import pickle
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasflow._kernel import Objective
from nasflow.evaluator import Evaluator
from nasflow.exceptions import PayloadError

__all__ = ["Payload", "PayloadError", "SpilledPayload", "digest", "file_safe", "load", "pack",
           "read_spilled", "spill"]

_MAGIC = "nasflow-setup-1"


@dataclass(frozen=True)
class Payload:
    """What a worker needs to run trials of one experiment."""

    space: Any
    """The experiment's space (a model space is frozen into each trial's model)."""
    evaluator: Evaluator
    """The experiment's evaluator."""
    directions: dict[str, str]
    """The objective, ``{metric: direction}``, primary first."""
    trial_directory: Callable[[int], Path]
    """Where trial ``i`` keeps its files (``stdout.log``, ``stderr.log``, checkpoints)."""

    @property
    def objective(self) -> Objective:
        """The experiment's objective."""
        return Objective(self.directions)


@dataclass(frozen=True)
class _TrialDirs:
    """``root / str(i)``: picklable where the experiment's own method is not."""

    root: Path

    def __call__(self, trial_id: int) -> Path:
        return self.root / str(trial_id)


def pack(
    space: Any,
    evaluator: Evaluator,
    objective: Objective,
    trial_directory: Callable[[int], Path],
) -> bytes:
    """The payload bytes for a ``setup`` message; ``PayloadError`` says what cannot pickle."""
    import cloudpickle

    root = trial_directory(0).parent
    if all(trial_directory(i) == root / str(i) for i in (0, 1, 7)):
        dirs: Callable[[int], Path] = _TrialDirs(root.resolve())
    else:
        dirs = trial_directory
    payload = Payload(space, evaluator, dict(objective.directions), dirs)
    try:
        inner = cloudpickle.dumps(payload)
    except Exception as exc:
        what = _unpicklable_part(payload)
        raise PayloadError(
            f"the {what} cannot be sent to worker processes: {type(exc).__name__}: {exc}. "
            "Everything the evaluator and the space refer to must pickle: open files, locks, "
            "sockets and database connections must be created inside evaluate(), not "
            "captured from outside; or use training_service='inprocess'."
        ) from exc
    return pickle.dumps((_MAGIC, list(sys.path), os.getcwd(), inner), protocol=5)


def _unpicklable_part(payload: Payload) -> str:
    import cloudpickle

    for name, value in (("evaluator", payload.evaluator), ("space", payload.space),
                        ("trial directory function", payload.trial_directory)):
        try:
            cloudpickle.dumps(value)
        except Exception:  # probing which part fails; the caller reports the error itself
            return name
    return "setup (space and evaluator)"


def digest(data: bytes) -> str:
    """A short fingerprint of payload bytes (workers cache loaded payloads by it)."""
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def load(data: bytes | mmap.mmap) -> Payload:
    """Rebuild the payload in a worker; raises what unpickling raised (e.g. an ImportError).

    The experiment's ``sys.path`` entries that this process lacks are appended first, so
    modules next to the user's script import here as they did there.
    """
    # only an authenticated manager sends setups (the protocol refuses them otherwise)
    magic, path, cwd, inner = pickle.loads(data)
    if magic != _MAGIC:
        raise PayloadError(f"unknown setup payload format {magic!r}: run the same nasflow "
                           "version in the experiment and the manager")
    for entry in path:
        # "" means the experiment's working directory, not ours
        entry = entry or cwd
        if entry not in sys.path:
            sys.path.append(entry)
    import cloudpickle

    payload = cloudpickle.loads(inner)
    if not isinstance(payload, Payload):
        raise PayloadError(f"the setup payload holds {type(payload).__name__}, not a Payload")
    return payload


# --- setups too large for a frame: out of band, in a file -----------------------------------


@dataclass(frozen=True)
class SpilledPayload:
    """Where a spilled payload lies, and what its bytes must hash to."""

    path: Path
    """The file (mode 0600) holding the payload bytes."""
    sha256: str
    """The SHA-256 of those bytes (hex)."""
    size: int
    """Their length."""


def spill(data: bytes, directory: Path, name: str) -> SpilledPayload:
    """Write ``data`` to ``directory/setup-<name>-<sha>.pkl``, readable by this user only.

    The file is written under a temporary name and renamed into place, so a reader never
    sees half of it; a file of that name already there (the same bytes, by its hash in
    the name) is replaced atomically.
    """
    sha = hashlib.sha256(data).hexdigest()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / f"setup-{file_safe(name)}-{sha[:16]}.pkl"
    tmp = directory / f".{final.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return SpilledPayload(final.resolve(), sha, len(data))


def read_spilled(path: str, sha256: str, size: int) -> bytes | mmap.mmap:
    """The payload bytes in ``path`` (memory-mapped), checked against ``size`` and
    ``sha256``; ``PayloadError`` if the file is missing, of another size or altered."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise PayloadError(
            f"cannot read the experiment's setup file {path}: {exc}. A setup larger than a "
            "frame travels as a file: the manager and its workers must run on the machine "
            "(and as the user) that wrote it"
        ) from exc
    try:
        found = os.fstat(fd).st_size
        if found != size:
            raise PayloadError(f"the setup file {path} holds {found} bytes, not the {size} "
                               "announced: it was changed or truncated; restart the experiment")
        data: bytes | mmap.mmap = (
            mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else b"")
    finally:
        os.close(fd)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PayloadError(f"the setup file {path} does not match its SHA-256: it was "
                           "changed after it was written; restart the experiment")
    return data


def file_safe(name: str) -> str:
    """``name`` if it is a tame file name part, else a hash of it (ids may hold ``/``)."""
    if name.replace("-", "").replace("_", "").isalnum() and len(name) <= 64:
        return name
    return hashlib.blake2b(name.encode(), digest_size=8).hexdigest()
