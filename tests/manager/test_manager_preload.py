"""``TrialManager(preload=...)`` / ``nasflow manager --preload``: warm imports in workers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from _mgr_helpers import Harness, setup_for

from nasflow._kernel import TrialState
from nasflow.engine import ManagerEngine, TrialSpec
from nasflow.evaluator import Trial
from nasflow.events import FinalMetric
from nasflow.manager import TrialManager
from nasflow.worker._main import preload

# a standard-library module that neither nasflow nor the worker imports on its own
PRELOADED = "colorsys"


def was_preloaded(model: Any, trial: Trial) -> float:
    return 1.0 if PRELOADED in sys.modules else 0.0


def test_preload_imports_each_module_and_names_the_one_that_fails() -> None:
    assert preload(" json , ,textwrap") is None
    assert "textwrap" in sys.modules
    error = preload("json,nasflow_no_such_module")
    assert error is not None
    assert "'nasflow_no_such_module'" in error and "ModuleNotFoundError" in error
    assert "--preload" in error


@pytest.mark.parametrize("modules", [[], [PRELOADED]])
async def test_workers_import_the_preloaded_modules_before_the_first_trial(
        tmp_path: Path, modules: list[str]) -> None:
    h = Harness()
    setup = setup_for(was_preloaded, h, tmp_path)
    with anyio.fail_after(60):
        async with TrialManager(workers=1, preload=modules) as manager, \
                ManagerEngine(setup, manager=manager.url, token=manager.token) as engine:
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
    assert ended.state is TrialState.SUCCEEDED
    (final,) = [e for e in h.of(0) if isinstance(e, FinalMetric)]
    assert final.value == (1.0 if modules else 0.0)


async def test_a_module_that_cannot_be_preloaded_fails_the_experiment_clearly(
        tmp_path: Path) -> None:
    h = Harness()
    setup = setup_for(was_preloaded, h, tmp_path)
    with anyio.fail_after(60), pytest.raises(Exception) as info:
        async with TrialManager(workers=1, preload=["nasflow_no_such_module"]) as manager, \
                ManagerEngine(setup, manager=manager.url, token=manager.token) as engine:
            await engine.submit(TrialSpec(0, {"x": 1}))
            await h.ended(0)
    text = str(info.value) + "".join(str(e) for e in getattr(info.value, "exceptions", ()))
    assert "nasflow_no_such_module" in text and "--preload" in text
