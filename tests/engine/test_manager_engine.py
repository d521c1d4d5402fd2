"""ManagerEngine (embedded manager, local worker processes) passes the engine contract.

Every contract test runs as is: its evaluators are module-level functions (pickled by
reference, imported in the workers) and its tests talk to running evaluators over loopback
sockets, so nothing here needs the evaluator to share memory with the test.
"""

from __future__ import annotations

from nasflow.engine import EngineSetup, ManagerEngine
from nasflow.testing import EngineContract


class TestManagerEngine(EngineContract):
    def make_engine(self, setup: EngineSetup) -> ManagerEngine:
        # a short kill grace keeps the non-cooperative cases quick; the contract's stops
        # are all cooperative, so none of them should need it
        return ManagerEngine(setup, kill_grace=2.0)
