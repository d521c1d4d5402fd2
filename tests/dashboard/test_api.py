"""The dashboard's HTTP API and WebSocket, over real sockets: tokens, checks, the feeds."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
import websockets
import websockets.exceptions

import nasflow as nf
from nasflow.dashboard import Dashboard

from .conftest import LiveSearch


def call(board: Dashboard, path: str, *, token: str | None = "", method: str = "GET",
         body: bytes | None = None, headers: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    """``(status, decoded JSON or text)``; ``token=""`` sends the board's own token."""
    hdrs = dict(headers or {})
    if token is not None:
        hdrs["X-Nasflow-Token"] = token or board.token
    req = urllib.request.Request(f"http://127.0.0.1:{board.port}{path}", data=body,
                                 method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            status, data = res.status, res.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    try:
        return status, json.loads(data)
    except ValueError:
        return status, data.decode(errors="replace")


def test_reading_needs_the_token(live_search: LiveSearch) -> None:
    board, exp_id = live_search.board, live_search.exp.id
    for path in ("/api/experiments", f"/api/experiments/{exp_id}",
                 f"/api/experiments/{exp_id}/trials", f"/api/experiments/{exp_id}/trials/0"):
        status, body = call(board, path, token=None)
        assert status == 401, path
        assert exp_id not in json.dumps(body)
        status, body = call(board, path, token="not-the-token")
        assert status == 403, path
        assert call(board, path)[0] == 200, path
    status, body = call(board, "/api/experiments")
    assert [e["id"] for e in body["experiments"]] == [exp_id]
    assert body["experiments"][0]["state"] == "RUNNING"
    assert body["experiments"][0]["max_trials"] == 6


def test_controls_need_the_token_even_when_reading_does_not(
        home: Path, portal: anyio.from_thread.BlockingPortal) -> None:
    search = LiveSearch(home, portal, read_token=False)
    try:
        board, exp_id = search.board, search.exp.id
        assert call(board, "/api/experiments", token=None)[0] == 200
        assert call(board, f"/api/experiments/{exp_id}/stop", token=None,
                    method="POST", body=b"{}")[0] == 401
        assert call(board, f"/api/experiments/{exp_id}/stop", token="nope",
                    method="POST", body=b"{}")[0] == 403
        assert search.exp.state is nf.ExperimentState.RUNNING
    finally:
        search.close()


def test_bad_requests_get_4xx(live_search: LiveSearch) -> None:
    board, exp_id = live_search.board, live_search.exp.id
    assert call(board, "/api/experiments/nope")[0] == 404
    assert call(board, "/api/experiments/..%2F..%2Fetc")[0] == 404
    assert call(board, f"/api/experiments/{exp_id}/trials/abc")[0] == 400
    assert call(board, f"/api/experiments/{exp_id}/trials/99999")[0] == 404
    stop = f"/api/experiments/{exp_id}/stop"
    assert call(board, stop, method="POST", body=b"{not json")[0] == 400
    assert call(board, stop, method="POST", body=b"[1, 2]")[0] == 400
    assert call(board, stop, method="POST", body=b"x" * 10_000)[0] == 413
    assert call(board, f"/api/experiments/{exp_id}/trials/0/kill", method="POST",
                body=b"")[0] in (200, 409)
    # another site's name for this address (DNS rebinding) is refused
    assert call(board, "/api/experiments", headers={"Host": "evil.example"})[0] == 400
    assert live_search.exp.state is nf.ExperimentState.RUNNING  # nothing crashed


def test_log_tails_never_leave_the_experiment_directory(live_search: LiveSearch,
                                                        tmp_path: Path) -> None:
    exp = live_search.exp
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    trial_dir = exp.directory / "trials" / "0"
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "stderr.log").unlink(missing_ok=True)
    os.symlink(secret, trial_dir / "stderr.log")
    (trial_dir / "stdout.log").write_text("hello from trial 0\n")
    status, body = call(live_search.board, f"/api/experiments/{exp.id}/trials/0")
    assert status == 200
    assert body["logs"]["stdout.log"] == "hello from trial 0\n"
    assert body["logs"]["stderr.log"] is None
    assert "top secret" not in json.dumps(body)


def test_the_websocket_refuses_a_wrong_token_and_survives_bad_messages(
        live_search: LiveSearch, portal: anyio.from_thread.BlockingPortal) -> None:
    board = live_search.board

    async def talk() -> list[Any]:
        url = f"ws://127.0.0.1:{board.port}/ws"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(f"{url}?token=wrong"):
                pass
        replies = []
        async with websockets.connect(f"{url}?token={board.token}") as ws:
            for message in ("not json", json.dumps({"subscribe": 3}),
                            json.dumps({"subscribe": "no-such-experiment"})):
                await ws.send(message)
                replies.append(json.loads(await ws.recv()))
            await ws.send(json.dumps({"subscribe": live_search.exp.id}))
            replies.append(json.loads(await ws.recv()))
        return replies

    replies = portal.call(talk)
    assert [r["type"] for r in replies] == ["error", "error", "error", "subscribed"]
    assert replies[-1] == {"type": "subscribed", "experiment": live_search.exp.id,
                           "live": True}


