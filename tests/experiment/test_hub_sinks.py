"""The hub's sinks: called in order, and a replaced sink keeps its place."""

from __future__ import annotations

from nasflow.events import Event, EventHub, TrialStarted


def test_replace_sink_keeps_the_order_and_calls_only_the_new_one() -> None:
    hub = EventHub()
    seen: list[str] = []

    def first(event: Event) -> None:
        seen.append("first")

    def second(event: Event) -> None:
        seen.append("second")

    def new(event: Event) -> None:
        seen.append("new")

    hub.add_sink(first)
    hub.add_sink(second)
    hub.replace_sink(first, new)
    hub.publish_nowait(TrialStarted(time=0.0, trial_id=0))
    assert seen == ["new", "second"]


def test_an_experiment_run_follows_events_through_its_run() -> None:
    # before a run the ledger is the first sink; the run's follower takes its place
    import anyio

    import nasflow as nf

    async def evaluate(model: None, trial: nf.Trial) -> float:
        return float(trial.sample["x"])

    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3], label="x")},
                        nf.FunctionalEvaluator(evaluate), nf.strategy.Random(seed=0),
                        nf.ExperimentConfig(max_trials=3, store=False))
    assert exp._hub._sinks[0] == exp._ledger.apply
    anyio.run(exp.run)
    assert exp._run is not None and exp._hub._sinks[0] == exp._run.follow
    assert len(exp.trials(["SUCCEEDED"])) == 3
