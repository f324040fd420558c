"""The operator's subcommands: replay, tail, export, state (time travel), inspect."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, datetime

import msgspec
from rich.console import Console

from questlog.events.subjects import valid_player_id
from questlog.projections.repository import PlayerRepository
from questlog.services.runtime.connections import UnreachableError, Wiring, connect
from questlog.services.runtime.settings import Settings

from . import timeline


async def run_operator_command(args: argparse.Namespace, settings: Settings) -> int:
    player = getattr(args, "player", None)
    if player is not None and not valid_player_id(player):
        print("questlog: a player id is 1-64 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    if not settings.nats_url:
        settings = msgspec.structs.replace(settings, nats_url=f"nats://127.0.0.1:{settings.nats_port}")
    if not settings.redis_url:
        settings = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{settings.redis_port}/0")
    try:
        async with connect(settings, name="questlog-cli", create_streams=False, persistent=False) as wiring:
            return await _operate(args, wiring, player)
    except UnreachableError as exc:
        print(f"questlog: {exc}; is `questlog up` running, or QUESTLOG_NATS_URL set?", file=sys.stderr)
        return 1


async def _operate(args: argparse.Namespace, wiring: Wiring, player: str | None) -> int:
    settings = wiring.settings
    store = wiring.store
    if args.command == "events":
        if args.events_command == "replay":
            assert player is not None  # argparse requires --player
            n = await timeline.replay(
                store, player, from_version=args.from_version, types=args.types, as_jsonl=args.json
            )
            return 0 if n or args.types or args.from_version > 1 else 1
        if args.events_command == "tail":
            with contextlib.suppress(KeyboardInterrupt):
                await timeline.tail(store, args.player)
            return 0
        if args.events_command == "export":
            await timeline.export(store)
            return 0
    if args.command == "projections":
        return await _projections(args, wiring)
    repo = PlayerRepository(store)
    assert player is not None  # what remains, state and admin inspect, requires --player
    if args.command == "state":
        from questlog.projections.views import player_view, queue_view

        state = await (repo.load_at(player, args.at_version) if args.at_version else repo.load(player))
        if state.version == 0:
            print(f"questlog: player {player} has no events", file=sys.stderr)
            return 1
        at = state.updated_at or datetime.now(UTC)
        out = {"version": state.version, "queue": queue_view(state, at), "player": player_view(state)}
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(out)).decode() + "\n")
        return 0
    if args.command == "admin" and args.admin_command == "inspect":
        from questlog.services.commands import CommandHandler
        from questlog.services.rules.catalog import load_rules
        from questlog.services.rules.clock import SystemClock

        handler = CommandHandler(wiring, load_rules(time_scale=settings.time_scale), SystemClock(), repo)
        state = await repo.load(player)
        report = await handler.inspect(state)
        Console().print_json(data=report)
        return 0
    raise AssertionError(args)


async def _projections(args: argparse.Namespace, wiring: Wiring) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from questlog.projections.read_models import NAMES, ReadModels
    from questlog.projections.rebuild import rebuild, rebuild_player
    from questlog.services.projector import DURABLE

    read_models = ReadModels(wiring.redis)
    console = Console()
    if args.projections_command == "status":
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
        console.print(table)
        return 0
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
