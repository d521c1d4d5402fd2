"""The trial manager: WebSocket server, scheduler and local training service.

``TrialManager`` serves the tuner channel (experiments, ``/tuner``) and the trial channel
(workers, ``/trial``) on one port, keeps warm worker processes, and shares them fairly
between the experiments attached to it. It runs embedded in an experiment
(``ExperimentConfig(training_service="local")``) or as a daemon (``nasflow manager``).
See ``docs/manager.md``.

The names below are imported on first use: a worker process needs only the client side
(``_client``) and starts faster without the server's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nasflow.manager._cli import manager_command as manager_command

    # internal
    from nasflow.manager._client import AUTH_CLOSE_CODE as AUTH_CLOSE_CODE
    from nasflow.manager._client import PID_HEADER as PID_HEADER
    from nasflow.manager._client import TOKEN_HINT as TOKEN_HINT
    from nasflow.manager._client import ManagerConnectionError as ManagerConnectionError
    from nasflow.manager._client import SessionClient as SessionClient
    from nasflow.manager._pool import tail as tail
    from nasflow.manager._ray import RayWorkers as RayWorkers
    from nasflow.manager._ray import connect as connect
    from nasflow.manager._ray import end_earlier as end_earlier
    from nasflow.manager._ray import find_earlier as find_earlier
    from nasflow.manager._ray import namespace_of as namespace_of
    from nasflow.manager._ray import place_setup as place_setup
    from nasflow.manager._ray import ray_options as ray_options
    from nasflow.manager._server import TrialManager as TrialManager
    from nasflow.manager._server import new_token as new_token
    from nasflow.manager._spool import fits_inline as fits_inline
    from nasflow.manager._tuner import TunerLink as TunerLink

__all__ = ["ManagerConnectionError", "TrialManager", "manager_command", "new_token"]

_WHERE = {
    "ManagerConnectionError": "_client",
    "TrialManager": "_server",
    "manager_command": "_cli",
    "new_token": "_server",
}

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
_INTERNAL = {
    "AUTH_CLOSE_CODE": "_client",
    "PID_HEADER": "_client",
    "RayWorkers": "_ray",
    "SessionClient": "_client",
    "TOKEN_HINT": "_client",
    "TunerLink": "_tuner",
    "connect": "_ray",
    "end_earlier": "_ray",
    "find_earlier": "_ray",
    "fits_inline": "_spool",
    "namespace_of": "_ray",
    "ray_options": "_ray",
    "place_setup": "_ray",
    "tail": "_pool",
}
__internal__ = sorted(_INTERNAL)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name) or _INTERNAL.get(name)
    if module is None:
        raise AttributeError(f"module 'nasflow.manager' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"nasflow.manager.{module}"), name)
