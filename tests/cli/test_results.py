"""``nasflow list / show / trials / export`` and ``nf.list_experiments``: what they show,
that ``--json`` and ``--csv`` parse, that every export names its trial ids, and that a
damaged or crashed experiment is reported, not fatal."""

from __future__ import annotations

import ast
import csv
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import nasflow as nf
from nasflow.cli import main
from nasflow.cli._output import print_table

from .conftest import SPACE, Cli, evaluate


def test_list_shows_state_counts_and_best(cli: Cli, finished: str) -> None:
    low = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=3, objective="minimize"))
    nf.run(low)

    out = cli("list")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATE", "STARTED", "DURATION", "TRIALS", "BEST",
                              "WHERE"]
    assert [r.split()[0] for r in rows] == [finished, low.id]  # oldest first
    assert "grid" in rows[0] and "DONE" in rows[0] and "11/12 (1 failed)" in rows[0]
    assert "3.5000 ↑ #9" in rows[0]  # a=3, op=conv is trial 9 in grid order
    assert "0.0000 ↓ #2" in rows[1]  # minimize: the lowest (a=0, op=skip)

    data = json.loads(cli("list", "--json").stdout)
    by_id = {e["id"]: e for e in data}
    grid = by_id[finished]
    assert grid["state"] == "DONE" and grid["name"] == "grid"
    assert grid["trials"]["SUCCEEDED"] == 11 and grid["trials"]["FAILED"] == 1
    assert grid["total_trials"] == 12 and grid["best"] == 3.5 and grid["best_trial"] == 9
    assert grid["direction"] == "maximize" and grid["manager"] is None
    assert Path(grid["directory"]).name == finished and grid["error"] is None
    assert by_id[low.id]["direction"] == "minimize" and by_id[low.id]["best"] == 0.0

    assert json.loads(cli("list", "--json", "--state", "running").stdout) == []
    none = cli("list", "--state", "FAILED,STOPPED")
    assert none.returncode == 0 and "no experiments matching --state" in none.stdout
    assert cli("list", "--state", "sleeping").returncode == 2


def test_the_python_registry_matches(finished: str) -> None:
    (info,) = nf.list_experiments()
    assert isinstance(info, nf.ExperimentInfo)
    assert info.id == finished and info.state is nf.ExperimentState.DONE
    assert info.total == 12 and info.trials["FAILED"] == 1 and info.best == 3.5
    assert info.started_at is not None and info.ended_at is not None
    assert not info.damaged and info.duration is not None and info.duration >= 0


def test_a_damaged_experiment_is_listed_not_fatal(cli: Cli, finished: str, home: Path
                                                  ) -> None:
    experiments = home / "experiments"
    (experiments / "garbage").mkdir()
    (experiments / "garbage" / "experiment.db").write_bytes(b"not a database" * 100)
    (experiments / "hollow").mkdir()  # a directory without a database
    (experiments / "notes.txt").write_text("a stray file is not an experiment")

    infos = {i.id: i for i in nf.list_experiments()}
    assert set(infos) == {finished, "garbage", "hollow"}
    assert infos["garbage"].state == "DAMAGED" and "not a readable" in str(
        infos["garbage"].error)
    assert infos["hollow"].state == "DAMAGED" and "no experiment.db" in str(
        infos["hollow"].error)
    assert infos[finished].state is nf.ExperimentState.DONE

    out = cli("list")
    assert out.returncode == 0, out.stderr
    states = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()[1:]}
    assert states == {"garbage": "DAMAGED", "hollow": "DAMAGED", finished: "grid"}
    assert "garbage:" in out.stderr  # why, on stderr
    data = {e["id"]: e for e in json.loads(cli("list", "--json").stdout)}
    assert data["garbage"]["state"] == "DAMAGED" and data["garbage"]["error"]

    shown = cli("show", "garbage")
    assert shown.returncode == 1 and "damaged" in shown.stderr
    assert cli("trials", "garbage").returncode == 1


def test_a_running_experiment_whose_process_is_gone_is_crashed(cli: Cli, finished: str,
                                                               home: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    db = home / "experiments" / finished / "experiment.db"
    with sqlite3.connect(db) as conn:  # what a kill -9 leaves: RUNNING, owner gone
        conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                         [("\"RUNNING\"", "state"), (dead.stdout.strip(), "pid"),
                          ("null", "ended_at")])
    conn.close()
    (info,) = nf.list_experiments()
    assert info.state is nf.ExperimentState.CRASHED
    assert json.loads(cli("list", "--json").stdout)[0]["state"] == "CRASHED"
    shown = cli("show", finished)
    assert "CRASHED" in shown.stdout and f"nasflow resume {finished}" in shown.stdout
    stop = cli("stop", finished)
    assert stop.returncode == 1 and "not running (CRASHED)" in stop.stderr


