"""``nasflow manager``: run the trial manager as a long-lived daemon."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio

from nasflow.exceptions import ConfigError
from nasflow.manager._ray import RayWorkers
from nasflow.manager._server import TrialManager, new_token

if TYPE_CHECKING:
    from nasflow.dashboard import Dashboard

__all__ = ["manager_command"]

_EXAMPLES = """\
examples:
  nasflow manager                               # loopback, a free port, one worker per CPU
  nasflow manager --port 8765 --workers 4       # a fixed address experiments can find again
  nasflow manager --port 8765 --gpus 0,1 --trials-per-gpu 2   # 4 workers, 2 per GPU
  NASFLOW_TOKEN=s3cret nasflow manager --port 8765            # a token of your choosing
  nasflow manager --workers 2 --dashboard       # also serve the web page for its experiments

then, in the experiment:
  cfg = nf.ExperimentConfig(manager="ws://127.0.0.1:8765",
                            token=os.environ["NASFLOW_TOKEN"], concurrency=4)

The token comes from --token, else NASFLOW_TOKEN, else a new one is generated and
printed. Ctrl-C (SIGINT) stops the workers and exits (code 130): trials cut off end
Interrupted, and resuming their experiment runs them again. SIGTERM (systemd, kill) is a
restart (code 143): running trials keep running and re-attach, with their experiments, to
the next `nasflow manager` on the same address within --reattach-timeout.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nasflow manager",
        description="Run the nasflow trial manager: a WebSocket server with a pool of warm "
                    "worker processes that several experiments can share.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; anything else exposes the "
                        "manager to the network: keep the token secret)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--token", default=None, help="shared secret (default: NASFLOW_TOKEN, "
                                                 "else generated)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: the GPU shares with --gpus, else one per "
                        "CPU)")
    p.add_argument("--gpus", default=None,
                   help="comma-separated GPU indices workers are spread over, e.g. 0,1")
    p.add_argument("--trials-per-gpu", type=int, default=1,
                   help="how many workers share one GPU (default 1)")
    p.add_argument("--max-trials-per-worker", type=int, default=None,
                   help="recycle a worker after this many trials (1: a fresh process each)")
    p.add_argument("--kill-grace", type=float, default=5.0,
                   help="seconds a stopped trial gets before its process group is killed")
    p.add_argument("--reattach-timeout", type=float, default=60.0,
                   help="seconds workers and experiments may be away before they are "
                        "given up (default 60)")
    p.add_argument("--preload", default="",
                   help="comma-separated modules each worker imports when it starts (e.g. "
                        "torch): the first trial of every experiment starts warm")
    p.add_argument("--home", default=None,
                   help="where hosted experiments (nasflow submit) live (default: "
                        "$NASFLOW_HOME, else ~/.nasflow)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="place the workers as Ray actors on this cluster ('auto', "
                        "'ray://host:10001', 'host:6379', or 'local' for a local Ray); "
                        "--workers is then the most of them, see docs/ray.md")
    p.add_argument("--trial-resources", default='{"CPU": 1}', metavar="JSON",
                   help='with --ray: what each worker asks Ray for (default {"CPU": 1})')
    p.add_argument("--log-dir", default=None, help="where workers write their own output")
    p.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    p.add_argument("--dashboard", action="store_true",
                   help="also serve the web dashboard of the experiments that attach to this "
                        "manager, on 127.0.0.1 (its address and token are printed); needs "
                        "nasflow[dashboard]")
    p.add_argument("--dashboard-port", type=int, default=0,
                   help="the dashboard's port (default 0: a free one)")
    return p


def manager_command(argv: Sequence[str]) -> int:
    """Run ``nasflow manager`` with ``argv`` (the arguments after ``manager``).

    Returns the exit code: 0 never (it runs until stopped), 130 after SIGINT, 143 after
    SIGTERM, 2 for a bad command line or configuration.
    """
    parser = _parser()
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = args.token or os.environ.get("NASFLOW_TOKEN") or None
    generated = token is None
    if token is None:
        token = new_token()
    try:
        gpus = ([int(g) for g in args.gpus.split(",") if g.strip()]
                if args.gpus is not None else None)
    except ValueError:
        parser.error(f"--gpus must be comma-separated integers, got {args.gpus!r}")
    workers = args.workers
    if workers is None:
        workers = len(gpus) * args.trials_per_gpu if gpus else (os.cpu_count() or 1)
    for name, value in (("--workers", workers), ("--trials-per-gpu", args.trials_per_gpu),
                        ("--max-trials-per-worker", args.max_trials_per_worker or 1)):
        if value < 1:
            parser.error(f"{name} must be at least 1, got {value}")
    ray = None
    if args.ray is not None:
        try:
            ray = _ray_workers(args.ray, args.trial_resources, gpus)
        except ConfigError as exc:
            print(f"nasflow manager: {exc}", file=sys.stderr)
            return 2
    try:
        manager = TrialManager(
            ray=ray, host=args.host, port=args.port, token=token, workers=workers, gpus=gpus,
            trials_per_gpu=args.trials_per_gpu,
            max_trials_per_worker=args.max_trials_per_worker, kill_grace=args.kill_grace,
            reattach_timeout=args.reattach_timeout, log_dir=args.log_dir,
            preload=[m.strip() for m in args.preload.split(",") if m.strip()],
        )
    except ConfigError as exc:
        print(f"nasflow manager: {exc}", file=sys.stderr)
        return 2
    board = None
    if args.dashboard:
        try:
            board = _dashboard(manager, args.dashboard_port, args.home)
        except (ImportError, ValueError) as exc:
            print(f"nasflow manager: --dashboard: {exc}", file=sys.stderr)
            return 2
    return anyio.run(_serve, manager, generated, workers, board, args.home)


def _ray_workers(address: str, resources: str, gpus: list[int] | None) -> RayWorkers:
    """``--ray`` and ``--trial-resources``: connect to the cluster (ConfigError if not)."""
    import json

    from nasflow.config import ExperimentConfig
    from nasflow.manager._ray import connect

    if gpus is not None:
        raise ConfigError("gpus", gpus, "no --gpus with --ray: ask Ray for GPUs with "
                          "--trial-resources '{\"GPU\": 1}'")
    try:
        wanted = json.loads(resources)
    except ValueError as exc:
        raise ConfigError("trial_resources", resources, 'JSON such as {"CPU": 2}') from exc
    # the config checks the resources as it does for an experiment
    where = None if address == "local" else address
    cfg = ExperimentConfig(training_service="ray", ray_address=where, trial_resources=wanted)
    assert cfg.trial_resources is not None
    connect(where, cfg.trial_resources)
    return RayWorkers(resources=cfg.trial_resources)


def _dashboard(manager: TrialManager, port: int, home: str | None = None) -> Dashboard:
    """The web page of the experiments that attach to ``manager`` (loopback only: the
    manager may listen on the network, its dashboard never does)."""
    from nasflow.dashboard import Dashboard

    served = manager.core.served
    board = Dashboard(port=port, include=served.__contains__, home=home)  # hosted ones too
    manager.core.on_attach.append(board.experiments_changed)
    return board


async def _serve(manager: TrialManager, generated: bool, workers: int,
                 board: Dashboard | None = None, home: str | None = None) -> int:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with AsyncExitStack() as stack:
            if board is not None:
                try:
                    await stack.enter_async_context(board)
                except OSError as exc:
                    print(f"nasflow manager: --dashboard: {exc}", file=sys.stderr)
                    return 2
            return await _serve_manager(manager, generated, workers, board, signals, home)


async def _serve_manager(manager: TrialManager, generated: bool, workers: int,
                         board: Dashboard | None, signals: AsyncIterator[int],
                         home: str | None = None) -> int:
    from nasflow.hosted import hosting

    async with anyio.create_task_group() as tg:
        try:
            await tg.start(manager.serve)
        except OSError as exc:
            print(f"nasflow manager: cannot listen on {manager.host}:{manager.port}: "
                  f"{exc}. Pick another --port, or 0 for a free one.", file=sys.stderr)
            return 2
        host = hosting(manager, home)
        await tg.start(host.run)  # resumes the hosted experiments a restart interrupted
        if host.resumed:
            print(f"resumed {len(host.resumed)} hosted experiment(s): "
                  f"{', '.join(host.resumed)}")
        print(f"nasflow manager listening on {manager.url} with {workers} worker(s)")
        print(f"url: {manager.url}")
        if generated:
            print(f"token: {manager.token}")
            print("(export it as NASFLOW_TOKEN for your experiments)")
        else:
            print("token: (from --token / NASFLOW_TOKEN)")
        if board is not None:
            print(f"dashboard: {board.url}")
        sys.stdout.flush()
        code = 0
        async for signum in signals:
            code = 128 + signum
            break
        if code == 128 + signal.SIGTERM:
            host.closing = True  # its runs die with this process: the next daemon resumes them
            kept = await manager.hand_over()
            print(f"nasflow manager: SIGTERM, leaving {kept} busy worker(s) running for "
                  "the next manager on this address (they wait --reattach-timeout "
                  "seconds for it)", file=sys.stderr, flush=True)
            sys.stdout.flush()
            # not a normal exit: closing the event loop would kill the workers it started
            os._exit(code)
        print("nasflow manager: SIGINT, stopping the hosted experiments and the workers",
              file=sys.stderr, flush=True)
        await host.close()
        manager.stop()
    return code
