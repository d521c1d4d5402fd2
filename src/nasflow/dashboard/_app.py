"""The dashboard's ASGI app: the page, a JSON API and a WebSocket of pushed events.

Routes (every ``{id}`` is checked against the experiments known; nothing is a path)::

    GET  /                                   the page (static/index.html)
    GET  /static/...                         its scripts and styles
    GET  /api/experiments                    every experiment (registry info)
    GET  /api/experiments/{id}               one: info, config, objective, labels
    GET  /api/experiments/{id}/trials        every trial (compact dicts)
    GET  /api/experiments/{id}/trials/{tid}  one trial, its intermediates and log tails
    GET  /api/experiments/{id}/trials/{tid}/architecture   its frozen model's module tree
    GET  /api/experiments/{id}/progress      what a (one-shot) strategy reported, in order
    POST /api/experiments/{id}/stop          stop it (token)
    POST /api/experiments/{id}/trials/{tid}/kill   cancel a running trial (token)
    POST /api/experiments/{id}/update        change concurrency / budgets (token)
    POST /api/experiments/{id}/enqueue       {"sample": {...}} to evaluate next (token)
    WS   /ws                                 {"subscribe": id} -> frames of events

Reading needs the token unless the app was made with ``read_token=False``; controls
always need it: none gives 401, a wrong one 403.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from nasflow._control import send_request
from nasflow._kernel import ExperimentState, TrialRecord
from nasflow.dashboard._feed import Client, Feed
from nasflow.exceptions import NasflowError
from nasflow.store import DB_NAME, StoreReader, experiment_info, list_experiments, nasflow_home

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["DashboardState", "create_app"]

STATIC = Path(__file__).with_name("static")
LOG_NAMES = ("stdout.log", "stderr.log")
LOG_TAIL_BYTES = 64 * 1024
MAX_BODY = 4096
MAX_WS_MESSAGE = 4096


class DashboardState:
    """What the app serves: the experiments under ``home`` plus ``live`` ones in this
    process, the token, and the feeds that push their events."""

    def __init__(self, *, home: str | os.PathLike[str] | None, token: str,
                 read_token: bool = True, live: list[Experiment] | None = None,
                 only: str | None = None,
                 include: Callable[[str], bool] | None = None) -> None:
        self.home = home
        self.token = token
        self.read_token = read_token
        self.live: dict[str, Experiment] = {e.id: e for e in live or []}
        self.only = only
        self.include = include
        """Serve only the experiments whose id it accepts (``None``: every one); a
        manager daemon's dashboard shows the experiments that attached to it."""
        self.feeds: dict[str, Feed] = {}
        self.clients: set[Client] = set()
        """Every page connected now (``experiments_changed`` reaches them all)."""
        self.tg: anyio.abc.TaskGroup | None = None
        self.spaces: dict[str, tuple[Any, Any]] = {}
        """Per experiment read from its pickles: (model space, a Profiled's inputs)."""

    def add_live(self, exp: Experiment) -> None:
        """Serve ``exp`` (running in this process) from its event hub."""
        self.live[exp.id] = exp
        self.experiments_changed()

    def experiments_changed(self) -> None:
        """Tell every connected page that the list of experiments changed (one started,
        or attached to the manager): pushed, so a list page never re-reads on a timer."""
        for client in list(self.clients):
            client.push("", [{"type": "experiments_changed"}])

    def _included(self, experiment_id: str) -> bool:
        return self.include is None or experiment_id in self.live or \
            self.include(experiment_id)

    # --- finding experiments ---------------------------------------------------------------

    def directory(self, experiment_id: str) -> Path:
        """The directory of a known experiment; 404 for anything else (ids are never
        joined to paths unchecked)."""
        if experiment_id in self.live:
            return self.live[experiment_id].directory
        if not self._included(experiment_id):
            raise HTTPException(404, f"no experiment {experiment_id!r}")
        root = nasflow_home(self.home) / "experiments"
        for entry in _entries(root):
            if entry.name == experiment_id and (entry / DB_NAME).is_file():
                return entry
        raise HTTPException(404, f"no experiment {experiment_id!r}")

    def infos(self) -> list[dict[str, Any]]:
        found = {i.id: i for i in list_experiments(self.home) if self._included(i.id)}
        for exp_id, exp in self.live.items():
            if exp_id not in found and (exp.directory / DB_NAME).is_file():
                found[exp_id] = experiment_info(exp.directory)
        out = []
        for info in found.values():
            d = info.to_dict()
            d["duration"] = info.duration
            d["max_trials"] = _max_trials(info.directory)
            d["live"] = info.id in self.live
            out.append(d)
        return out

    async def feed(self, experiment_id: str) -> Feed | None:
        """The running feed of an experiment, started on first use and subscribed at its
        source on return; ``None`` when it is not running (the page reads the store)."""
        feed = self.feeds.get(experiment_id)
        if feed is not None and feed.running:
            return feed
        directory = self.directory(experiment_id)
        live = self.live.get(experiment_id)
        if live is not None:
            if live.state is not ExperimentState.RUNNING:
                return None
        elif experiment_info(directory).state != ExperimentState.RUNNING:
            return None
        feed = self.feeds[experiment_id] = Feed(experiment_id, directory, live)
        assert self.tg is not None, "the dashboard's task group is not running"
        feed.running = True  # from now: a second subscriber shares this pump
        subscribed = await self.tg.start(feed.pump)
        return feed if subscribed else None


