"""Choices and expressions: domains, sampling, grids, checks, and the guards that stop a
choice from being used as a number while the space is defined."""

from __future__ import annotations

import pickle
import random

import pytest

import nasflow as nf
from nasflow.space import Categorical, CategoricalMultiple, Numerical


def resolve_with(values: dict[str, object]):
    return lambda choice: values[choice.label]


def test_categorical_basics() -> None:
    c = Categorical([16, 32, 64], label="width")
    assert c.default() == 16
    assert Categorical([16, 32], label="w", default=32).default() == 32
    assert c.grid() == [16, 32, 64]
    assert c.size() == 3
    rng = random.Random(0)
    assert {c.sample(rng) for _ in range(200)} == {16, 32, 64}
    assert c.check(32) is None
    assert "not one of the choices" in (c.check(33) or "")


def test_categorical_keeps_int_float_bool_apart() -> None:
    c = Categorical([1, 2.5, True, "a", None], label="mixed")
    assert c.index(1) == 0 and c.index(True) == 2 and c.index(None) == 4
    assert c.check(1.0) is not None  # 1.0 is not the value 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": []}, "at least one value"),
        ({"values": [1, 1]}, "unique"),
        ({"values": [1, 2], "default": 3}, "default"),
        ({"values": [1, 2], "weights": [0.5]}, "weights"),
        ({"values": [object()]}, "JSON"),
    ],
)
def test_categorical_rejects_bad_definitions(kwargs: dict, match: str) -> None:
    with pytest.raises(nf.SpaceBuildError, match=match):
        Categorical(label="x", **kwargs)


def test_weighted_categorical_follows_weights() -> None:
    c = Categorical(["a", "b"], label="x", weights=[0.9, 0.1])
    rng = random.Random(1)
    draws = [c.sample(rng) for _ in range(2000)]
    assert 0.85 < draws.count("a") / len(draws) < 0.95


def test_numerical_uniform_log_and_quantized() -> None:
    lr = Numerical(1e-4, 1e-1, log=True, label="lr")
    rng = random.Random(0)
    draws = [lr.sample(rng) for _ in range(2000)]
    assert all(1e-4 <= d <= 1e-1 for d in draws)
    below = sum(d < 3.16e-3 for d in draws) / len(draws)  # geometric midpoint
    assert 0.45 < below < 0.55
    assert lr.grid(1) == [1e-4, pytest.approx(10**-2.5), 1e-1]
    assert lr.size() is None

    q = Numerical(0, 10, quantize=2, label="q")
    assert q.is_int
    assert q.grid(3) == [0, 2, 4, 6, 8, 10]
    assert q.size() == 6
    assert all(isinstance(q.sample(rng), int) for _ in range(50))
    assert q.check(3) is not None and q.check(4) is None
    assert q.check(11) is not None and q.check("4") is not None


@pytest.mark.parametrize(
    ("low", "high", "kwargs"),
    [(1, 1, {}), (2, 1, {}), (0, 1, {"log": True}), (0, 1, {"quantize": -1}),
     (0, float("inf"), {})],
)
def test_numerical_rejects_bad_bounds(low: float, high: float, kwargs: dict) -> None:
    with pytest.raises(nf.SpaceBuildError):
        Numerical(low, high, label="x", **kwargs)


def test_categorical_multiple() -> None:
    c = CategoricalMultiple([0, 1, 2], n_chosen=2, label="skip")
    assert c.grid() == [[0, 1], [0, 2], [1, 2]]
    assert c.size() == 3
    assert c.canonical([2, 0]) == [0, 2]
    assert c.check([0, 0]) is not None
    assert c.check([0]) is not None
    assert c.check(0) is not None
    free = CategoricalMultiple(["a", "b"], label="any")
    assert free.size() == 3
    assert free.grid() == [["a"], ["b"], ["a", "b"]]


def test_expressions_resolve_when_frozen() -> None:
    w = Categorical([16, 32], label="w")
    d = Categorical([1, 2], label="d")
    values = {"w": 32, "d": 2}
    assert (w * 2).evaluate(resolve_with(values)) == 64
    assert (2 * w + d).evaluate(resolve_with(values)) == 66
    assert (w // d - 1).evaluate(resolve_with(values)) == 15
    assert (w / 4).int().evaluate(resolve_with(values)) == 8
    assert (-w).evaluate(resolve_with(values)) == -32
    assert (w >= 32).evaluate(resolve_with(values)) is True
    assert [c.label for c in (w * d + w).leaves()] == ["w", "d", "w"]


@pytest.mark.parametrize(
    "use", [bool, int, float, lambda x: list(x), lambda x: range(x), lambda x: [0][x]]
)
def test_a_choice_is_not_a_number_until_frozen(use) -> None:
    w = Categorical([16, 32], label="width")
    with pytest.raises(nf.SpaceBuildError, match="search-space decision"):
        use(w * 2)


def test_choices_hash_by_identity_and_pickle() -> None:
    a = Categorical([1, 2], label="a")
    b = Categorical([1, 2], label="a")
    assert len({a, b}) == 2
    c = pickle.loads(pickle.dumps(a * 3))
    assert c.evaluate(lambda ch: 2) == 6
