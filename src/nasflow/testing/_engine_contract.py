"""A contract test suite every engine must pass.

Subclass it in a test module and say how to build the engine::

    from nasflow.testing import EngineContract

    class TestMyEngine(EngineContract):
        def make_engine(self, setup):
            return MyEngine(setup)

Evaluators used here are module-level functions, so that engines that ship them to other
processes can pickle them, and the tests are process-agnostic: where a test must talk to a
running evaluator, it does so over a loopback TCP socket (the port travels in the sample),
which works whether the evaluator runs in a thread here or in a worker process.
"""

from __future__ import annotations

import math
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
from anyio.abc import SocketAttribute, SocketListener
from anyio.streams.buffered import BufferedByteReceiveStream

from nasflow._kernel import Objective, TrialState
from nasflow.engine import Engine, EngineSetup, TrialSpec
from nasflow.evaluator import Evaluator, FunctionalEvaluator, Trial, current_trial
from nasflow.events import (
    Event,
    FinalMetric,
    IntermediateMetric,
    TrialEnded,
    TrialEvent,
    TrialStarted,
)
from nasflow.exceptions import TrialStopped
from nasflow.space import Categorical, SearchSpace

__all__ = ["EngineContract", "EngineHarness"]


def _space() -> SearchSpace:
    return SearchSpace({"x": Categorical([1, 2, 3, 4])})


