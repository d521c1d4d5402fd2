"""Mixed modules: what ``LayerChoice``, ``InputChoice``, ``Repeat``, ``Cell`` and searchable
layers without a sliced form become in a supernet.

Each runs in the mode its ``ArchState`` says (see ``_arch``): the picked candidate
(HARD), the weighted sum of all candidates (SOFT), or the picked candidate with
gradients to the mixing weights (GATE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from nasflow.nn import ChosenInputs
from nasflow.strategy.oneshot._arch import (
    ArchState,
    Combos,
    Mode,
    UnsupportedSpaceError,
    deferred_mix,
)
from nasflow.strategy.oneshot._format import to_channels_last
from nasflow.strategy.oneshot._share import SharedPlan, sharing

__all__ = ["EdgeMixedCell", "EdgeNode", "MixedArgs", "MixedCell", "MixedInput", "MixedLayer",
           "MixedRepeat"]


class _Mixed(nn.Module):
    """Shared plumbing: the ``ArchState`` (a plain attribute, not a submodule) and the
    description used in error messages."""

    def __init__(self, arch: ArchState, where: str) -> None:
        super().__init__()
        self._arch = arch
        self._where = where

    def _weighted_sum(self, weights: torch.Tensor, outs: Sequence[Any],
                      label: str | None) -> torch.Tensor:
        first = outs[0]
        for o in outs:
            if not isinstance(o, torch.Tensor) or o.shape != first.shape:
                shapes = [tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                          for x in outs]
                raise UnsupportedSpaceError(
                    self._where, label,
                    f"a differentiable strategy sums the candidates' outputs, but they "
                    f"differ: {shapes}; make the candidates return tensors of one shape, or "
                    "use RandomOneShot or ENAS (which run one candidate at a time)",
                )
        return weighted_sum(weights, outs)


def weighted_sum(weights: torch.Tensor, outs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_i weights[i] * outs[i]`` (tensors of one shape), differentiable in both.

    On a GPU: one stacked contraction, since these small models are bound by kernel
    launches there. On the CPU: ``_WeightedSum``, which keeps the candidates' memory
    format (a contraction returns a contiguous tensor, which would undo channels-last),
    copies nothing into a stack, and computes the weights' gradient only when asked.
    """
    if weights.device.type == "cpu":
        mixed: torch.Tensor = _WeightedSum.apply(weights, *outs)  # type: ignore[no-untyped-call]
        return mixed
    contracted: torch.Tensor = torch.tensordot(weights, torch.stack(list(outs)), dims=1)
    return contracted


def _nhwc(t: torch.Tensor) -> bool:
    return t.ndim == 4 and t.stride(1) == 1 and t.is_contiguous(memory_format=torch.channels_last)


def _flat(t: torch.Tensor, nhwc: bool) -> torch.Tensor:
    """``t`` flattened (a view when its layout allows), in NHWC order if ``nhwc``."""
    return t.permute(0, 2, 3, 1).reshape(-1) if nhwc else t.reshape(-1)


