"""Moved to the kernel (``nasflow._kernel``); kept so that older imports keep working."""

from nasflow._kernel._types import INTERRUPTED as INTERRUPTED
from nasflow._kernel._types import KILLED as KILLED
from nasflow._kernel._types import ExperimentState as ExperimentState
from nasflow._kernel._types import TrialError as TrialError
from nasflow._kernel._types import TrialRecord as TrialRecord
from nasflow._kernel._types import TrialState as TrialState

__all__ = [
    "INTERRUPTED", "KILLED", "ExperimentState", "TrialError", "TrialRecord", "TrialState",
]
