"""SearchSpace: labels, shared decisions, conditional (nested) choices, constraints,
sampling, grids, validation messages and canonical hashing."""

from __future__ import annotations

import itertools
import pickle

import pytest

import nasflow as nf
from nasflow.space import Categorical, Constraint, Numerical, SearchSpace, SpaceBuilder


def three_labels() -> SearchSpace:
    return SearchSpace({
        "width": Categorical([8, 16, 32, 64]),
        "depth": Categorical([1, 2, 3]),
        "act": Categorical(["relu", "tanh", "gelu"]),
    })


def nested() -> SearchSpace:
    """``op`` chooses conv or pool; ``kernel`` only matters for conv."""
    b = SpaceBuilder()
    b.add(Categorical(["conv", "pool"], label="op"), label_hint="op")
    b.add(Categorical([3, 5], label="kernel"), label_hint="kernel",
          condition=b.gate("op", ["conv"]))
    b.add(Categorical([8, 16], label="width"), label_hint="width")
    return b.build()


def test_labels_come_from_keys_or_choices() -> None:
    space = SearchSpace({
        "lr": Numerical(1e-4, 1e-1, log=True),
        "bs": Categorical([32], label="batch"),
    })
    assert space.labels == ["lr", "batch"]
    assert isinstance(space.search_space()["lr"], Numerical)


def test_random_default_grid_size() -> None:
    space = three_labels()
    assert space.size() == 36
    grid = list(space.grid())
    assert len(grid) == 36 and len({nf.sample_hash(s) for s in grid}) == 36
    assert space.default() == {"width": 8, "depth": 1, "act": "relu"}
    assert space.random(seed=3) == space.random(seed=3)
    for s in grid:
        space.validate(s)


def test_same_object_is_one_decision_equal_labels_share() -> None:
    w = Categorical([8, 16], label="w")
    space = SearchSpace({"a": w, "b": w * 2})
    assert space.labels == ["w"]
    assert space.freeze({"w": 16}) == {"a": 16, "b": 32}
    shared = SearchSpace({"a": Categorical([1, 2], label="k"), "b": Categorical([1, 2], label="k")})
    assert shared.labels == ["k"]
    with pytest.raises(nf.SpaceBuildError, match="two different choices"):
        SearchSpace({"a": Categorical([1, 2], label="k"), "b": Categorical([1, 3], label="k")})


def test_nested_choices_appear_only_when_active() -> None:
    space = nested()
    samples = list(space.grid())
    assert samples == [
        {"op": "conv", "kernel": 3, "width": 8}, {"op": "conv", "kernel": 3, "width": 16},
        {"op": "conv", "kernel": 5, "width": 8}, {"op": "conv", "kernel": 5, "width": 16},
        {"op": "pool", "width": 8}, {"op": "pool", "width": 16},
    ]
    assert space.size() == 6
    for seed in range(30):
        s = space.random(seed=seed)
        assert ("kernel" in s) == (s["op"] == "conv")
    assert space.canonicalize({"op": "pool", "kernel": 3, "width": 8}) == {"op": "pool", "width": 8}
    with pytest.raises(nf.SampleValidationError, match="inactive") as err:
        space.validate({"op": "pool", "kernel": 3, "width": 8})
    assert err.value.label == "kernel"
    assert space.is_active("kernel", {"op": "conv"})
    assert not space.is_active("kernel", {"op": "pool"})


def test_fixed_labels_complete_a_sample() -> None:
    space = nested()
    for seed in range(20):
        s = space.random(seed=seed, fixed={"op": "conv"})
        assert s["op"] == "conv" and s["kernel"] in (3, 5)


def test_constraints_exclude_samples_everywhere() -> None:
    w = Categorical([8, 16, 32, 64], label="width")
    d = Categorical([1, 2, 3], label="depth")
    small = Constraint(lambda s: s["width"] * s["depth"] <= 64, label="small")
    space = SearchSpace({"width": w, "depth": d, "small": small})
    grid = list(space.grid())
    assert grid and all(s["width"] * s["depth"] <= 64 for s in grid)
    pairs = itertools.product([8, 16, 32, 64], [1, 2, 3])
    assert len(grid) == sum(1 for a, b in pairs if a * b <= 64)
    draws = [space.random(seed=i) for i in range(30)]
    assert all(s["width"] * s["depth"] <= 64 for s in draws)
    with pytest.raises(nf.SampleValidationError, match="constraint 'small'") as err:
        space.validate({"width": 64, "depth": 3})
    assert err.value.constraint
    expr_space = SearchSpace({"width": w, "depth": d},
                             constraints=[Constraint(w * d <= 32, label="e")])
    assert all(s["width"] * s["depth"] <= 32 for s in expr_space.grid())


def test_unsatisfiable_constraints_raise_clearly() -> None:
    never = Constraint(lambda s: False, label="never")
    space = SearchSpace({"x": Categorical([1, 2]), "no": never})
    with pytest.raises(nf.SpaceExhaustedError, match="never"):
        space.random(seed=0, max_tries=20)
    with pytest.raises(nf.SpaceExhaustedError):
        space.default()


@pytest.mark.parametrize(
    ("sample", "label", "words"),
    [
        ({"width": 65, "depth": 1, "act": "relu"}, "width", "65 is not one of the choices"),
        ({"width": 8, "act": "relu"}, "depth", "missing"),
        ({"width": 8, "depth": 1, "act": "relu", "widht": 8}, "widht", "no such label"),
        ({"width": 8, "depth": 1, "act": 3}, "act", "3 is not one of the choices"),
    ],
)
def test_validation_errors_name_label_value_and_allowed(sample, label, words) -> None:
    with pytest.raises(nf.SampleValidationError) as err:
        three_labels().validate(sample)
    message = str(err.value)
    assert err.value.label == label
    assert words in message and "allowed" in message


def test_a_sample_must_be_a_dict() -> None:
    with pytest.raises(nf.SampleValidationError, match="expected a dict"):
        three_labels().validate([8, 1, "relu"])  # type: ignore[arg-type]
    assert [8] not in three_labels()


def test_hash_is_canonical() -> None:
    space = three_labels()
    a = space.canonicalize({"act": "tanh", "depth": 2, "width": 8})
    b = space.canonicalize({"width": 8, "depth": 2, "act": "tanh"})
    assert nf.sample_hash(a) == nf.sample_hash(b)
    assert len(nf.sample_hash(a)) == 16
    assert nf.sample_hash({"x": 1}) != nf.sample_hash({"x": 1.0})


def test_numerical_grid_grows_with_granularity() -> None:
    space = SearchSpace({"lr": Numerical(0.0, 1.0)})
    assert len(list(space.grid(1))) == 3
    assert len(list(space.grid(2))) == 5
    assert space.size() is None


def test_space_survives_pickling() -> None:
    w = Categorical([8, 16], label="w")
    space = SearchSpace({"a": w, "b": w + 1})
    copy = pickle.loads(pickle.dumps(space))
    assert copy.freeze({"w": 16}) == {"a": 16, "b": 17}
