"""Turning a ``ModelSpace`` into a weight-sharing supernet, without touching the user's class.

``Supernet(space)`` deep-copies the space (the copy is still an instance of the user's
class, so its ``forward`` runs unchanged) and replaces, in the copy only:

=====================================  ===============================================
space element                          supernet part
=====================================  ===============================================
``LayerChoice``                        ``MixedLayer`` (candidates keep their names)
``InputChoice``                        ``MixedInput``
``Repeat`` with a searched depth       ``MixedRepeat``
``Cell``                               ``MixedCell`` of ``MixedLayer``/``MixedInput``
``Cell``, per-input ops, ``edge`` mixing ``EdgeMixedCell``: one ``MixedLayer`` per edge
``Conv1d/2d``, ``Linear`` with choices  ``SlicedConv`` / ``SlicedLinear`` (shared weights)
``BatchNorm1d/2d``, ``LayerNorm``       ``SlicedBatchNorm`` / ``SlicedLayerNorm``
any other searchable layer             ``MixedArgs``: one module per argument combination
=====================================  ===============================================

A space may refuse a strategy itself: ``space.supernet_refusal(strategy, differentiable)``
returning a reason (``str``) raises ``UnsupportedSpaceError`` with it. Anything else that
holds a decision raises ``UnsupportedSpaceError`` naming the module
and the label: continuous (``Numerical``) choices, custom ``NasModule`` subclasses,
choices no module consumes (e.g. a learning rate registered with ``add_choice``), and,
for differentiable strategies, what cannot be summed (``InputChoice`` concatenating
several inputs, ``Cell(merge_op="loose_end")``, kernel sizes whose padding changes the
output size).

``cell_mixing="edge"`` (DARTS and GumbelDARTS by default) mixes a ``Cell`` whose ops
depend on their input (``per_input``, as the NDS spaces') and whose nodes have several op
slots per edge, as the DARTS paper and NNI's ``DifferentiableMixedCell`` do: one set of
candidate ops per (node, earlier state), node ``i`` the sum of its ``i`` mixed edges,
with architecture labels ``<cell>/edge_<i>_<j>`` of their own (``arch_labels``). Slot
``k``'s op on input ``j`` then shares the weights of edge ``(i, j)``, so a cell runs half
the candidates of per-slot mixing (each slot mixing every op on every input with its own
weights). ``space_probs`` turns the edge probabilities back into the space's labels: a
node's slots read its ``num_ops_per_node`` strongest edges (by their most probable op),
strongest first, each with that edge's op distribution.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn as nn

from nasflow.nn import (
    STATE_ATTR,
    Cell,
    InputChoice,
    LayerChoice,
    ModelSpace,
    NasModule,
    Repeat,
    SearchableModule,
    attribute_choices,
    choices_in,
    describe,
    held_choices,
    join,
    modules_in,
)
from nasflow.space import Categorical, Sample, SearchSpace
from nasflow.strategy.oneshot._arch import (
    MAX_COMBOS,
    ArchState,
    Combos,
    LabelSpec,
    UnsupportedSpaceError,
    labels_of,
    resolve,
)
from nasflow.strategy.oneshot._mixed import (
    EdgeMixedCell,
    EdgeNode,
    MixedArgs,
    MixedCell,
    MixedInput,
    MixedLayer,
    MixedRepeat,
)
from nasflow.strategy.oneshot._sliced import SlicedConv, build_sliced

__all__ = ["CELL_MIXINGS", "Supernet"]

CELL_MIXINGS = ("edge", "slot")
"""How a differentiable supernet mixes a ``Cell`` with per-input ops (module docstring)."""


class Supernet:
    """A model space converted for weight sharing (see the module docstring).

    ``model`` is the converted copy (an ``nn.Module`` holding every shared weight);
    ``arch`` is the ``ArchState`` its mixed modules read; ``set_hard`` / ``set_soft`` /
    ``set_gate`` choose what the next forward pass runs. ``differentiable`` asks for
    the checks that SOFT and GATE modes need.
    """

    def __init__(self, space: ModelSpace, *, differentiable: bool, strategy: str = "",
                 cell_mixing: str = "slot") -> None:
        if cell_mixing not in CELL_MIXINGS:
            raise ValueError(f"cell_mixing must be one of {CELL_MIXINGS}, got {cell_mixing!r}")
        if not isinstance(space, ModelSpace):
            raise TypeError(
                f"{strategy or 'a one-shot strategy'} needs a nasflow.nn.ModelSpace to build "
                f"a supernet from, got {type(space).__name__}"
            )
        if space.is_frozen:
            raise TypeError(f"{type(space).__name__} is a frozen model, not a model space")
        refusal = getattr(space, "supernet_refusal", None)
        if callable(refusal):  # a space that knows what it cannot be (hub spaces)
            reason = refusal(strategy or "one-shot strategies", differentiable)
            if reason:
                raise UnsupportedSpaceError(type(space).__name__, None, reason)
        self.space: SearchSpace = space.search_space_object()
        """The torch-free search space."""
        self.strategy = strategy or "one-shot strategies"
        """Who converts (for error messages)."""
        self.differentiable = differentiable
        """Whether SOFT / GATE modes must work."""
        self.cell_mixing = cell_mixing
        """``"edge"`` or ``"slot"`` (see the module docstring)."""
        self.edge_nodes: dict[tuple[str, int], EdgeNode] = {}
        """``(cell label, node)`` -> the labels of an edge-mixed node (shared by the
        cells with that label)."""
        self.specs: dict[str, LabelSpec] = {}
        self._consumers: dict[str, list[str]] = {}
        self._attributes: dict[str, str] = {}  # label -> where a plain attribute holds it
        self.arch = ArchState(self.space, self.specs)
        """The architecture the next forward pass runs."""
        self._done: dict[int, nn.Module] = {}
        self._copies: dict[int, Any] = {}  # id(module of the space) -> its copy
        self.source = space
        """The model space as given (never modified)."""
        self.model: nn.Module = self._convert_root(space)
        """The converted copy of the space."""
        self._check_consumed(space)

    # --- modes --------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Every label, in the space's sampling order."""
        return self.space.labels

    @property
    def arch_labels(self) -> list[str]:
        """The labels a differentiable strategy keeps architecture parameters for: the
        space's, with the slot labels of edge-mixed cells replaced by their edge labels."""
        replaced = {lbl for node in self.edge_nodes.values() for lbl in node.slot_labels()}
        edges = [lbl for node in self.edge_nodes.values() for lbl in node.edge_labels]
        return [lbl for lbl in self.space.labels if lbl not in replaced] + edges

    def space_probs(self, probs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Probabilities per label of the space from probabilities per ``arch_labels``
        (the same dict without edge-mixed cells; see the module docstring). Differentiable
        in the op probabilities (a penalty's expected cost uses them)."""
        if not self.edge_nodes:
            return probs
        edges = {lbl for node in self.edge_nodes.values() for lbl in node.edge_labels}
        out = {k: v for k, v in probs.items() if k not in edges}
        for node in self.edge_nodes.values():
            out.update(node.space_probs(probs))
        return out

    def set_hard(self, sample: Sample) -> None:
        """Run one architecture (a canonical sample)."""
        self.arch.set_hard(sample)

    def set_soft(self, weights: dict[str, torch.Tensor]) -> None:
        """Mix every candidate, label ``l``'s alternatives weighted by ``weights[l]``."""
        self.arch.set_soft(weights)

    def set_gate(self, picked: dict[str, list[int]], weights: dict[str, torch.Tensor]) -> None:
        """Run ``picked`` with gradients to the one-hot-valued ``weights``."""
        self.arch.set_gate(picked, weights)

    def freeze(self, sample: Sample) -> nn.Module:
        """The plain model of ``sample`` (as ``space.freeze``) with the supernet's weights:
        chosen candidates get their trained weights, searchable layers the slices of the
        shared ones, batch norms the supernet's statistics."""
        from nasflow.strategy.oneshot._inherit import inherit

        return inherit(self, sample)

    def counterpart(self, module: nn.Module) -> nn.Module | None:
        """The supernet module that replaced ``module`` of the original space."""
        copied = self._copies.get(id(module))
        return None if copied is None else self._done.get(id(copied), copied)

    def consumers(self, label: str) -> list[str]:
        """Where ``label`` is used (module descriptions)."""
        return list(self._consumers.get(label, []))

    # --- conversion -----------------------------------------------------------------------

    def _use(self, label: str, where: str) -> LabelSpec:
        spec = self.specs.get(label)
        if spec is None:
            choice = self.space.search_space()[label]
            spec = LabelSpec.of(label, choice, where)
            self.specs[label] = spec
        self._consumers.setdefault(label, []).append(where)
        return spec

    def _convert_root(self, space: ModelSpace) -> nn.Module:
        # choices are decisions, not state: the copy keeps the original choice objects (so
        # the space's label_of works on it), and the space's own bookkeeping is shared
        memo: dict[int, Any] = {id(c): c for c in held_choices(space)}
        state = space.__dict__.get(STATE_ATTR)
        memo[id(state)] = state
        model = copy.deepcopy(space, memo)
        self._copies = memo
        for _, value in attribute_choices(model):
            for label in labels_of(self.space, choices_in(value)):
                self._attributes.setdefault(label, describe(model, ""))
        self._children(model, "")
        return model

    def _children(self, module: nn.Module, path: str) -> None:
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = self._convert(child, join(path, name))

    def _convert(self, module: nn.Module, path: str) -> nn.Module:
        key = id(module)
        if key in self._done:  # a module used twice stays one module
            return self._done[key]
        where = describe(module, path)
        out: nn.Module
        if isinstance(module, LayerChoice):
            out = self._layer_choice(module, path, where)
        elif isinstance(module, InputChoice):
            out = self._input_choice(module, where, self.space.label_of(module.choice))
        elif isinstance(module, Repeat):
            out = self._repeat(module, path, where)
        elif isinstance(module, Cell):
            out = self._cell(module, path, where)
        elif isinstance(module, SearchableModule):
            out = self._searchable(module, path, where)
        elif isinstance(module, NasModule):
            labels = [self.space.label_of(c) for c in module._own_choices()]
            raise UnsupportedSpaceError(
                where, labels[0] if labels else None,
                f"{self.strategy} cannot turn a custom {type(module).__name__} into a "
                "supernet part; build it from LayerChoice, InputChoice, Repeat, Cell and "
                "searchable layers, or use a multi-trial strategy",
            )
        else:
            for _, value in attribute_choices(module):
                for label in labels_of(self.space, choices_in(value)):
                    self._attributes.setdefault(label, where)
            self._children(module, path)
            out = module
        self._done[key] = out
        return out

    def _layer_choice(self, module: LayerChoice, path: str, where: str,
                      as_label: str | None = None) -> MixedLayer:
        label = self.space.label_of(module.choice)
        spec = self._use(label, where)
        names = [module.names[module.choice.index(v)] for v in spec.values]
        cands = [self._convert(module.candidates[n], join(path, n)) for n in names]
        if as_label is not None:  # an edge of an edge-mixed cell: a label of its own
            if as_label not in self.specs:
                self.specs[as_label] = LabelSpec(
                    as_label, Categorical(spec.values, label=as_label), list(spec.values))
            label = as_label
        return MixedLayer(self.arch, where, label, names, cands)

    def _input_choice(self, module: InputChoice, where: str, label: str) -> nn.Module:
        self._use(label, where)
        if self.differentiable and module.n_chosen != 1 and module.reduction in ("concat",
                                                                                "none"):
            raise UnsupportedSpaceError(
                where, label,
                f"{self.strategy} mixes the candidate inputs by weight, which cannot give "
                f"reduction={module.reduction!r} of n_chosen={module.n_chosen} inputs; use "
                "reduction 'sum' or 'mean', n_chosen=1, or RandomOneShot / ENAS",
            )
        return MixedInput(self.arch, where, label, module.n_candidates, module.n_chosen,
                          module.reduction)

    def _repeat(self, module: Repeat, path: str, where: str) -> nn.Module:
        blocks = [self._convert(b, join(path, str(i))) for i, b in enumerate(module.blocks)]
        if module.depth_choice is None:
            return nn.Sequential(*blocks)
        label = self.space.label_of(module.depth_choice)
        spec = self._use(label, where)
        return MixedRepeat(self.arch, where, label, list(spec.values), blocks)

    def _cell(self, module: Cell, path: str, where: str) -> nn.Module:
        if self.differentiable and module.merge_op != "all":
            first = module.op_choices(module.slots()[0][0], 0)[0][1]
            raise UnsupportedSpaceError(
                where, self.space.label_of(first.choice).rsplit("/", 1)[0],
                f"{self.strategy} needs merge_op='all': with 'loose_end' the cell's output "
                "depends on which inputs are chosen, which cannot be mixed by weight; use "
                "RandomOneShot or ENAS",
            )
        parts: dict[str, nn.Module | None] = {}
        for name in ("preprocessor", "postprocessor"):
            m = module._modules[name]
            parts[name] = None if m is None else self._convert(m, join(path, name))
        if (self.cell_mixing == "edge" and self.differentiable and module.per_input
                and module.num_ops_per_node > 1):
            return self._edge_cell(module, path, where, parts)
        for i, k in module.slots():
            inp = cast(InputChoice, module._modules[f"input_{i}_{k}"])
            mixed = [self._layer_choice(op, op_path, describe(op, op_path))
                     for op_path, op in module.op_choices(i, k, path)]
            # per-input ops: one MixedLayer per input the slot may read
            parts[f"op_{i}_{k}"] = mixed[0] if not module.per_input else nn.ModuleList(mixed)
            inp_where = describe(inp, join(path, f"input_{i}_{k}"))
            parts[f"input_{i}_{k}"] = self._input_choice(inp, inp_where,
                                                         self.space.label_of(inp.choice))
        return MixedCell(self.arch, where, module.slots(), parts, module.num_predecessors,
                         module.merge_op, module.concat_dim)

    def _edge_cell(self, module: Cell, path: str, where: str,
                   parts: dict[str, nn.Module | None]) -> nn.Module:
        """``module`` as an ``EdgeMixedCell``: slot 0's per-input candidates become the
        edges; every other slot's candidates are left out of the supernet, their
        counterparts (for ``freeze``) being the same edge's."""
        nodes: list[EdgeNode] = []
        for i in range(module.num_predecessors, module.num_predecessors + module.num_nodes):
            op_labels, input_labels = [], []
            for k in range(module.num_ops_per_node):
                held = cast(nn.ModuleList, module._modules[f"op_{i}_{k}"])
                first = cast(LayerChoice, held[0])
                op_labels.append(self.space.label_of(first.choice))
                inp = cast(InputChoice, module._modules[f"input_{i}_{k}"])
                input_labels.append(self.space.label_of(inp.choice))
                self._use(input_labels[-1], describe(inp, join(path, f"input_{i}_{k}")))
            base = op_labels[0].rsplit("/", 1)[0]
            edge_labels = [f"{base}/edge_{i}_{j}" for j in range(i)]
            node = self.edge_nodes.setdefault(
                (base, i), EdgeNode(i, op_labels, input_labels, edge_labels))
            nodes.append(node)
            for j, (op_path, choice) in enumerate(module.op_choices(i, 0, path)):
                parts[f"edge_{i}_{j}"] = self._layer_choice(
                    choice, op_path, describe(choice, op_path), as_label=node.edge_labels[j])
            for k in range(1, module.num_ops_per_node):  # freeze: slot k inherits the edge's
                for j, (op_path, choice) in enumerate(module.op_choices(i, k, path)):
                    self._use(op_labels[k], describe(choice, op_path))
                    edge = cast(MixedLayer, parts[f"edge_{i}_{j}"])
                    for n, name in enumerate(edge.names):
                        pairs = zip(choice.candidates[name].modules(),
                                    edge.candidate(n).modules(), strict=True)
                        for mine, shared in pairs:
                            self._done[id(mine)] = shared  # (``module`` is the copy)
        return EdgeMixedCell(self.arch, where, nodes, parts, module.num_predecessors,
                             module.concat_dim)

    def _searchable(self, module: SearchableModule, path: str, where: str) -> nn.Module:
        built = module._built()
        if built is not None:  # no choice in its arguments: a plain module (maybe holding some)
            return self._convert(built, join(path, "module"))
        for inner in modules_in((module.args, module.kwargs)):
            nested = labels_of(self.space, held_choices(inner))
            if nested:
                raise UnsupportedSpaceError(
                    where, nested[0],
                    f"{self.strategy} cannot share weights through a module passed as an "
                    f"argument of a searchable {module.module_class.__name__} that holds "
                    "choices itself; make it a child module (an attribute) instead",
                )
        found = choices_in((module.args, module.kwargs))
        labels = labels_of(self.space, found)
        specs = [self._use(label, where) for label in labels]
        for spec in specs:
            if spec.multiple:
                raise UnsupportedSpaceError(
                    where, spec.label, "a layer argument cannot be a multiple choice")
        combos = Combos(labels, self.specs)
        if combos.count > MAX_COMBOS:
            raise UnsupportedSpaceError(
                where, ", ".join(labels),
                f"its arguments take {combos.count} value combinations; one-shot strategies "
                f"enumerate at most {MAX_COMBOS} per layer. Use fewer values",
            )
        named = dict(module.arguments)
        resolved = [resolve(self.space, named, s) for s in combos.samples]
        sliced = build_sliced(module.module_class, self.arch, where, combos, resolved)
        if isinstance(sliced, SlicedConv) and self.differentiable and sliced.soft_padding is None:
            raise UnsupportedSpaceError(
                where, ", ".join(labels),
                f"{self.strategy} runs the largest kernel once with masks, which needs each "
                "kernel size's padding to keep the same output size (padding = kernel_size "
                "// 2 with stride 1, or 'same'); fix the padding or use RandomOneShot / ENAS",
            )
        if sliced is not None:
            return sliced
        return self._per_combination(module, where, combos)

    def _per_combination(self, module: SearchableModule, where: str, combos: Combos) -> nn.Module:
        cands: list[nn.Module | None] = []
        failures: list[str] = []
        for sample in combos.samples:
            args = resolve(self.space, module.args, sample)
            kwargs = resolve(self.space, module.kwargs, sample)
            try:
                cands.append(module.module_class(*args, **kwargs))
                failures.append("")
            except Exception as exc:  # a combination the constraints rule out
                cands.append(None)
                failures.append(f"{type(exc).__name__}: {exc}")
        if all(failures):
            raise UnsupportedSpaceError(
                where, ", ".join(combos.labels),
                f"no combination of its arguments builds a {module.module_class.__name__} "
                f"(first failure: {failures[0]})",
            )
        return MixedArgs(self.arch, where, combos, cands, failures)

    def _check_consumed(self, space: ModelSpace) -> None:
        extra = {self.space.label_of(c): lbl for c, lbl in space._state().extra}
        for label in self.space.labels:
            if label in self._consumers:
                continue
            where = self._attributes.get(label)
            if where is None:
                where = ("registered with add_choice() on " + describe(space, "")
                         if label in extra else describe(space, ""))
            raise UnsupportedSpaceError(
                where, label,
                f"this choice changes no layer of the network, so {self.strategy} (which "
                "train the layers of one supernet) cannot search it; search it with a "
                "multi-trial strategy, or fix its value for the one-shot search",
            )
