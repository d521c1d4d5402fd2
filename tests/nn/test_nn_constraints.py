"""Constraints on model spaces: functions and expressions, checked by sampling and freeze."""

from __future__ import annotations

import pytest
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


class Net(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        width = nf.Categorical([4, 8], label="width")
        self.fc = snn.Linear(2, width)
        self.blocks = snn.Repeat(lambda i: snn.Linear(width, width), (1, 3), label="depth")
        self.add_constraint("budget", width * self.blocks.depth_choice <= 16)


def test_expression_constraint_filters_grid_and_random() -> None:
    net = Net()
    allowed = [(s["width"], s["depth"]) for s in net.grid()]
    assert allowed == [(4, 1), (4, 2), (4, 3), (8, 1), (8, 2)]
    for seed in range(20):
        s = net.random(seed=seed)
        assert s["width"] * s["depth"] <= 16


def test_violated_constraint_is_a_sample_validation_error() -> None:
    with pytest.raises(nf.SampleValidationError) as info:
        Net().freeze({"width": 8, "depth": 3})
    assert info.value.constraint and info.value.label == "budget"


def test_function_constraint_added_after_init_rebuilds_the_space() -> None:
    net = Net()
    net.add_constraint("narrow", lambda s: s["width"] == 4)
    assert {s["width"] for s in net.grid()} == {4}
    assert [c.label for c in net.search_space_object().constraints] == ["budget", "narrow"]


def test_duplicate_constraint_labels_are_rejected() -> None:
    net = Net()
    with pytest.raises(nf.SpaceBuildError, match=r"'budget'"):
        net.add_constraint("budget", lambda s: True)


def test_constraint_on_a_choice_the_model_does_not_use() -> None:
    class Bad(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)
            self.add_constraint("c", nf.Categorical([1, 2]) > 1)

    with pytest.raises(nf.SpaceBuildError, match=r"constraint 'c'.*add_choice"):
        Bad()