class _WeightedSum(torch.autograd.Function):
    """``sum_i w_i * o_i`` on the CPU: a multiply and in-place adds forward (the result
    takes the first candidate's memory format); backward ``dL/do_i = w_i * g`` and, only
    when the weights need it, ``dL/dw_i = <g, o_i>``.

    The backward pass is differentiable too: with ``create_graph=True`` (higher-order
    gradients) it uses the weights as a tensor and plain tensor operations, so autograd
    can differentiate it; otherwise the weights are Python floats and the dot products
    run on flat views (faster, not differentiable)."""

    @staticmethod
    def forward(ctx: Any, weights: torch.Tensor, *outs: torch.Tensor) -> torch.Tensor:
        ws = weights.tolist()  # on the CPU: no device synchronisation
        mixed: torch.Tensor = outs[0] * ws[0]
        for w, o in zip(ws[1:], outs[1:], strict=True):
            mixed.add_(o, alpha=w)
        ctx.ws = ws
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(weights, *outs)
        else:
            ctx.save_for_backward(weights)
        return mixed

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a backward autograd can differentiate
            return _WeightedSum._differentiable_backward(ctx, grad)
        grad_w = None
        if ctx.needs_input_grad[0]:
            outs = ctx.saved_tensors[1:]
            # the incoming gradient is often a strided slice (of a concatenation's): made
            # dense once in the candidates' layout, every dot product runs on flat views
            nhwc = _nhwc(outs[0])
            grad = to_channels_last(grad) if nhwc else grad.contiguous()
            flat = _flat(grad, nhwc)
            grad_w = torch.stack([torch.dot(flat, _flat(o, nhwc)) for o in outs])
        grads = [grad * w if needed else None
                 for w, needed in zip(ctx.ws, ctx.needs_input_grad[1:], strict=True)]
        return (grad_w, *grads)

    @staticmethod
    def _differentiable_backward(ctx: Any, grad: torch.Tensor
                                 ) -> tuple[torch.Tensor | None, ...]:
        weights, *outs = ctx.saved_tensors
        grad_w = None
        if ctx.needs_input_grad[0]:
            grad_w = torch.stack([(grad * o).sum() for o in outs])
        grads = [grad * weights[i] if needed else None
                 for i, needed in enumerate(ctx.needs_input_grad[1:])]
        return (grad_w, *grads)


def _gate(weights: torch.Tensor, picked: int, out: Any,
          run: Callable[[int], Any], where: str, label: str | None) -> Any:
    if not isinstance(out, torch.Tensor):
        raise UnsupportedSpaceError(
            where, label,
            f"Proxyless needs candidates that return one tensor, got {type(out).__name__}",
        )
    return deferred_mix(weights, out, run, {picked: out.detach()})


class MixedLayer(_Mixed):
    """A ``LayerChoice`` in a supernet: candidates keep their names as submodules."""

    def __init__(self, arch: ArchState, where: str, label: str, names: list[str],
                 candidates: list[nn.Module]) -> None:
        super().__init__(arch, where)
        self.label = label
        """The decision."""
        self.names = names
        """The candidates' names, in the order of the label's values."""
        for name, module in zip(names, candidates, strict=True):
            self.add_module(name, module)
        self._plans = [SharedPlan(m, f"{where}, candidate {name!r}")  # SOFT: shared
                       for name, m in zip(names, candidates, strict=True)]  # stateless layers
        self._shares = any(p.shares for p in self._plans)

    def candidate(self, i: int) -> nn.Module:
        """Candidate ``i`` (in the order of the label's values)."""
        return self._modules[self.names[i]]  # type: ignore[return-value]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        arch = self._arch
        if arch.mode is Mode.HARD:
            return self.candidate(arch.pick(self.label, self._where)[0])(*args, **kwargs)
        if len(self.names) == 1:  # no decision: nothing to mix
            return self.candidate(0)(*args, **kwargs)
        weights = arch.weight(self.label)
        if arch.mode is Mode.SOFT:
            if self._shares and arch.share and len(args) == 1 and not kwargs:
                with sharing(arch):
                    outs = [plan(arch, args[0]) for plan in self._plans]
            else:
                outs = [self.candidate(i)(*args, **kwargs) for i in range(len(self.names))]
            return self._weighted_sum(weights, outs, self.label)
        picked = arch.pick(self.label, self._where)[0]
        out = self.candidate(picked)(*args, **kwargs)
        return _gate(weights, picked, out, lambda j: self.candidate(j)(*args, **kwargs),
                     self._where, self.label)

    def extra_repr(self) -> str:
        return f"label={self.label!r}"


