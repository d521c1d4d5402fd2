"""Engines run trials; strategies decide which. ``InProcessEngine`` runs them here."""

from __future__ import annotations

from nasflow.engine._base import Engine as Engine
from nasflow.engine._base import EngineSetup as EngineSetup
from nasflow.engine._base import Publish as Publish
from nasflow.engine._base import TrialSpec as TrialSpec
from nasflow.engine._base import build_model as build_model
from nasflow.engine._inprocess import InProcessEngine as InProcessEngine

__all__ = ["Engine", "EngineSetup", "InProcessEngine", "Publish", "TrialSpec", "build_model"]
