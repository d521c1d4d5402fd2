"""``nf.run(exp)``: run an experiment from synchronous code."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio

from nasflow.exceptions import NasflowError

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["run"]


def run(experiment: Experiment) -> Experiment:
    """Run ``experiment`` to its end on a new event loop; returns it for chaining.

    Inside a running event loop (Jupyter, an ``async def``) use ``await exp.run()``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise NasflowError(
            "nf.run() cannot start an event loop here: one is already running (a notebook "
            "or an async function). Use `await exp.run()` instead."
        )
    anyio.run(experiment.run)
    return experiment
