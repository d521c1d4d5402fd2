"""One-shot NAS: strategies that train one weight-sharing supernet instead of many trials.

``DARTS``, ``GumbelDARTS``, ``Proxyless``, ``ENAS`` and ``RandomOneShot`` (SPOS) run as
ordinary strategies of an ``nf.Experiment``; ``Supernet`` is the conversion they share.
This package imports torch; ``nasflow.strategy`` imports it only on first use.
See ``docs/oneshot.md``.
"""

from __future__ import annotations

from nasflow.strategy.oneshot._arch import UnsupportedSpaceError as UnsupportedSpaceError
from nasflow.strategy.oneshot._darts import DARTS as DARTS
from nasflow.strategy.oneshot._darts import GumbelDARTS as GumbelDARTS
from nasflow.strategy.oneshot._enas import ENAS as ENAS
from nasflow.strategy.oneshot._penalty import CostPenalty as CostPenalty
from nasflow.strategy.oneshot._penalty import FLOPsPenalty as FLOPsPenalty
from nasflow.strategy.oneshot._penalty import LatencyPenalty as LatencyPenalty
from nasflow.strategy.oneshot._penalty import ParamsPenalty as ParamsPenalty
from nasflow.strategy.oneshot._proxyless import Proxyless as Proxyless
from nasflow.strategy.oneshot._share import SharedOutputModifiedError as SharedOutputModifiedError
from nasflow.strategy.oneshot._spos import RandomOneShot as RandomOneShot
from nasflow.strategy.oneshot._spos import SubnetContext as SubnetContext
from nasflow.strategy.oneshot._supernet import Supernet as Supernet
from nasflow.strategy.oneshot._train import OneShotStrategy as OneShotStrategy

__all__ = [
    "CostPenalty",
    "DARTS",
    "ENAS",
    "FLOPsPenalty",
    "GumbelDARTS",
    "LatencyPenalty",
    "OneShotStrategy",
    "ParamsPenalty",
    "Proxyless",
    "RandomOneShot",
    "SharedOutputModifiedError",
    "SubnetContext",
    "Supernet",
    "UnsupportedSpaceError",
]