class MixedArgs(MixedLayer):
    """A searchable layer with no sliced form: one independent module per combination of
    its arguments' values, mixed like a ``LayerChoice`` over those combinations."""

    def __init__(self, arch: ArchState, where: str, combos: Combos,
                 candidates: list[nn.Module | None], failures: list[str]) -> None:
        names = [f"c{i}" for i in range(combos.count)]
        built = [m if m is not None else nn.Identity() for m in candidates]
        super().__init__(arch, where, "+".join(combos.labels), names, built)
        self.combos = combos
        """The argument combinations (candidate ``i`` is built from ``combos.samples[i]``)."""
        self._failures = failures  # why candidate i could not be built ("" when it could)

    def _check(self, i: int) -> None:
        if self._failures[i]:
            raise UnsupportedSpaceError(
                self._where, ", ".join(self.combos.labels),
                f"the arguments {self.combos.samples[i]} do not build a module "
                f"({self._failures[i]}); rule them out with a constraint",
            )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        arch, combos = self._arch, self.combos
        if arch.mode is Mode.HARD:
            i = combos.index(arch, self._where)
            self._check(i)
            return self.candidate(i)(*args, **kwargs)
        weights = combos.weights(arch)
        if arch.mode is Mode.SOFT:
            for i in range(combos.count):
                self._check(i)
            outs = [self.candidate(i)(*args, **kwargs) for i in range(combos.count)]
            return self._weighted_sum(weights, outs, self.label)
        picked = combos.index(arch, self._where)
        self._check(picked)
        out = self.candidate(picked)(*args, **kwargs)

        def run(j: int) -> Any:
            if self._failures[j]:
                return torch.zeros_like(out)
            return self.candidate(j)(*args, **kwargs)

        return _gate(weights, picked, out, run, self._where, self.label)


class MixedInput(_Mixed):
    """An ``InputChoice`` in a supernet; called with the list of candidate tensors."""

    def __init__(self, arch: ArchState, where: str, label: str, n_candidates: int,
                 n_chosen: int | None, reduction: str) -> None:
        super().__init__(arch, where)
        self.label = label
        """The decision."""
        self.n_candidates = n_candidates
        """How many tensors it is called with."""
        self.n_chosen = n_chosen
        """How many it picks (``None``: any number)."""
        self.reduction = reduction
        """How the picked ones are combined."""

    def _reduce(self, picked: list[torch.Tensor]) -> Any:
        return ChosenInputs.reduce(picked, self.reduction)  # exactly the frozen module's

    def forward(self, inputs: Sequence[torch.Tensor]) -> Any:
        arch = self._arch
        inputs = list(inputs)
        if len(inputs) != self.n_candidates:
            raise ValueError(
                f"{self._where}: called with {len(inputs)} inputs, expected {self.n_candidates}"
            )
        if arch.mode is Mode.HARD:
            return self._reduce([inputs[i] for i in arch.pick(self.label, self._where)])
        if self.n_candidates == 1:  # no decision (a cell's first node): nothing to mix
            return self._reduce(inputs)
        weights = arch.weight(self.label)
        if arch.mode is Mode.SOFT:
            mixed = self._weighted_sum(weights, inputs, self.label)
            return [mixed] if self.reduction == "none" else mixed
        picked = arch.pick(self.label, self._where)
        scale = 1.0 / len(picked) if self.reduction == "mean" else 1.0
        chosen = [inputs[i] for i in picked]
        out = self._reduce(chosen)
        tensor = out[0] if self.reduction == "none" else out
        mixed = deferred_mix(weights, tensor, lambda j: inputs[j] * scale, {})
        return [mixed] if self.reduction == "none" else mixed

    def extra_repr(self) -> str:
        return (f"label={self.label!r}, n_candidates={self.n_candidates}, "
                f"n_chosen={self.n_chosen}, reduction={self.reduction!r}")


