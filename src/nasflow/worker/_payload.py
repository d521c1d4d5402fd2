"""The ``setup`` payload: an experiment's space and evaluator, cloudpickled once.

``pack`` runs in the experiment process, ``load`` in each worker. cloudpickle pickles what
lives in ``__main__`` (a script, a notebook) by value, so spaces and evaluators defined
there work. Everything else is pickled by reference and imported in the worker: the
payload carries the experiment's ``sys.path`` so that modules next to the user's script
import there too (NNI's "ModuleNotFoundError in the trial", gone).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasflow._objective import Objective
from nasflow.evaluator import Evaluator
from nasflow.exceptions import NasflowError

__all__ = ["Payload", "PayloadError", "digest", "load", "pack"]

_MAGIC = "nasflow-setup-1"


class PayloadError(NasflowError):
    """The space or the evaluator cannot be shipped to worker processes."""


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


def load(data: bytes) -> Payload:
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