def test_show_gives_the_summary_and_the_best_trials(cli: Cli, finished: str) -> None:
    out = cli("show", finished[:4], "--top", "3")  # a unique prefix is enough
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in (f"experiment  {finished}  (grid)", "DONE (", "GridSearch",
                     "2 labels: a, op", "max_trials=12", "12: 11 SUCCEEDED, 1 FAILED",
                     "3.5000 (trial 9)", "best 3 trials (maximize default)"):
        assert expected in text, expected
    table = text.split("best 3 trials")[1].splitlines()[2:]
    assert [line.split()[:3] for line in table] == [
        ["1", "9", "3.5000"], ["2", "10", "3.2500"], ["3", "6", "2.5000"]]

    data = json.loads(cli("show", finished, "--json", "--top", "2").stdout)
    assert data["id"] == finished and data["config"]["max_trials"] == 12
    assert [t["trial_id"] for t in data["top"]] == [9, 10]
    assert data["top"][0]["sample"] == {"a": 3, "op": "conv"}
    assert data["labels"] == ["a", "op"]


def test_trials_filter_sort_and_formats(cli: Cli, finished: str) -> None:
    failed = cli("trials", finished, "--state", "failed")
    assert failed.returncode == 0, failed.stderr
    (row,) = failed.stdout.splitlines()[1:]
    assert row.split()[:2] == ["11", "FAILED"] and "ValueError: skip needs a < 3" in row

    data = json.loads(cli("trials", finished, "--json", "--sort", "metric", "--limit",
                          "4").stdout)
    assert [t["trial_id"] for t in data] == [9, 10, 6, 7]
    assert data[0]["sample"] == {"a": 3, "op": "conv"} and data[0]["state"] == "SUCCEEDED"
    assert data[0]["duration"] is not None and data[0]["attempt"] == 0

    everything = json.loads(cli("trials", finished, "--json", "--sort", "metric").stdout)
    assert everything[-1]["trial_id"] == 11  # no metric: last
    assert everything[-1]["error"]["type"] == "ValueError"
    reverse = json.loads(cli("trials", finished, "--json", "--reverse").stdout)
    assert [t["trial_id"] for t in reverse] == list(range(11, -1, -1))

    out = cli("trials", finished, "--csv", "--state", "SUCCEEDED", "--state", "failed")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == 12 and list(rows[0])[:3] == ["trial_id", "state", "metric"]
    assert rows[9]["trial_id"] == "9" and rows[9]["a"] == "3" and rows[9]["op"] == "conv"
    assert float(rows[9]["metric"]) == 3.5 and rows[11]["metric"] == ""
    assert rows[11]["error"].startswith("ValueError")

    assert cli("trials", finished, "--json", "--csv").returncode == 2
    assert cli("trials", finished, "--state", "bogus").returncode == 2


def test_export_carries_trial_ids_in_both_formats(cli: Cli, finished: str) -> None:
    with nf.load_experiment(finished) as exp:
        expected = exp.export_top_models(3, formatter="dict")
        ids = [r.id for r in exp.export_top_models(3)]

    out = cli("export", finished, "--top", "3")
    assert out.returncode == 0, out.stderr
    assert ast.literal_eval(out.stdout) == expected  # paste-able: comments are ignored
    comments = [line.strip() for line in out.stdout.splitlines()
                if line.strip().startswith("# trial")]
    assert [c.split()[2].rstrip(":") for c in comments] == [str(i) for i in ids]
    assert "metric 3.5000" in comments[0]

    data = json.loads(cli("export", finished, "--top", "3", "--format", "json").stdout)
    assert [d["trial_id"] for d in data] == ids
    assert [d["sample"] for d in data] == expected
    assert data[0]["metric"] == 3.5 and data[0]["metrics"] == 3.5

    one = cli("export", finished)  # default: the best one
    assert ast.literal_eval(one.stdout) == expected[:1]
    assert cli("export", finished, "--top", "0").returncode == 2


def test_unknown_ids_say_what_exists(cli: Cli, finished: str) -> None:
    for command in (["show", "nope"], ["trials", "nope"], ["export", "nope"],
                    ["stop", "nope"], ["resume", "nope"]):
        out = cli(*command)
        assert out.returncode == 1, command
        assert "no experiment 'nope'" in out.stderr and finished in out.stderr


def test_rich_tables_on_a_terminal_keep_brackets() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    print_table(["TRIAL", "ARCHITECTURE"], [["7", "ops=[conv] skip=[0, 2]"]], out=out,
                right=["TRIAL"], styles=["green"])
    assert "ops=[conv] skip=[0, 2]" in out.getvalue()  # not swallowed as markup


def test_the_manager_command_is_wired_lazily(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "nasflow.manager._cli", None)  # as if not installed
    assert main(["manager", "--port", "1"]) == 1
    assert "nasflow manager is not available" in capsys.readouterr().err
    monkeypatch.undo()
    pytest.importorskip("nasflow.manager._cli")  # built alongside; skip until it exists
    with pytest.raises(SystemExit) as exit_:
        main(["manager", "--help"])  # reaches the manager's own parser, options and all
    assert exit_.value.code == 0
    assert "nasflow manager" in capsys.readouterr().out
