"""``raise SystemExit`` / ``KeyboardInterrupt`` in an in-process evaluator (issue 10).

The outside probe: from a sync evaluator the experiment was stored FAILED and the
interpreter never exited (the evaluator's thread died with the exception, the loop never
heard back). On local workers the same trial fails alone and the search goes on; the
in-process engine now does the same. Run in a subprocess: the defect is a hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXITING = textwrap.dedent("""
    import sys
    import nasflow as nf

    kind = sys.argv[1]

    def raise_it(trial):
        if trial.sample["x"] == 1:
            raise SystemExit(3)
        if trial.sample["x"] == 2:
            raise KeyboardInterrupt
        return float(trial.sample["x"])

    def evaluate(model, trial):
        return raise_it(trial)

    async def evaluate_async(model, trial):
        return raise_it(trial)

    exp = nf.Experiment({"x": nf.Categorical(list(range(5)))},
                        evaluate if kind == "sync" else evaluate_async,
                        nf.strategy.GridSearch())
    nf.run(exp)
    print(exp.state.value)
    for t in exp.trials():
        print(t.sample["x"], t.state.value, t.error.type if t.error else "-",
              (t.error.message if t.error else "-").replace("\\n", " "))
""")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_system_exit_in_an_evaluator_fails_that_trial_alone(tmp_path: Path, home: Path,
                                                            kind: str) -> None:
    script = tmp_path / "exiting.py"
    script.write_text(EXITING)
    env = {**os.environ, "NASFLOW_HOME": str(home)}
    # the timeout bounds the defect (the interpreter never exited), it times nothing
    proc = subprocess.run([sys.executable, str(script), kind], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "DONE", proc.stdout
    rows = {int(line.split()[0]): line.split(maxsplit=3)[1:] for line in lines[1:]}
    assert sorted(rows) == [0, 1, 2, 3, 4]
    assert rows[1][:2] == ["FAILED", "SystemExit"] and "SystemExit(3)" in rows[1][2]
    assert rows[2][:2] == ["FAILED", "KeyboardInterrupt"]
    assert all(rows[x][0] == "SUCCEEDED" for x in (0, 3, 4)), rows
