"""PolicyBasedRL: conditional decisions, its state (weights, optimizer), learning."""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

import pytest

import nasflow as nf
from nasflow.strategy import PolicyBasedRL
from nasflow.testing import SimulatedEngine
from nasflow.testing._strategy_contract import conditional_space, conditional_table


async def test_samples_hold_exactly_the_active_labels() -> None:
    space = conditional_space()
    exp = SimulatedEngine.experiment(space, PolicyBasedRL(seed=0), conditional_table,
                                     nf.ExperimentConfig(max_trials=40, concurrency=3,
                                                         store=False))
    await exp.run()
    for t in exp.trials():
        space.validate(t.sample)
    assert {t.sample["depth"] for t in exp.trials()} == {1, 2, 3}


async def test_the_state_holds_weights_optimizer_and_generator() -> None:
    import torch

    strategy = PolicyBasedRL(seed=1, hidden_size=16)
    assert strategy.state_dict()["torch"] is None  # nothing built before the search
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=10, store=False))
    await exp.run()
    state = strategy.state_dict()
    blob = torch.load(io.BytesIO(base64.b64decode(state["torch"])), weights_only=True)
    assert "lstm.weight_ih" in blob["net"] and blob["net"]["lstm.weight_ih"].shape[1] == 16
    assert blob["optim"]["t"] >= 8  # one Adam step per result taken
    assert isinstance(blob["gen"], torch.Tensor)
    assert state["baseline"] is not None


async def test_a_state_saved_by_the_controller_before_it_was_shared_with_enas_loads() -> None:
    import torch

    strategy = PolicyBasedRL(seed=1, hidden_size=16)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=6, store=False))
    await exp.run()
    state = strategy.state_dict()
    blob = torch.load(io.BytesIO(base64.b64decode(state["torch"])), weights_only=True)
    net, m = blob["net"], blob["optim"]["m"]
    sizes = [t.shape[0] for k, t in net.items() if k.startswith("heads.") and k.endswith("bias")]
    # the layout before: cell, start, one embedding per decision, heads; Adam in that order
    cuts = [1]
    for n in sizes:
        cuts.append(cuts[-1] + n)

    def split(t: torch.Tensor) -> list[torch.Tensor]:
        return [t[:1]] + [t[a:b] for a, b in itertools.pairwise(cuts)]

    lstm = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    old_net = {f"cell.{k}": net[f"lstm.{k}"] for k in lstm}
    rows = split(net["embed.weight"])
    old_net["start"] = rows[0]
    old_net.update({f"embeds.{i}.weight": r for i, r in enumerate(rows[1:])})
    old_net.update({k: t for k, t in net.items() if k.startswith("heads.")})

    def old_moments(new: list[torch.Tensor]) -> list[torch.Tensor]:
        return new[1:5] + split(new[0]) + new[5:]

    old = {"net": old_net, "gen": blob["gen"],
           "optim": {"t": blob["optim"]["t"], "m": old_moments(m),
                     "v": old_moments(blob["optim"]["v"])}}
    buf = io.BytesIO()
    torch.save(old, buf)
    again = PolicyBasedRL(seed=1, hidden_size=16)
    again.load_state_dict({**state, "torch": base64.b64encode(buf.getvalue()).decode()})
    again._build(conditional_space())
    for k, t in net.items():
        assert torch.equal(again._net.state_dict()[k], t), k
    for mine, saved in zip(again._optim.m, m, strict=True):
        assert torch.equal(mine, saved)


def best_op_table(sample: dict[str, Any]) -> tuple[list[float], float]:
    return [1.0 if sample["op0"] == "conv" else 0.0], 1.0


async def test_the_controller_learns_what_pays() -> None:
    space = nf.SearchSpace({"op0": nf.Categorical(["conv", "sep", "pool", "skip"]),
                            "x": nf.Numerical(0.0, 1.0)})  # continuous: never exhausted
    exp = SimulatedEngine.experiment(space, PolicyBasedRL(seed=2, lr=0.05), best_op_table,
                                     nf.ExperimentConfig(max_trials=120, store=False))
    await exp.run()
    ops = [t.sample["op0"] for t in exp.trials()]
    assert ops[:8].count("conv") < 8  # it starts out uniform ...
    assert ops[-40:].count("conv") >= 36  # ... and ends up choosing what pays


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="samples_per_update"):
        PolicyBasedRL(samples_per_update=0)
    with pytest.raises(ValueError, match="baseline_decay"):
        PolicyBasedRL(baseline_decay=1.0)


async def test_a_used_strategy_pickles_as_its_state() -> None:
    import cloudpickle

    strategy = PolicyBasedRL(seed=3, hidden_size=8)
    exp = SimulatedEngine.experiment(conditional_space(), strategy, conditional_table,
                                     nf.ExperimentConfig(max_trials=6, store=False))
    await exp.run()
    copy = cloudpickle.loads(cloudpickle.dumps(strategy))
    assert copy.state_dict() == strategy.state_dict()
