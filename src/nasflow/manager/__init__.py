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
    from nasflow.manager._client import ManagerConnectionError as ManagerConnectionError
    from nasflow.manager._server import TrialManager as TrialManager
    from nasflow.manager._server import new_token as new_token

__all__ = ["ManagerConnectionError", "TrialManager", "manager_command", "new_token"]

_WHERE = {
    "ManagerConnectionError": "_client",
    "TrialManager": "_server",
    "manager_command": "_cli",
    "new_token": "_server",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'nasflow.manager' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"nasflow.manager.{module}"), name)
