"""What a supernet runs in one forward pass: the shared ``ArchState`` and its modes.

Every mixed module of a supernet holds the same ``ArchState`` and asks it, per label,
what to do:

* ``HARD``: run one architecture (``sample``), exactly as the frozen model would, with
  sliced weights. SPOS, ENAS, Proxyless weight steps and every supernet evaluation.
* ``SOFT``: run every candidate and mix the outputs with ``weights[label]`` (softmax or
  Gumbel-softmax of the architecture parameters). DARTS and GumbelDARTS.
* ``GATE``: run the sampled candidate only, but let gradients reach
  ``weights[label]`` (one-hot valued, straight-through to the probabilities) as if
  every candidate had been mixed: ProxylessNAS's binary gates. The outputs of the
  other candidates are recomputed, without autograd, only in the backward pass.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasflow.exceptions import SpaceError
from nasflow.space import Categorical, CategoricalMultiple, Choice, Expr, SearchSpace

__all__ = [
    "ArchState",
    "Combos",
    "LabelSpec",
    "Mode",
    "UnsupportedSpaceError",
    "deferred_mix",
]

MAX_COMBOS = 512
"""The most value combinations one module's arguments may have (each is enumerated).
MobileNetV3Space's first projection of a stage needs 7 x 6 x 7 = 294 (the previous and
this stage's width multipliers, the expand ratio)."""


class UnsupportedSpaceError(SpaceError, TypeError):
    """A model-space element a one-shot strategy cannot turn into a supernet part.

    ``module`` says where it is (``"Conv2d at 'stem'"``), ``label`` which decision.
    """

    def __init__(self, module: str, label: str | None, reason: str) -> None:
        self.module = module
        """The offending module and its path."""
        self.label = label
        """The offending label (``None`` when no single label is at fault)."""
        self.reason = reason
        """What is wrong and what to do."""
        where = f"{module}, label {label!r}" if label is not None else module
        super().__init__(f"{where}: {reason}")


class Mode(enum.Enum):
    """How mixed modules run in the current forward pass (see the module docstring)."""

    HARD = "hard"
    SOFT = "soft"
    GATE = "gate"


@dataclass(frozen=True)
class LabelSpec:
    """One decision of the space as a supernet sees it.

    A ``Categorical`` label has one alternative per value; a ``CategoricalMultiple``
    label (an ``InputChoice``) has one per candidate, of which ``n_chosen`` are picked.
    """

    label: str
    choice: Categorical | CategoricalMultiple
    values: list[Any]

    @property
    def multiple(self) -> bool:
        """Whether a sample value is a list of candidates rather than one value."""
        return isinstance(self.choice, CategoricalMultiple)

    @property
    def n(self) -> int:
        """How many alternatives (values, or candidates of a multiple choice)."""
        return len(self.values)

    @property
    def n_chosen(self) -> int | None:
        """How many candidates a multiple choice picks (``None``: any number)."""
        return self.choice.n_chosen if isinstance(self.choice, CategoricalMultiple) else 1

    def indices(self, value: Any) -> list[int]:
        """The alternatives a sample value picks."""
        if isinstance(self.choice, CategoricalMultiple):
            return [self.choice._index(v) for v in value]
        return [self.choice.index(value)]

    def value(self, indices: Sequence[int]) -> Any:
        """The sample value of picked alternatives."""
        if self.multiple:
            return [self.values[i] for i in sorted(indices)]
        return self.values[indices[0]]

    def key(self, i: int) -> str:
        """A JSON object key for alternative ``i`` (for progress events)."""
        v = self.values[i]
        return v if isinstance(v, str) else str(v)

    @staticmethod
    def of(label: str, choice: Choice, where: str) -> LabelSpec:
        """The spec of ``choice``; ``UnsupportedSpaceError`` for continuous choices."""
        if isinstance(choice, (Categorical, CategoricalMultiple)):
            return LabelSpec(label, choice, list(choice.values))
        raise UnsupportedSpaceError(
            where, label,
            f"{type(choice).__name__} choices cannot be searched by one-shot strategies, "
            "which need a finite list of alternatives to share weights between; use a "
            "Categorical (e.g. nf.Categorical([0.1, 0.3, 0.5])) or a multi-trial strategy",
        )


