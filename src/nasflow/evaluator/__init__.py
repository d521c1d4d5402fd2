"""Evaluators: how a model is trained and scored, and the trial-side reporting API.

``Classification`` and ``Regression`` (real torch training loops) and the profilers
(``count_flops``, ``flops_constraint``, ``Profiled``, ...) import torch only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.evaluator._base import Evaluator as Evaluator
from nasflow.evaluator._base import FunctionalEvaluator as FunctionalEvaluator

# internal (for the other nasflow packages; see __internal__ below)
from nasflow.evaluator._execute import Execution as Execution
from nasflow.evaluator._execute import Executor as Executor
from nasflow.evaluator._execute import Outcome as Outcome
from nasflow.evaluator._execute import Stop as Stop
from nasflow.evaluator._execute import build_model as build_model
from nasflow.evaluator._trial import ReportPipe as ReportPipe
from nasflow.evaluator._trial import Trial as Trial
from nasflow.evaluator._trial import TrialOutput as TrialOutput
from nasflow.evaluator._trial import current_trial as current_trial

if TYPE_CHECKING:
    # internal, imported on first use (torch)
    from nasflow.evaluator._args import resolve_device as resolve_device
    from nasflow.evaluator._data import Batches as Batches
    from nasflow.evaluator._ddp import RANK_GPUS as RANK_GPUS
    from nasflow.evaluator._ddp import RankTrial as RankTrial
    from nasflow.evaluator._ddp import Shard as Shard
    from nasflow.evaluator._ddp import backend_for as backend_for
    from nasflow.evaluator._ddp import launch as launch
    from nasflow.evaluator._lightning import Lightning as Lightning
    from nasflow.evaluator._profile import ModelConstraint as ModelConstraint
    from nasflow.evaluator._profile import Profiled as Profiled
    from nasflow.evaluator._profile import count_flops as count_flops
    from nasflow.evaluator._profile import count_params as count_params
    from nasflow.evaluator._profile import flops_constraint as flops_constraint
    from nasflow.evaluator._profile import measure_latency as measure_latency
    from nasflow.evaluator._profile import module_flops as module_flops
    from nasflow.evaluator._profile import params_constraint as params_constraint
    from nasflow.evaluator._training import Classification as Classification
    from nasflow.evaluator._training import Regression as Regression
    from nasflow.evaluator._training import Supervised as Supervised

__all__ = [
    "Classification",
    "Evaluator",
    "FunctionalEvaluator",
    "Lightning",
    "ModelConstraint",
    "Profiled",
    "Regression",
    "Trial",
    "count_flops",
    "count_params",
    "current_trial",
    "flops_constraint",
    "measure_latency",
    "params_constraint",
]

# --- for the other nasflow packages, not for users: docs/architecture.md, "Internal APIs" ---

_INTERNAL_LAZY = {  # name -> its module, imported on first use (most need torch)
    "Batches": "_data", "RANK_GPUS": "_ddp", "RankTrial": "_ddp", "Shard": "_ddp",
    "Supervised": "_training",
    "backend_for": "_ddp", "launch": "_ddp", "module_flops": "_profile",
    "resolve_device": "_args",
}
__internal__ = sorted(["Execution", "Executor", "Outcome", "ReportPipe", "Stop", "TrialOutput",
                       "build_model", *_INTERNAL_LAZY])

_PROFILE = (
    "ModelConstraint", "Profiled", "count_flops", "count_params", "flops_constraint",
    "measure_latency", "params_constraint",
)


def __getattr__(name: str) -> Any:
    # the training evaluators need torch; importing nasflow must not
    if name in ("Classification", "Regression"):
        from nasflow.evaluator import _training

        return getattr(_training, name)
    if name == "Lightning":  # needs lightning (nasflow[lightning]) when used
        from nasflow.evaluator import _lightning

        return _lightning.Lightning
    if name in _PROFILE:  # the profilers need torch too
        from nasflow.evaluator import _profile

        return getattr(_profile, name)
    if name in _INTERNAL_LAZY:
        import importlib

        return getattr(importlib.import_module(f"nasflow.evaluator.{_INTERNAL_LAZY[name]}"),
                       name)
    raise AttributeError(f"module 'nasflow.evaluator' has no attribute {name!r}")
