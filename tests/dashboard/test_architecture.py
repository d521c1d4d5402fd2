"""A trial's architecture in the dashboard: the frozen model's module tree with parameters
and FLOPs per module, and its cells as graphs (API and page)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.from_thread
import pytest
import torch
import torch.nn as nn

import nasflow as nf
from nasflow import nn as snn
from nasflow.dashboard import Dashboard
from nasflow.evaluator import count_flops, count_params

from .test_api import call
from .test_browser import wait_for

INPUT = (1, 4)


class ArchNet(snn.ModelSpace):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.block = snn.LayerChoice({
            "small": nn.Linear(8, 8),
            "big": nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8)),
        }, label="block")
        self.cell = snn.Cell({"id": nn.Identity(), "lin": nn.Linear(8, 8)}, num_nodes=2,
                             num_ops_per_node=1, num_predecessors=1, label="cell")
        self.head = nn.Linear(16, 2)  # the cell concatenates its two nodes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cell(self.block(self.stem(x))))


def size(model: Any, trial: nf.Trial) -> float:
    return float(count_params(model))


@pytest.fixture
def searched(home: Path, portal: anyio.from_thread.BlockingPortal
             ) -> Iterator[tuple[Dashboard, nf.Experiment]]:
    """A finished search of ArchNet (FLOPs counted on INPUT: a Profiled evaluator), served
    from its store as another process's experiment would be."""
    exp = nf.Experiment(ArchNet(), nf.evaluator.Profiled(nf.FunctionalEvaluator(size), INPUT,
                                                         metrics=["params"]),
                        nf.strategy.Random(seed=1),
                        nf.ExperimentConfig(max_trials=4, home=str(home)))
    portal.call(exp.run)
    assert len(exp.trials(["SUCCEEDED"])) == 4
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        yield board, exp


def test_the_tree_has_every_modules_parameters_and_flops_and_the_cell_graph(
        searched: tuple[Dashboard, nf.Experiment]) -> None:
    board, exp = searched
    for trial in exp.trials():
        status, body = call(board, f"/api/experiments/{exp.id}/trials/{trial.id}/architecture")
        assert status == 200, body
        model = ArchNet().freeze(trial.sample)
        assert body["params"] == count_params(model)
        assert body["flops"] == count_flops(model, INPUT)  # the Profiled evaluator's input
        assert body["input"] == list(INPUT)
        modules = {m["name"]: m for m in body["modules"]}
        assert set(modules) == {name for name, _ in model.named_modules()}
        for name, m in modules.items():
            sub = model.get_submodule(name)
            assert m["params"] == count_params(sub), name
            assert m["type"] == type(sub).__name__
        assert modules["stem"]["flops"] == 2 * 4 * 8  # a multiply-add is 2
        assert modules["head"]["flops"] == 2 * 16 * 2
        # a container that is never called itself has its children's FLOPs
        assert modules["cell.ops"]["flops"] == modules["cell"]["flops"] == sum(
            m["flops"] for n, m in modules.items() if n.count(".") == 2
            and n.startswith("cell.ops."))
        cell = modules["cell"]["cell"]
        assert cell["inputs"] == 1 and cell["outputs"] == [1, 2]
        assert [[e["from"] for e in node] for node in cell["nodes"]] == [
            [trial.sample["cell/input_1_0"][0]], [trial.sample["cell/input_2_0"][0]]]
        assert [node[0]["op"] for node in cell["nodes"]] == [
            {"id": "Identity", "lin": "Linear"}[trial.sample[f"cell/op_{n}_0"]] for n in (1, 2)]


def test_an_input_shape_in_the_request_counts_flops_on_it(
        searched: tuple[Dashboard, nf.Experiment]) -> None:
    board, exp = searched
    status, body = call(board, f"/api/experiments/{exp.id}/trials/0/architecture?input=3,4")
    assert status == 200
    model = ArchNet().freeze(exp.trials()[0].sample)
    assert body["flops"] == count_flops(model, (3, 4)) == 3 * count_flops(model, INPUT)
    status, body = call(board, f"/api/experiments/{exp.id}/trials/0/architecture?input=3,5")
    assert status == 200  # a wrong shape: the tree still, and why there are no FLOPs
    assert body["flops"] is None and "RuntimeError" in body["flops_error"]
    assert body["params"] == count_params(model)


@pytest.mark.parametrize("query", ["input=a,b", "input=1,0", "input=" + ",".join(["2"] * 9),
                                   "input=100000,100000"])
def test_a_bad_input_shape_is_refused_with_400(searched: tuple[Dashboard, nf.Experiment],
                                               query: str) -> None:
    board, exp = searched
    status, body = call(board, f"/api/experiments/{exp.id}/trials/0/architecture?{query}")
    assert status == 400
    assert "input" in body["error"]


def test_no_trial_no_token_and_no_model_space_are_refused(
        searched: tuple[Dashboard, nf.Experiment], home: Path,
        portal: anyio.from_thread.BlockingPortal) -> None:
    board, exp = searched
    path = f"/api/experiments/{exp.id}/trials/0/architecture"
    assert call(board, path, token=None)[0] == 401
    assert call(board, path, token="wrong")[0] == 403
    assert call(board, f"/api/experiments/{exp.id}/trials/99/architecture")[0] == 404
    flat = nf.Experiment({"x": nf.Categorical([1, 2])}, lambda m, t: float(t.sample["x"]),
                         nf.strategy.GridSearch(), nf.ExperimentConfig(home=str(home)))
    portal.call(flat.run)
    status, body = call(board, f"/api/experiments/{flat.id}/trials/0/architecture")
    assert status == 409
    assert "not a model space" in body["error"]


def test_the_page_shows_the_tree_of_the_trial_clicked(
        searched: tuple[Dashboard, nf.Experiment], browser: Any) -> None:
    board, exp = searched
    trial = exp.trials()[2]
    model = ArchNet().freeze(trial.sample)
    browser.get(f"{board.url}#/experiments/{exp.id}")
    wait_for(browser, f".trow[data-trial='{trial.id}']").click()
    wait_for(browser, "#arch-summary", "ArchNet")
    for name in ("", "stem", "block", "cell", "head"):
        row = wait_for(browser, f".arch-row[data-module='{name}']")
        assert row.get_attribute("data-params") == str(count_params(model.get_submodule(name)))
    stem = wait_for(browser, ".arch-row[data-module='stem']")
    assert stem.text.split()[-2:] == ["40", "64"]  # params, FLOPs
    edges = browser.find_elements("css selector", ".arch-cell svg.cell-graph path.cell-edge")
    assert len(edges) == 2
    assert sorted(int(e.get_attribute("data-to")) for e in edges) == [1, 2]
    shot = os.environ.get("NASFLOW_SCREENSHOT_ARCH")
    if shot:
        browser.find_element("css selector", "#arch-card").screenshot(shot)