def _entries(root: Path) -> list[Path]:
    try:
        return [e for e in root.iterdir() if not e.name.startswith(".")]
    except OSError:
        return []


def _max_trials(directory: Path) -> int | None:
    try:
        with _Reader(directory) as r:
            result: int | None = r.meta().get("config", {}).get("max_trials")
            return result
    except NasflowError:
        return None


class _Reader:
    """``StoreReader`` as a context manager (one short read per request)."""

    def __init__(self, directory: Path) -> None:
        self.reader = StoreReader(directory / DB_NAME)

    def __enter__(self) -> StoreReader:
        return self.reader

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


# --- auth ----------------------------------------------------------------------------------


def _given_token(conn: HTTPConnection) -> str | None:
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return conn.headers.get("x-nasflow-token") or conn.query_params.get("token")


def _check(conn: HTTPConnection, *, control: bool) -> None:
    state: DashboardState = conn.app.state.dashboard
    if not control and not state.read_token:
        return
    given = _given_token(conn)
    if not given:
        raise HTTPException(401, "this needs the dashboard's token: open the URL that "
                                 "`nasflow dashboard` printed (it ends in ?token=...)")
    if not hmac.compare_digest(given.encode(), state.token.encode()):
        raise HTTPException(403, "wrong token: use the one `nasflow dashboard` printed")


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY), status,
                    media_type="application/json")


def _trial_dict(r: TrialRecord, *, full: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": r.id, "state": r.state.value, "metric": r.metric, "metrics": r.metrics,
        "sample": r.sample, "submitted_at": r.submitted_at, "started_at": r.started_at,
        "ended_at": r.ended_at, "attempt": r.attempt,
        "error": None if r.error is None else (r.error.to_dict() if full else
                                               {"type": r.error.type,
                                                "message": r.error.message[:300]}),
    }
    return d


def _trial_id(request: Request) -> int:
    raw = request.path_params["tid"]
    if not raw.isdigit() or len(raw) > 12:
        raise HTTPException(400, f"a trial id is a non-negative integer, got {raw!r}")
    return int(raw)


# --- routes --------------------------------------------------------------------------------


async def page(request: Request) -> Response:
    state: DashboardState = request.app.state.dashboard
    if _given_token(request) is not None or state.read_token:
        _check(request, control=False)
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})


async def experiments(request: Request) -> Response:
    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    infos = await anyio.to_thread.run_sync(state.infos)
    return _json({"experiments": infos, "only": state.only})


async def experiment(request: Request) -> Response:
    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    directory = state.directory(request.path_params["id"])

    def read() -> dict[str, Any]:
        info = experiment_info(directory)
        d = info.to_dict()
        d["duration"] = info.duration
        with _Reader(directory) as r:
            meta = r.meta()
        d.update(config=meta.get("config", {}), objective=meta.get("objective"),
                 labels=meta.get("labels"), strategy=meta.get("strategy"),
                 live=info.id in state.live)
        return d

    return _json(await anyio.to_thread.run_sync(read))


def _live_trials(state: DashboardState, experiment_id: str) -> list[TrialRecord] | None:
    exp = state.live.get(experiment_id)
    return None if exp is None or exp.state is not ExperimentState.RUNNING else exp.trials()


# ``?format=rows``: one array per trial in ROW_COLUMNS' order, ``metrics`` and ``sample``
# as the JSON text the store holds (the page parses them), and ``sample`` dictionary-coded:
# the index of its text in ``dictionaries["sample"]`` (100,000 trials of a space of a few
# hundred architectures repeat the same few hundred texts). A 100,000-trial experiment is
# read and sent with one ``orjson.dumps``, no Python object per trial but its row
ROW_COLUMNS = ("id", "state", "metric", "metrics", "sample", "submitted_at", "started_at",
               "ended_at", "attempt", "error_type", "error_message")