class MixedRepeat(_Mixed):
    """A ``Repeat`` with a searched depth: the blocks stay submodules ``"0"``, ``"1"``...;
    SOFT mode mixes the outputs after each candidate depth."""

    def __init__(self, arch: ArchState, where: str, label: str, depths: list[int],
                 blocks: list[nn.Module]) -> None:
        super().__init__(arch, where)
        self.label = label
        """The depth decision."""
        self.depths = depths
        """The candidate depths, in the order of the label's values."""
        for i, block in enumerate(blocks):
            self.add_module(str(i), block)

    def _run(self, x: Any, depth: int, start: int = 0) -> Any:
        for i in range(start, depth):
            x = self._modules[str(i)](x)  # type: ignore[misc]
        return x

    def forward(self, x: Any) -> Any:
        arch = self._arch
        if arch.mode is Mode.HARD:
            return self._run(x, self.depths[arch.pick(self.label, self._where)[0]])
        weights = arch.weight(self.label)
        if arch.mode is Mode.SOFT:
            at: dict[int, Any] = {}
            y, done = x, 0
            for d in sorted(set(self.depths)):
                y = self._run(y, d, done)
                done = d
                at[d] = y
            return self._weighted_sum(weights, [at[d] for d in self.depths], self.label)
        picked = arch.pick(self.label, self._where)[0]
        out = self._run(x, self.depths[picked])
        return _gate(weights, picked, out, lambda j: self._run(x, self.depths[j]),
                     self._where, self.label)

    def extra_repr(self) -> str:
        return f"label={self.label!r}, depths={self.depths}"


class MixedCell(_Mixed):
    """A ``Cell`` in a supernet: its op slots are ``MixedLayer`` and its input choices
    ``MixedInput`` (node ``i``'s op reads the mix of the ``i`` earlier states)."""

    def __init__(self, arch: ArchState, where: str, slots: list[tuple[int, int]],
                 modules: dict[str, nn.Module | None], num_predecessors: int, merge_op: str,
                 concat_dim: int) -> None:
        super().__init__(arch, where)
        self.slots = slots
        """``(node, op)`` for every op slot, as in ``Cell.slots()``."""
        self.num_predecessors = num_predecessors
        """How many input tensors the cell takes."""
        self.merge_op = merge_op
        """Which nodes make the output."""
        self.concat_dim = concat_dim
        """The dimension nodes are concatenated along."""
        for name, m in modules.items():
            self.add_module(name, m)

    def _output_nodes(self) -> list[int]:
        first = self.num_predecessors
        nodes = sorted({i for i, _ in self.slots})
        if self.merge_op == "all":
            return nodes
        read: set[int] = set()
        for i, k in self.slots:
            inp: MixedInput = self._modules[f"input_{i}_{k}"]  # type: ignore[assignment]
            read.update(self._arch.pick(inp.label, self._where))
        return [n for n in nodes if n not in read and n >= first]

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            states = list(inputs[0])
        else:
            states = list(inputs)
        if len(states) != self.num_predecessors:
            raise ValueError(f"{self._where}: takes {self.num_predecessors} inputs, "
                             f"got {len(states)}")
        if self._arch.mode is Mode.SOFT:
            with sharing(self._arch):  # the slots reading one state share its pooling
                return self._forward(states)
        return self._forward(states)

    def _per_input(self, inp: MixedInput, ops: nn.ModuleList, states: list[Any]) -> Any:
        if self._arch.mode is Mode.HARD:  # run only the picked input's op
            j = self._arch.pick(inp.label, self._where)[0]
            return ops[j](states[j])
        return inp([op(x) for op, x in zip(ops, states, strict=True)])

    def _forward(self, states: list[Any]) -> Any:
        pre = self._modules["preprocessor"]
        if pre is not None:
            states = list(pre(states))
        processed = list(states)
        node: list[Any] = []  # the outputs of the current node's ops
        for i, k in self.slots:
            if k == 0 and node:
                states.append(ChosenInputs.reduce(node, "sum"))  # as FrozenCell sums them
                node = []
            inp: MixedInput = self._modules[f"input_{i}_{k}"]  # type: ignore[assignment]
            op = self._modules[f"op_{i}_{k}"]
            if isinstance(op, nn.ModuleList):  # one op per input: mix the ops' outputs
                node.append(self._per_input(inp, op, states[:i]))
            else:
                node.append(op(inp(states[:i])))  # type: ignore[misc]
        states.append(ChosenInputs.reduce(node, "sum"))
        result = torch.cat([states[j] for j in self._output_nodes()], self.concat_dim)
        post = self._modules["postprocessor"]
        if post is not None:
            return post(result, processed)
        return result


