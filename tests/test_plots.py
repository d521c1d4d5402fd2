"""``to_dataframe``, ``plot`` and the HTML repr of stored results, and ``nasflow plot``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib.figure
import pytest

import nasflow as nf
from nasflow._plots import label_importance
from nasflow._results import pareto_front
from nasflow.cli import main

SPACE = {"width": nf.Categorical([8, 16, 32]), "act": nf.Categorical(["relu", "tanh"])}


def single(model: Any, trial: nf.Trial) -> float:
    # the metric depends on width only: importance must say so
    for step in range(4):
        trial.report(trial.sample["width"] * (step + 1) / 4, step=step)
    return float(trial.sample["width"])


def multi(model: Any, trial: nf.Trial) -> dict[str, float]:
    w, a = trial.sample["width"], trial.sample["act"]
    return {"acc": w + (3.0 if a == "tanh" else 0.0), "cost": float(w) / 8 + (a == "relu")}


async def run(home: Path, evaluator: Any, **config: Any) -> nf.ExperimentResults:
    exp = nf.Experiment(SPACE, evaluator, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=6, home=str(home), **config))
    await exp.run()
    return nf.load_experiment(exp.id, home=home)


async def test_to_dataframe_has_one_row_per_trial(home: Path) -> None:
    res = await run(home, single)
    df = res.to_dataframe()
    trials = res.trials()
    assert list(df.index) == [t.id for t in trials]
    assert list(df["state"]) == ["SUCCEEDED"] * 6
    assert list(df["metric"]) == [t.metric for t in trials]
    assert list(df["label:width"]) == [t.sample["width"] for t in trials]
    assert list(df["label:act"]) == [t.sample["act"] for t in trials]
    assert list(df["metric:default"]) == list(df["metric"])
    assert (df["duration"] >= 0).all()
    assert {"submitted_at", "started_at", "ended_at", "attempt", "error"} <= set(df.columns)


async def test_to_dataframe_without_pandas_says_how_to_install_it(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = await run(home, single)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'nasflow\[plot\]'"):
        res.to_dataframe()


async def test_history_draws_the_best_so_far(home: Path) -> None:
    res = await run(home, single)
    fig = res.plot("history")
    assert isinstance(fig, matplotlib.figure.Figure)
    ended = sorted(res.trials(), key=lambda t: (t.ended_at, t.id))
    best, expected = float("-inf"), []
    for t in ended:
        best = max(best, t.metric)
        expected.append(best)
    (line,) = fig.axes[0].get_lines()
    assert list(line.get_ydata()) == expected


async def test_curves_draw_each_trial_s_intermediates(home: Path) -> None:
    res = await run(home, single)
    lines = res.plot("curves").axes[0].get_lines()
    assert len(lines) == 6
    by_label = {ln.get_label(): list(ln.get_ydata()) for ln in lines}
    for t in res.trials():
        assert by_label[f"#{t.id}"] == [v for _, v in res.intermediates(t.id)]


async def test_importance_finds_the_label_that_matters(home: Path) -> None:
    res = await run(home, single)
    scores = label_importance(res.trials())
    assert scores["width"] == pytest.approx(1.0)
    assert scores["act"] == pytest.approx(0.0)
    assert res.plot("importance").axes[0].patches  # one bar per label


async def test_parallel_has_an_axis_per_label_and_the_metric(home: Path) -> None:
    res = await run(home, single)
    ax = res.plot("parallel").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["act", "width", "default"]
    polylines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 3]
    assert len(polylines) == 6  # one per trial (the rest are the three axes)
    metric_end = sorted(ln.get_ydata()[-1] for ln in polylines)
    assert metric_end == pytest.approx([0, 0, 1 / 3, 1 / 3, 1, 1])  # 8/16/32 to [0, 1]


async def test_pareto_marks_the_front(home: Path) -> None:
    res = await run(home, multi, objective={"acc": "maximize", "cost": "minimize"})
    ax = res.plot("pareto").axes[0]
    (front_line,) = ax.get_lines()
    expected = sorted((t.metrics["acc"], t.metrics["cost"])
                      for t in pareto_front(res.trials(), res.objective))
    assert list(zip(front_line.get_xdata(), front_line.get_ydata(), strict=True)) == expected
    assert 0 < len(expected) < 6


async def test_bad_kinds_and_single_objective_pareto_are_explained(home: Path) -> None:
    res = await run(home, single)
    with pytest.raises(ValueError, match="unknown plot kind 'histogram'.*history"):
        res.plot("histogram")
    with pytest.raises(ValueError, match="needs two or more objectives"):
        res.plot("pareto")


async def test_html_repr_shows_state_counts_and_best(home: Path) -> None:
    res = await run(home, single)
    page = res._repr_html_()
    assert res.id in page and "DONE" in page and "6/6 trials" in page
    assert "<td>32</td>" in page  # the best metric
    assert page.index("width=32") < page.index("width=16")


async def test_nasflow_plot_writes_png_svg_and_html(home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    res = await run(home, single)
    for name, magic in (("h.png", b"\x89PNG"), ("h.svg", b"<?xml"), ("h.html", b"<!doctype")):
        out = tmp_path / name
        assert main(["plot", res.id, "history", "-o", str(out)]) == 0
        assert out.read_bytes().startswith(magic)
    assert main(["plot", res.id, "pareto", "-o", str(tmp_path / "p.png")]) == 1
    assert "needs two or more objectives" in capsys.readouterr().err
    assert main(["plot", res.id, "history", "-o", str(tmp_path / "h.txt")]) == 1
    assert "use a .png, .svg, .pdf or .html" in capsys.readouterr().err
    assert main(["plot", "no-such-id", "history", "-o", str(tmp_path / "x.png")]) == 1
