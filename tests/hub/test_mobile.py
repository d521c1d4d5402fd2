"""ProxylessNAS and MobileNetV3Space: the published networks' parameter counts and MACs,
the space API, fx tracing and code export, the profilers, training a small variant, and
every strategy that can serve them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.fx as fx

import nasflow as nf
from nasflow import hub
from nasflow.exceptions import SampleValidationError

from ._export_check import assert_exports
from ._small import image_data, params, small_mobilenetv3, small_proxyless

SMALL: dict[str, Callable[[], nf.nn.ModelSpace]] = {
    "ProxylessNAS": small_proxyless, "MobileNetV3Space": small_mobilenetv3,
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


# --- the published networks --------------------------------------------------------------

# name -> (published parameters, published multiply-adds at 224x224, in millions)
PUBLISHED = {
    "proxyless-mobile": (hub.ProxylessNAS, 4.1, 320),
    "proxyless-gpu": (hub.ProxylessNAS, 7.1, 465),
    "proxyless-cpu": (hub.ProxylessNAS, 4.4, 439),
    "mobilenetv3-large-100": (hub.MobileNetV3Space, 5.4, 219),
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_networks_have_the_papers_size(name: str) -> None:
    cls, million_params, million_macs = PUBLISHED[name]
    space, sample = cls.searched(name)
    space.validate(sample)
    model = space.freeze(sample)
    count = nf.evaluator.count_params(model)
    # the papers give one decimal (MobileNetV3's 5.4M is torchvision's 5.48M truncated)
    assert abs(count / 1e6 - million_params) / million_params < 0.02
    macs = nf.evaluator.count_flops(model, torch.randn(1, 3, 224, 224)) / 2e6
    # the counter skips SE's elementwise gating (MobileNetV3: 216.6M counted vs 219M)
    assert macs == pytest.approx(million_macs, rel=0.015)
    model.eval()
    assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_mobilenetv3_large_matches_torchvisions_count_exactly() -> None:
    space, sample = hub.MobileNetV3Space.searched("mobilenetv3-large-100")
    assert nf.evaluator.count_params(space.freeze(sample)) == 5_483_032  # torchvision's


def test_an_unknown_published_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: .*'proxyless-mobile'"):
        hub.ProxylessNAS.searched("proxyless-watch")


# --- the space API -----------------------------------------------------------------------


def test_proxyless_labels_are_nnis() -> None:
    space = hub.ProxylessNAS()
    labels = space.search_space()
    assert [f"s{s}_depth" for s in range(2, 7)] == [k for k in labels if k.endswith("_depth")]
    assert labels["s2_i0"].values == ["k3e3", "k5e3", "k7e3", "k3e6", "k5e6", "k7e6"]
    assert labels["s2_depth"].values == [1, 2, 3, 4] and "s7_i0" in labels
    assert len(labels) == 5 + 4 * 5 + 1


def test_mobilenetv3_labels_are_nnis() -> None:
    labels = hub.MobileNetV3Space().search_space()
    assert labels["stem_ks"].values == [3, 5] and labels["s0_i0_ks"].values == [3, 5, 7]
    assert labels["s0_width_mult"].values == [0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0]
    assert "s1_width_mult" in labels and "s7_width_mult" in labels
    assert labels["s2_i0_se"].values == ["identity", "se"] and "s1_i0_se" not in labels
    assert labels["s3_i3_exp"].values == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("name", list(SMALL))
def test_random_grid_default_validate_freeze(name: str, tmp_path: Path) -> None:
    space = SMALL[name]()
    samples = [space.default(), space.random(1), next(iter(space.grid()))]
    for i, sample in enumerate(samples):
        space.validate(sample)
        model = space.freeze(sample)
        assert not any(isinstance(m, nf.nn.NasModule) for m in model.modules())
        fx.symbolic_trace(model)
        assert_exports(model, torch.randn(2, 3, 32, 32), tmp_path / str(i))
    bad = dict(samples[0])
    key = next(k for k in bad if k.endswith("_depth"))
    bad[key] = 9
    with pytest.raises(SampleValidationError, match=key):
        space.validate(bad)


@pytest.mark.parametrize("name", ["proxyless-mobile", "mobilenetv3-large-100"])
def test_published_networks_export_as_code(name: str, tmp_path: Path) -> None:
    cls = PUBLISHED[name][0]
    space, sample = cls.searched(name)
    assert_exports(space.freeze(sample), torch.randn(1, 3, 64, 64), tmp_path)


def test_a_full_size_random_mobilenetv3_sample_runs_and_exports(tmp_path: Path) -> None:
    space = hub.MobileNetV3Space(num_labels=10)
    model = space.freeze(space.random(3))
    assert_exports(model, torch.randn(1, 3, 64, 64), tmp_path)


def test_residuals_follow_the_widths() -> None:
    # stage 0's input and output share the stem's multiplier: same width, so a shortcut
    model = small_mobilenetv3().freeze(small_mobilenetv3().default())
    assert model.blocks[0].has_skip
    searched, sample = hub.MobileNetV3Space.searched("mobilenetv3-large-100")
    frozen = searched.freeze(sample)
    skips = [b.has_skip for stage in list(frozen.blocks)[1:6] for b in stage]
    assert skips == [False, True, False, True, True, False, True, True, True, False, True,
                     False, True, True]


# --- training and strategies ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(SMALL))
def test_a_small_variant_trains_on_generated_images(name: str) -> None:
    space = SMALL[name]()
    train, val = image_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=2, batch_size=16, lr=3e-3)
    exp = nf.Experiment(space, evaluator, nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=1, store=False))
    nf.run(exp)
    (trial,) = exp.trials()
    assert trial.state is nf.TrialState.SUCCEEDED and 0.0 <= trial.metric <= 1.0


MULTI_TRIAL: dict[str, Callable[[], nf.strategy.Strategy]] = {
    "Random": lambda: nf.strategy.Random(seed=0),
    "GridSearch": lambda: nf.strategy.GridSearch(),
    "RegularizedEvolution": lambda: nf.strategy.RegularizedEvolution(
        population_size=2, sample_size=1, seed=0),
    "TPE": lambda: nf.strategy.TPE(seed=0),
    "LocalSearch": lambda: nf.strategy.LocalSearch(seed=0),
    "PolicyBasedRL": lambda: nf.strategy.PolicyBasedRL(seed=0),
}


@pytest.mark.parametrize("strategy", list(MULTI_TRIAL))
@pytest.mark.parametrize("name", list(SMALL))
def test_multi_trial_strategies_run(name: str, strategy: str) -> None:
    space = SMALL[name]()
    exp = nf.Experiment(space, params, MULTI_TRIAL[strategy](),
                        nf.ExperimentConfig(max_trials=3, store=False))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 3
    space.validate(exp.export_top_models(1, formatter="dict")[0])


ONE_SHOT: dict[str, Callable[[], nf.strategy.Strategy]] = {
    "Proxyless": lambda: nf.strategy.Proxyless(),
    "DARTS": lambda: nf.strategy.DARTS(),
    "RandomOneShot": lambda: nf.strategy.RandomOneShot(),
    "ENAS": lambda: nf.strategy.ENAS(ctrl_steps=5),
}


@pytest.mark.parametrize("strategy", list(ONE_SHOT))
@pytest.mark.parametrize("name", list(SMALL))
def test_one_shot_strategies_export_samples_that_retrain(name: str, strategy: str) -> None:
    space = SMALL[name]()
    train, val = image_data()
    evaluator = nf.evaluator.Classification(train, val, epochs=1, batch_size=16)
    exp = nf.Experiment(space, evaluator, ONE_SHOT[strategy](),
                        nf.ExperimentConfig(store=False))
    nf.run(exp)
    assert exp.state is nf.ExperimentState.DONE
    sample = exp.export_top_models(1, formatter="dict")[0]
    space.validate(sample)
    model = space.freeze(sample)  # from scratch: fresh weights
    x, y = train
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses))) and min(losses[1:]) < losses[0]


def test_the_full_size_spaces_convert_to_supernets() -> None:
    from nasflow.strategy.oneshot._supernet import Supernet

    for space in (hub.ProxylessNAS(num_labels=10), hub.MobileNetV3Space(num_labels=10)):
        supernet = Supernet(space, differentiable=True, strategy="Proxyless")
        sample = space.random(0)
        supernet.set_hard(sample)
        supernet.model.eval()
        assert supernet.model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
        inherited = supernet.freeze(sample)
        assert [k for k, _ in inherited.named_parameters()] == [
            k for k, _ in space.freeze(sample).named_parameters()]
