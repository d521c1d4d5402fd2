"""Shared fixtures: every test gets its own NASFLOW_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private ``NASFLOW_HOME`` for the test (no test touches ``~/.nasflow``)."""
    path = tmp_path / "nasflow-home"
    monkeypatch.setenv("NASFLOW_HOME", str(path))
    return path
