"""Search strategies: coroutines that decide what to evaluate next."""

from __future__ import annotations

from nasflow.strategy._base import Budget as Budget
from nasflow.strategy._base import Strategy as Strategy
from nasflow.strategy._base import StrategyContext as StrategyContext
from nasflow.strategy._base import TrialHandle as TrialHandle
from nasflow.strategy._grid import GridSearch as GridSearch
from nasflow.strategy._random import Random as Random
from nasflow.strategy._scheduler import Decision as Decision
from nasflow.strategy._scheduler import Scheduler as Scheduler

__all__ = [
    "Budget",
    "Decision",
    "GridSearch",
    "Random",
    "Scheduler",
    "Strategy",
    "StrategyContext",
    "TrialHandle",
]