class ArchState:
    """The architecture of the current forward pass, shared by a supernet's mixed modules.

    Set by the strategy (from the training thread) before each forward pass with
    ``set_hard``, ``set_soft`` or ``set_gate``; read by the mixed modules.
    """

    def __init__(self, space: SearchSpace, specs: dict[str, LabelSpec]) -> None:
        self.space = space
        """The search space the labels belong to."""
        self.specs = specs
        """``label -> LabelSpec`` for every label of the space."""
        self.mode = Mode.HARD
        """How mixed modules run now."""
        self.sample: dict[str, Any] = {}
        """HARD / GATE: the sample being run."""
        self.picked: dict[str, list[int]] = {}
        """HARD / GATE: the alternatives picked per label."""
        self.weights: dict[str, torch.Tensor] = {}
        """SOFT / GATE: mixing weights per label (one per alternative)."""
        self.share = True
        """SOFT: let candidates share the outputs of stateless layers (see ``_share``)."""
        self.memo: dict[tuple[int, Any], tuple[torch.Tensor, int, Any, int]] | None = None
        """SOFT: outputs of stateless layers by input and layer, with both tensors'
        version counters, while a mixed module runs (see ``_share``); ``None`` outside."""

    def set_hard(self, sample: dict[str, Any]) -> None:
        """Run ``sample`` (labels absent from it must not be reached)."""
        self.mode = Mode.HARD
        self.sample = sample
        self.picked = {k: self.specs[k].indices(v) for k, v in sample.items()}
        self.weights = {}

    def set_soft(self, weights: dict[str, torch.Tensor]) -> None:
        """Mix every candidate with ``weights``."""
        self.mode = Mode.SOFT
        self.weights = weights
        self.sample, self.picked = {}, {}

    def set_gate(self, picked: dict[str, list[int]], weights: dict[str, torch.Tensor]) -> None:
        """Run the ``picked`` alternatives, with gradients to one-hot ``weights``."""
        self.mode = Mode.GATE
        self.picked = picked
        self.sample = {k: self.specs[k].value(v) for k, v in picked.items()}
        self.weights = weights

    def pick(self, label: str, where: str) -> list[int]:
        """The alternatives picked for ``label`` (HARD / GATE)."""
        try:
            return self.picked[label]
        except KeyError:
            raise SpaceError(
                f"{where}: the supernet reached label {label!r}, which the current sample "
                f"{self.sample!r} leaves undecided (inactive); the model's forward uses a "
                "module that the space says is unused for this architecture"
            ) from None

    def weight(self, label: str) -> torch.Tensor:
        """The mixing weights of ``label`` (SOFT / GATE)."""
        return self.weights[label]


class Combos:
    """Every combination of the values of some labels (e.g. the labels a searchable
    layer's arguments depend on), with their mixing weights and picked index."""

    def __init__(self, labels: list[str], specs: dict[str, LabelSpec]) -> None:
        self.labels = labels
        """The labels, in a fixed order."""
        self.sizes = [specs[label].n for label in labels]
        """How many values each label has."""
        self.count = math.prod(self.sizes)
        """How many combinations there are."""
        self.samples: list[dict[str, Any]] = [
            {label: specs[label].values[i] for label, i in zip(labels, combo, strict=True)}
            for combo in itertools.product(*(range(n) for n in self.sizes))
        ]
        """The partial sample of each combination, in row-major order."""

    def index(self, arch: ArchState, where: str) -> int:
        """The combination the current (HARD / GATE) sample picks."""
        i = 0
        for label, size in zip(self.labels, self.sizes, strict=True):
            i = i * size + arch.pick(label, where)[0]
        return i

    def index_of(self, sample: dict[str, Any], specs: dict[str, LabelSpec]) -> int:
        """The combination a sample picks."""
        i = 0
        for label, size in zip(self.labels, self.sizes, strict=True):
            i = i * size + specs[label].indices(sample[label])[0]
        return i

    def weights(self, arch: ArchState) -> torch.Tensor:
        """The mixing weight of each combination: the product of its labels' weights."""
        w: torch.Tensor | None = None
        for label in self.labels:
            lw = arch.weight(label)
            w = lw if w is None else (w[:, None] * lw[None, :]).reshape(-1)
        assert w is not None  # Combos always has at least one label
        return w


def resolve(space: SearchSpace, value: Any, sample: dict[str, Any]) -> Any:
    """``value`` with every choice and expression resolved, also inside lists and tuples."""
    if isinstance(value, Expr):
        return space.resolve(value, sample)
    if isinstance(value, list):
        return [resolve(space, v, sample) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve(space, v, sample) for v in value)
    if isinstance(value, dict):
        return {k: resolve(space, v, sample) for k, v in value.items()}
    return value


def labels_of(space: SearchSpace, choices: Iterable[Choice]) -> list[str]:
    """The distinct labels of ``choices``, in order of first appearance."""
    out: dict[str, None] = {}
    for c in choices:
        out.setdefault(space.label_of(c), None)
    return list(out)


# --- gate mode: gradients for the candidates that did not run ----------------------------


class _Deferred(torch.autograd.Function):
    """Zero in the forward pass; in the backward pass, the gradient of the mixing weights
    ``dL/dw_j = <dL/dy, o_j>`` with ``o_j`` recomputed without autograd."""

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, out: torch.Tensor,
                recompute: Callable[[int], torch.Tensor], known: dict[int, torch.Tensor]
                ) -> torch.Tensor:
        ctx.recompute = recompute
        ctx.known = known
        ctx.n = weights.shape[0]
        return torch.zeros_like(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        grads = torch.zeros(ctx.n, dtype=grad.dtype, device=grad.device)
        with torch.no_grad():
            for j in range(ctx.n):
                o = ctx.known.get(j)
                if o is None:
                    o = ctx.recompute(j)
                grads[j] = (grad * o).sum()
        ctx.recompute = ctx.known = None  # drop the references to inputs and modules
        return grads, None, None, None


def deferred_mix(weights: torch.Tensor, out: torch.Tensor,
                 recompute: Callable[[int], torch.Tensor],
                 known: dict[int, torch.Tensor]) -> torch.Tensor:
    """``out`` (the picked candidate's output), carrying ``dL/dweights`` as if
    ``sum_j weights[j] * o_j`` had been computed; ``known`` holds outputs already at
    hand (detached), ``recompute(j)`` gives the others."""
    zero: torch.Tensor = _Deferred.apply(  # type: ignore[no-untyped-call]
        weights, out.detach(), recompute, known)
    return out + zero
