"""Where experiments live: ``$NASFLOW_HOME/experiments/<id>/`` (default ``~/.nasflow``)."""

from __future__ import annotations

import os
import re
import secrets
import string
from pathlib import Path

from nasflow.exceptions import ConfigError, ExperimentNotFoundError

__all__ = ["DB_NAME", "experiment_dir", "find_experiment", "new_experiment_id", "nasflow_home",
           "valid_id"]

DB_NAME = "experiment.db"
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_ALPHABET = string.ascii_lowercase + string.digits


def nasflow_home(override: str | os.PathLike[str] | None = None) -> Path:
    """``override``, else ``$NASFLOW_HOME``, else ``~/.nasflow``."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("NASFLOW_HOME")
    return Path(env).expanduser() if env else Path.home() / ".nasflow"


def experiment_dir(experiment_id: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The directory of experiment ``experiment_id``."""
    return nasflow_home(home) / "experiments" / experiment_id


def new_experiment_id() -> str:
    """Eight random characters from ``[a-z0-9]``."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(8))


def valid_id(experiment_id: str) -> str:
    """``experiment_id`` if it is usable as a directory name, else ``ConfigError``."""
    if not isinstance(experiment_id, str) or not _ID.match(experiment_id):
        raise ConfigError("id", experiment_id, "1-64 characters from A-Z a-z 0-9 _ -")
    return experiment_id


def find_experiment(id_or_path: str | os.PathLike[str], home: str | os.PathLike[str] | None
                    ) -> Path:
    """The directory of an experiment given by id (under ``NASFLOW_HOME``) or by the path
    of its directory or database; ``ExperimentNotFoundError`` listing known ids else."""
    candidate = Path(id_or_path).expanduser()
    if candidate.is_file() and candidate.name == DB_NAME:
        candidate = candidate.parent
    if not (candidate / DB_NAME).is_file():
        candidate = experiment_dir(str(id_or_path), home)
    if not (candidate / DB_NAME).is_file():
        root = nasflow_home(home) / "experiments"
        known = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
        raise ExperimentNotFoundError(
            f"no experiment {str(id_or_path)!r}: not a directory with {DB_NAME} and not an "
            f"id under {root} (known ids: {known[:20] or 'none'}). Check the id, or set "
            "NASFLOW_HOME to where it was run."
        )
    return candidate
