"""``load_checkpoint(model, state_dict)``: user-supplied weights into a frozen hub sample.

nasflow downloads nothing (no pretrained weights ship with the hub). Weights trained
elsewhere load with this, which checks that they fit the architecture first and says
exactly which keys are missing, unexpected or of another shape, so a sample that does not
match the weights is caught before a single tensor is copied.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nasflow.exceptions import NasflowError

__all__ = ["CheckpointMismatchError", "load_checkpoint"]

_SHOWN = 10  # keys listed per kind of mismatch; the counts are always complete


class CheckpointMismatchError(NasflowError, ValueError):
    """A state dict does not fit a model: ``missing``, ``unexpected`` and ``mismatched``
    (``key -> (checkpoint shape, model shape)``) say how."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
        super().__init__(message)
        self.missing = missing
        """Keys the model has and the checkpoint lacks."""
        self.unexpected = unexpected
        """Keys the checkpoint has and the model lacks."""
        self.mismatched = mismatched
        """Keys both have, with different shapes: ``(checkpoint, model)``."""


def _listing(what: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys) - _SHOWN} more)"
                                        if len(keys) > _SHOWN else "")
    return f"{len(keys)} {what} ({shown})"


def load_checkpoint(model: nn.Module,
                    state_dict: Mapping[str, Any] | str | os.PathLike[str], *,
                    strict: bool = True, prefix: str = "") -> nn.Module:
    """Load ``state_dict`` (a mapping, or the path of a ``torch.save`` file) into ``model``
    after checking that it fits; returns ``model``.

    A checkpoint saved from a wrapper may carry a ``prefix`` on every key (``"module."``
    from ``DataParallel``, ``"model."`` from Lightning): give it to strip it. With
    ``strict=False``, missing and unexpected keys are allowed but shapes must still match.
    Raises ``CheckpointMismatchError`` listing the keys that do not fit; nothing is loaded
    then.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_checkpoint() takes a torch.nn.Module, got {type(model).__name__}")
    if isinstance(state_dict, (str, os.PathLike)):
        path = Path(state_dict)
        if not path.is_file():
            raise FileNotFoundError(f"load_checkpoint(): no checkpoint file at {path}")
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state_dict, Mapping) and "state_dict" in state_dict and not any(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        state_dict = state_dict["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"load_checkpoint(): a state dict is a mapping of names to tensors, "
                        f"got {type(state_dict).__name__}")
    given = {(k[len(prefix):] if prefix and k.startswith(prefix) else k): v
             for k, v in state_dict.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    mismatched = {
        k: (tuple(given[k].shape), tuple(own[k].shape)) for k in sorted(set(own) & set(given))
        if not isinstance(given[k], torch.Tensor) or given[k].shape != own[k].shape
    }
    if mismatched or (strict and (missing or unexpected)):
        parts = []
        if mismatched:
            shown = ", ".join(f"{k}: checkpoint {list(a)} vs model {list(b)}"
                              for k, (a, b) in list(mismatched.items())[:_SHOWN])
            parts.append(f"{len(mismatched)} of another shape ({shown})")
        if strict and missing:
            parts.append(_listing("missing from the checkpoint", missing))
        if strict and unexpected:
            parts.append(_listing("not in the model", unexpected))
        hint = ("; is it the weights of another sample (or another space's arguments, e.g. "
                "num_labels)?")
        if unexpected and not prefix:
            first = unexpected[0].split(".", 1)[0] + "."
            if all(k.startswith(first) for k in unexpected):
                hint += f" Every unexpected key starts with {first!r}: try prefix={first!r}"
        raise CheckpointMismatchError(
            f"the checkpoint does not fit {type(model).__name__}: " + "; ".join(parts) + hint,
            missing, unexpected, mismatched)
    model.load_state_dict(given, strict=strict)
    return model
