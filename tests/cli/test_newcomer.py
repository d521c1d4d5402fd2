"""What a newcomer tripped over in the CLI and the progress view (issue 17), each pinned."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.cli.conftest import TIMEOUT, Cli, env_for

import nasflow as nf
from nasflow._kernel import TrialRecord, TrialState
from nasflow.cli._progress import ProgressView, describe_metric
from nasflow.events import (
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialStarted,
    TrialSubmitted,
)


def test_export_takes_json_like_the_other_commands(cli: Cli, finished: str) -> None:
    flag = cli("export", finished, "--top", "2", "--json")
    assert flag.returncode == 0, flag.stderr
    assert json.loads(flag.stdout) == json.loads(
        cli("export", finished, "--top", "2", "--format", "json").stdout)


def _stopped_experiment_in(folder: Path, home: Path) -> str:
    """An experiment built from ``folder/space.py`` (as `nasflow run` users split it),
    stopped after its first trial; returns its id."""
    (folder / "space.py").write_text(textwrap.dedent("""\
        import nasflow as nf

        SPACE = {"a": nf.Categorical([0, 1, 2, 3, 4, 5])}


        def evaluate(model, trial):
            return float(trial.sample["a"])
        """))
    script = textwrap.dedent("""\
        import anyio
        import nasflow as nf
        from space import SPACE, evaluate

        exp = nf.Experiment(SPACE, evaluate, nf.strategy.GridSearch(),
                            nf.ExperimentConfig(max_trials=6))

        async def main():
            async with exp:
                async for ev in exp.events(nf.events.TrialEnded):
                    await exp.stop()
                    break

        anyio.run(main)
        print(exp.id, exp.state.value)
        """)
    out = subprocess.run([sys.executable, "-c", script], cwd=folder, env=env_for(home),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    exp_id, state = out.stdout.split()
    assert state == "STOPPED"
    return exp_id


def test_resume_from_the_folder_of_space_py_and_the_hint_names_file(
        tmp_path: Path, home: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    exp_id = _stopped_experiment_in(folder, home)
    # the console script, as a user types it: its sys.path[0] is .venv/bin, not the folder
    nasflow = str(Path(sys.executable).parent / "nasflow")
    elsewhere = subprocess.run([nasflow, "resume", exp_id, "--plain"], cwd=tmp_path,
                               env=env_for(home), capture_output=True, text=True,
                               timeout=TIMEOUT)
    assert elsewhere.returncode == 1
    assert "No module named 'space'" in elsewhere.stderr
    assert "nasflow resume ID --file FILE.py" in elsewhere.stderr
    here = subprocess.run([nasflow, "resume", exp_id, "--plain"], cwd=folder,
                          env=env_for(home), capture_output=True, text=True, timeout=TIMEOUT)
    assert here.returncode == 0, here.stderr
    with nf.load_experiment(exp_id) as res:
        assert res.state is nf.ExperimentState.DONE
        assert len(res.trials(["SUCCEEDED"])) == 6


def test_run_file_errors_read_well(cli: Cli, tmp_path: Path) -> None:
    yml = tmp_path / "exp.yml"
    yml.write_text("experimentName: nni\n")
    out = cli("run", str(yml))
    assert out.returncode == 1
    assert "nasflow run takes a .py file" in out.stderr
    assert "in one in one" not in out.stderr and "returns one in one" not in out.stderr

    bad = tmp_path / "typo.py"
    bad.write_text("import nasflow as nf\n\ndef f(:\n    pass\n")
    out = cli("run", str(bad))
    assert out.returncode == 1
    assert "SyntaxError" in out.stderr and f'File "{bad}", line 3' in out.stderr
    assert "nasflow" not in out.stderr.replace(str(bad), "").split("error:")[0]
    assert "runpy" not in out.stderr and "Traceback" not in out.stderr


def test_a_live_trial_has_its_directory_as_a_loaded_one() -> None:
    exp = nf.Experiment({"a": nf.Categorical([1, 2])}, lambda model, trial: 1.0,
                        nf.strategy.GridSearch())
    nf.run(exp)
    live = [t.directory for t in exp.trials()]
    assert None not in live
    with nf.load_experiment(exp.id) as res:
        assert live == [t.directory for t in res.trials()]


def test_show_says_one_label(cli: Cli) -> None:
    exp = nf.Experiment({"a": nf.Categorical([1, 2])}, lambda model, trial: 1.0,
                        nf.strategy.GridSearch())
    nf.run(exp)
    out = cli("show", exp.id)
    assert "1 label: a" in out.stdout and "1 labels" not in out.stdout


# --- the progress view --------------------------------------------------------------------

async def _feed(view: ProgressView, events: list[object]) -> None:
    async def stream():  # type: ignore[no-untyped-def]
        for ev in events:
            yield ev

    await view.run(stream())  # type: ignore[arg-type]


def _trial(i: int, *, steps: int, value: object, metric: float) -> list[object]:
    return [TrialSubmitted(time=0.0, trial_id=i, sample={"a": i}, hash=str(i)),
            TrialStarted(time=0.0, trial_id=i),
            *[IntermediateMetric(time=0.0, trial_id=i, step=s, value=0.5, metric=0.5)
              for s in range(steps)],
            FinalMetric(time=0.0, trial_id=i, value=value, metric=metric),
            TrialEnded(time=0.0, trial_id=i, state=TrialState.SUCCEEDED)]


async def test_progress_counts_epochs_as_people_do_and_no_misleading_running() -> None:
    out = io.StringIO()
    view = ProgressView(total=2, out=out, live=False, epochs=8)
    await _feed(view, _trial(0, steps=8, value=0.9, metric=0.9)
                + _trial(1, steps=8, value=0.8, metric=0.8))
    lines = out.getvalue().splitlines()
    assert all("epoch 8/8" in line for line in lines), lines
    assert not any("running" in line for line in lines)  # printed between trials
    assert "2/2 done" in lines[-1]

    table = io.StringIO()
    live = ProgressView(total=2, out=table, live=True, epochs=8)
    await _feed(live, _trial(0, steps=3, value=0.9, metric=0.9))
    assert "3/8" in table.getvalue()


async def test_resumed_progress_says_what_came_from_earlier_runs() -> None:
    earlier = [TrialRecord(id=i, sample={"a": i}, hash=str(i), state=TrialState.SUCCEEDED,
                           metric=0.1) for i in range(3)]
    out = io.StringIO()
    view = ProgressView(total=5, out=out, live=False, history=earlier)
    await _feed(view, _trial(3, steps=1, value=0.5, metric=0.5))
    assert "4/5 done (3 in earlier runs)" in out.getvalue()


async def test_a_one_shot_architecture_probability_is_not_shown_as_a_score() -> None:
    value = {"default": 0.0005, "arch_prob": 0.0005, "arch_rank": 1.0,
             "supernet_accuracy": 0.91}
    assert describe_metric(0.0005, value) == "supernet accuracy 0.9100, arch prob 0.0005"
    assert describe_metric(0.0005, {"arch_prob": 0.0005}) == "arch prob 0.0005"
    assert describe_metric(0.25, {"default": 0.25}) == "0.2500"
    out = io.StringIO()
    view = ProgressView(total=1, out=out, live=False)
    await _feed(view, _trial(0, steps=0, value=value, metric=0.0005))
    assert "best supernet accuracy 0.9100, arch prob 0.0005 (trial 0)" in out.getvalue()


def test_the_demo_shows_epoch_n_of_n(cli: Cli) -> None:
    out = cli("demo", "--trials", "2", "--epochs", "2", "--plain", timeout=TIMEOUT * 2)
    assert out.returncode == 0, out.stderr
    trial_lines = [line for line in out.stdout.splitlines() if line.startswith("trial")]
    assert trial_lines and all("epoch 2/2" in line for line in trial_lines)


class _Ranked(nf.strategy.Strategy):
    """What a one-shot strategy ends with: ranked architectures recorded with their
    probability as the metric (and the supernet's score beside it)."""

    async def run(self, ctx):  # type: ignore[no-untyped-def]
        await ctx.record({"op": "a"}, {"default": 0.0005, "arch_prob": 0.0005,
                                       "supernet_accuracy": 0.91})


def test_list_and_show_do_not_show_a_one_shot_probability_as_the_best_score(
        cli: Cli) -> None:
    exp = nf.Experiment({"op": nf.Categorical(["a", "b"])}, lambda model, trial: 1.0,
                        _Ranked(), nf.ExperimentConfig())
    nf.run(exp)
    listed = cli("list")
    assert listed.returncode == 0, listed.stderr
    assert "arch prob 0.0005" in listed.stdout, listed.stdout
    shown = cli("show", exp.id)
    assert "best        supernet accuracy 0.9100, arch prob 0.0005 (trial 0)" in shown.stdout, (
        shown.stdout)
    assert json.loads(cli("list", "--json").stdout)[0]["best"] == 0.0005   # JSON: unchanged
