"""A one-shot search with ``training_service="ray"``: its supernet trains as one Ray task
with the resources asked (``trial_resources``), on a node of the cluster, and its results
land in the store as usual.

The space is a module-level class of this module: the task imports it by reference.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.events import StrategyProgress


class Keep(snn.ModelSpace):
    """``y`` is linear in ``x``: keeping ``x`` fits it, destroying it cannot."""

    def __init__(self) -> None:
        super().__init__()
        self.op = snn.LayerChoice({"destroy": nn.Tanhshrink(), "keep": nn.Identity()},
                                  label="op")
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(x))  # type: ignore[no-any-return]


def _data() -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 3.0, 0.5])
    return (x[:96], y[:96]), (x[96:], y[96:])


async def test_a_one_shot_search_trains_its_supernet_as_one_ray_task(cluster: Any) -> None:
    import ray

    train, val = _data()
    evaluator = nf.evaluator.Regression(train, val, epochs=2, batch_size=16, lr=0.05)
    cfg = nf.ExperimentConfig(training_service="ray", trial_resources={"CPU": 2})
    exp = nf.Experiment(Keep(), evaluator, nf.strategy.DARTS(top_k=2), cfg)
    progress: list[dict[str, Any]] = []
    with anyio.fail_after(180):
        async with anyio.create_task_group() as tg:
            async def follow() -> None:
                async for ev in exp.events():
                    if isinstance(ev, StrategyProgress):
                        progress.append(dict(ev.values))
            tg.start_soon(follow)
            await exp.run()
    assert exp.state is nf.ExperimentState.DONE
    (placed,) = [p for p in progress if p.get("phase") == "placed"]
    assert placed["pid"] != os.getpid()  # not in the experiment process...
    head = ray.get_runtime_context().get_node_id()
    assert placed["ray_node"] != head  # ...on a worker node (the head has no CPUs)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes()}
    assert nodes[placed["ray_node"]].get("CPU") == 2.0  # a node that holds what it asked
    # the task's epochs came back as the search's own progress, and the checkpoint
    assert [p["epoch"] for p in progress if p.get("phase") == "train"] == [1, 2]
    assert (exp.directory / "strategy").is_dir()
    # the architectures were recorded in the store as usual
    trials = exp.trials()
    assert len(trials) == 2
    assert {t.state for t in trials} == {nf.TrialState.SUCCEEDED}
    with nf.load_experiment(exp.id) as saved:
        assert [t.sample for t in saved.trials()] == [t.sample for t in trials]