JSON_COLUMNS = ("metrics", "sample")
_MESSAGE = ROW_COLUMNS.index("error_message")
_SAMPLE = ROW_COLUMNS.index("sample")


def _rows_json(rows: list[Any]) -> bytes:
    texts: dict[str, int] = {}
    coded = []
    for row in rows:
        sample = texts.setdefault(row[_SAMPLE], len(texts))
        message = row[_MESSAGE]
        if message is not None and len(message) > 300:
            message = message[:300]
        coded.append((*row[:_SAMPLE], sample, *row[_SAMPLE + 1:_MESSAGE], message))
    return orjson.dumps({"columns": ROW_COLUMNS, "json_columns": JSON_COLUMNS,
                         "dictionaries": {"sample": list(texts)}, "rows": coded})


def _record_row(r: TrialRecord) -> tuple[Any, ...]:
    return (r.id, r.state.value, r.metric, orjson.dumps(r.metrics).decode(),
            orjson.dumps(r.sample).decode(), r.submitted_at, r.started_at, r.ended_at,
            r.attempt, None if r.error is None else r.error.type,
            None if r.error is None else r.error.message)


async def trials(request: Request) -> Response:
    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    exp_id = request.path_params["id"]
    directory = state.directory(exp_id)
    records = _live_trials(state, exp_id)
    if request.query_params.get("format") == "rows":
        def read_rows() -> bytes:
            if records is not None:
                return _rows_json([_record_row(r) for r in records])
            with _Reader(directory) as r:
                return _rows_json(r.trial_rows(ROW_COLUMNS))
        body = await anyio.to_thread.run_sync(read_rows)
        return Response(body, media_type="application/json")
    if records is None:
        def read() -> list[TrialRecord]:
            with _Reader(directory) as r:
                return r.trials()
        records = await anyio.to_thread.run_sync(read)
    return _json({"trials": [_trial_dict(r) for r in records]})


async def trial(request: Request) -> Response:
    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    exp_id = request.path_params["id"]
    directory = state.directory(exp_id)
    tid = _trial_id(request)

    def read() -> dict[str, Any]:
        with _Reader(directory) as r:
            stored = {t.id: t for t in r.trials()}
            live = {t.id: t for t in _live_trials(state, exp_id) or []}
            record = live.get(tid) or stored.get(tid)
            if record is None:
                raise HTTPException(404, f"experiment {exp_id} has no trial {tid}")
            points = r.intermediates(tid)
        d = _trial_dict(record, full=True)
        d["intermediates"] = [[s, v] for s, v in points]
        d["logs"] = {name: _tail(directory, tid, name) for name in LOG_NAMES}
        d["checkpoint"] = _checkpoint(directory, tid)
        return d

    return _json(await anyio.to_thread.run_sync(read))


def _space_and_inputs(state: DashboardState, exp_id: str, directory: Path
                      ) -> tuple[Any, Any]:
    """The experiment's space and the inputs of its ``Profiled`` evaluator (or ``None``);
    read once from the pickles of an experiment that is not in this process."""
    from nasflow._persist import load_object
    from nasflow.evaluator import Profiled

    live = state.live.get(exp_id)
    if live is not None:
        space, evaluator = live.space, live.evaluator
    elif exp_id in state.spaces:
        return state.spaces[exp_id]
    else:
        try:
            space = load_object(directory, "space")
        except NasflowError as exc:
            raise HTTPException(409, str(exc)) from exc
        try:
            evaluator = load_object(directory, "evaluator")
        except NasflowError:
            evaluator = None  # FLOPs then need ?input=
    found = (space, evaluator.inputs if isinstance(evaluator, Profiled) else None)
    if live is None:
        state.spaces[exp_id] = found
    return found


