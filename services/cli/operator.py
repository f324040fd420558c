"""The operator's subcommands: replay, tail, export, state (time travel), inspect, projections.

Each is a handler of `questlog`'s dispatch table (services/cli/main.py): `_connected`
gives it the running system's connections, made from the command line's settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
from rich.console import Console

from questlog.events.subjects import valid_player_id
from questlog.projections.repository import PlayerRepository
from questlog.services.runtime.connections import UnreachableError, Wiring, connect
from questlog.services.runtime.settings import Settings

from . import timeline

Command = Callable[[argparse.Namespace, Wiring], Awaitable[int]]
Handler = Callable[[argparse.Namespace, Settings], int]  # an entry of `questlog`'s dispatch table


def _connected(command: Command) -> Handler:
    """The command against the running system (`questlog up`'s ports unless the URLs are set); creates no streams."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        player = getattr(args, "player", None)
        if player is not None and not valid_player_id(player):
            print("questlog: a player id is 1-64 letters, digits, '-' or '_'", file=sys.stderr)
            return 2
        return asyncio.run(_on_wiring(command, args, settings))

    return run


async def _on_wiring(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    if not settings.nats_url:
        settings = msgspec.structs.replace(settings, nats_url=f"nats://127.0.0.1:{settings.nats_port}")
    if not settings.redis_url:
        settings = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{settings.redis_port}/0")
    try:
        async with connect(settings, name="questlog-cli", create_streams=False, persistent=False) as wiring:
            return await command(args, wiring)
    except UnreachableError as exc:
        print(f"questlog: {exc}; is `questlog up` running, or QUESTLOG_NATS_URL set?", file=sys.stderr)
        return 1


@_connected
async def replay(args: argparse.Namespace, wiring: Wiring) -> int:
    n = await timeline.replay(
        wiring.store, args.player, from_version=args.from_version, types=args.types, as_jsonl=args.json
    )
    return 0 if n or args.types or args.from_version > 1 else 1


@_connected
async def tail(args: argparse.Namespace, wiring: Wiring) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        await timeline.tail(wiring.store, args.player)
    return 0


@_connected
async def export(args: argparse.Namespace, wiring: Wiring) -> int:
    await timeline.export(wiring.store)
    return 0


@_connected
async def state(args: argparse.Namespace, wiring: Wiring) -> int:
    from questlog.projections.views import player_view, queue_view

    repo = PlayerRepository(wiring.store)
    folded = await (repo.load_at(args.player, args.at_version) if args.at_version else repo.load(args.player))
    if folded.version == 0:
        print(f"questlog: player {args.player} has no events", file=sys.stderr)
        return 1
    at = folded.updated_at or datetime.now(UTC)
    out = {"version": folded.version, "queue": queue_view(folded, at), "player": player_view(folded)}
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(out)).decode() + "\n")
    return 0


@_connected
async def inspect(args: argparse.Namespace, wiring: Wiring) -> int:
    from questlog.services.commands import CommandHandler
    from questlog.services.rules.catalog import load_rules
    from questlog.services.rules.clock import SystemClock

    repo = PlayerRepository(wiring.store)
    handler = CommandHandler(wiring, load_rules(time_scale=wiring.settings.time_scale), SystemClock(), repo)
    report = await handler.inspect(await repo.load(args.player))
    Console().print_json(data=report)
    return 0


@_connected
async def projections_status(args: argparse.Namespace, wiring: Wiring) -> int:
    from rich.table import Table

    from questlog.projections.read_models import NAMES, ReadModels
    from questlog.services.projector import DURABLE

    read_models = ReadModels(wiring.redis)
    last = await wiring.store.last_seq()
    try:
        pending = (await wiring.js.consumer_info(wiring.settings.streams.events, DURABLE)).num_pending
    except Exception:
        pending = None
    table = Table(title=f"projections (stream at sequence {last})")
    for col in ("projection", "serving", "position", "behind the log", "projector pending", "rebuilding"):
        table.add_column(col)
    for name in NAMES:
        position = await read_models.position(name)
        building = await read_models.building(name)
        table.add_row(
            name,
            await read_models.active(name),
            str(position),
            str(max(0, last - position)),
            "?" if pending is None else str(pending),
            building or "",
        )
    Console().print(table)
    return 0


@_connected
async def projections_rebuild(args: argparse.Namespace, wiring: Wiring) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from questlog.projections.read_models import NAMES, ReadModels
    from questlog.projections.rebuild import rebuild, rebuild_player

    read_models = ReadModels(wiring.redis)
    console = Console()
    names = tuple(args.names or NAMES)
    unknown = set(names) - set(NAMES)
    if unknown:
        print(f"questlog: no projection {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}", file=sys.stderr)
        return 2
    if args.player:
        report = await rebuild_player(wiring.store, read_models, args.player, names)
        console.print(f"rebuilt {', '.join(names)} of {args.player} from {report.events} events")
        return 0
    with Progress(
        TextColumn("[bold]rebuilding[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>9} events/s"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(", ".join(names), total=None, rate="-")

        def on_progress(done: int, total: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, total=total, rate=f"{done / elapsed:,.0f}")

        report = await rebuild(wiring.store, read_models, names, progress=on_progress)
    console.print(
        f"rebuilt {', '.join(report.names)} from {report.events} events of {report.players} players; "
        f"now serving {report.namespaces}"
    )
    return 0
