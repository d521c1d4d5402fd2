"""What an experiment keeps on disk besides its trials: the objects needed to rebuild it
(space, evaluator, strategy, scheduler), the snapshot codec, and who owns it."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

from nasflow.exceptions import NasflowError

__all__ = [
    "OBJECTS",
    "decode_snapshot",
    "encode_snapshot",
    "load_object",
    "owner_alive",
    "process_start_time",
    "save_objects",
]

_log = logging.getLogger("nasflow.experiment")

OBJECTS = ("space", "evaluator", "strategy", "scheduler")
"""The objects an experiment pickles (``<name>.pkl``) so it can be rebuilt elsewhere."""

_JSON, _PICKLE = b"J", b"P"


def save_objects(directory: Path, objects: dict[str, Any]) -> None:
    """Cloudpickle each object to ``<name>.pkl`` (atomically); one that cannot be pickled
    leaves ``<name>.error`` saying why (``load_object`` repeats it)."""
    import cloudpickle

    for name, obj in objects.items():
        if obj is None:
            continue
        try:
            data = cloudpickle.dumps(obj)
        except Exception as exc:
            (directory / f"{name}.error").write_text(f"{exc!r}\n")
            _log.warning("the %s of experiment %s cannot be pickled (%r): pass it in to "
                         "load or resume the experiment", name, directory.name, exc)
            continue
        tmp = directory / f"{name}.pkl.tmp"
        # owner-only: a pickle is code, run by whoever loads it
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.replace(directory / f"{name}.pkl")


def load_object(directory: Path, name: str) -> Any:
    """Unpickle ``<name>.pkl``; ``NasflowError`` saying what to pass in otherwise."""
    path = directory / f"{name}.pkl"
    if not path.is_file():
        why = directory / f"{name}.error"
        detail = why.read_text().strip() if why.is_file() else "the file is missing"
        raise NasflowError(
            f"cannot rebuild the {name} of experiment {directory.name}: {path} is "
            f"unavailable ({detail}). {_pass_it(name)}"
        )
    import cloudpickle

    try:
        with path.open("rb") as f:
            return cloudpickle.load(f)
    except Exception as exc:
        raise NasflowError(
            f"cannot unpickle {path} ({exc!r}): the code that defined the {name} must be "
            f"importable here. {_pass_it(name)}"
        ) from exc


def _pass_it(name: str) -> str:
    # both ways in: the CLI user has no Python argument to pass
    return (f"Pass it yourself: `{name}=...` to Experiment.restore()/resume(), or on the "
            "command line `nasflow resume ID --file FILE.py` (a file that builds the "
            "experiment, as for nasflow run)")


def encode_snapshot(state: dict[str, Any]) -> bytes:
    """JSON when the state is plain data (readable with any tool), else cloudpickle."""
    try:
        return _JSON + orjson.dumps(state, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        import cloudpickle

        blob: bytes = cloudpickle.dumps(state)
        return _PICKLE + blob


def decode_snapshot(data: bytes) -> dict[str, Any]:
    """The inverse of ``encode_snapshot``."""
    kind, body = data[:1], data[1:]
    if kind == _JSON:
        result: dict[str, Any] = orjson.loads(body)
        return result
    if kind == _PICKLE:
        import cloudpickle

        result = cloudpickle.loads(body)
        return result
    raise NasflowError("the strategy snapshot is in an unknown format (a newer nasflow?)")


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a live owner
    from an unrelated process that reused its pid; ``None`` where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: split after its closing parenthesis
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return float(fields[19])
    except (IndexError, ValueError):
        return None


def _zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited but is not reaped yet (Linux; ``False`` where
    unknown): it holds no lock and runs no code, although ``kill(pid, 0)`` succeeds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] in ("Z", "X")


def owner_alive(pid: Any, started: Any, host: Any) -> bool | None:
    """Whether the process that owns an experiment still runs: ``None`` when that cannot
    be told from here (another host)."""
    import socket

    if not isinstance(pid, int):
        return None
    if host is not None and host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _zombie(pid):
        return False  # it died and nobody reaped it yet (an orphaned detached run)
    if started is not None:
        now = process_start_time(pid)
        if now is not None and now != started:
            return False  # the pid was reused by another process
    return True
