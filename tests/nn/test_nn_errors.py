"""SpaceBuildError: a space that cannot be built says which module, which argument, why."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn


def _build(body: object) -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            body(self, nf.Categorical([4, 8], label="width"))  # type: ignore[operator]

    Net()


def test_plain_batchnorm_given_a_choice() -> None:
    def body(self: nn.Module, width: object) -> None:
        self.bn = nn.BatchNorm2d(width)

    with pytest.raises(nf.SpaceBuildError) as info:
        _build(body)
    message = str(info.value)
    for part in ("torch.nn.BatchNorm2d", "'num_features'", "label 'width'",
                 "nasflow.nn.BatchNorm2d", "nasflow.nn.searchable(torch.nn.BatchNorm2d)"):
        assert part in message, part
    assert isinstance(info.value.__cause__, TypeError)


def test_plain_conv_misleading_value_error_is_explained() -> None:
    def body(self: nn.Module, width: object) -> None:
        self.conv = nn.Conv2d(width, 8, 3)

    with pytest.raises(nf.SpaceBuildError, match=r"torch.nn.Conv2d.*label 'width'.*"
                       r"'in_channels'.*nasflow.nn.Conv2d.*divisible by groups"):
        _build(body)


def test_plain_linear_given_an_expression() -> None:
    def body(self: nn.Module, width: object) -> None:
        self.fc = nn.Linear(width * 2, 3)  # type: ignore[operator]

    with pytest.raises(nf.SpaceBuildError, match=r"torch.nn.Linear.*\* 2.*'in_features'"):
        _build(body)


class UsesWidth(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.buf = torch.zeros(width)


def test_user_module_given_a_choice_is_told_to_use_searchable() -> None:
    def body(self: nn.Module, width: object) -> None:
        self.block = UsesWidth(width)  # type: ignore[arg-type]

    with pytest.raises(nf.SpaceBuildError, match=r"UsesWidth got .*'width'.*"
                       r"nasflow.nn.searchable\(.*UsesWidth\)"):
        _build(body)


def test_innermost_plain_module_is_blamed() -> None:
    class Outer(nn.Module):
        def __init__(self, width: object) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(width)

    def body(self: nn.Module, width: object) -> None:
        self.outer = Outer(width)

    with pytest.raises(nf.SpaceBuildError, match=r"torch.nn.BatchNorm1d.*nasflow.nn.BatchNorm1d"):
        _build(body)


def test_unrelated_errors_are_not_rewritten() -> None:
    class Buggy(nn.Module):
        def __init__(self, width: object) -> None:
            super().__init__()
            raise KeyError("a plain bug")

    def body(self: nn.Module, width: object) -> None:
        self.b = Buggy(width)

    with pytest.raises(KeyError, match=r"a plain bug"):
        _build(body)


def test_using_a_choice_as_a_value_in_init_keeps_its_own_message() -> None:
    def body(self: nn.Module, width: object) -> None:
        if width > 4:  # type: ignore[operator]
            pass

    with pytest.raises(nf.SpaceBuildError, match=r"truth value"):
        _build(body)


def test_forgetting_super_init_is_reported() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            pass

    with pytest.raises(nf.SpaceBuildError, match=r"super\(\).__init__\(\)"):
        Net()


def test_space_methods_inside_init_explain_when_the_space_exists() -> None:
    class Net(snn.ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.size()

    with pytest.raises(nf.SpaceError, match=r"built when its __init__ returns"):
        Net()
