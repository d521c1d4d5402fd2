"""The architecture of one trial: its frozen model's module tree, with the parameters and
the FLOPs of every module, and each cell's graph (``GET .../trials/{tid}/architecture``).

The experiment's model space comes from the experiment (running in this process) or from
its pickle (``space.pkl``, as ``nasflow.load_experiment`` reads it); the trial's sample is
frozen with it. FLOPs need an input: the ``?input=1,3,32,32`` of the request, else the
inputs of a ``Profiled`` evaluator; without one, FLOPs are ``None``. torch is imported
here, never when the dashboard starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

__all__ = ["MAX_MODULES", "architecture", "parse_input"]

MAX_MODULES = 5000
"""Modules listed at most (a deeper model says ``truncated``)."""


def parse_input(text: str) -> tuple[int, ...]:
    """``"1,3,32,32"`` -> ``(1, 3, 32, 32)``; ``ValueError`` saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 8 or not all(p.isdigit() and len(p) <= 6 for p in parts):
        raise ValueError(f"input must be a shape such as 1,3,32,32 (1 to 8 positive "
                         f"integers), got {text[:50]!r}")
    shape = tuple(int(p) for p in parts)
    size = 1
    for d in shape:
        size *= d
    if 0 in shape or size > 50_000_000:
        raise ValueError(f"input {shape} must have no zero dimension and at most 50,000,000 "
                         "numbers")
    return shape


def architecture(space: Any, sample: Mapping[str, Any], inputs: Any = None
                 ) -> dict[str, Any]:
    """``{"model", "params", "flops", "input", "flops_error", "modules": [...]}``: the
    modules depth first, each ``{"name", "type", "depth", "params", "own_params",
    "flops"}``, a cell with ``"cell": {"inputs", "nodes": [[{"from", "op"}, ...]],
    "outputs"}`` (states: the cell's inputs, then its nodes in order)."""
    import torch

    from nasflow.evaluator import count_params, module_flops
    from nasflow.nn import FrozenCell

    model = space.freeze(sample)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the space froze to a {type(model).__name__}, not a torch module")
    flops: dict[str, int] | None = None
    error = None
    if inputs is not None:
        try:
            flops = module_flops(model, inputs)
        except Exception as exc:  # a user's model on a wrong input: say so, list the tree
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
    if flops is not None:
        flops = _with_containers(model, flops)
    modules: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        if len(modules) >= MAX_MODULES:
            break
        entry: dict[str, Any] = {
            "name": name, "type": type(module).__name__,
            "depth": 0 if not name else name.count(".") + 1,
            "params": count_params(module),
            "own_params": sum(p.numel() for p in module.parameters(recurse=False)),
            "flops": None if flops is None else flops.get(name, 0),
        }
        if isinstance(module, FrozenCell):
            entry["cell"] = {
                "inputs": module.num_predecessors,
                "nodes": [[{"from": j, "op": type(op).__name__}
                           for op, j in zip(cast(torch.nn.ModuleList, ops), node,
                                            strict=True)]
                          for ops, node in zip(module.ops, module.inputs, strict=True)],
                "outputs": list(module.output_nodes),
            }
        modules.append(entry)
    return {"model": type(model).__name__, "params": count_params(model),
            "flops": None if flops is None else flops[""],
            "input": None if inputs is None else _shape(inputs), "flops_error": error,
            "modules": modules, "truncated": len(modules) >= MAX_MODULES}


def _with_containers(model: Any, flops: dict[str, int]) -> dict[str, int]:
    """A module that is never called itself (a ``ModuleList``) gets the FLOPs of its
    children; the counter only sees modules whose ``forward`` ran."""
    out = dict(flops)

    def total(name: str, module: Any) -> int:
        below = 0
        for child_name, child in module.named_children():
            below += total(f"{name}.{child_name}" if name else child_name, child)
        if name not in out:
            out[name] = below
        return out[name]

    total("", model)
    return out


def _shape(inputs: Any) -> Any:
    if isinstance(inputs, (tuple, list)) and all(isinstance(d, int) for d in inputs):
        return list(inputs)
    return repr(inputs)[:100]
