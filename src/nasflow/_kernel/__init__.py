"""The kernel: the vocabulary every layer shares, importing nothing heavier than orjson.

Trial and experiment states and records (``_types``), objectives (``_objective``), Pareto
fronts (``_pareto``), the clock (``_clock``) and the keyword-argument checker for NNI habits
(``_arguments``). Pure: no torch, anyio, sqlite3, websockets, no ``nasflow.protocol`` or
``nasflow.store``; ``tests/test_layers.py`` checks it. The public names among these are
re-exported by ``nasflow``; everything under ``nasflow`` may import this package.
"""

from __future__ import annotations

from nasflow._kernel._arguments import nni_arguments as nni_arguments
from nasflow._kernel._clock import Clock as Clock
from nasflow._kernel._clock import WallClock as WallClock
from nasflow._kernel._objective import Objective as Objective
from nasflow._kernel._objective import to_number as to_number
from nasflow._kernel._pareto import crowding_distance as crowding_distance
from nasflow._kernel._pareto import first_front as first_front
from nasflow._kernel._pareto import nondominated_sort as nondominated_sort
from nasflow._kernel._pareto import pareto_front as pareto_front
from nasflow._kernel._types import INTERRUPTED as INTERRUPTED
from nasflow._kernel._types import KILLED as KILLED
from nasflow._kernel._types import KNOWN_ORIGINS as KNOWN_ORIGINS
from nasflow._kernel._types import ORIGINS as ORIGINS
from nasflow._kernel._types import ExperimentState as ExperimentState
from nasflow._kernel._types import RecordView as RecordView
from nasflow._kernel._types import TrialError as TrialError
from nasflow._kernel._types import TrialRecord as TrialRecord
from nasflow._kernel._types import TrialState as TrialState

__all__ = [
    "INTERRUPTED",
    "KILLED",
    "KNOWN_ORIGINS",
    "ORIGINS",
    "Clock",
    "ExperimentState",
    "Objective",
    "RecordView",
    "TrialError",
    "TrialRecord",
    "TrialState",
    "WallClock",
    "crowding_distance",
    "first_front",
    "nondominated_sort",
    "nni_arguments",
    "pareto_front",
    "to_number",
]
