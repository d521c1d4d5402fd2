"""ExperimentConfig validates eagerly and names the field in every error."""

from __future__ import annotations

from typing import Any

import pytest

import nasflow as nf
from nasflow.config import parse_duration


def test_defaults_need_no_configuration() -> None:
    cfg = nf.ExperimentConfig()
    assert cfg.concurrency == 1 and cfg.max_trials is None and cfg.store is True
    assert cfg.directions is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), (1.5, 1.5), ("90", 90.0), ("90s", 90.0), ("1h30m", 5400.0), ("2d", 172800.0),
     ("500ms", 0.5), ("1.5h", 5400.0), (" 1h 30m ", 5400.0)],
)
def test_durations(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_trials", 0), ("max_trials", 2.5), ("max_trials", True), ("concurrency", 0),
        ("max_duration", "soon"), ("max_duration", -1), ("trial_timeout", "1x"),
        ("objective", "max"), ("objective", {"acc": "up"}), ("objective", {}),
        ("training_service", "cluster"), ("manager", "http://x"), ("gpus", [0, 0]),
        ("gpus", "0"), ("target_metric", float("nan")), ("store", "yes"),
        ("event_buffer", -1),
    ],
)
def test_bad_values_name_the_field(field, value) -> None:
    with pytest.raises(nf.ConfigError) as err:
        nf.ExperimentConfig(**{field: value})
    assert err.value.field == field
    assert field in str(err.value)


def test_normalised_values_and_round_trip() -> None:
    cfg = nf.ExperimentConfig(max_duration="1h", objective={"acc": "maximize"}, gpus=[0, 1],
                              token="secret")
    assert cfg.max_duration == 3600.0 and cfg.gpus == (0, 1)
    data = cfg.to_dict()
    assert data["token"] is None  # secrets never reach disk
    again = nf.ExperimentConfig.from_dict(data)
    assert again.max_duration == 3600.0 and again.directions == {"acc": "maximize"}


def test_unknown_field_suggests_the_right_one() -> None:
    with pytest.raises(nf.ConfigError, match="did you mean 'max_trials'"):
        nf.ExperimentConfig.from_dict({"max_trial": 3})
    assert nf.ExperimentConfig().replace(concurrency=3).concurrency == 3


# --- the Ray training service's fields -----------------------------------------------------

@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"trial_resources": {"CPU": 1}}, "trial_resources"),  # not with 'inprocess'
        ({"training_service": "local", "ray_address": "auto"}, "ray_address"),
        ({"training_service": "ray", "ray_address": "  "}, "ray_address"),
        ({"training_service": "ray", "trial_resources": {"CPU": -1}}, "trial_resources"),
        ({"training_service": "ray", "trial_resources": {"CPU": 0}}, "trial_resources"),
        ({"training_service": "ray", "trial_resources": {"GPU": True}}, "trial_resources"),
        ({"training_service": "ray", "trial_resources": [2]}, "trial_resources"),
        ({"training_service": "ray", "gpus": [0]}, "gpus"),
        ({"training_service": "ray", "manager": "ws://h:1"}, "manager"),
    ],
)
def test_bad_ray_settings_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(nf.ConfigError) as err:
        nf.ExperimentConfig(**changes)
    assert err.value.field == field


def test_ray_settings_round_trip() -> None:
    cfg = nf.ExperimentConfig(training_service="ray", ray_address="ray://head:10001",
                              trial_resources={"CPU": 2, "GPU": 0.5})
    assert cfg.trial_resources == {"CPU": 2.0, "GPU": 0.5}
    assert nf.ExperimentConfig.from_dict(cfg.to_dict()) == cfg
