"""``Cell``: a DARTS-style cell (NNI's ``Cell``); frozen, a ``FrozenCell``.

The cell receives ``num_predecessors`` tensors. Node ``i`` (numbered from
``num_predecessors``, as in NNI) applies ``num_ops_per_node`` ops, each to one earlier
state picked by an ``InputChoice``, and sums them. The output concatenates all nodes
(``merge_op="all"``) or those no other node reads (``"loose_end"``) along ``concat_dim``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

import torch
import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.nn._base import Collector, Freezer, NasModule, copy_keeping_choices, describe, join
from nasflow.nn._choices import InputChoice, LayerChoice
from nasflow.space import Condition

__all__ = ["Cell", "FrozenCell"]

MergeOp = Literal["all", "loose_end"]
OpCandidate = nn.Module | Callable[..., nn.Module]


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpaceBuildError(f"Cell: {name} must be an int >= {minimum}, got {value!r}")
    return value


def _required(candidate: OpCandidate) -> int:
    """How many of ``(node_index, op_index, input_index)`` a factory requires."""
    if isinstance(candidate, nn.Module) or not callable(candidate):
        return 0
    try:
        params = inspect.signature(candidate).parameters.values()
    except (TypeError, ValueError):
        return 0
    return sum(
        1 for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    )


def _instantiate(candidate: OpCandidate, node: int, op: int, inp: int | None = None) -> nn.Module:
    if isinstance(candidate, nn.Module):
        return copy_keeping_choices(candidate)
    if not callable(candidate):
        raise SpaceBuildError(
            f"Cell: an op candidate must be a module or a callable returning one, "
            f"got {candidate!r}"
        )
    made = candidate(*(node, op, inp)[: min(_required(candidate), 3)])
    if not isinstance(made, nn.Module):
        raise SpaceBuildError(f"Cell: op factory {candidate!r} returned {made!r}, not a module")
    return made


class Cell(NasModule):
    """A DARTS-style cell whose ops and inputs are searched (like NNI's ``Cell``).

    ``op_candidates``: a list or dict of modules (copied for every op slot) or of
    factories ``f(node_index, op_index, input_index=None) -> Module`` (called with as
    many of those as they require). A factory that requires ``input_index`` makes the
    cell build one set of candidates per possible input (a reduction cell's ops on its
    inputs have stride 2, those on its nodes stride 1); the op decision stays one label
    per slot. Node ``i``'s ``k``-th op is a ``LayerChoice``
    labelled ``<label>/op_<i>_<k>`` and its input an ``InputChoice`` (one of the ``i``
    earlier states) labelled ``<label>/input_<i>_<k>``; ``label`` defaults to the cell's
    attribute path. ``preprocessor(list_of_inputs) -> list`` runs first;
    ``postprocessor(cell_output, processed_inputs)`` last. Call the frozen cell with
    the ``num_predecessors`` tensors (or one list of them).
    """

    def __init__(
        self,
        op_candidates: Sequence[OpCandidate] | Mapping[str, OpCandidate],
        num_nodes: int,
        num_ops_per_node: int = 1,
        num_predecessors: int = 1,
        merge_op: MergeOp = "all",
        preprocessor: nn.Module | None = None,
        postprocessor: nn.Module | None = None,
        concat_dim: int = 1,
        *,
        label: str | None = None,
    ) -> None:
        super().__init__()
        if label is not None and (not isinstance(label, str) or not label):
            raise SpaceBuildError(f"Cell: label must be a non-empty string, got {label!r}")
        self.num_nodes = _positive("num_nodes", num_nodes)
        """How many nodes the cell computes."""
        self.num_ops_per_node = _positive("num_ops_per_node", num_ops_per_node)
        """How many ops (each with its own input) are summed per node."""
        self.num_predecessors = _positive("num_predecessors", num_predecessors)
        """How many input tensors the cell takes."""
        if merge_op not in ("all", "loose_end"):
            raise SpaceBuildError(f"Cell: merge_op must be 'all' or 'loose_end', got {merge_op!r}")
        self.merge_op: MergeOp = merge_op
        """Which nodes make the output."""
        if not isinstance(concat_dim, int):
            raise SpaceBuildError(f"Cell: concat_dim must be an int, got {concat_dim!r}")
        self.concat_dim = concat_dim
        """The dimension the output nodes are concatenated along."""
        self._label = label
        for name, m in (("preprocessor", preprocessor), ("postprocessor", postprocessor)):
            if m is not None and not isinstance(m, nn.Module):
                raise SpaceBuildError(f"Cell: {name} must be a torch module, got {m!r}")
            self.add_module(name, m)
        if isinstance(op_candidates, Mapping):
            keys: list[str] | None = list(op_candidates)
            cands = list(op_candidates.values())
        elif isinstance(op_candidates, Sequence) and not isinstance(op_candidates, (str, bytes)):
            keys, cands = None, list(op_candidates)
        else:
            raise SpaceBuildError(
                f"Cell: op_candidates must be a list or a dict, got {type(op_candidates).__name__}"
            )
        if not cands:
            raise SpaceBuildError("Cell: op_candidates is empty")
        self.per_input = any(_required(c) >= 3 for c in cands)
        """Whether each op slot holds one ``LayerChoice`` per possible input (its
        ``op_<i>_<k>`` is then a ``ModuleList`` indexed by the input)."""

        def choice(i: int, k: int, j: int | None) -> LayerChoice:
            made = [_instantiate(c, i, k, j) for c in cands]
            ops: Any = dict(zip(keys, made, strict=True)) if keys is not None else made
            return LayerChoice(ops)

        for i, k in self.slots():
            if self.per_input:
                self.add_module(f"op_{i}_{k}", nn.ModuleList(choice(i, k, j) for j in range(i)))
            else:
                self.add_module(f"op_{i}_{k}", choice(i, k, None))
            self.add_module(f"input_{i}_{k}", InputChoice(i, 1))

    @property
    def label(self) -> str | None:
        """The label given by the user (``None``: the attribute path)."""
        return self._label

    def slots(self) -> list[tuple[int, int]]:
        """``(node_index, op_index)`` for every op, nodes numbered from ``num_predecessors``."""
        first = self.num_predecessors
        return [
            (i, k)
            for i in range(first, first + self.num_nodes)
            for k in range(self.num_ops_per_node)
        ]

    def op_choices(self, i: int, k: int, path: str = "") -> list[tuple[str, LayerChoice]]:
        """``(path, LayerChoice)`` of slot ``(i, k)``: one, or one per input if ``per_input``."""
        held = self._modules[f"op_{i}_{k}"]
        where = join(path, f"op_{i}_{k}")
        if isinstance(held, LayerChoice):
            return [(where, held)]
        return [(join(where, str(j)), cast(LayerChoice, m)) for j, m in enumerate(held)]

    def _collect(self, collector: Collector, path: str, condition: Condition) -> None:
        base = self._label or path
        for name in ("preprocessor", "postprocessor"):
            m = self._modules[name]
            if m is not None:
                collector.visit(m, join(path, name), condition)
        for i, k in self.slots():
            for op_path, op in self.op_choices(i, k, path):
                op._collect_as(collector, op_path, f"{base}/op_{i}_{k}", condition)
            inp: InputChoice = self._modules[f"input_{i}_{k}"]  # type: ignore[assignment]
            where = describe(inp, join(path, f"input_{i}_{k}"))
            collector.add(inp.choice, f"{base}/input_{i}_{k}", condition, where)

    def _freeze(self, freezer: Freezer) -> nn.Module:
        ops: list[list[nn.Module]] = []
        inputs: list[list[int]] = []
        for i, k in self.slots():
            if k == 0:
                ops.append([])
                inputs.append([])
            inp: InputChoice = self._modules[f"input_{i}_{k}"]  # type: ignore[assignment]
            j = freezer.chosen(inp.choice)[0]
            held = self._modules[f"op_{i}_{k}"]
            op = held if isinstance(held, LayerChoice) else cast(nn.ModuleList, held)[j]
            ops[-1].append(freezer.module(op))  # type: ignore[arg-type]
            inputs[-1].append(j)
        pre, post = self._modules["preprocessor"], self._modules["postprocessor"]
        return FrozenCell(
            ops,
            inputs,
            num_predecessors=self.num_predecessors,
            merge_op=self.merge_op,
            preprocessor=None if pre is None else freezer.module(pre),
            postprocessor=None if post is None else freezer.module(post),
            concat_dim=self.concat_dim,
        )

    def extra_repr(self) -> str:
        label = f", label={self._label!r}" if self._label else ""
        return (
            f"num_nodes={self.num_nodes}, num_ops_per_node={self.num_ops_per_node}, "
            f"num_predecessors={self.num_predecessors}, merge_op={self.merge_op!r}{label}"
        )


class FrozenCell(nn.Module):
    """A ``Cell`` with its ops and inputs fixed: a plain torch module.

    ``ops[n][k]`` is node ``n``'s ``k``-th op and ``inputs[n][k]`` the index of the state
    it reads (states: the processed inputs, then the nodes in order).
    """

    def __init__(
        self,
        ops: Sequence[Sequence[nn.Module]],
        inputs: Sequence[Sequence[int]],
        *,
        num_predecessors: int,
        merge_op: MergeOp = "all",
        preprocessor: nn.Module | None = None,
        postprocessor: nn.Module | None = None,
        concat_dim: int = 1,
    ) -> None:
        super().__init__()
        self.ops = nn.ModuleList(nn.ModuleList(node) for node in ops)
        self.inputs: list[list[int]] = [list(node) for node in inputs]
        """For each node, the state index each op reads."""
        self.num_predecessors = num_predecessors
        """How many input tensors the cell takes."""
        self.preprocessor = preprocessor
        self.postprocessor = postprocessor
        self.concat_dim = concat_dim
        """The dimension the output nodes are concatenated along."""
        nodes = range(num_predecessors, num_predecessors + len(self.inputs))
        read = {j for node in self.inputs for j in node}
        self.output_nodes: list[int] = [
            n for n in nodes if merge_op == "all" or n not in read
        ]
        """The states concatenated into the output."""

    def forward(self, *inputs: Any) -> Any:
        """The cell output for ``num_predecessors`` tensors (or one list of them)."""
        if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
            states = list(inputs[0])
        else:
            states = list(inputs)
        if len(states) != self.num_predecessors:
            raise ValueError(
                f"this cell takes {self.num_predecessors} inputs, got {len(states)}"
            )
        if self.preprocessor is not None:
            states = list(self.preprocessor(states))
        processed = list(states)
        for node_ops, node_inputs in zip(self.ops, self.inputs, strict=True):
            ops = cast(nn.ModuleList, node_ops)
            outs = [op(states[j]) for op, j in zip(ops, node_inputs, strict=True)]
            total = outs[0]
            for out in outs[1:]:
                total = total + out
            states.append(total)
        result = torch.cat([states[j] for j in self.output_nodes], self.concat_dim)
        if self.postprocessor is not None:
            return self.postprocessor(result, processed)
        return result
