"""``await exp.run()`` in a real notebook, executed headless by nbclient on an ipykernel:
the cell shows a live display, updated in place from events, that ends as a summary;
``progress=False`` shows nothing; a plain process (no kernel) prints nothing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

SETUP = """
import nasflow as nf

def evaluate(model, trial):
    for step in range(3):
        trial.report(trial.sample["x"] * (step + 1), step=step)
    return float(trial.sample["x"])

exp = nf.Experiment({{"x": nf.Categorical([1, 2, 3, 4, 5])}}, evaluate,
                    nf.strategy.GridSearch(),
                    nf.ExperimentConfig(max_trials=5, home={home!r}), name="nb-search")
"""


class _Recording(nbclient.NotebookClient):  # type: ignore[misc]
    """Records the type of every output message the kernel sent."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.msg_types: list[str] = []

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        self.msg_types.append(msg["header"]["msg_type"])
        return super().process_message(msg, cell, cell_index)


def _execute(tmp_path: Path, run_cell: str) -> tuple[Any, list[str]]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP.format(home=str(tmp_path / "home"))),
                nbformat.v4.new_code_cell(run_cell),
                nbformat.v4.new_code_cell("print(exp.state.value, len(exp.trials()))")]
    client = _Recording(nb, timeout=120, kernel_name="python3",
                        resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return nb, client.msg_types


def _outputs_of(cell: Any) -> list[dict[str, Any]]:
    return [dict(o) for o in cell.outputs]


@pytest.fixture(autouse=True)
def _kernel_python(monkeypatch: pytest.MonkeyPatch) -> None:
    # the kernel runs this interpreter, importing this checkout (PYTHONPATH=src)
    src = str(Path(__file__).resolve().parents[1] / "src")
    monkeypatch.setenv("PYTHONPATH", src)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent), prepend=":")


def test_await_run_shows_a_live_display_that_ends_as_a_summary(tmp_path: Path) -> None:
    nb, msg_types = _execute(tmp_path, "await exp.run()")
    assert nb.cells[2].outputs[0]["text"].strip() == "DONE 5"
    outputs = _outputs_of(nb.cells[1])
    displays = [o for o in outputs if o["output_type"] == "display_data"]
    # one display, redrawn in place (nbclient applies each update to the same output)
    assert len(displays) == 1, outputs
    assert "display_data" in msg_types
    assert "update_display_data" in msg_types
    final_html = displays[0]["data"]["text/html"]
    assert "nasflow-summary" in final_html  # the final summary, not the live view
    assert "nb-search" in final_html
    assert "DONE" in final_html
    assert "5 / 5" in final_html  # progress against the budget
    assert "5 (trial 4)" in final_html  # the best so far: x=5 was the last grid point
    assert "top trials" in final_html
    plain = displays[0]["data"]["text/plain"]
    assert "5/5 trials done" in plain and "DONE" in plain


def test_progress_false_shows_nothing(tmp_path: Path) -> None:
    nb, msg_types = _execute(tmp_path, "await exp.run(progress=False)")
    assert nb.cells[2].outputs[0]["text"].strip() == "DONE 5"
    assert _outputs_of(nb.cells[1]) == []
    assert "display_data" not in msg_types and "update_display_data" not in msg_types


def test_a_plain_process_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    import nasflow as nf
    from nasflow.experiment._notebook import in_kernel

    assert not in_kernel()
    exp = nf.Experiment({"x": nf.Categorical([1, 2])}, lambda m, t: float(t.sample["x"]),
                        nf.strategy.GridSearch(),
                        nf.ExperimentConfig(max_trials=2, home=str(tmp_path)))
    nf.run(exp)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
