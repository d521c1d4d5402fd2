"""The manager's server: tokens, endpoints and frame limits, over real sockets."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest
from _mgr_helpers import Harness, setup_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from nasflow.engine import ManagerEngine
from nasflow.manager import ManagerConnectionError, TrialManager
from nasflow.protocol import PROTOCOL_VERSION, Limits

HELLO = orjson.dumps({"type": "hello", "version": PROTOCOL_VERSION, "role": "experiment",
                      "session": "experiment-test", "peer_session": None, "last_seq": 0,
                      "resend_from": 1, "running": []}).decode()


def _noop(model: object, trial: object) -> float:
    return 0.0


async def _closed(url: str, token: str | None, first: str | None = None) -> ConnectionClosed:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with connect(url, additional_headers=headers, proxy=None, max_size=None) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                await ws.recv()
    return caught.value


async def test_a_wrong_or_missing_token_is_refused_with_a_reason() -> None:
    with anyio.fail_after(30):
        async with TrialManager(workers=1) as manager:
            for token in ("wrong", None):
                closed = await _closed(manager.url + "/tuner", token)
                assert closed.rcvd is not None and closed.rcvd.code == 4401
                assert "token" in closed.rcvd.reason


async def test_an_engine_with_a_wrong_token_fails_clearly(tmp_path: Path) -> None:
    setup = setup_for(_noop, Harness(), tmp_path)
    with anyio.fail_after(30):
        async with TrialManager(workers=1) as manager:
            with pytest.raises(ManagerConnectionError, match="token") as caught:
                async with ManagerEngine(setup, manager=manager.url, token="not-it"):
                    pass
    assert caught.value.fatal


async def test_an_unknown_endpoint_is_refused() -> None:
    with anyio.fail_after(30):
        async with TrialManager(workers=1) as manager:
            closed = await _closed(manager.url + "/nope", manager.token)
    assert closed.rcvd is not None and closed.rcvd.code == 4404
    assert "/tuner" in closed.rcvd.reason


async def test_no_manager_at_the_address_fails_after_the_connect_timeout(
        tmp_path: Path) -> None:
    setup = setup_for(_noop, Harness(), tmp_path)
    with anyio.fail_after(30), pytest.raises(ManagerConnectionError, match="cannot reach"):
        async with ManagerEngine(setup, manager="ws://127.0.0.1:9", token="t",
                                 connect_timeout=0.3):
            pass


async def test_a_frame_over_the_transport_limit_closes_the_connection() -> None:
    limits = Limits(max_message_size=2048, max_setup_size=4096)
    with anyio.fail_after(30):
        async with TrialManager(workers=1, limits=limits) as manager:
            closed = await _closed(manager.url + "/tuner", manager.token, "x" * 10_000)
    assert closed.rcvd is not None and closed.rcvd.code == 1009  # message too big


async def test_a_message_over_the_protocol_limit_gets_an_error() -> None:
    limits = Limits(max_message_size=2048, max_setup_size=4096)
    big = orjson.dumps({"type": "submit", "seq": 1, "experiment_id": "e", "trial_id": 0,
                        "sample": {"blob": "y" * 3000}}).decode()
    headers = {"Authorization": ""}
    with anyio.fail_after(30):
        async with TrialManager(workers=1, limits=limits) as manager:
            headers["Authorization"] = f"Bearer {manager.token}"
            async with connect(manager.url + "/tuner", additional_headers=headers,
                               proxy=None) as ws:
                await ws.send(HELLO)
                assert orjson.loads(await ws.recv())["type"] == "welcome"
                await ws.send(big)
                error = orjson.loads(await ws.recv())
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
    assert error["type"] == "error" and error["code"] == "too_large"


async def test_a_client_on_the_wrong_endpoint_is_told_so() -> None:
    worker_hello = HELLO.replace('"experiment"', '"worker"')
    with anyio.fail_after(30):
        async with TrialManager(workers=1) as manager:
            headers = {"Authorization": f"Bearer {manager.token}"}
            async with connect(manager.url + "/tuner", additional_headers=headers,
                               proxy=None) as ws:
                await ws.send(worker_hello)
                error = orjson.loads(await ws.recv())
    assert error["code"] == "unexpected" and "/trial" in error["message"]
