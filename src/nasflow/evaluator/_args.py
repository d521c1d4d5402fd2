"""The supervised evaluators' arguments: their types, and checks that say what was wrong
(``Classification(epochs=0)``) when the evaluator is built, not when a trial runs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeAlias

import torch
from torch import nn

OptimizerSpec: TypeAlias = (
    str | type[torch.optim.Optimizer] | Callable[[list[nn.Parameter]], torch.optim.Optimizer]
)
"""``"adam"`` / ``"adamw"`` / ``"sgd"``, an optimizer class, or ``params -> optimizer``."""
CriterionSpec: TypeAlias = type[nn.Module] | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A loss module class (instantiated with no arguments), a loss module, or a function."""
DeviceSpec: TypeAlias = str | torch.device

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def _positive_int(value: Any, arg: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}({arg}=...): got {value!r}; expected a positive int")
    if value < 1:
        raise ValueError(f"{owner}({arg}=...): got {value!r}; expected a positive int")
    return value


def _non_negative(value: Any, arg: str, owner: str, *, positive: bool = False) -> float:
    expected = "a positive number" if positive else "a number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}({arg}=...): got {value!r}; expected {expected}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise ValueError(f"{owner}({arg}=...): got {value!r}; expected {expected}")
    return number


def _check_optimizer(spec: Any, owner: str) -> OptimizerSpec:
    if isinstance(spec, str):
        name = spec.lower()
        if name not in _OPTIMIZERS:
            raise ValueError(
                f"{owner}(optimizer=...): unknown optimizer {spec!r}; use one of "
                f"{sorted(_OPTIMIZERS)}, a torch.optim.Optimizer class, or a function "
                "params -> optimizer"
            )
        return name
    if isinstance(spec, type):
        if not issubclass(spec, torch.optim.Optimizer):
            raise TypeError(
                f"{owner}(optimizer=...): {spec.__qualname__} is not a torch.optim.Optimizer"
            )
        return spec
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    raise TypeError(
        f"{owner}(optimizer=...): got {spec!r}; expected one of {sorted(_OPTIMIZERS)}, a "
        "torch.optim.Optimizer class, or a function params -> optimizer"
    )


def _check_device(spec: Any, owner: str) -> DeviceSpec:
    if isinstance(spec, torch.device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"{owner}(device=...): got {spec!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' "
            "or a torch.device"
        )
    if spec == "auto":
        return spec
    try:
        return torch.device(spec)
    except RuntimeError as exc:
        raise ValueError(
            f"{owner}(device=...): {spec!r} is not a device; expected 'auto', 'cpu', "
            "'cuda', 'cuda:N' or a torch.device"
        ) from exc


def resolve_device(spec: DeviceSpec) -> torch.device:
    """The device to train on, decided where the trial runs (a worker may have a GPU
    the machine that built the evaluator lacks)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(spec)!r} was asked for but CUDA is not available where this "
            "trial runs; use device='auto' to fall back to the CPU"
        )
    return device


ScheduleSpec: TypeAlias = (
    str | Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
)
"""``"none"`` / ``"cosine"`` / ``"step"`` / ``"onecycle"``, or ``(optimizer, epochs) ->
scheduler`` (stepped once per epoch)."""

SCHEDULES = ("cosine", "none", "onecycle", "step")
PRECISIONS = ("bf16", "fp16", "fp32")


def _check_schedule(spec: Any, owner: str) -> ScheduleSpec:
    if isinstance(spec, str):
        name = spec.lower()
        if name not in SCHEDULES:
            raise ValueError(
                f"{owner}(lr_schedule=...): unknown schedule {spec!r}; use one of "
                f"{list(SCHEDULES)} or a function (optimizer, epochs) -> LRScheduler"
            )
        return name
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    raise TypeError(
        f"{owner}(lr_schedule=...): got {spec!r}; expected one of {list(SCHEDULES)} or a "
        "function (optimizer, epochs) -> torch.optim.lr_scheduler.LRScheduler"
    )


def _check_precision(spec: Any, device: DeviceSpec, owner: str) -> str:
    if not isinstance(spec, str) or spec.lower() not in PRECISIONS:
        raise ValueError(
            f"{owner}(precision=...): got {spec!r}; expected one of {list(PRECISIONS)}"
        )
    name = spec.lower()
    if name == "fp16" and isinstance(device, torch.device) and device.type == "cpu":
        raise ValueError(_FP16_ON_CPU.format(owner=owner))
    return name


_FP16_ON_CPU = (
    "{owner}(precision='fp16') needs a CUDA device (float16 training needs a GradScaler, "
    "which nasflow uses on GPUs only); on the CPU use precision='bf16' (autocast to "
    "bfloat16, no scaler) or 'fp32'"
)


def _check_optional_positive(value: Any, arg: str, owner: str) -> float | None:
    if value is None:
        return None
    return _non_negative(value, arg, owner, positive=True)


def _check_fraction(value: Any, arg: str, owner: str) -> float:
    number = _non_negative(value, arg, owner)
    if number >= 1:
        raise ValueError(f"{owner}({arg}=...): got {value!r}; expected a number in [0, 1)")
    return number


def _check_bool(value: Any, arg: str, owner: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{owner}({arg}=...): got {value!r}; expected True or False")
    return value
