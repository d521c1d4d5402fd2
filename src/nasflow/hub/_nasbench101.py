"""NAS-Bench-101 (Ying et al., ICML 2019): a 7-node cell given by an adjacency matrix.

Node 0 is the cell input, node 6 its output; nodes 1-5 each apply one of three ops.
The sample holds, for every node ``i`` in 1..6, the set of earlier nodes feeding it
(``cell/input<i>``: column ``i`` of the adjacency matrix) and, for 1..5, its op
(``cell/op<i>``). As the benchmark does, nodes not on an input-to-output path are
pruned, a cell must connect input to output, and the pruned graph may have at most 9
edges (a constraint of the space). ``NasBench101.hash`` is the benchmark's
isomorphism-invariant graph hash (``ModelSpec.hash_spec`` of the NAS-Bench-101 API), so
a sample can be looked up in the published table. The network is the paper's: a 3x3
conv stem of 128 channels, 3 stacks of 3 cells, 2x2 max pooling and twice the channels
between stacks, global pooling and a linear classifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.nn import STATE_ATTR, FrozenState, ModelSpace
from nasflow.space import Categorical, CategoricalMultiple

__all__ = ["NasBench101", "prune", "spec_hash"]

OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
"""The interior ops, in the API's canonical order (its ``available_ops``)."""
NUM_VERTICES = 7
MAX_EDGES = 9
INPUT, OUTPUT = "input", "output"

Matrix = list[list[int]]


