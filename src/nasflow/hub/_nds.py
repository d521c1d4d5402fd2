"""The NDS cell spaces (NNI's ``nasnet.py``): ``NASNet``, ``ENAS``, ``AmoebaNet``, ``PNAS``,
``DARTS``, after Radosavovic et al., "On Network Design Spaces for Visual Recognition".

Each is a stack of ``num_cells`` cells in three stages; the first cell of stages 2 and 3
is a reduction cell (stride 2, twice the channels). Every cell takes the outputs of the
two cells before it, preprocesses them to ``C`` channels, and has ``num_nodes`` nodes of
two ops, each op on one earlier state. All normal cells share one set of decisions
(labels ``normal/op_<i>_<k>``, ``normal/input_<i>_<k>``), all reduction cells another
(``reduce/...``), as in NNI. ``width`` and ``num_cells`` are fixed ints or searched
tuples (labels ``width`` and ``depth``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from nasflow.exceptions import SpaceBuildError
from nasflow.hub._freeze import fast_freeze
from nasflow.hub._nds_ops import OPS, AuxiliaryHead, make_op
from nasflow.hub._ops import FactorizedReduce, ReLUConvBN
from nasflow.nn import STATE_ATTR, Cell, FrozenCell, FrozenState, ModelSpace
from nasflow.space import Categorical

__all__ = ["DARTS", "ENAS", "NDS", "PNAS", "AmoebaNet", "NASNet"]

_PREDECESSORS = 2
_OPS_PER_NODE = 2


class CellPreprocessor(nn.Module):
    """Brings the two previous cells' outputs to ``C`` channels at this cell's input
    size (a ``FactorizedReduce`` when the cell before the previous one was reduced)."""

    def __init__(self, c_pprev: int, c_prev: int, c: int, pprev_larger: bool) -> None:
        super().__init__()
        self.pre0: nn.Module = (
            FactorizedReduce(c_pprev, c) if pprev_larger else ReLUConvBN(c_pprev, c, 1, 1, 0)
        )
        self.pre1 = ReLUConvBN(c_prev, c, 1, 1, 0)

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.pre0(inputs[0]), self.pre1(inputs[1])]


class LooseEndPreprocessor(CellPreprocessor):
    """The preprocessor of a ``loose_end`` space's search-side cells: their input width
    depends on the architecture, so only frozen models (one per sample) can run."""

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        raise SpaceBuildError(_LOOSE_END.format(strategy="a one-shot strategy"))


_LOOSE_END = (
    "the cells of NASNet, ENAS and AmoebaNet concatenate only their unused nodes "
    "(merge_op='loose_end'), so a cell's output width depends on the sampled "
    "architecture and {strategy} cannot build a weight-sharing supernet of them; search "
    "these spaces with a multi-trial strategy (Random, RegularizedEvolution, TPE...), "
    "or use hub.DARTS / hub.PNAS (merge_op='all') with one-shot strategies"
)


def _choices(name: str, value: int | Sequence[int], minimum: int) -> list[int]:
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise SpaceBuildError(
            f"{name} must be an int or a non-empty tuple of ints, got {value!r}"
        )
    out: list[int] = []
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise SpaceBuildError(f"{name}: every value must be an int >= {minimum}, got {v!r}")
        out.append(v)
    return out


class NDS(ModelSpace):
    """A cell-based NDS space over ``op_candidates`` (names of ``hub._nds_ops.OPS``).

    ``merge_op``: ``"all"`` concatenates every node, ``"loose_end"`` only those no node
    reads. ``width`` is the first stage's ``C``; ``num_cells`` the total cell count
    (both an int, or a tuple to search). ``dataset``: ``"cifar"`` (32x32, 10 classes,
    a 3x3 stem of ``3C`` channels) or ``"imagenet"`` (224x224, 1000 classes, the
    stride-8 two-part stem). ``auxiliary_loss`` adds the auxiliary head after the second
    reduction cell: the model then returns ``(logits, aux_logits)`` while training (a
    custom evaluator adds the aux loss; the built-in ``Classification`` expects logits
    only). ``drop_path_prob`` drops each non-identity op's path while training.
    """

    def __init__(
        self,
        op_candidates: Sequence[str],
        merge_op: str = "all",
        num_nodes_per_cell: int = 4,
        width: int | Sequence[int] = 16,
        num_cells: int | Sequence[int] = 20,
        dataset: str = "imagenet",
        auxiliary_loss: bool = False,
        drop_path_prob: float = 0.0,
        num_classes: int | None = None,
        *,
        _arch: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        ops = list(op_candidates)
        unknown = [op for op in ops if op not in OPS]
        if not ops or unknown:
            raise SpaceBuildError(
                f"{name}: unknown op(s) {unknown or ops!r}; the ops are {', '.join(OPS)}"
            )
        if merge_op not in ("all", "loose_end"):
            raise SpaceBuildError(
                f"{name}: merge_op must be 'all' or 'loose_end', got {merge_op!r}"
            )
        if dataset not in ("cifar", "imagenet"):
            raise SpaceBuildError(
                f"{name}: dataset must be 'cifar' or 'imagenet', got {dataset!r}"
            )
        if not isinstance(drop_path_prob, (int, float)) or not 0 <= drop_path_prob < 1:
            raise SpaceBuildError(
                f"{name}: drop_path_prob must be in [0, 1), got {drop_path_prob!r}"
            )
        widths = _choices(f"{name}: width", width, 2)
        depths = _choices(f"{name}: num_cells", num_cells, 3)
        self._config: dict[str, Any] = dict(
            op_candidates=ops, merge_op=merge_op, num_nodes_per_cell=num_nodes_per_cell,
            width=width, num_cells=num_cells, dataset=dataset,
            auxiliary_loss=bool(auxiliary_loss), drop_path_prob=float(drop_path_prob),
            num_classes=num_classes,
        )
        self.op_candidates = ops
        self.merge_op = merge_op
        self.num_nodes_per_cell = num_nodes_per_cell
        self.dataset = dataset
        self.num_classes = num_classes or (10 if dataset == "cifar" else 1000)
        self.auxiliary_loss = bool(auxiliary_loss)
        self.drop_path_prob = float(drop_path_prob)
        if _arch is None:
            # searched width/depth are decisions of their own; the cells' labels come from
            # a network built at the defaults (every depth shares the same two cells)
            if len(widths) > 1:
                self.add_choice(Categorical(widths, label="width"))
            if len(depths) > 1:
                self.add_choice(Categorical(depths, label="depth"))
            c, n = widths[0], depths[0]
        else:
            # a frozen model has no search space: skip building one (a third of the time)
            self.__dict__["_hub_frozen_build"] = True
            c = _arch["width"] if len(widths) > 1 else widths[0]
            n = _arch["depth"] if len(depths) > 1 else depths[0]
        self._build_network(c, n, _arch)

    # --- the network -------------------------------------------------------------------

    def _build_network(self, c: int, n: int, arch: Mapping[str, Any] | None) -> None:
        if self.dataset == "imagenet":
            self.stem0 = nn.Sequential(
                nn.Conv2d(3, c // 2, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True),
                nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
            )
            self.stem1 = nn.Sequential(
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c),
            )
            c_pprev = c_prev = c_curr = c
            reduced_prev = True
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, 3 * c, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(3 * c))
            c_pprev, c_prev, c_curr = 3 * c, 3 * c, c
            reduced_prev = False
        reductions = {n // 3, 2 * n // 3}
        self.aux_index = 2 * n // 3
        """The cell whose output feeds the auxiliary head."""
        cells: list[nn.Module] = []
        c_aux = c_prev
        for i in range(n):
            reduce = i in reductions
            if reduce:
                c_curr *= 2
            cell, out = self._cell(c_pprev, c_prev, c_curr, reduce, reduced_prev, arch)
            cells.append(cell)
            c_pprev, c_prev, reduced_prev = c_prev, out, reduce
            if i == self.aux_index:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = (
            AuxiliaryHead(c_aux, self.num_classes, self.dataset) if self.auxiliary_loss else None
        )
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, self.num_classes)

    def _cell(self, c_pprev: int, c_prev: int, c: int, reduce: bool, reduced_prev: bool,
              arch: Mapping[str, Any] | None) -> tuple[nn.Module, int]:
        label = "reduce" if reduce else "normal"
        nodes = self.num_nodes_per_cell
        pre_cls = CellPreprocessor
        if arch is None and self.merge_op == "loose_end":
            pre_cls = LooseEndPreprocessor
        pre = pre_cls(c_pprev, c_prev, c, reduced_prev)
        drop = self.drop_path_prob

        if arch is None:
            def factory(op: str) -> Any:
                def build(node: int, slot: int, inp: int | None) -> nn.Module:
                    stride = 2 if reduce and (inp is None or inp < _PREDECESSORS) else 1
                    return make_op(op, c, stride, drop)
                return build

            cell = Cell({op: factory(op) for op in self.op_candidates}, nodes, _OPS_PER_NODE,
                        _PREDECESSORS, self.merge_op,  # type: ignore[arg-type]
                        preprocessor=pre, label=label)
            return cell, c * nodes
        ops: list[list[nn.Module]] = []
        inputs: list[list[int]] = []
        for i in range(_PREDECESSORS, _PREDECESSORS + nodes):
            ops.append([])
            inputs.append([])
            for k in range(_OPS_PER_NODE):
                j = arch[f"{label}/input_{i}_{k}"][0]
                stride = 2 if reduce and j < _PREDECESSORS else 1
                ops[-1].append(make_op(arch[f"{label}/op_{i}_{k}"], c, stride, drop))
                inputs[-1].append(j)
        frozen = FrozenCell(ops, inputs, num_predecessors=_PREDECESSORS,
                            merge_op=self.merge_op, preprocessor=pre)  # type: ignore[arg-type]
        return frozen, c * len(frozen.output_nodes)

    def forward(self, x: torch.Tensor) -> Any:
        if self.dataset == "imagenet":
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        else:
            s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if aux is not None:
            return logits, aux
        return logits

    def supernet_refusal(self, strategy: str, differentiable: bool) -> str | None:
        """Why ``strategy`` cannot train this space as a supernet (``None``: it can)."""
        if self.merge_op == "loose_end":  # said before a supernet is built, for any of them
            return _LOOSE_END.format(strategy=strategy)
        return None

    # --- freezing ---------------------------------------------------------------------

    def _nasflow_finish(self) -> None:
        if not self.__dict__.pop("_hub_frozen_build", False):
            super()._nasflow_finish()

    def freeze(self, sample: Mapping[str, Any]) -> nn.Module:
        """A plain model for ``sample``, built directly at the sampled width and depth
        (an instance of this class, as ``ModelSpace.freeze`` returns)."""
        canonical = self.search_space_object().canonicalize(sample)
        fixed = "width" not in canonical and "depth" not in canonical
        if fixed and self.merge_op == "all":
            # the space's own modules fit every sample: clone the chosen ones (2x faster)
            return fast_freeze(self, canonical)
        model = NDS.__new__(type(self))
        NDS.__init__(model, **self._config, _arch=canonical)
        model.__dict__[STATE_ATTR] = FrozenState(canonical)
        model.__dict__["is_model_space"] = False
        model.train(self.training)
        return model


_WIDTHS = (16, 24, 32)
_DEPTHS = (4, 8, 12, 16, 20)
Width = int | Sequence[int]


class NASNet(NDS):
    """NASNet's cell space (Zoph et al., 2018): 13 ops, 5 nodes, ``loose_end``."""

    OPS: tuple[str, ...] = (
        "skip_connect", "conv_3x1_1x3", "conv_7x1_1x7", "dil_conv_3x3", "avg_pool_3x3",
        "max_pool_3x3", "max_pool_5x5", "max_pool_7x7", "conv_1x1", "conv_3x3",
        "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
    )

    def __init__(self, width: Width = _WIDTHS, num_cells: Width = _DEPTHS,
                 dataset: str = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__(self.OPS, "loose_end", 5, width, num_cells, dataset,
                         auxiliary_loss, drop_path_prob, num_classes)


class ENAS(NDS):
    """ENAS's macro-cell space (Pham et al., 2018): 5 ops, 5 nodes, ``loose_end``."""

    OPS: tuple[str, ...] = (
        "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3",
    )

    def __init__(self, width: Width = _WIDTHS, num_cells: Width = _DEPTHS,
                 dataset: str = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__(self.OPS, "loose_end", 5, width, num_cells, dataset,
                         auxiliary_loss, drop_path_prob, num_classes)


class AmoebaNet(NDS):
    """AmoebaNet's cell space (Real et al., 2019): 8 ops, 5 nodes, ``loose_end``."""

    OPS: tuple[str, ...] = (
        "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "avg_pool_3x3",
        "max_pool_3x3", "dil_sep_conv_3x3", "conv_7x1_1x7",
    )

    def __init__(self, width: Width = _WIDTHS, num_cells: Width = _DEPTHS,
                 dataset: str = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__(self.OPS, "loose_end", 5, width, num_cells, dataset,
                         auxiliary_loss, drop_path_prob, num_classes)


class PNAS(NDS):
    """PNAS's cell space (Liu et al., 2018): 8 ops, 5 nodes, every node in the output."""

    OPS: tuple[str, ...] = (
        "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7", "conv_7x1_1x7", "skip_connect",
        "avg_pool_3x3", "max_pool_3x3", "dil_conv_3x3",
    )

    def __init__(self, width: Width = _WIDTHS, num_cells: Width = _DEPTHS,
                 dataset: str = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__(self.OPS, "all", 5, width, num_cells, dataset,
                         auxiliary_loss, drop_path_prob, num_classes)


class DARTS(NDS):
    """The DARTS cell space (Liu et al., ICLR 2019): 7 ops (NNI leaves out ``none``,
    which no final DARTS cell keeps), 4 nodes, every node in the output.

    ``DARTS.V2`` is the paper's searched genotype as a sample (``DARTS.genotype_sample``
    converts any DARTS genotype).
    """

    OPS: tuple[str, ...] = (
        "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
        "dil_conv_3x3", "dil_conv_5x5",
    )

    V2_NORMAL: tuple[tuple[str, int], ...] = (
        ("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2),
    )
    """DARTS-V2's normal cell (``genotypes.py`` of the paper's code): (op, input) pairs."""
    V2_REDUCE: tuple[tuple[str, int], ...] = (
        ("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
        ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1),
    )
    """DARTS-V2's reduction cell."""

    def __init__(self, width: Width = _WIDTHS, num_cells: Width = _DEPTHS,
                 dataset: str = "cifar", auxiliary_loss: bool = False,
                 drop_path_prob: float = 0.0, num_classes: int | None = None) -> None:
        super().__init__(self.OPS, "all", 4, width, num_cells, dataset,
                         auxiliary_loss, drop_path_prob, num_classes)

    @staticmethod
    def genotype_sample(normal: Sequence[tuple[str, int]],
                        reduce: Sequence[tuple[str, int]]) -> dict[str, Any]:
        """The sample of a DARTS genotype: two ``(op, input)`` pairs per node, in order."""
        sample: dict[str, Any] = {}
        for label, pairs in (("normal", normal), ("reduce", reduce)):
            if len(pairs) != 2 * 4:
                raise ValueError(
                    f"genotype_sample: the {label} cell needs 8 (op, input) pairs "
                    f"(2 per node, 4 nodes), got {len(pairs)}"
                )
            for n, (op, j) in enumerate(pairs):
                i, k = _PREDECESSORS + n // 2, n % 2
                sample[f"{label}/op_{i}_{k}"] = op
                sample[f"{label}/input_{i}_{k}"] = [j]
        return sample
