"""Sample moves shared by the strategies respect conditional labels and constraints."""

from __future__ import annotations

import random

import nasflow as nf
from nasflow.space import sample_hash
from nasflow.strategy._sampling import SpaceTracker, crossover, draw_unseen, mutate, neighbours
from nasflow.testing._strategy_contract import conditional_space, constrained_space


def _diff(a: dict, b: dict) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k, object()) != b.get(k, object())}


def test_mutation_changes_a_label_and_completes_or_drops_its_children() -> None:
    space = conditional_space()
    rng = random.Random(0)
    parent = {"width": 8, "depth": 3, "op0": "conv", "op1": "sep", "op2": "pool"}
    depths = set()
    for _ in range(300):
        child = mutate(space, parent, rng, prob=0.05)
        assert child is not None and child != parent
        space.validate(child)  # exactly the active labels, nothing else
        depths.add(child["depth"])
        if child["depth"] == 1:
            assert "op1" not in child and "op2" not in child
    assert depths == {1, 2, 3}
    shallow = {"width": 8, "depth": 1, "op0": "conv"}
    grown = [c for c in (mutate(space, shallow, rng, 0.05) for _ in range(200))
             if c is not None and c["depth"] == 3]
    assert grown and all({"op1", "op2"} <= c.keys() for c in grown)


def test_crossover_mixes_parents_into_valid_samples() -> None:
    space = conditional_space()
    rng = random.Random(1)
    a = {"width": 8, "depth": 1, "op0": "conv"}
    b = {"width": 32, "depth": 3, "op0": "skip", "op1": "sep", "op2": "pool"}
    for _ in range(50):
        child = crossover(space, a, b, rng)
        assert child is not None
        space.validate(child)
        assert child["width"] in (8, 32) and child["op0"] in ("conv", "skip")


def test_neighbours_differ_in_one_decision_and_are_unique() -> None:
    space = conditional_space()
    sample = {"width": 16, "depth": 2, "op0": "conv", "op1": "sep"}
    near = neighbours(space, sample, random.Random(0))
    assert len({sample_hash(n) for n in near}) == len(near)
    for n in near:
        space.validate(n)
        changed = _diff(sample, n)
        # one label; a depth change also adds or drops the ops it gates
        assert len(changed) == 1 or ("depth" in changed and changed <= {"depth", "op1", "op2"})
    # 2 other widths, 2 other depths, 3 other ops for each of op0 and op1
    assert len(near) == 2 + 2 + 3 + 3


def test_neighbours_of_numbers_and_subsets() -> None:
    space = nf.SearchSpace({
        "q": nf.Numerical(8, 64, quantize=8),
        "lr": nf.Numerical(1e-4, 1e-1, log=True),
        "pick": nf.CategoricalMultiple(["a", "b", "c"]),
        "two": nf.CategoricalMultiple(["a", "b", "c", "d"], n_chosen=2),
    })
    sample = {"q": 8, "lr": 1e-3, "pick": ["a"], "two": ["a", "b"]}
    near = neighbours(space, sample, random.Random(0))
    qs = {n["q"] for n in near if _diff(sample, n) == {"q"}}
    assert qs == {16}  # 0 is out of range
    lrs = [n["lr"] for n in near if _diff(sample, n) == {"lr"}]
    assert len(lrs) == 2 and min(lrs) < 1e-3 < max(lrs)
    picks = [n["pick"] for n in near if _diff(sample, n) == {"pick"}]
    assert sorted(picks) == [["a", "b"], ["a", "c"]]  # "a" cannot go: never empty
    twos = [n["two"] for n in near if _diff(sample, n) == {"two"}]
    assert len(twos) == 4 and all(len(t) == 2 for t in twos)


def test_draw_unseen_finds_the_last_samples_and_then_none() -> None:
    space = constrained_space()
    valid = list(space.grid())
    seen = {sample_hash(s) for s in valid[1:]}
    rng = random.Random(0)
    assert draw_unseen(space, rng, lambda s: sample_hash(s) in seen) == valid[0]
    seen.add(sample_hash(valid[0]))
    assert draw_unseen(space, rng, lambda s: sample_hash(s) in seen) is None


def test_tracker_counts_only_unconstrained_finite_spaces() -> None:
    assert SpaceTracker(conditional_space()).size == 252
    assert SpaceTracker(constrained_space()).size is None
    assert SpaceTracker(nf.SearchSpace({"x": nf.Numerical(0, 1)})).size is None
