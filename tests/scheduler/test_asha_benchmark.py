"""The ASHA compute benchmark runs (on its synthetic table) and prints its JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "asha_compute.py"


def test_the_benchmark_prints_its_figures() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--synthetic", "--trials", "40", "--seeds", "1",
         "--more", "2"], capture_output=True, text=True, check=True, timeout=120)
    doc = json.loads(out.stdout)
    assert doc["benchmark"] == "asha_compute" and doc["table"].startswith("synthetic")
    assert doc["rungs_after_epochs"] == [1, 3, 9]  # grace 1, eta 3, below 10 epochs
    for name in ("asha", "hyperband"):
        run = doc["per_seed"][0][name]
        assert 0 < run["same_trials"]["compute_ratio"] < 1
        assert isinstance(doc["summary"][name]["target_met"], bool)
