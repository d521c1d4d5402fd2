"""Evaluators: how a model is trained and scored, and the trial-side reporting API.

``Classification`` and ``Regression`` (real torch training loops) import torch only when
used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.evaluator._base import Evaluator as Evaluator
from nasflow.evaluator._base import FunctionalEvaluator as FunctionalEvaluator
from nasflow.evaluator._trial import Trial as Trial
from nasflow.evaluator._trial import current_trial as current_trial

if TYPE_CHECKING:
    from nasflow.evaluator._training import Classification as Classification
    from nasflow.evaluator._training import Regression as Regression

__all__ = [
    "Classification",
    "Evaluator",
    "FunctionalEvaluator",
    "Regression",
    "Trial",
    "current_trial",
]


def __getattr__(name: str) -> Any:
    # the training evaluators need torch; importing nasflow must not
    if name in ("Classification", "Regression"):
        from nasflow.evaluator import _training

        return getattr(_training, name)
    raise AttributeError(f"module 'nasflow.evaluator' has no attribute {name!r}")
