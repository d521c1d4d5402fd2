"""Running an experiment from the command line: progress, signals, exit codes."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import IO

import anyio

from nasflow._kernel import ExperimentState
from nasflow.cli._progress import ProgressView, describe_metric, short_sample
from nasflow.events import ExperimentStateChanged
from nasflow.exceptions import NasflowError
from nasflow.experiment import Experiment

__all__ = ["EXIT_FAILED", "EXIT_OK", "print_best", "run_experiment"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


async def run_experiment(exp: Experiment, *, live: bool | None = None,
                         quiet: bool = False, out: IO[str] | None = None,
                         on_running: Callable[[], None] | None = None) -> int:
    """Run ``exp`` with a progress view; SIGINT/SIGTERM stop it gracefully (running trials
    CANCELED, everything saved). ``on_running`` is called once the run is RUNNING (its
    control endpoint listening). Returns the exit code."""
    out = out or sys.stdout
    plan = exp._plan  # a resumed experiment: count its earlier trials too
    view = ProgressView(total=exp.config.max_trials,
                        maximize=exp.objective.direction == "maximize", out=out, live=live,
                        history=plan.records if plan is not None else (),
                        epochs=_epochs(exp))
    code = EXIT_OK
    events = exp.events()
    changes = exp.events(ExperimentStateChanged) if on_running is not None else None

    async def announce() -> None:
        assert changes is not None and on_running is not None
        async with changes:
            async for change in changes:
                if isinstance(change, ExperimentStateChanged) and \
                        change.state is ExperimentState.RUNNING:
                    on_running()
                    return

    async def watch_signals(scope: anyio.CancelScope) -> None:
        nonlocal code
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
                print(f"\n{signal.Signals(signum).name}: stopping; running trials are "
                      "cancelled and everything is saved", file=sys.stderr, flush=True)
                await exp.stop(f"stopped by {signal.Signals(signum).name}")
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_signals, tg.cancel_scope)
        if not quiet:
            tg.start_soon(view.run, events)
        if changes is not None:
            tg.start_soon(announce)
        try:
            await exp.run()
        except NasflowError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = code or EXIT_FAILED
        tg.cancel_scope.cancel()
    if exp.state is ExperimentState.FAILED:
        code = code or EXIT_FAILED
    return code


def print_best(exp: Experiment, k: int = 3, out: IO[str] | None = None) -> None:
    """The ``k`` best trials with their samples."""
    out = out or sys.stdout
    best = exp.export_top_models(k)
    print(f"\nexperiment {exp.id} {exp.state.value} ({exp.end_reason}); "
          f"{len(exp.trials())} trials; results in {exp.directory}", file=out)
    if not best:
        print("no trial succeeded", file=out)
        return
    print(f"best {len(best)} architectures ({exp.objective.direction} "
          f"{exp.objective.primary}):", file=out)
    for rank, r in enumerate(best, 1):
        print(f"  {rank}. trial {r.id}  metric {describe_metric(r.metric, r.metrics)}  "
              f"{short_sample(r.sample, 200)}", file=out)


def _epochs(exp: Experiment) -> int | None:
    """Epochs per trial of a built-in training evaluator, for "epoch 3/8"."""
    epochs = getattr(exp.evaluator, "epochs", None)
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None
