"""Search strategies: coroutines that decide what to evaluate next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.strategy._asha import ASHA as ASHA
from nasflow.strategy._asha import MOASHA as MOASHA
from nasflow.strategy._base import Budget as Budget
from nasflow.strategy._base import ForwardsOneShot as ForwardsOneShot
from nasflow.strategy._base import FrozenTrial as FrozenTrial
from nasflow.strategy._base import OneShotContext as OneShotContext
from nasflow.strategy._base import Strategy as Strategy
from nasflow.strategy._base import StrategyContext as StrategyContext
from nasflow.strategy._base import TrialHandle as TrialHandle
from nasflow.strategy._base import oneshot_context as oneshot_context
from nasflow.strategy._evolution import RegularizedEvolution as RegularizedEvolution
from nasflow.strategy._grid import GridSearch as GridSearch
from nasflow.strategy._hyperband import Hyperband as Hyperband
from nasflow.strategy._local import LocalSearch as LocalSearch
from nasflow.strategy._median import MedianStop as MedianStop
from nasflow.strategy._optuna import OptunaSampler as OptunaSampler
from nasflow.strategy._random import Random as Random
from nasflow.strategy._rl import PolicyBasedRL as PolicyBasedRL
from nasflow.strategy._scheduler import Decision as Decision
from nasflow.strategy._scheduler import Scheduler as Scheduler
from nasflow.strategy._tpe import TPE as TPE

if TYPE_CHECKING:
    from nasflow.strategy.oneshot import DARTS as DARTS
    from nasflow.strategy.oneshot import ENAS as ENAS
    from nasflow.strategy.oneshot import FLOPsPenalty as FLOPsPenalty
    from nasflow.strategy.oneshot import GumbelDARTS as GumbelDARTS
    from nasflow.strategy.oneshot import LatencyPenalty as LatencyPenalty
    from nasflow.strategy.oneshot import ParamsPenalty as ParamsPenalty
    from nasflow.strategy.oneshot import Proxyless as Proxyless
    from nasflow.strategy.oneshot import RandomOneShot as RandomOneShot

__all__ = [
    "ASHA",
    "Budget",
    "DARTS",
    "Decision",
    "ENAS",
    "FLOPsPenalty",
    "ForwardsOneShot",
    "FrozenTrial",
    "GridSearch",
    "GumbelDARTS",
    "Hyperband",
    "LatencyPenalty",
    "LocalSearch",
    "MOASHA",
    "MedianStop",
    "OneShotContext",
    "OptunaSampler",
    "ParamsPenalty",
    "PolicyBasedRL",
    "Proxyless",
    "Random",
    "RandomOneShot",
    "RegularizedEvolution",
    "Scheduler",
    "Strategy",
    "StrategyContext",
    "TPE",
    "TrialHandle",
    "oneshot_context",
]

_ONESHOT = ("DARTS", "ENAS", "FLOPsPenalty", "GumbelDARTS", "LatencyPenalty", "ParamsPenalty",
            "Proxyless", "RandomOneShot")


def __getattr__(name: str) -> Any:
    # the one-shot strategies need torch; importing nasflow.strategy must not
    if name in _ONESHOT:
        from nasflow.strategy import oneshot

        return getattr(oneshot, name)
    raise AttributeError(f"module 'nasflow.strategy' has no attribute {name!r}")
