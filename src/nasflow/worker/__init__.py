"""The worker process of the local training service: ``python -m nasflow.worker``.

Workers are warm: each loads an experiment's space and evaluator once and then runs trials
from just a sample. The manager starts them, one per slot (GPU share), in their own process
group, and kills that group when a trial must be stopped for real.
"""

from __future__ import annotations

from nasflow.worker._main import Worker as Worker
from nasflow.worker._main import main as main

__all__ = ["Worker", "main"]
