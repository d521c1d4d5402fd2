"""Real user scripts in subprocesses: ``__main__`` spaces, and dying experiment processes."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
from _mgr_helpers import alive, wait_exited
from anyio.streams.text import TextReceiveStream

SCRIPTS = Path(__file__).parent / "scripts"


async def test_a_space_and_evaluator_defined_in_main(tmp_path: Path) -> None:
    """NNI: "Cannot use a path to identify something from __main__". Here the model space
    and the evaluator of a script (run from another directory, importing a module next to
    it) reach the workers."""
    env = {**os.environ, "NASFLOW_HOME": str(tmp_path / "home")}
    with anyio.fail_after(120):
        result = await anyio.run_process(
            [sys.executable, str(SCRIPTS / "main_space.py")], cwd=tmp_path, env=env,
            check=False,
        )
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, err
    assert ("RESULT [('SUCCEEDED', 0.4), ('SUCCEEDED', 0.8), ('SUCCEEDED', 0.9), "
            "('SUCCEEDED', 1.3)]") in out, out + err


async def test_workers_leave_with_their_experiment_process(tmp_path: Path) -> None:
    env = {**os.environ, "NASFLOW_HOME": str(tmp_path / "home")}
    with anyio.fail_after(60):
        process = await anyio.open_process(
            [sys.executable, str(SCRIPTS / "embedded_then_killed.py")], cwd=tmp_path, env=env,
            stderr=None,
        )
        async with process:
            assert process.stdout is not None
            pids: set[int] = set()
            text = ""
            async for chunk in TextReceiveStream(process.stdout):
                text += chunk
                pids = {int(line.split()[1]) for line in text.splitlines()
                        if line.startswith("PID ") and line.count(" ") == 1}
                if len(pids) == 2 and text.endswith("\n"):
                    break
            process.send_signal(signal.SIGKILL)  # no chance to clean up
            await process.wait()
        for pid in pids:
            await wait_exited(pid)
            assert not alive(pid)