class EngineHarness:
    """Collects what an engine publishes and lets a test wait for trial ends."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._ended: dict[int, anyio.Event] = {}

    async def publish(self, event: Event, *, wait: bool = True) -> None:
        self.events.append(event)
        if isinstance(event, TrialEnded):
            self._ended.setdefault(event.trial_id, anyio.Event()).set()

    async def ended(self, trial_id: int) -> TrialEnded:
        """Wait for ``TrialEnded`` of ``trial_id`` and return it."""
        await self._ended.setdefault(trial_id, anyio.Event()).wait()
        return next(e for e in self.events
                    if isinstance(e, TrialEnded) and e.trial_id == trial_id)

    def of(self, trial_id: int) -> list[TrialEvent]:
        """The events of one trial, in order."""
        return [e for e in self.events if isinstance(e, TrialEvent) and e.trial_id == trial_id]


# --- evaluators (module level: picklable by reference) ----------------------------------------

async def report_three_async(model: Any, trial: Trial) -> float:
    for step in range(3):
        trial.report(step / 10)
    return float(trial.sample["x"])


def report_three_sync(model: Any, trial: Trial) -> float:
    for step in range(3):
        trial.report(step / 10)
    return float(trial.sample["x"])


def raise_value_error(model: Any, trial: Trial) -> float:
    raise ValueError(f"bad trial {trial.id}")


async def hang_forever(model: Any, trial: Trial) -> float:
    await anyio.sleep_forever()
    return 0.0


def hang_reporting_sync(model: Any, trial: Trial) -> float:
    # a cooperative sync evaluator: keeps reporting until told to stop
    step = 0
    while True:
        trial.report(0.0, step=step)
        step += 1
        time.sleep(0.01)  # simulated work between reports


def exit_the_process(model: Any, trial: Trial) -> float:
    raise SystemExit(f"trial {trial.id} called sys.exit")


async def interrupt_async(model: Any, trial: Trial) -> float:
    raise KeyboardInterrupt


def stop_itself(model: Any, trial: Trial) -> float:
    raise TrialStopped("the evaluator gave up on its own")


def return_nan(model: Any, trial: Trial) -> float:
    return math.nan


def return_none_after_reports(model: Any, trial: Trial) -> None:
    trial.report(0.25)
    trial.report(0.75)


def return_none_without_reports(model: Any, trial: Trial) -> None:
    return None


def which_trial_sync(model: Any, trial: Trial) -> float:
    assert current_trial() is trial
    return float(current_trial().id)


async def which_trial_async(model: Any, trial: Trial) -> float:
    assert current_trial() is trial
    return float(current_trial().id)


def block_until_released(model: Any, trial: Trial) -> float:
    # a sync evaluator that blocks its thread in a socket read until the test releases it
    with socket.create_connection(("127.0.0.1", trial.sample["port"]), timeout=30) as sock:
        sock.sendall(b"started\n")
        if sock.recv(1) != b"x":
            raise RuntimeError("the test never released the evaluator")
    return 1.0


def report_until_stopped(model: Any, trial: Trial) -> float:
    # a cooperative sync evaluator: reports until told to stop, then says what it saw
    with socket.create_connection(("127.0.0.1", trial.sample["port"]), timeout=30) as sock:
        try:
            trial.report(1.0)
            sock.sendall(b"started\n")
            while True:
                time.sleep(0.005)  # simulated work between reports
                trial.report(1.0)
        except TrialStopped as exc:
            sock.sendall(f"{exc}\n".encode())
            raise


class TwoProcessTrial(Evaluator):
    """An evaluator whose trials each run on two processes (``devices=2``: two slots),
    and hang until they are cancelled."""

    devices = 2

    async def evaluate(self, model: Any, trial: Trial) -> float:
        await anyio.sleep_forever()
        return 0.0


@asynccontextmanager
async def _rendezvous() -> AsyncIterator[tuple[int, Callable[[], Any]]]:
    """A loopback listener: ``(port, accept)``; ``accept()`` gives a buffered stream."""
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = cast(SocketListener, multi.listeners[0])
    port = listener.extra(SocketAttribute.local_port)

    accepted: list[Any] = []

    async def accept() -> tuple[Any, BufferedByteReceiveStream]:
        stream = await listener.accept()
        accepted.append(stream)
        return stream, BufferedByteReceiveStream(stream)

    async with multi:
        try:
            yield port, accept
        finally:
            for stream in accepted:
                await stream.aclose()


class EngineContract:
    """The behaviour every engine owes its experiment (see the module docstring)."""

    concurrency = 2

    def make_engine(self, setup: EngineSetup) -> Engine:
        raise NotImplementedError

    @asynccontextmanager
    async def engine(  # type: ignore[no-untyped-def]
        self, fn: Callable[..., Any] | Evaluator, *, trial_timeout: float | None = None,
        tmp: Path | None = None,
    ):
        harness = EngineHarness()
        evaluator = fn if isinstance(fn, Evaluator) else FunctionalEvaluator(fn)
        with tempfile.TemporaryDirectory(prefix="nasflow-contract-") as scratch:
            root = tmp or Path(scratch)  # engines may write trial logs there
            setup = EngineSetup(
                space=_space(), evaluator=evaluator,
                objective=Objective({"default": "maximize"}), publish=harness.publish,
                trial_directory=lambda i: root / "trials" / str(i), experiment_id="contract",
                concurrency=self.concurrency, trial_timeout=trial_timeout,
            )
            async with self.make_engine(setup) as engine:
                yield engine, harness

    # --- the contract -----------------------------------------------------------------------

    async def test_events_in_order_async_and_sync(self) -> None:
        for fn in (report_three_async, report_three_sync):
            async with self.engine(fn) as (engine, h):
                await engine.submit(TrialSpec(0, {"x": 3}))
                ended = await h.ended(0)
                kinds = [type(e) for e in h.of(0)]
                assert kinds == [TrialStarted, IntermediateMetric, IntermediateMetric,
                                 IntermediateMetric, FinalMetric, TrialEnded], kinds
                steps = [e.step for e in h.of(0) if isinstance(e, IntermediateMetric)]
                assert steps == [0, 1, 2]
                final = next(e for e in h.of(0) if isinstance(e, FinalMetric))
                assert final.metric == 3.0
                assert ended.state is TrialState.SUCCEEDED and ended.error is None

    async def test_exceptions_fail_the_trial_with_details(self) -> None:
        async with self.engine(raise_value_error) as (engine, h):
            await engine.submit(TrialSpec(7, {"x": 1}))
            ended = await h.ended(7)
            assert ended.state is TrialState.FAILED
            assert ended.error is not None
            assert ended.error.type == "ValueError"
            assert ended.error.message == "bad trial 7"
            assert "raise_value_error" in ended.error.traceback
            # the engine goes on
            await engine.submit(TrialSpec(8, {"x": 1}))
            assert (await h.ended(8)).state is TrialState.FAILED

    async def test_bad_metrics_fail_the_trial(self) -> None:
        async with self.engine(return_nan) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
            assert ended.state is TrialState.FAILED and "finite number" in ended.error.message
        async with self.engine(return_none_without_reports) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
            assert ended.state is TrialState.FAILED and "reported nothing" in ended.error.message

    async def test_last_report_is_final_when_nothing_is_returned(self) -> None:
        async with self.engine(return_none_after_reports) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            assert (await h.ended(0)).state is TrialState.SUCCEEDED
            final = next(e for e in h.of(0) if isinstance(e, FinalMetric))
            assert final.metric == 0.75

    async def test_timeout_async_and_cooperative_sync(self) -> None:
        for fn in (hang_forever, hang_reporting_sync):
            async with self.engine(fn, trial_timeout=0.2) as (engine, h):
                await engine.submit(TrialSpec(0, {"x": 1}))
                ended = await h.ended(0)
                assert ended.state is TrialState.TIMEOUT, ended
                assert "trial_timeout" in ended.error.message

    async def test_cancel_and_early_stop(self) -> None:
        async with self.engine(hang_forever) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            assert engine.cancel(0, TrialState.CANCELED, "not needed")
            assert (await h.ended(0)).state is TrialState.CANCELED
            await engine.submit(TrialSpec(1, {"x": 2}))
            assert engine.cancel(1, TrialState.EARLY_STOPPED, "median rule")
            ended = await h.ended(1)
            assert ended.state is TrialState.EARLY_STOPPED
            assert ended.error is not None and ended.error.message == "median rule"
            assert not engine.cancel(99)
            await engine.wait_idle()
            assert engine.running == frozenset()

    async def test_submit_waits_for_capacity(self) -> None:
        async with self.engine(hang_forever) as (engine, _):
            for i in range(self.concurrency):
                await engine.submit(TrialSpec(i, {"x": 1}))
            third_accepted = anyio.Event()

            async def third() -> None:
                await engine.submit(TrialSpec(99, {"x": 1}))
                third_accepted.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(third)
                await anyio.wait_all_tasks_blocked()
                assert not third_accepted.is_set()
                engine.cancel(0)
                await third_accepted.wait()
                for i in [1, 99]:
                    engine.cancel(i)
            await engine.wait_idle()

    async def test_current_trial_is_visible_to_evaluators(self) -> None:
        for fn in (which_trial_sync, which_trial_async):
            async with self.engine(fn) as (engine, h):
                await engine.submit(TrialSpec(5, {"x": 1}))
                assert (await h.ended(5)).state is TrialState.SUCCEEDED

    async def test_sync_evaluators_do_not_block_the_loop(self) -> None:
        with anyio.fail_after(30):
            async with _rendezvous() as (port, accept), \
                    self.engine(block_until_released) as (engine, h):
                await engine.submit(TrialSpec(0, {"x": 1, "port": port}))
                # the evaluator blocks in its read; this loop still accepts and answers
                stream, reader = await accept()
                assert await reader.receive_until(b"\n", 64) == b"started"
                await stream.send(b"x")
                assert (await h.ended(0)).state is TrialState.SUCCEEDED

    async def test_reports_after_a_stop_raise(self) -> None:
        with anyio.fail_after(30):
            async with _rendezvous() as (port, accept), \
                    self.engine(report_until_stopped) as (engine, h):
                await engine.submit(TrialSpec(0, {"x": 1, "port": port}))
                _, reader = await accept()
                assert await reader.receive_until(b"\n", 64) == b"started"
                engine.cancel(0, TrialState.EARLY_STOPPED, "asha")
                assert (await h.ended(0)).state is TrialState.EARLY_STOPPED
                seen = await reader.receive_until(b"\n", 4096)
        assert b"EARLY_STOPPED" in seen, seen

    async def test_system_exit_and_keyboard_interrupt_fail_only_that_trial(self) -> None:
        for fn, kind in ((exit_the_process, "SystemExit"),
                         (interrupt_async, "KeyboardInterrupt")):
            with anyio.fail_after(60):
                async with self.engine(fn) as (engine, h):
                    await engine.submit(TrialSpec(0, {"x": 1}))
                    ended = await h.ended(0)
                    assert ended.state is TrialState.FAILED, ended
                    assert ended.error is not None and ended.error.type == kind
                    # the engine goes on
                    await engine.submit(TrialSpec(1, {"x": 1}))
                    assert (await h.ended(1)).state is TrialState.FAILED

    async def test_a_trial_that_stops_itself_ends_canceled(self) -> None:
        # nobody asked it to stop and no deadline passed: CANCELED, never TIMEOUT
        async with self.engine(stop_itself) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            ended = await h.ended(0)
            assert ended.state is TrialState.CANCELED, ended

    async def test_cancel_with_an_error_type(self) -> None:
        async with self.engine(hang_forever) as (engine, h):
            await engine.submit(TrialSpec(0, {"x": 1}))
            assert engine.cancel(0, TrialState.CANCELED, "shutting down",
                                 error_type="Interrupted")
            ended = await h.ended(0)
            assert ended.state is TrialState.CANCELED
            assert ended.error is not None and ended.error.type == "Interrupted"
            assert ended.error.message == "shutting down"

    async def test_wait_capacity_returns_once_a_slot_is_free(self) -> None:
        async with self.engine(hang_forever) as (engine, _):
            assert engine.capacity >= 1
            await engine.wait_capacity()  # room: returns at once
            for i in range(engine.capacity):
                await engine.submit(TrialSpec(i, {"x": 1}))
            room = anyio.Event()

            async def wait() -> None:
                await engine.wait_capacity()
                room.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.wait_all_tasks_blocked()
                assert not room.is_set()
                engine.cancel(0)
                await room.wait()
                assert len(engine.running) < engine.capacity
            for i in engine.running:
                engine.cancel(i)
            await engine.wait_idle()

    async def test_a_trial_on_two_devices_takes_two_slots(self) -> None:
        async with self.engine(TwoProcessTrial()) as (engine, _):
            fits = max(1, self.concurrency // 2)  # one always fits
            assert engine.capacity == fits
            for i in range(fits):
                await engine.submit(TrialSpec(i, {"x": 1}))
            next_accepted = anyio.Event()

            async def submit_next() -> None:
                await engine.submit(TrialSpec(99, {"x": 1}))
                next_accepted.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(submit_next)
                await anyio.wait_all_tasks_blocked()
                assert not next_accepted.is_set()  # the slots are taken
                engine.cancel(0)
                await next_accepted.wait()
            for i in engine.running:
                engine.cancel(i)
            await engine.wait_idle()

    async def test_events_are_stamped_by_the_engine_clock(self) -> None:
        async with self.engine(report_three_sync) as (engine, h):
            before = engine.clock.now()
            await engine.submit(TrialSpec(0, {"x": 3}))
            await h.ended(0)
            after = engine.clock.now()
            times = [e.time for e in h.of(0)]
            assert all(before <= t <= after for t in times), (before, times, after)
            assert times == sorted(times)

    async def test_resize_grows_and_shrinks_while_trials_run(self) -> None:
        # ``exp.update(concurrency=)``: more trials start at once (no running one has to
        # end), fewer let the running ones finish and start none until below the limit
        grown = self.concurrency + 2
        with anyio.fail_after(120):  # a guard against hanging, not an assertion on time
            async with self.engine(hang_forever) as (engine, h):
                for i in range(self.concurrency):
                    await engine.submit(TrialSpec(i, {"x": 1}))
                engine.resize(grown)
                for i in range(self.concurrency, grown):  # accepted without an end
                    await engine.submit(TrialSpec(i, {"x": 1}))
                assert engine.running == frozenset(range(grown))
                assert not any(isinstance(e, TrialEnded) for e in h.events)
                assert engine.capacity == grown
                engine.resize(1)
                # at once: no trial may start on the old capacity meanwhile (a manager's
                # grant comes later; it can only confirm a lower limit)
                assert engine.capacity == 1
                room = anyio.Event()
                seen: list[int] = []

                async def wait() -> None:
                    await engine.wait_capacity()
                    seen.append(len(engine.running))
                    room.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(wait)
                    for i in range(grown):
                        await anyio.wait_all_tasks_blocked()
                        assert not room.is_set(), f"room with {len(engine.running)} running"
                        engine.cancel(i)
                        await h.ended(i)
                    await room.wait()
                assert seen == [0]  # room only once below the new limit of one
                assert engine.capacity == 1
                await engine.submit(TrialSpec(99, {"x": 1}))  # one runs again
                assert engine.running == frozenset({99})
                engine.cancel(99)
                await engine.wait_idle()
                try:
                    engine.resize(0)
                except ValueError as exc:
                    assert "concurrency" in str(exc)
                else:
                    raise AssertionError("resize(0) was taken")
