"""InProcessEngine passes the engine contract."""

from __future__ import annotations

from nasflow.engine import EngineSetup, InProcessEngine
from nasflow.testing import EngineContract


class TestInProcessEngine(EngineContract):
    def make_engine(self, setup: EngineSetup) -> InProcessEngine:
        return InProcessEngine(setup)


class TestInProcessEngineOneAtATime(EngineContract):
    concurrency = 1

    def make_engine(self, setup: EngineSetup) -> InProcessEngine:
        return InProcessEngine(setup)
