"""Engines run trials; strategies decide which. ``InProcessEngine`` runs them here,
``ManagerEngine`` on a trial manager's warm worker processes."""

from __future__ import annotations

from nasflow.engine._base import Engine as Engine
from nasflow.engine._base import EngineSetup as EngineSetup
from nasflow.engine._base import Publish as Publish
from nasflow.engine._base import TrialSpec as TrialSpec
from nasflow.engine._base import build_model as build_model
from nasflow.engine._inprocess import InProcessEngine as InProcessEngine
from nasflow.engine._manager import ManagerEngine as ManagerEngine

# internal: for the other nasflow packages, not for users (see __internal__)
from nasflow.engine._manager import import_manager_modules as import_manager_modules
from nasflow.exceptions import ManagerGoneError as ManagerGoneError
from nasflow.exceptions import PayloadError as PayloadError
from nasflow.exceptions import WorkerSetupError as WorkerSetupError

__all__ = [
    "Engine",
    "EngineSetup",
    "InProcessEngine",
    "ManagerEngine",
    "ManagerGoneError",
    "PayloadError",
    "Publish",
    "TrialSpec",
    "WorkerSetupError",
    "build_model",
]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = ["import_manager_modules"]
