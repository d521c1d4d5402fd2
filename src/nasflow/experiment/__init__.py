"""``nasflow.experiment``: the ``Experiment`` facade and the parts it is made of.

- ``_experiment``: ``Experiment``, the facade (the only module that defines or imports it);
- ``_ledger``: ``TrialLedger``, the trial table's one owner (pure);
- ``_policy``: ``TrialPolicy``, retry/penalty/early stop/target as actions (sans-I/O);
- ``_run``: ``Run``, one run's resources (task groups, engine, store, control endpoint);
- ``_context``: ``ExperimentContext``, the strategy's window (reads the ledger, acts
  through the run);
- ``_resume``: what a store says about where an experiment stopped.

See ``docs/architecture.md`` ("The experiment").
"""

from __future__ import annotations

from nasflow.experiment._experiment import Experiment as Experiment

__all__ = ["Experiment"]
