"""``nasflow dashboard`` (the web page) and ``nasflow plot`` (a chart as a file)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from nasflow.cli._output import EXIT_FAILED, EXIT_OK, Formatter, add_home, command, find

if TYPE_CHECKING:
    from nasflow.experiment import Experiment

__all__ = ["add_parsers", "with_dashboard"]

DASHBOARD_EXAMPLES = """examples:
  nasflow dashboard                 # every experiment under NASFLOW_HOME, live
  nasflow dashboard k3j9 --port 8080
  nasflow dashboard --port 0        # a free port (the default)
  nasflow dashboard --no-token      # reading needs no token (controls still do)
"""

PLOT_EXAMPLES = """examples:
  nasflow plot k3j9 history -o history.png
  nasflow plot k3j9 curves -o curves.svg
  nasflow plot k3j9 pareto -o front.html   # an HTML page with the chart inline

kinds: history (metric and best so far), curves (intermediate metrics), parallel
(coordinates over the labels), pareto (two objectives), importance (per label).
"""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``dashboard`` and ``plot``."""
    from nasflow._plots import PLOT_KINDS

    p = sub.add_parser(
        "dashboard", help="serve the web dashboard (live experiments, trials, charts)",
        description="Serve the web dashboard on 127.0.0.1 and print its address (with the "
        "token). Running experiments are followed live through their control endpoints; "
        "finished ones are read from their stores. Needs: pip install 'nasflow[dashboard]'.",
        epilog=DASHBOARD_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", nargs="?", help="open the page on this experiment")
    p.add_argument("--port", type=_port, default=0, help="the port (default 0: a free one)")
    p.add_argument("--no-token", action="store_true",
                   help="reading needs no token (on 127.0.0.1 only; controls still need it)")
    add_home(p)
    p.set_defaults(func=dashboard_main)

    p = sub.add_parser(
        "plot", help="draw a chart of an experiment into a .png/.svg/.html file",
        description="Draw one chart of an experiment's trials with matplotlib and write it "
        "to a file. Needs: pip install 'nasflow[plot]'.",
        epilog=PLOT_EXAMPLES, formatter_class=Formatter,
    )
    p.add_argument("id", help="the experiment (id, unique id prefix, or directory)")
    p.add_argument("kind", choices=PLOT_KINDS, help="which chart")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write it (.png, .svg, .pdf or .html)")
    add_home(p)
    p.set_defaults(func=plot_main)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (a free one) to 65535, got {text!r}")
    return value


@command
def dashboard_main(args: argparse.Namespace) -> int:
    only = find(args.id, args.home).name if args.id else None
    try:
        from nasflow.dashboard import Dashboard

        board = Dashboard(home=args.home, port=args.port, read_token=not args.no_token,
                          only=only)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED

    async def serve() -> None:
        async with board:
            print(f"nasflow dashboard: {board.url}", flush=True)
            if args.no_token:
                print("reading needs no token; the controls still do (use the URL above)",
                      flush=True)
            await anyio.sleep_forever()

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


async def with_dashboard(exp: Experiment, run: Coroutine[Any, Any, int]) -> int:
    """Await ``run`` (the run of ``exp``) with a dashboard serving it; prints the address."""
    from nasflow.dashboard import Dashboard

    async with Dashboard(exp, home=exp.config.home) as board:
        print(f"nasflow dashboard: {board.url}#/experiments/{exp.id}", flush=True)
        return await run


@command
def plot_main(args: argparse.Namespace) -> int:
    from nasflow._plots import save_figure
    from nasflow._results import load_experiment

    with load_experiment(find(args.id, args.home)) as res:
        try:
            fig = res.plot(args.kind)
            path = save_figure(fig, args.output)
        except (ImportError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print(f"wrote {path}")
    return EXIT_OK
