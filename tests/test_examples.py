"""The README example, the examples/ scripts and the demo command run as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], home: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NASFLOW_HOME": str(home), "NASFLOW_EXAMPLE_QUICK": "1"}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=ROOT)


def test_readme_example(tmp_path: Path, home: Path) -> None:
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert code is not None
    script = tmp_path / "readme.py"
    script.write_text(code.group(1).replace("max_trials=6", "max_trials=2"))
    out = run([sys.executable, str(script)], home)
    assert out.returncode == 0, out.stderr
    assert "'width'" in out.stdout and "TrialRecord(id=" in out.stdout


@pytest.mark.parametrize(
    ("script", "expect"),
    [
        ("examples/hpo_torch_free.py", "error"),
        ("examples/notebook_style.py", "reloaded: DONE"),
        ("examples/async_service.py", "final: {"),
        ("examples/hub_nb201.py", "DARTS best: |"),
    ],
)
def test_examples(script: str, expect: str, home: Path) -> None:
    out = run([sys.executable, script, "--self-test"], home)
    assert out.returncode == 0, out.stderr[-3000:]
    assert expect in out.stdout


def test_demo_command(home: Path) -> None:
    out = run([sys.executable, "-m", "nasflow", "demo", "--trials", "2", "--epochs", "1",
               "--plain"], home)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best 2 architectures" in out.stdout
    assert "trial    1 SUCCEEDED" in out.stdout or "trial    0 SUCCEEDED" in out.stdout


def test_cli_help_and_usage_errors(home: Path) -> None:
    out = run([sys.executable, "-m", "nasflow", "--help"], home)
    assert out.returncode == 0 and "demo" in out.stdout
    out = run([sys.executable, "-m", "nasflow", "demo", "--help"], home)
    assert out.returncode == 0 and "examples:" in out.stdout
    assert run([sys.executable, "-m", "nasflow"], home).returncode == 2
    assert run([sys.executable, "-m", "nasflow", "nope"], home).returncode == 2