def prune(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> tuple[Matrix, list[str]] | None:
    """The benchmark's pruning: drop every vertex not on a path from input to output.

    Returns the pruned ``(matrix, ops)``, or ``None`` when input and output are not
    connected (the API's invalid spec).
    """
    n = len(matrix)
    from_input, frontier = {0}, [0]
    while frontier:
        top = frontier.pop()
        for v in range(top + 1, n):
            if matrix[top][v] and v not in from_input:
                from_input.add(v)
                frontier.append(v)
    to_output, frontier = {n - 1}, [n - 1]
    while frontier:
        top = frontier.pop()
        for v in range(top):
            if matrix[v][top] and v not in to_output:
                to_output.add(v)
                frontier.append(v)
    keep = sorted(from_input & to_output)
    if len(keep) < 2:
        return None
    return [[int(matrix[a][b]) for b in keep] for a in keep], [ops[a] for a in keep]


def spec_hash(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> str:
    """The NAS-Bench-101 API's graph hash of a (pruned) spec: ``hash_spec(OPS)``."""
    n = len(matrix)
    labels = [-1] + [OPS.index(op) for op in ops[1:-1]] + [-2]
    in_edges = [sum(matrix[a][b] for a in range(n)) for b in range(n)]
    out_edges = [sum(matrix[a]) for a in range(n)]
    hashes = [_md5(str((out_edges[v], in_edges[v], labels[v]))) for v in range(n)]
    for _ in range(n):
        hashes = [
            _md5("".join(sorted(hashes[w] for w in range(n) if matrix[w][v])) + "|"
                 + "".join(sorted(hashes[w] for w in range(n) if matrix[v][w])) + "|"
                 + hashes[v])
            for v in range(n)
        ]
    return _md5(str(sorted(hashes)))


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()  # the API hashes with MD5


class ConvBnRelu(nn.Sequential):
    """Convolution (no bias), batch norm, ReLU: the benchmark's conv ops and projections."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=False),
        )


def _vertex_channels(c_in: int, c_out: int, matrix: Matrix) -> list[int]:
    # the benchmark's compute_vertex_channels: the output's channels are split over the
    # vertices that feed it; the others take the widest of their successors
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[-1] = c_in, c_out
    if n == 2:
        return channels
    feeding = sum(matrix[v][n - 1] for v in range(1, n - 1))
    interior, correction = divmod(c_out, feeding) if feeding else (0, 0)
    for v in range(1, n - 1):
        if matrix[v][n - 1]:
            channels[v] = interior + (1 if correction else 0)
            correction = max(correction - 1, 0)
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            for dst in range(v + 1, n - 1):
                if matrix[v][dst]:
                    channels[v] = max(channels[v], channels[dst])
    return channels


class NasBench101Cell(nn.Module):
    """One cell for a pruned ``(matrix, ops)``: the benchmark's ``build_module``."""

    def __init__(self, matrix: Matrix, ops: Sequence[str], c_in: int, c_out: int) -> None:
        super().__init__()
        self.matrix = [list(row) for row in matrix]
        n = len(matrix)
        self.channels = _vertex_channels(c_in, c_out, self.matrix)
        """Output channels of every vertex."""
        self.ops = nn.ModuleList([nn.Identity()])
        self.projections = nn.ModuleList([nn.Identity()])
        for t in range(1, n):
            c = self.channels[t]
            self.projections.append(ConvBnRelu(c_in, c, 1) if matrix[0][t] else nn.Identity())
            if t == n - 1:
                continue
            op = ops[t]
            self.ops.append(
                ConvBnRelu(c, c, 3) if op == OPS[0] else ConvBnRelu(c, c, 1) if op == OPS[1]
                else nn.MaxPool2d(3, stride=1, padding=1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, n = self.matrix, len(self.matrix)
        tensors = [x]
        concat = []
        for t in range(1, n - 1):
            add = [tensors[s][:, : self.channels[t]] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                add.append(self.projections[t](x))
            total = add[0]
            for a in add[1:]:
                total = total + a
            tensors.append(self.ops[t](total))
            if m[t][n - 1]:
                concat.append(tensors[t])
        if not concat:
            return self.projections[n - 1](x)  # type: ignore[no-any-return]
        out = concat[0] if len(concat) == 1 else torch.cat(concat, 1)
        if m[0][n - 1]:
            out = out + self.projections[n - 1](x)
        return out


class NasBench101(ModelSpace):
    """The NAS-Bench-101 space (NNI's ``NasBench101``): multi-trial strategies only (a
    cell's channel widths depend on its graph, so no weight-sharing supernet exists).

    ``stem_out_channels`` (128), ``num_stacks`` (3), ``num_modules_per_stack`` (3),
    ``num_classes`` (10). ``to_spec(sample)`` gives the pruned ``(matrix, ops)``,
    ``hash(sample)`` the benchmark's key, ``from_spec(matrix, ops)`` a sample.
    """

    def __init__(self, stem_out_channels: int = 128, num_stacks: int = 3,
                 num_modules_per_stack: int = 3, num_classes: int = 10, *,
                 _spec: tuple[Matrix, list[str]] | None = None) -> None:
        super().__init__()
        for name, v in (("stem_out_channels", stem_out_channels), ("num_stacks", num_stacks),
                        ("num_modules_per_stack", num_modules_per_stack),
                        ("num_classes", num_classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpaceBuildError(f"NasBench101: {name} must be an int >= 1, got {v!r}")
        self._config: dict[str, Any] = dict(
            stem_out_channels=stem_out_channels, num_stacks=num_stacks,
            num_modules_per_stack=num_modules_per_stack, num_classes=num_classes,
        )
        self.num_classes = num_classes
        if _spec is None:
            # the decisions; the network for one sample is built by freeze
            for i in range(1, NUM_VERTICES - 1):
                self.add_choice(Categorical(list(OPS), label=f"cell/op{i}"))
            for i in range(1, NUM_VERTICES):
                self.add_choice(CategoricalMultiple(list(range(i)), label=f"cell/input{i}"))
            self.add_constraint("cell/valid", lambda s: self._valid(s))
            matrix, ops = [[0, 1], [0, 0]], [INPUT, OUTPUT]
        else:
            self.__dict__["_hub_frozen_build"] = True
            matrix, ops = _spec
        c = stem_out_channels
        self.stem = ConvBnRelu(3, c, 3)
        layers: list[nn.Module] = []
        c_in = c
        for stack in range(num_stacks):
            if stack:
                layers.append(nn.MaxPool2d(2, stride=2))
                c *= 2
            for _ in range(num_modules_per_stack):
                layers.append(NasBench101Cell(matrix, ops, c_in, c))
                c_in = c
        self.layers = nn.Sequential(*layers)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.global_pooling(self.layers(self.stem(x)))
        result: torch.Tensor = self.classifier(torch.flatten(out, 1))
        return result

    def supernet_refusal(self, strategy: str, differentiable: bool) -> str | None:
        """Why no one-shot strategy can train this space as a supernet."""
        return (
            f"{strategy} trains one weight-sharing supernet, but a NAS-Bench-101 cell is "
            "rebuilt for each sample from its adjacency matrix (the pruned graph and the "
            "split of the output channels among the vertices depend on it), so there is "
            "no fixed set of layers to share; search NasBench101 with a multi-trial "
            "strategy (Random, RegularizedEvolution, TPE, GridSearch, LocalSearch, "
            "PolicyBasedRL)"
        )

    # --- the encoding ---------------------------------------------------------------------

    @staticmethod
    def to_spec(sample: Mapping[str, Any]) -> tuple[Matrix, list[str]] | None:
        """The pruned ``(matrix, ops)`` of a sample (``None``: input not connected)."""
        matrix = [[0] * NUM_VERTICES for _ in range(NUM_VERTICES)]
        for i in range(1, NUM_VERTICES):
            for j in sample[f"cell/input{i}"]:
                matrix[j][i] = 1
        ops = [INPUT, *(sample[f"cell/op{i}"] for i in range(1, NUM_VERTICES - 1)), OUTPUT]
        return prune(matrix, ops)

    @staticmethod
    def from_spec(matrix: Sequence[Sequence[int]], ops: Sequence[str]) -> dict[str, Any]:
        """A sample for an API spec of up to 7 vertices (padded with unused nodes)."""
        n = len(matrix)
        if not 2 <= n <= NUM_VERTICES or len(ops) != n or ops[0] != INPUT or ops[-1] != OUTPUT:
            raise ValueError(
                f"from_spec: expected an n x n matrix (2 <= n <= 7) and n ops from 'input' "
                f"to 'output', got {n} rows and ops {list(ops)!r}"
            )
        bad = [op for op in ops[1:-1] if op not in OPS]
        if bad:
            raise ValueError(f"from_spec: unknown op(s) {bad!r}; the ops are {', '.join(OPS)}")
        # the spec's vertices keep their order; the unused ones sit just before the output
        where = [*range(n - 1), NUM_VERTICES - 1]
        sample: dict[str, Any] = {}
        for i in range(1, NUM_VERTICES):
            sample[f"cell/input{i}"] = [0]
        for i in range(1, NUM_VERTICES - 1):
            sample[f"cell/op{i}"] = OPS[0]
        for b in range(1, n):
            srcs = [where[a] for a in range(n) if matrix[a][b]]
            if not srcs:
                raise ValueError(f"from_spec: vertex {b} has no input")
            sample[f"cell/input{where[b]}"] = srcs
            if b < n - 1:
                sample[f"cell/op{where[b]}"] = ops[b]
        return sample

    @classmethod
    def hash(cls, sample: Mapping[str, Any]) -> str:
        """The benchmark's key for a sample (its pruned spec's ``hash_spec``)."""
        spec = cls.to_spec(sample)
        if spec is None:
            raise ValueError("hash: the sample's cell does not connect input to output")
        return spec_hash(*spec)

    @classmethod
    def _valid(cls, sample: Mapping[str, Any]) -> bool:
        spec = cls.to_spec(sample)
        return spec is not None and sum(map(sum, spec[0])) <= MAX_EDGES

    # --- freezing -------------------------------------------------------------------------

    def _nasflow_finish(self) -> None:
        if not self.__dict__.pop("_hub_frozen_build", False):
            super()._nasflow_finish()

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A plain model for ``sample``'s pruned cell (an instance of this class)."""
        canonical = self.search_space_object().canonicalize(sample)
        self.validate(canonical)  # the constraint: connected, at most 9 edges
        spec = self.to_spec(canonical)
        model = NasBench101.__new__(type(self))
        NasBench101.__init__(model, **self._config, _spec=spec)
        model.__dict__[STATE_ATTR] = FrozenState(canonical)
        model.__dict__["is_model_space"] = False
        model.train(self.training)
        return model
