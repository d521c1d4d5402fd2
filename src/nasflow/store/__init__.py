"""Persistence: the per-experiment SQLite store and where experiments live."""

from __future__ import annotations

# internal: for the other nasflow packages, not for users (see __internal__)
from nasflow.store._changes import record_change_offline as record_change_offline
from nasflow.store._lock import ExperimentLock as ExperimentLock
from nasflow.store._lock import lock_owner as lock_owner
from nasflow.store._lock import take_lock as take_lock
from nasflow.store._paths import DB_NAME as DB_NAME
from nasflow.store._paths import experiment_dir as experiment_dir
from nasflow.store._paths import find_experiment as find_experiment
from nasflow.store._paths import nasflow_home as nasflow_home
from nasflow.store._paths import new_experiment_id as new_experiment_id
from nasflow.store._paths import valid_id as valid_id
from nasflow.store._reader import StoreReader as StoreReader
from nasflow.store._registry import DAMAGED as DAMAGED
from nasflow.store._registry import ExperimentInfo as ExperimentInfo
from nasflow.store._registry import experiment_info as experiment_info
from nasflow.store._registry import list_experiments as list_experiments
from nasflow.store._sqlite import SCHEMA_VERSION as SCHEMA_VERSION
from nasflow.store._sqlite import ExperimentStore as ExperimentStore

__all__ = [
    "DAMAGED",
    "DB_NAME",
    "ExperimentInfo",
    "ExperimentStore",
    "SCHEMA_VERSION",
    "StoreReader",
    "experiment_dir",
    "experiment_info",
    "list_experiments",
    "nasflow_home",
    "new_experiment_id",
    "valid_id",
]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = [
    "ExperimentLock", "find_experiment", "lock_owner", "record_change_offline", "take_lock",
]