async def architecture(request: Request) -> Response:
    """The trial's frozen model: modules with parameters and FLOPs, cells as graphs."""
    from nasflow.dashboard._architecture import architecture as describe
    from nasflow.dashboard._architecture import parse_input

    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    exp_id = request.path_params["id"]
    directory = state.directory(exp_id)
    tid = _trial_id(request)
    given = request.query_params.get("input")
    try:
        shape = parse_input(given) if given else None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from exc

    def read() -> dict[str, Any]:
        record = next((t for t in _live_trials(state, exp_id) or [] if t.id == tid), None)
        if record is None:
            with _Reader(directory) as r:
                record = next((t for t in r.trials() if t.id == tid), None)
        if record is None:
            raise HTTPException(404, f"experiment {exp_id} has no trial {tid}")
        space, inputs = _space_and_inputs(state, exp_id, directory)
        if not getattr(space, "is_model_space", False):
            raise HTTPException(409, f"experiment {exp_id} searches a {type(space).__name__}, "
                                     "not a model space: its trials have a sample (see the "
                                     "trial's detail) but no module tree")
        try:
            return describe(space, record.sample, shape if shape is not None else inputs)
        except Exception as exc:  # the user's space refusing this sample: say why
            raise HTTPException(409, f"cannot freeze trial {tid}'s sample: "
                                     f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    return _json(await anyio.to_thread.run_sync(read))


async def progress(request: Request) -> Response:
    """``{"progress": [[time, step, values], ...]}``: the strategy's ``progress`` reports
    (a one-shot strategy's epochs, with ``probs``: label -> choice -> weight)."""
    _check(request, control=False)
    state: DashboardState = request.app.state.dashboard
    directory = state.directory(request.path_params["id"])

    def read() -> list[Any]:
        with _Reader(directory) as r:
            return [[t, step, values] for t, step, values in r.progress()]

    return _json({"progress": await anyio.to_thread.run_sync(read)})


def _tail(directory: Path, tid: int, name: str) -> str | None:
    """The end of a trial's log. ``name`` comes from ``LOG_NAMES`` only, and the resolved
    path must stay inside the experiment directory (a symlink cannot lead out)."""
    root = directory.resolve()
    path = (directory / "trials" / str(tid) / name).resolve()
    if name not in LOG_NAMES or not path.is_relative_to(root) or not path.is_file():
        return None
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        return f.read().decode(errors="replace")


def _checkpoint(directory: Path, tid: int) -> dict[str, Any] | None:
    """The trial's newest checkpoint file (``trial.save_checkpoint``): its name, path, size
    and time, never its content; one resolving outside the experiment directory is left
    out, like the logs."""
    root = directory.resolve()
    found = []
    for path in (directory / "trials" / str(tid)).glob("checkpoint.*"):
        real = path.resolve()
        if path.name.endswith(".tmp") or not real.is_relative_to(root) or not real.is_file():
            continue
        stat = real.stat()
        found.append((stat.st_mtime, path.name, str(real), stat.st_size))
    if not found:
        return None
    mtime, name, real_path, size = max(found)
    return {"name": name, "path": real_path, "size": size, "modified": mtime}


async def _body(request: Request) -> dict[str, Any]:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HTTPException(413, f"a control request body is at most {MAX_BODY} bytes")
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise HTTPException(413, f"a control request body is at most {MAX_BODY} bytes")
    if not data.strip():
        return {}
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


async def stop(request: Request) -> Response:
    _check(request, control=True)
    state: DashboardState = request.app.state.dashboard
    exp_id = request.path_params["id"]
    directory = state.directory(exp_id)
    body = await _body(request)
    reason = str(body.get("reason") or "stopped from the dashboard")[:200]
    live = state.live.get(exp_id)
    if live is not None:
        if live.state is not ExperimentState.RUNNING:
            raise HTTPException(409, f"experiment {exp_id} is not running ({live.state})")
        assert state.tg is not None
        state.tg.start_soon(live.stop, reason)
        return _json({"ok": True, "stopping": True})
    reply = await _control(directory, "stop", reason=reason, wait=False)
    return _json(reply)


async def kill(request: Request) -> Response:
    _check(request, control=True)
    tid = _trial_id(request)
    body = await _body(request)
    reason = str(body.get("reason") or "killed from the dashboard")[:200]
    return await _change(request, "kill", {"trial": tid, "reason": reason})


async def update(request: Request) -> Response:
    """``{"concurrency": 8, "max_trials": 500, "max_duration": null}`` (any of them), like
    ``exp.update`` and ``nasflow update``."""
    _check(request, control=True)
    body = await _body(request)
    return await _change(request, "update", {k: v for k, v in body.items() if k != "source"})


async def enqueue(request: Request) -> Response:
    """``{"sample": {...}}`` (or a list of samples), like ``exp.enqueue`` and ``nasflow
    enqueue --sample``: checked against the space by the experiment (409 with the reason
    if one does not fit; none is queued)."""
    _check(request, control=True)
    body = await _body(request)
    extra = sorted(set(body) - {"sample", "source"})
    if extra or "sample" not in body:
        raise HTTPException(400, 'enqueue takes {"sample": {"label": value, ...}} (or a '
                                 "list of samples)" + (f"; unknown field(s) {', '.join(extra)}"
                                                       if extra else ""))
    sample = body["sample"]
    entries = [sample] if isinstance(sample, dict) else sample
    if not isinstance(entries, list) or not entries or \
            not all(isinstance(e, dict) for e in entries):
        given = orjson.dumps(sample).decode()[:200]
        raise HTTPException(400, 'sample must be a JSON object {"label": value, ...} or a '
                                 f"non-empty list of them, got {given}")
    return await _change(request, "enqueue", {"entries": entries})


async def _change(request: Request, op: str, args: dict[str, Any]) -> Response:
    """One runtime change, on the same path as the API's and the CLI's (``_changes.py``):
    an attached experiment's own desk, else its control endpoint; 409 with the reason if
    it is refused (nothing changed)."""
    state: DashboardState = request.app.state.dashboard
    exp_id = request.path_params["id"]
    directory = state.directory(exp_id)
    live = state.live.get(exp_id)
    if live is not None:
        try:
            result = await live._changes.apply(op, args, source="dashboard")
        except NasflowError as exc:
            raise HTTPException(409, str(exc)) from exc
        return _json({"ok": True, **result})
    reply = await _control(directory, op, **args, source="dashboard")
    if not reply.get("ok"):
        raise HTTPException(409, str(reply.get("error")))
    return _json(reply)


async def _control(directory: Path, op: str, **extra: Any) -> dict[str, Any]:
    try:
        return await anyio.to_thread.run_sync(
            lambda: send_request(directory, op, timeout=10.0, **extra))
    except NasflowError as exc:
        raise HTTPException(409, str(exc)) from exc


async def websocket(ws: WebSocket) -> None:
    state: DashboardState = ws.app.state.dashboard
    try:
        _check(ws, control=False)
    except HTTPException as exc:
        await ws.close(code=4000 + exc.status_code, reason=exc.detail)
        return
    await ws.accept()
    client = Client()
    state.clients.add(client)
    watching: dict[str, Feed] = {}

    async def send_frames(scope: anyio.CancelScope) -> None:
        try:
            async for data in client.frames():
                await ws.send_text(data.decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            scope.cancel()  # the page went away mid-send

    async def receive() -> None:
        while True:
            text = await ws.receive_text()
            if len(text) > MAX_WS_MESSAGE:
                await ws.send_text('{"type": "error", "error": "message too large"}')
                continue
            try:
                message = orjson.loads(text)
                target = message["subscribe"]
                if not isinstance(target, str):
                    raise TypeError(target)
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                await ws.send_text(orjson.dumps(
                    {"type": "error", "error": f"expected {{\"subscribe\": ID}}: {exc!r}"}
                ).decode())
                continue
            try:
                feed = await state.feed(target)
            except HTTPException as exc:
                await ws.send_text(orjson.dumps({"type": "error", "error": exc.detail}).decode())
                continue
            if feed is not None:
                feed.add(client)
                watching[target] = feed
            await ws.send_text(orjson.dumps(
                {"type": "subscribed", "experiment": target, "live": feed is not None}
            ).decode())

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(send_frames, tg.cancel_scope)
            try:
                await receive()
            except (WebSocketDisconnect, RuntimeError, OSError):
                pass  # the page went away
            tg.cancel_scope.cancel()
    finally:
        state.clients.discard(client)
        for feed in watching.values():
            feed.discard(client)


def create_app(state: DashboardState, *, allowed_hosts: list[str] | None = None
               ) -> Starlette:
    """The Starlette app serving ``state``; ``state.tg`` must be set (``Dashboard`` does)
    before a WebSocket subscribes to a running experiment."""
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/experiments", experiments),
            Route("/api/experiments/{id}", experiment),
            Route("/api/experiments/{id}/trials", trials),
            Route("/api/experiments/{id}/trials/{tid}", trial),
            Route("/api/experiments/{id}/trials/{tid}/architecture", architecture),
            Route("/api/experiments/{id}/progress", progress),
            Route("/api/experiments/{id}/stop", stop, methods=["POST"]),
            Route("/api/experiments/{id}/trials/{tid}/kill", kill, methods=["POST"]),
            Route("/api/experiments/{id}/update", update, methods=["POST"]),
            Route("/api/experiments/{id}/enqueue", enqueue, methods=["POST"]),
            WebSocketRoute("/ws", websocket),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        # a page on another site must not reach the API through DNS rebinding
        middleware=[Middleware(TrustedHostMiddleware,
                               allowed_hosts=allowed_hosts or ["127.0.0.1", "localhost"])],
        exception_handlers={HTTPException: _error},
    )
    app.state.dashboard = state
    return app


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, exc.status_code)