@dataclass(frozen=True)
class EdgeNode:
    """The labels of one node of an edge-mixed cell (``Supernet(cell_mixing="edge")``):
    its slots' op and input labels (of the space) and its edges' (one per earlier state)."""

    node: int
    op_labels: list[str]
    input_labels: list[str]
    edge_labels: list[str]

    def slot_labels(self) -> list[str]:
        """The space's labels this node's edges replace in the architecture parameters."""
        return [*self.op_labels, *self.input_labels]

    def space_probs(self, probs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The slots' labels' probabilities from the edges' (DARTS's derivation): slot
        ``k`` reads the ``k``-th strongest edge (strength: its most probable op) with
        that edge's op distribution; its input distribution is the edges' strengths,
        normalised, with the edges the other slots read left out."""
        edges = [probs[label] for label in self.edge_labels]
        strength = torch.stack([p.max() for p in edges])
        slots = len(self.op_labels)
        order = [int(j) for j in torch.argsort(strength.detach(), descending=True,
                                               stable=True)]
        chosen = order[:slots] if len(order) >= slots else order + order[:1] * slots
        out: dict[str, torch.Tensor] = {}
        for k, (op_label, input_label) in enumerate(zip(self.op_labels, self.input_labels,
                                                        strict=True)):
            j = chosen[k]
            out[op_label] = edges[j]
            keep = torch.ones_like(strength)
            for other in chosen[:k] + chosen[k + 1:]:
                if other != j:
                    keep[other] = 0.0
            s = strength * keep
            out[input_label] = s / s.sum()
        return out


class EdgeMixedCell(_Mixed):
    """A ``Cell`` mixed per edge (``Supernet(cell_mixing="edge")``): submodule
    ``edge_<i>_<j>`` is the ``MixedLayer`` of node ``i``'s ops on state ``j``. SOFT: node
    ``i`` sums its ``i`` mixed edges. HARD: slot ``k`` runs the picked op of the edge from
    its picked input (as the frozen cell, whose slot ``k`` inherits that edge's weights)."""

    def __init__(self, arch: ArchState, where: str, nodes: list[EdgeNode],
                 modules: Mapping[str, nn.Module | None], num_predecessors: int,
                 concat_dim: int) -> None:
        super().__init__(arch, where)
        self.nodes = nodes
        """The nodes' labels, in order."""
        self.num_predecessors = num_predecessors
        """How many input tensors the cell takes."""
        self.concat_dim = concat_dim
        """The dimension nodes are concatenated along (``merge_op="all"``)."""
        for name, m in modules.items():
            self.add_module(name, m)

    def _edge(self, i: int, j: int) -> MixedLayer:
        return self._modules[f"edge_{i}_{j}"]  # type: ignore[return-value]

    def forward(self, *inputs: Any) -> Any:
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            states = list(inputs[0])
        else:
            states = list(inputs)
        if len(states) != self.num_predecessors:
            raise ValueError(f"{self._where}: takes {self.num_predecessors} inputs, "
                             f"got {len(states)}")
        arch = self._arch
        if arch.mode is Mode.GATE:
            raise UnsupportedSpaceError(
                self._where, None, "a cell mixed per edge runs SOFT or HARD only; build "
                "the supernet with cell_mixing='slot' for gates (Proxyless)")
        pre = self._modules["preprocessor"]
        if pre is not None:
            states = list(pre(states))
        processed = list(states)
        if arch.mode is Mode.SOFT:
            with sharing(arch):  # the edges reading one state share its pooling
                for node in self.nodes:
                    outs = [self._edge(node.node, j)(states[j]) for j in range(node.node)]
                    states.append(ChosenInputs.reduce(outs, "sum"))
        else:
            for node in self.nodes:
                outs = []
                for op_label, input_label in zip(node.op_labels, node.input_labels,
                                                 strict=True):
                    j = arch.pick(input_label, self._where)[0]
                    o = arch.pick(op_label, self._where)[0]
                    outs.append(self._edge(node.node, j).candidate(o)(states[j]))
                states.append(ChosenInputs.reduce(outs, "sum"))  # as FrozenCell sums them
        result = torch.cat(states[self.num_predecessors:], self.concat_dim)
        post = self._modules["postprocessor"]
        if post is not None:
            return post(result, processed)
        return result
