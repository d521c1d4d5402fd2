"""Space elements a one-shot strategy cannot handle give an error naming module and label."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.strategy.oneshot import Supernet, UnsupportedSpaceError

from .spaces import tiny_data


def _space(build: Callable[[snn.ModelSpace], None]) -> snn.ModelSpace:
    class Space(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            build(self)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    return Space()


def _error(space: snn.ModelSpace, differentiable: bool = True) -> UnsupportedSpaceError:
    with pytest.raises(UnsupportedSpaceError) as info:
        Supernet(space, differentiable=differentiable, strategy="DARTS")
    return info.value


def test_a_continuous_choice() -> None:
    def build(s: snn.ModelSpace) -> None:
        s.drop = snn.Dropout(nf.Numerical(0.0, 0.5, label="p"))

    err = _error(_space(build))
    assert err.label == "p" and err.module == "Dropout at 'drop'"
    assert "Numerical" in str(err) and "Categorical" in str(err)


def test_a_choice_that_changes_no_layer() -> None:
    def build(s: snn.ModelSpace) -> None:
        s.fc = nn.Linear(2, 2)
        s.lr = s.add_choice(nf.Categorical([0.1, 0.01]))

    err = _error(_space(build))
    assert err.label == "lr"
    assert "changes no layer" in str(err)


def test_a_custom_nas_module() -> None:
    class Mine(snn.NasModule):
        def __init__(self) -> None:
            super().__init__()
            self.choice = nf.Categorical([1, 2], label="mine")

        def _own_choices(self) -> list[nf.Categorical]:
            return [self.choice]

        def _collect(self, collector, path, condition):  # type: ignore[no-untyped-def]
            collector.add(self.choice, path, condition, "Mine")

    def build(s: snn.ModelSpace) -> None:
        s.block = nn.Sequential(Mine())

    err = _error(_space(build))
    assert err.module == "Mine at 'block.0'" and err.label == "mine"


def test_differentiable_limits() -> None:
    def concat(s: snn.ModelSpace) -> None:
        s.pick = snn.InputChoice(3, 2, reduction="concat", label="pick")

    err = _error(_space(concat))
    assert (err.module, err.label) == ("InputChoice at 'pick'", "pick")
    Supernet(_space(concat), differentiable=False)  # sampled paths can concatenate

    def loose(s: snn.ModelSpace) -> None:
        s.cell = snn.Cell([nn.Identity(), nn.Tanh()], num_nodes=2, merge_op="loose_end",
                          label="c")

    err = _error(_space(loose))
    assert err.module == "Cell at 'cell'" and err.label == "c" and "merge_op" in str(err)

    def kernel(s: snn.ModelSpace) -> None:
        s.conv = snn.Conv2d(1, 2, nf.Categorical([3, 5], label="k"), padding=1)

    err = _error(_space(kernel))
    assert err.module == "Conv2d at 'conv'" and err.label == "k" and "padding" in str(err)


def test_the_error_reaches_the_user_through_the_experiment() -> None:
    def build(s: snn.ModelSpace) -> None:
        s.drop = snn.Dropout(nf.Numerical(0.0, 0.5, label="p"))

    train, val = tiny_data(16)
    evaluator = nf.evaluator.Classification(train, val, epochs=1)
    exp = nf.Experiment(_space(build), evaluator, nf.strategy.DARTS(),
                        nf.ExperimentConfig(store=False))
    with pytest.raises(nf.StrategyError) as info:
        nf.run(exp)
    assert isinstance(info.value.__cause__, UnsupportedSpaceError)
    assert "Dropout at 'drop', label 'p'" in str(info.value.__cause__)


def test_a_function_evaluator_is_refused() -> None:
    exp = nf.Experiment(_space(lambda s: None), lambda model, trial: 0.0,
                        nf.strategy.RandomOneShot(), nf.ExperimentConfig(store=False))
    with pytest.raises(nf.StrategyError) as info:
        nf.run(exp)
    assert "Classification" in str(info.value.__cause__)
