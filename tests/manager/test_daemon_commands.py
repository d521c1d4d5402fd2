"""The experiment commands on an experiment whose trials ran on a daemon's workers:
``nasflow log`` (the output the worker captured), ``nasflow export --intermediate`` and
``nasflow delete`` (issue 15: each command on in-process, local workers and a daemon)."""

from __future__ import annotations

import csv
import io
import secrets
import sys

import anyio
import pytest
from _mgr_helpers import daemon, free_port

import nasflow as nf
from nasflow.cli import main


def printing(model: None, trial: nf.Trial) -> float:
    print(f"trial {trial.id} says hello")
    print(f"trial {trial.id} warns", file=sys.stderr)
    for step in range(2):
        trial.report(step + trial.sample["a"], step=step)
    return float(trial.sample["a"])


async def test_log_export_and_delete_after_a_search_on_a_daemon(
        capsys: pytest.CaptureFixture[str]) -> None:
    token = secrets.token_urlsafe(16)
    async with daemon(free_port(), token, "--workers", "2") as d:
        exp = nf.Experiment({"a": nf.Categorical([0, 1, 2])}, printing,
                            nf.strategy.GridSearch(),
                            nf.ExperimentConfig(max_trials=3, concurrency=2, manager=d.url,
                                                token=token))
        with anyio.fail_after(120):  # a guard against hanging, not an assertion on time
            await exp.run()
    assert [t.state for t in exp.trials()] == [nf.TrialState.SUCCEEDED] * 3
    capsys.readouterr()

    def cli(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    assert cli("log", exp.id, "1") == (0, "trial 1 says hello\n", "")
    assert cli("log", exp.id, "2", "--stderr")[:2] == (0, "trial 2 warns\n")
    code, out, _ = cli("export", exp.id, "--intermediate", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((int(r["trial_id"]), int(r["step"])) for r in rows) == [
        (t, s) for t in range(3) for s in range(2)]
    assert cli("delete", exp.id, "--yes")[0] == 0
    assert not exp.directory.exists()
    code, _, err = cli("show", exp.id)
    assert code == 1 and exp.id in err
