"""Hardware-aware one-shot search: a differentiable expected cost added to the
architecture loss of ``DARTS``, ``GumbelDARTS`` and ``Proxyless``.

The cost of an architecture is taken as additive over its decisions, as ProxylessNAS's
latency table is: ``cost(sample) ~ C(base) + sum over labels of delta[label][choice]``,
where ``base`` picks every label's first alternative and ``delta[label][i]`` is what
switching that one label to alternative ``i`` adds (measured on the plain model
``space.freeze``). Under the architecture distribution ``p = softmax(alpha)`` the
expected cost ``C(base) + sum_l sum_i p_l[i] * delta[l][i]`` is differentiable in
``alpha``, and the architecture step minimises ``loss + penalty(expected cost)``.

``InputChoice`` labels that pick several candidates are left out of the cost (their
delta is 0), and so, in effect, are labels that the base architecture does not use (the
ops of blocks that exist only at a larger depth: switching them alone changes nothing).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from nasflow.evaluator._profile import count_flops, count_params, measure_latency

if TYPE_CHECKING:
    from nasflow.strategy.oneshot._run import Run

__all__ = ["CostPenalty", "FLOPsPenalty", "LatencyPenalty", "ParamsPenalty"]


class CostPenalty(ABC):
    """The expected cost of the architecture, as a loss term.

    ``weight`` scales it. With a ``target`` the term is ``weight * max(E[cost] / target
    - 1, 0)``: architectures under the target are not pushed further. Without one it is
    ``weight * E[cost] / C(base)``, a pressure towards cheaper choices everywhere.
    """

    name: str = "cost"
    """The metric name of the cost (``latency_ms``, ``flops``, ``params``)."""

    def __init__(self, *, weight: float, target: float | None = None) -> None:
        owner = type(self).__name__
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{owner}(weight=...): got {weight!r}; expected a number >= 0")
        if target is not None and (isinstance(target, bool) or not isinstance(
                target, (int, float)) or not (math.isfinite(target) and target > 0)):
            raise ValueError(f"{owner}(target=...): got {target!r}; expected a positive "
                             "number, or None for no target")
        self.weight = float(weight)
        """How strongly the cost counts against the loss."""
        self.target = None if target is None else float(target)
        """The cost under which no penalty applies (``None``: none)."""
        self.base: float = math.nan
        """``C(base)``: the cost of the architecture of every label's first alternative."""
        self.deltas: dict[str, torch.Tensor] = {}
        """``label -> what each alternative adds to C(base)``."""

    @abstractmethod
    def measure(self, model: torch.nn.Module, example: torch.Tensor,
                device: torch.device) -> float:
        """The cost of one plain model."""

    def table(self, rt: Run) -> dict[str, dict[str, float]] | None:
        """A cost table given by the user instead of measuring (``None``: measure)."""
        return None

    # --- used by the strategies -----------------------------------------------------------

    def build(self, rt: Run) -> None:
        """Measure ``C(base)`` and every label's deltas (once, before training)."""
        specs = rt.supernet.specs
        labels = [label for label in rt.supernet.labels if not specs[label].multiple]
        base = {label: specs[label].value([*range(specs[label].n_chosen or 1)])
                for label in rt.supernet.labels}
        given = self.table(rt)
        if given is not None:
            self.base = 0.0
            self.deltas = {label: torch.tensor(
                [_lookup(given, label, specs[label].values[i]) for i in range(specs[label].n)],
                dtype=torch.float32, device=rt.device) for label in labels}
            return
        example = _example(rt)
        self.base = self._cost(rt, base, example)
        self.deltas = {}
        for label in labels:
            values = specs[label].values
            costs = [self.base if i == 0 else self._cost(rt, {**base, label: values[i]},
                                                          example)
                     for i in range(len(values))]
            self.deltas[label] = torch.tensor([c - self.base for c in costs],
                                              dtype=torch.float32, device=rt.device)

    def expected(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``E[cost]`` under ``probs`` (``label -> softmax(alpha)``), differentiable."""
        total = torch.zeros((), device=next(iter(self.deltas.values())).device) \
            if self.deltas else torch.zeros(())
        for label, delta in self.deltas.items():
            total = total + (probs[label] * delta).sum()
        return total + self.base

    def loss(self, probs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The penalty term of an architecture step."""
        cost = self.expected(probs)
        if self.target is not None:
            return self.weight * torch.relu(cost / self.target - 1.0)
        scale = abs(self.base) if self.base else 1.0
        return self.weight * cost / scale

    def estimate(self, sample: Mapping[str, Any], rt: Run) -> float:
        """The additive cost estimate of one architecture (recorded with it)."""
        specs = rt.supernet.specs
        total = self.base
        for label, delta in self.deltas.items():
            if label in sample:  # a sample holds only its active labels
                total += float(delta[specs[label].indices(sample[label])[0]])
        return total

    def _cost(self, rt: Run, sample: dict[str, Any], example: torch.Tensor) -> float:
        try:
            model = rt.supernet.source.freeze(sample)
        except Exception as exc:
            raise ValueError(
                f"{type(self).__name__}: could not build the architecture {sample!r} to "
                f"measure its cost ({type(exc).__name__}: {exc}); the cost table changes "
                "one label at a time from every label's first alternative, so each such "
                "architecture must be valid in the space"
            ) from exc
        return float(self.measure(model, example, rt.device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weight={self.weight}, target={self.target})"


class LatencyPenalty(CostPenalty):
    """Expected latency in milliseconds, measured on the search's device (median of
    ``repeats`` forward passes of batch 1 per architecture), or looked up in ``table``:
    ``{label: {value: ms added by that value}}`` measured elsewhere (e.g. on the phone
    you deploy to)."""

    name = "latency_ms"

    def __init__(self, target_ms: float | None = None, weight: float = 0.1, *,
                 table: Mapping[str, Mapping[Any, float]] | None = None,
                 repeats: int = 20) -> None:
        super().__init__(weight=weight, target=target_ms)
        self.given = None if table is None else {k: dict(v) for k, v in table.items()}
        self.repeats = repeats

    def measure(self, model: torch.nn.Module, example: torch.Tensor,
                device: torch.device) -> float:
        return measure_latency(model, example, device=str(device), repeats=self.repeats)

    def table(self, rt: Run) -> dict[str, dict[str, float]] | None:
        return self.given  # type: ignore[return-value]


class FLOPsPenalty(CostPenalty):
    """Expected FLOPs of one forward pass of batch 1 (``nf.evaluator.count_flops``)."""

    name = "flops"

    def __init__(self, target: float | None = None, weight: float = 0.1) -> None:
        super().__init__(weight=weight, target=target)

    def measure(self, model: torch.nn.Module, example: torch.Tensor,
                device: torch.device) -> float:
        return float(count_flops(model, example))


class ParamsPenalty(CostPenalty):
    """Expected parameter count (``nf.evaluator.count_params``)."""

    name = "params"

    def __init__(self, target: float | None = None, weight: float = 0.1) -> None:
        super().__init__(weight=weight, target=target)

    def measure(self, model: torch.nn.Module, example: torch.Tensor,
                device: torch.device) -> float:
        return float(count_params(model))


def _example(rt: Run) -> torch.Tensor:
    # the unshuffled validation data: drawing from the training batches would move the
    # training data order
    for x, _ in rt.val:
        return x[:1].detach().cpu()
    raise ValueError("the validation data yields no batch to measure the cost on")


def _lookup(table: Mapping[str, Mapping[Any, float]], label: str, value: Any) -> float:
    row = table.get(label)
    if row is None:
        raise ValueError(f"LatencyPenalty(table=...): no row for the label {label!r}; give "
                         f"{{label: {{value: ms}}}} for every label of the space")
    key = value if value in row else str(value)
    if key not in row:
        raise ValueError(f"LatencyPenalty(table=...): the row {label!r} has no value "
                         f"{value!r}; it has {sorted(map(str, row))}")
    return float(row[key])
