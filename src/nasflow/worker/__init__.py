"""The worker process of the local training service: ``python -m nasflow.worker``.

Workers are warm: each loads an experiment's space and evaluator once and then runs trials
from just a sample. The manager starts them, one per slot (GPU share), in their own process
group, and kills that group when a trial must be stopped for real.

Importing this package is cheap (the experiment process imports ``_payload`` to pack its
setup); the process entry point lives in ``_main``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.exceptions import PayloadError as PayloadError

if TYPE_CHECKING:
    from nasflow.worker._main import Worker as Worker
    from nasflow.worker._main import main as main
    from nasflow.worker._main import watch_parent as watch_parent  # internal

__all__ = ["PayloadError", "Worker", "main"]

# what the other nasflow packages may import from here besides __all__ (not for users;
# docs/architecture.md, "Internal APIs")
__internal__ = ["watch_parent"]


def __getattr__(name: str) -> Any:
    if name in ("Worker", "main", "watch_parent"):
        from nasflow.worker import _main

        return getattr(_main, name)
    raise AttributeError(f"module 'nasflow.worker' has no attribute {name!r}")