async def _follow(board: Dashboard, exp_id: str, until: str, subscribed: anyio.Event
                  ) -> list[dict[str, Any]]:
    """Every event pushed for ``exp_id`` up to the first of type ``until``."""
    seen: list[dict[str, Any]] = []
    async with websockets.connect(f"ws://127.0.0.1:{board.port}/ws?token={board.token}") as ws:
        await ws.send(json.dumps({"subscribe": exp_id}))
        assert json.loads(await ws.recv())["live"] is True
        subscribed.set()
        while True:
            frame = json.loads(await ws.recv())
            assert frame["type"] == "events"
            seen.extend(frame["events"])
            if any(e["type"] == until for e in frame["events"]):
                return seen


def test_another_process_experiment_is_followed_through_its_control_endpoint(
        remote_search: LiveSearch, portal: anyio.from_thread.BlockingPortal) -> None:
    board, exp = remote_search.board, remote_search.exp
    assert exp.id not in board.state.live  # only its directory is known to the dashboard

    async def watch() -> list[dict[str, Any]]:
        async with anyio.create_task_group() as tg:
            result: list[list[dict[str, Any]]] = []
            subscribed = anyio.Event()

            async def follow() -> None:
                result.append(await _follow(board, exp.id, "experiment_finished",
                                            subscribed))

            tg.start_soon(follow)
            await subscribed.wait()
            for x in range(1, 7):
                remote_search.release(x)
        return result[0]

    events = portal.call(watch)
    ended = [e for e in events if e["type"] == "trial_ended"]
    assert {e["state"] for e in ended} == {"SUCCEEDED"}
    assert sorted(e["trial_id"] for e in ended) == list(range(6))  # all held until subscribed
    assert all(e["experiment"] == exp.id for e in events)
    kinds = [e["type"] for e in events if e["type"] != "feed_closed"]
    assert kinds[-1] == "experiment_finished"


def test_kill_and_stop_through_the_control_endpoint(remote_search: LiveSearch) -> None:
    board, exp = remote_search.board, remote_search.exp
    running = [t.id for t in exp.trials() if t.state is nf.TrialState.RUNNING]
    assert running
    status, body = call(board, f"/api/experiments/{exp.id}/trials/{running[0]}/kill",
                        method="POST", body=b"{}")
    assert (status, body["ok"]) == (200, True)
    status, body = call(board, f"/api/experiments/{exp.id}/stop", method="POST",
                        body=json.dumps({"reason": "enough"}).encode())
    assert status == 200
    remote_search.run.result(timeout=60)
    assert exp.state is nf.ExperimentState.STOPPED
    assert exp.end_reason == "enough"
    killed = next(t for t in exp.trials() if t.id == running[0])
    assert killed.state is nf.TrialState.CANCELED
    assert killed.error is not None and "killed from the dashboard" in killed.error.message


def test_the_control_endpoint_checks_kill_requests(live_search: LiveSearch) -> None:
    from nasflow._control import send_request

    directory = live_search.exp.directory
    reply = send_request(directory, "kill", trial="0")
    assert reply == {"ok": False,
                     "error": "kill refused, nothing changed: trial must be an id, got '0'"}
    reply = send_request(directory, "kill", trial=999)
    assert reply["ok"] is False and "has no trial 999" in reply["error"]
    assert live_search.exp.state is nf.ExperimentState.RUNNING


def test_the_compact_trials_form_holds_what_the_dicts_hold(home: Path,
                                                           portal: anyio.from_thread.BlockingPortal
                                                           ) -> None:
    def evaluate(model: Any, trial: nf.Trial) -> dict[str, float]:
        if trial.sample["x"] == 2:
            raise ValueError("two is refused")
        return {"acc": trial.sample["x"] / 4, "cost": 1.5}

    exp = nf.Experiment({"x": nf.Categorical([1, 2, 3]), "tag": nf.Categorical(["a"])},
                        evaluate, nf.strategy.GridSearch(),
                        nf.ExperimentConfig(objective={"acc": "maximize", "cost": "minimize"},
                                            max_trials=3, home=str(home)))
    portal.call(exp.run)
    with portal.wrap_async_context_manager(Dashboard(home=home)) as board:
        _, dicts = call(board, f"/api/experiments/{exp.id}/trials")
        status, compact = call(board, f"/api/experiments/{exp.id}/trials?format=rows")
    assert status == 200
    rebuilt = []
    for row in compact["rows"]:
        d = dict(zip(compact["columns"], row, strict=True))
        for name, texts in compact["dictionaries"].items():
            d[name] = texts[d[name]]
        for name in compact["json_columns"]:
            d[name] = json.loads(d[name]) if d[name] is not None else None
        etype, emsg = d.pop("error_type"), d.pop("error_message")
        d["error"] = None if etype is None else {"type": etype, "message": emsg}
        rebuilt.append(d)
    # the same trials, field by field (the dicts' error also has a shortened message)
    assert [{k: v for k, v in r.items() if k != "error"} for r in rebuilt] == [
        {k: v for k, v in d.items() if k != "error"} for d in dicts["trials"]]
    errors = [r["error"] for r in rebuilt]
    assert errors[0] is None and errors[2] is None
    assert errors[1]["type"] == "ValueError" and "two is refused" in errors[1]["message"]


