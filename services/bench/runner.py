"""`questlog bench <scenario>`: the arguments, and running one scenario to its result file.

Kept free of heavy imports: `services/cli/main.py` builds the parser from here on
every start, and a scenario's module is imported only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from rich.console import Console

from questlog.services.runtime.settings import Settings

from .results import BenchResult, new_result, write_result

Run = Callable[[BenchResult, Console, argparse.Namespace], Awaitable[None]]


class Scenario(NamedTuple):
    players: int  # the defaults of --players, --duration and --events
    duration_s: float
    events: int
    parameters: tuple[str, ...]  # the arguments its result records
    run: Run


async def _players(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .idle_game import Options, run_players
    from .load import SERVICES

    opts = Options(
        players=args.players,
        interval_s=args.interval,
        duration_s=args.duration,
        warmup_s=args.warmup,
        seed=args.seed,
        saturate=args.saturate,
        find_capacity=args.find_capacity,
        overload=args.overload,
        capacity_players=args.capacity,
        step_players=args.step,
        workers=tuple(args.workers) if args.workers else SERVICES,
    )
    await run_players(result, console, opts)


async def _append(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .append import run_append

    await run_append(result, console, players=args.players, round_s=args.duration)


async def _load(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .load import run_load

    await run_load(result, console, players=args.players, rate=args.rate, duration=args.duration, seed=args.seed)


async def _idle(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .load import run_idle

    await run_idle(result, console, connections=args.idle, hold_s=args.duration, deflate=args.deflate)


async def _storm(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .reconnect_storm import run_storm

    await run_storm(result, console, clients=args.players, missed=args.events, gateways=args.gateways)


async def _rebuild(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .rebuild import run_rebuild

    await run_rebuild(result, console, players=args.players, events=args.events)


async def _chaos(result: BenchResult, console: Console, args: argparse.Namespace) -> None:
    from .chaos import run_chaos

    await run_chaos(result, console, players=args.players, rate=args.rate, duration=args.duration, seed=args.seed)


_PLAYERS_PARAMETERS = (
    "players",
    "interval",
    "duration",
    "warmup",
    "saturate",
    "find_capacity",
    "overload",
    "capacity",
    "step",
    "workers",
    "seed",
)
SCENARIOS: dict[str, Scenario] = {
    "players": Scenario(1000, 60.0, 0, _PLAYERS_PARAMETERS, _players),
    "append": Scenario(100, 5.0, 0, ("players", "duration"), _append),
    "load": Scenario(1000, 30.0, 0, ("players", "rate", "duration", "seed"), _load),
    "reconnect-storm": Scenario(1000, 0.0, 5, ("players", "events", "gateways"), _storm),
    "rebuild": Scenario(1000, 0.0, 100_000, ("players", "events"), _rebuild),
    "chaos": Scenario(1000, 60.0, 0, ("players", "rate", "duration", "seed"), _chaos),
}
# `load --idle N` holds idle sockets instead: load's defaults (but --idle's hold), another run and parameters
IDLE = SCENARIOS["load"]._replace(parameters=("idle", "duration", "deflate"), run=_idle)


def _scenario(args: argparse.Namespace) -> Scenario:
    return IDLE if args.scenario == "load" and args.idle else SCENARIOS[args.scenario]


def add_bench_parser(sub: Any) -> argparse.ArgumentParser:
    """The `bench` parser, added to `sub`; the command line chooses its handler (`run_bench`)."""
    b: argparse.ArgumentParser = sub.add_parser(
        "bench",
        help="measure a scenario on a private stack and write a JSON result",
        description="Benchmarks: print figures and write bench-results/<scenario>-<time>.json. "
        "The load generator shares this machine's cores with everything it measures.",
    )
    b.add_argument("scenario", choices=tuple(SCENARIOS))
    b.add_argument(
        "--players",
        type=int,
        help="players (default: append 100, others 1000; players --find-capacity: at most 10000)",
    )
    b.add_argument("--rate", type=float, default=1.0, help="commands per second per player (load, chaos)")
    b.add_argument(
        "--duration",
        type=float,
        help="seconds of load (load 30, chaos 60, --idle hold 10); append: seconds per measured round (5)",
    )
    b.add_argument("--idle", type=int, default=0, help="load: open N idle sessions and measure gateway memory")
    b.add_argument(
        "--no-deflate",
        dest="deflate",
        action="store_false",
        help="load --idle: bare sockets that decline permessage-deflate (the client always offers it)",
    )
    b.add_argument(
        "--events", type=int, help="rebuild: events in the log (100000); reconnect-storm: events each client misses (5)"
    )
    b.add_argument(
        "--gateways",
        type=int,
        default=1,
        help="reconnect-storm: gateway processes, as behind a load balancer; each client comes back "
        "to another one than it left (default 1)",
    )
    b.add_argument(
        "--interval",
        type=float,
        default=10.0,
        help="players: mean seconds between one player's commands (Poisson; default 10)",
    )
    b.add_argument("--warmup", type=float, default=15.0, help="players: seconds before the measured window (15)")
    mode = b.add_mutually_exclusive_group()
    mode.add_argument(
        "--saturate", action="store_true", help="players: every step due at once; against raw OCC appends/s"
    )
    mode.add_argument(
        "--find-capacity",
        action="store_true",
        help="players: add --step players at a time until a p99 passes 100 ms; the largest number that held",
    )
    b.add_argument(
        "--overload",
        type=float,
        nargs="?",
        const=3.0,
        help="players: offer K (default 3) times the commands/s held at capacity, then watch recovery",
    )
    b.add_argument("--capacity", type=int, help="players --overload: the capacity in players (else found first)")
    b.add_argument("--step", type=int, default=250, help="players --find-capacity: players per step (250)")
    b.add_argument(
        "--workers",
        nargs="+",
        metavar="SERVICES",
        help="players: worker processes, each running the comma-separated services given "
        "(e.g. commands,processor,reward projector,snapshotter,presence,notifier); default one process per service",
    )
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--out", default="bench-results", help="directory of the JSON result files")
    return b


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    players, duration, events, *_ = SCENARIOS[args.scenario]
    if args.scenario == "players" and (args.find_capacity or args.overload is not None):
        players = 10_000  # the most --find-capacity tries
    args.players = args.players or players
    args.duration = args.duration if args.duration is not None else (10.0 if args.idle else duration)
    args.events = args.events if args.events is not None else events
    import logging

    # a thousand clients each logging their reconnects would drown the display
    logging.getLogger("questlog.client").setLevel(logging.WARNING)
    console = Console()
    console.print(
        f"[bold]questlog bench {args.scenario}[/]: the load generator runs on this machine and shares its "
        f"cores with nats-server, redis-server and every service; figures are for the whole system here."
    )
    try:
        return asyncio.run(_run(args, console))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, console: Console) -> int:
    command = (
        "questlog bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        if len(sys.argv) > 2
        else "questlog bench " + args.scenario
    )
    scenario = _scenario(args)
    result = new_result(args.scenario, command, {k: getattr(args, k) for k in scenario.parameters})
    await scenario.run(result, console, args)
    path = write_result(result, args.out)
    _report(console, result, path)
    return 0 if result.checks_passed else 1


def _report(console: Console, result: Any, path: Any) -> None:
    import msgspec
    from rich.table import Table

    table = Table(title=f"{result.scenario}: targets", show_lines=False)
    for col in ("target", "goal", "measured", ""):
        table.add_column(col)
    for t in result.targets:
        table.add_row(t.name, t.goal, f"{t.value:g}", "[green]met[/]" if t.met else "[red]missed[/]")
    figures = msgspec.to_builtins(result.figures)
    console.print_json(data=figures)
    if result.targets:
        console.print(table)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"checks: {'[green]passed[/]' if result.checks_passed else '[red]FAILED[/]'}")
    console.print(f"result: {path}")
