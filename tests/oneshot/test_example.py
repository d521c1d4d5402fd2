"""examples/oneshot_digits.py runs as documented (in its quick mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_digits_example_searches_exports_and_retrains(home: Path) -> None:
    env = {**os.environ, "NASFLOW_HOME": str(home), "NASFLOW_EXAMPLE_QUICK": "1"}
    out = subprocess.run([sys.executable, "examples/oneshot_digits.py"], capture_output=True,
                         text=True, timeout=240, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "epoch  1/1" in out.stdout
    assert out.stdout.count("  rank ") == 5
    assert "retrained from scratch: test accuracy" in out.stdout
