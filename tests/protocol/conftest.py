"""Fixtures: a worker and an experiment, each connected to a manager."""

from __future__ import annotations

import pytest

from nasflow.protocol import Role

from ._link import Link


@pytest.fixture
def link() -> Link:
    """A worker and its manager, connected and handshaken."""
    pair = Link()
    pair.connect()
    return pair


@pytest.fixture
def tuner_link() -> Link:
    """An experiment and the manager, connected and handshaken."""
    pair = Link(Role.EXPERIMENT)
    pair.connect()
    return pair