@pytest.mark.parametrize("attached", [True, False])
def test_update_takes_the_same_change_path(home: Path, portal: anyio.from_thread.BlockingPortal,
                                           attached: bool) -> None:
    # attached: the experiment's own ChangeDesk; not: through its control endpoint. Both
    # validate, apply and record the change like exp.update and nasflow update
    from nasflow.store import DB_NAME, StoreReader

    search = LiveSearch(home, portal, attach=attached)
    try:
        board, exp = search.board, search.exp
        update = f"/api/experiments/{exp.id}/update"
        status, body = call(board, update, method="POST",
                            body=json.dumps({"concurrency": 0}).encode())
        assert status == 409 and "concurrency must be" in str(body)
        status, body = call(board, update, method="POST",
                            body=json.dumps({"concurrency": 3, "max_trials": 5}).encode())
        assert (status, body["ok"]) == (200, True), body
        assert body["changed"] == {"concurrency": [2, 3], "max_trials": [6, 5]}
        assert exp.config.concurrency == 3 and exp.config.max_trials == 5
        reader = StoreReader(exp.directory / DB_NAME)
        try:
            recorded = [(c["op"], c["args"], c["source"]) for c in reader.changes()]
        finally:
            reader.close()
        assert recorded == [("update", {"concurrency": 3, "max_trials": 5}, "dashboard")]
    finally:
        search.close()


@pytest.mark.parametrize("attached", [True, False])
def test_enqueue_takes_the_same_change_path(home: Path, portal: anyio.from_thread.BlockingPortal,
                                            attached: bool) -> None:
    # like exp.enqueue and nasflow enqueue: checked against the space, recorded with its source
    from nasflow.store import DB_NAME, StoreReader

    search = LiveSearch(home, portal, attach=attached)
    try:
        board, exp = search.board, search.exp
        enqueue = f"/api/experiments/{exp.id}/enqueue"
        for bad in (b"{}", b'{"sample": 5}', b'{"sample": []}', b'{"sample": [3]}',
                    b'{"sample": {"x": 6}, "samples": []}', b"[1]", b"{nope"):
            status, body = call(board, enqueue, method="POST", body=bad)
            assert status == 400, (bad, status, body)
            assert "sample" in body["error"] or "JSON" in body["error"], body
        status, body = call(board, enqueue, method="POST",
                            body=json.dumps({"sample": {"x": 7}}).encode())
        assert status == 409 and "x" in body["error"] and "7" in body["error"], body
        status, body = call(board, enqueue, method="POST", token="wrong",
                            body=json.dumps({"sample": {"x": 6}}).encode())
        assert status == 403
        status, body = call(board, enqueue, method="POST",
                            body=json.dumps({"sample": {"x": 6}}).encode())
        assert (status, body["ok"], body["queued"]) == (200, True, 1), body
        reader = StoreReader(exp.directory / DB_NAME)
        try:
            recorded = [(c["op"], c["args"], c["source"]) for c in reader.changes()]
        finally:
            reader.close()
        assert recorded == [("enqueue", {"entries": [{"x": 6}]}, "dashboard")]
        # evaluated before the grid's own next proposal (x=3), once x=1 frees a slot
        search.release(1)
        ids: dict[int, int] = {}
        for _ in range(1200):  # a bound for a broken run, not a timing
            ids = {t.sample["x"]: t.id for t in exp.trials()}
            if 6 in ids:
                break
            portal.call(anyio.sleep, 0.05)
        assert ids.get(6) == 2, ids  # trial 2: the slot x=1 freed
    finally:
        search.close()


def test_the_trial_detail_names_its_newest_checkpoint_file_inside_the_experiment(
        live_search: LiveSearch, tmp_path: Path) -> None:
    exp = live_search.exp
    trial_dir = exp.directory / "trials" / "0"
    trial_dir.mkdir(parents=True, exist_ok=True)
    status, body = call(live_search.board, f"/api/experiments/{exp.id}/trials/0")
    assert (status, body["checkpoint"]) == (200, None)
    old = trial_dir / "checkpoint.0-aaa.pt"
    old.write_bytes(b"x" * 10)
    os.utime(old, (1_000_000, 1_000_000))
    (trial_dir / "checkpoint.0-bbb.pt").write_bytes(b"y" * 123)
    (trial_dir / "checkpoint.0-ccc.pt.tmp").write_bytes(b"being written")
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"z" * 7)
    os.symlink(outside, trial_dir / "checkpoint.0-ddd.pt")
    status, body = call(live_search.board, f"/api/experiments/{exp.id}/trials/0")
    assert status == 200
    ckpt = body["checkpoint"]
    assert (ckpt["name"], ckpt["size"]) == ("checkpoint.0-bbb.pt", 123)
    assert Path(ckpt["path"]) == (trial_dir / "checkpoint.0-bbb.pt").resolve()
    assert "z" * 7 not in json.dumps(body)
