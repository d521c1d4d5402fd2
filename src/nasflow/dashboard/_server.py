"""``Dashboard``: the web page served by uvicorn on this process's event loop."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Callable, Generator
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from nasflow.dashboard._app import DashboardState, create_app

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["Dashboard"]


def _uvicorn_server() -> type:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "the dashboard needs starlette and uvicorn: pip install 'nasflow[dashboard]'"
        ) from exc

    class _Server(uvicorn.Server):
        # the dashboard is a guest in someone's process (a notebook, `nasflow run`): it
        # must not take over their Ctrl-C handler
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return _Server


class Dashboard:
    """The web dashboard, as an async context manager::

        async with nf.dashboard.Dashboard(exp) as board:
            print(board.url)        # http://127.0.0.1:PORT/?token=...
            await exp.run()

    Serves every experiment under ``home`` (default ``NASFLOW_HOME``) and the given
    ``experiments`` running in this process (their events come from their hubs).
    ``port=0`` picks a free port. ``read_token=False`` lets anyone on this machine read
    without the token (controls always need it). ``only`` opens the page on one
    experiment. ``include(id)``, when given, limits the page to the experiments it
    accepts (``nasflow manager --dashboard``: those that attached to the daemon); call
    ``experiments_changed()`` when its answer changes, and open pages refresh their list.
    """

    def __init__(self, *experiments: Experiment, home: str | os.PathLike[str] | None = None,
                 port: int = 0, host: str = "127.0.0.1", token: str | None = None,
                 read_token: bool = True, only: str | None = None,
                 include: Callable[[str], bool] | None = None) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be 0 (a free port) to 65535, got {port!r}")
        self.host = host
        self.token = token or secrets.token_urlsafe(24)
        """The token controls (and reading, unless ``read_token=False``) need."""
        self.state = DashboardState(home=home, token=self.token, read_token=read_token,
                                    live=list(experiments), only=only, include=include)
        self._port = port
        self._socket: socket.socket | None = None
        self._server: object | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._served = anyio.Event()
        self._server_class = _uvicorn_server()

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._socket is None:
            raise RuntimeError("the dashboard is not started: use `async with Dashboard()`")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """The page's address, with the token."""
        page = f"http://{self.host}:{self.port}/"
        if self.state.only:
            return f"{page}?token={self.token}#/experiments/{self.state.only}"
        return f"{page}?token={self.token}"

    def add(self, exp: Experiment) -> None:
        """Also serve ``exp`` (running in this process) live from its event hub."""
        self.state.add_live(exp)

    def experiments_changed(self, *_: object) -> None:
        """Make every open page re-read its list of experiments (pushed to them)."""
        self.state.experiments_changed()

    async def __aenter__(self) -> Dashboard:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the dashboard cannot listen on {self.host}:{self._port}: {exc}; "
                          "choose another --port (0 picks a free one)") from exc
        # listening now: a browser that connects before uvicorn is up waits in the backlog
        sock.listen(128)
        self._socket = sock
        allowed = ["127.0.0.1", "localhost", self.host]
        config = uvicorn.Config(create_app(self.state, allowed_hosts=allowed),
                                log_level="warning", lifespan="off",
                                ws="websockets-sansio", ws_max_size=64 * 1024,
                                timeout_graceful_shutdown=2)
        server = self._server_class(config)
        self._server = server
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self.state.tg = tg
        tg.start_soon(self._serve, server, sock)
        return self

    async def _serve(self, server: object, sock: socket.socket) -> None:
        try:
            await server.serve([sock])  # type: ignore[attr-defined]
        finally:
            self._served.set()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool | None:
        assert self._tg is not None and self._server is not None
        self._server.should_exit = True  # type: ignore[attr-defined]
        # uvicorn closes its connections and returns; then the feed pumps can go
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await self._served.wait()
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            if self._socket is not None:
                self._socket.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled (``nasflow dashboard``)."""
        await anyio.sleep_forever()
