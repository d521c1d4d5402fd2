"""The trial manager: WebSocket server, scheduler and local training service.

``TrialManager`` serves the tuner channel (experiments, ``/tuner``) and the trial channel
(workers, ``/trial``) on one port, keeps warm worker processes, and shares them fairly
between the experiments attached to it. It runs embedded in an experiment
(``ExperimentConfig(training_service="local")``) or as a daemon (``nasflow manager``).
See ``docs/manager.md``.
"""

from __future__ import annotations

from nasflow.manager._cli import manager_command as manager_command
from nasflow.manager._client import ManagerConnectionError as ManagerConnectionError
from nasflow.manager._server import TrialManager as TrialManager
from nasflow.manager._server import new_token as new_token

__all__ = ["ManagerConnectionError", "TrialManager", "manager_command", "new_token"]
