"""Public test helpers: contract suites for plug-ins, fakes for users' own tests."""

from __future__ import annotations

from nasflow.testing._engine_contract import EngineContract as EngineContract
from nasflow.testing._engine_contract import EngineHarness as EngineHarness
from nasflow.testing._simulated import FakeClock as FakeClock
from nasflow.testing._simulated import SimulatedEngine as SimulatedEngine
from nasflow.testing._strategy_contract import StrategyContract as StrategyContract

__all__ = ["EngineContract", "EngineHarness", "FakeClock", "SimulatedEngine", "StrategyContract"]
