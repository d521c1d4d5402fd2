"""A notebook session, cell by cell: start a search, watch it, stop it early, inspect.

In Jupyter each block below is a cell and ``await`` works at the top level; here they
are wrapped in ``main()`` so the file also runs as a script:

    python examples/notebook_style.py
"""

from __future__ import annotations

import os

import anyio

import nasflow as nf
from nasflow.demo import DigitsNet, digits_data

QUICK = os.environ.get("NASFLOW_EXAMPLE_QUICK") == "1"


async def main() -> None:
    # --- cell 1: a space, an evaluator, a strategy ---------------------------------------
    train, val = digits_data()
    exp = nf.Experiment(
        DigitsNet(),
        nf.evaluator.Classification(train, val, epochs=1 if QUICK else 5, lr=1e-2, device="cpu"),
        nf.strategy.Random(seed=1),
        nf.ExperimentConfig(max_trials=4 if QUICK else 30, concurrency=2),
    )

    # --- cell 2: run it in the background and watch the stream ---------------------------
    async with exp:  # the search runs while this block does other things
        async for ev in exp.events(nf.events.TrialEnded):
            t = exp.trials()[ev.trial_id]
            print(f"trial {t.id}: {t.state.value} {t.metric}")
            if t.metric is not None and t.metric > 0.97:
                await exp.stop("good enough")  # running trials are cancelled, all is saved
                break

    # --- cell 3: inspect -------------------------------------------------------------------
    print(exp.state.value, exp.end_reason)
    for record in exp.export_top_models(3):
        print(record.id, round(record.metric, 4), record.sample)
    model = exp.export_top_models(1, formatter="instance")[0]
    print(type(model).__name__, sum(p.numel() for p in model.parameters()), "parameters")

    # --- cell 4 (any later session): the results are on disk -----------------------------
    with nf.load_experiment(exp.id) as saved:
        print("reloaded:", saved.state.value, len(saved.trials()), "trials")


if __name__ == "__main__":
    anyio.run(main)
