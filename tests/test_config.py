"""ExperimentConfig validates eagerly and names the field in every error."""

from __future__ import annotations

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
