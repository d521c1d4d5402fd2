"""Evaluators: how a model is trained and scored, and the trial-side reporting API.

``Classification`` and ``Regression`` (real torch training loops) and the profilers
(``count_flops``, ``flops_constraint``, ``Profiled``, ...) import torch only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.evaluator._base import Evaluator as Evaluator
from nasflow.evaluator._base import FunctionalEvaluator as FunctionalEvaluator
from nasflow.evaluator._trial import Trial as Trial
from nasflow.evaluator._trial import current_trial as current_trial

if TYPE_CHECKING:
    from nasflow.evaluator._lightning import Lightning as Lightning
    from nasflow.evaluator._profile import ModelConstraint as ModelConstraint
    from nasflow.evaluator._profile import Profiled as Profiled
    from nasflow.evaluator._profile import count_flops as count_flops
    from nasflow.evaluator._profile import count_params as count_params
    from nasflow.evaluator._profile import flops_constraint as flops_constraint
    from nasflow.evaluator._profile import measure_latency as measure_latency
    from nasflow.evaluator._profile import params_constraint as params_constraint
    from nasflow.evaluator._training import Classification as Classification
    from nasflow.evaluator._training import Regression as Regression

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
    raise AttributeError(f"module 'nasflow.evaluator' has no attribute {name!r}")
