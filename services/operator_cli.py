"""The operator's subcommands: replay, tail, export, state (time travel), inspect."""

from __future__ import annotations

import argparse
import sys

import msgspec
from rich.console import Console

from questlog.events.subjects import valid_player_id
from questlog.projections.repository import PlayerRepository

from . import timeline
from .settings import Settings
from .wiring import connect


async def run_operator_command(args: argparse.Namespace, settings: Settings) -> int:
    player = getattr(args, "player", None)
    if player is not None and not valid_player_id(player):
        print("questlog: a player id is 1-64 letters, digits, '-' or '_'", file=sys.stderr)
        return 2
    if not settings.nats_url:
        settings = msgspec.structs.replace(settings, nats_url=f"nats://127.0.0.1:{settings.nats_port}")
    if not settings.redis_url:
        settings = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{settings.redis_port}/0")
    async with connect(settings, name="questlog-cli", create_streams=False) as wiring:
        store = wiring.store
        if args.command == "events":
            if args.events_command == "replay":
                n = await timeline.replay(
                    store, player, from_version=args.from_version, types=args.types, as_jsonl=args.json
                )
                return 0 if n or args.types or args.from_version > 1 else 1
            if args.events_command == "tail":
                try:
                    await timeline.tail(store, args.player)
                except KeyboardInterrupt:
                    pass
                return 0
            if args.events_command == "export":
                await timeline.export(store)
                return 0
        repo = PlayerRepository(store)
        if args.command == "state":
            from questlog.projections.views import player_view, queue_view

            state = await (repo.load_at(player, args.at_version) if args.at_version else repo.load(player))
            at = state.updated_at
            out = {"version": state.version, "queue": queue_view(state, at), "player": player_view(state)}
            sys.stdout.write(msgspec.json.format(msgspec.json.encode(out)).decode() + "\n")
            return 0
        if args.command == "admin" and args.admin_command == "inspect":
            from .commands import CommandHandler
            from .rules.catalog import load_rules
            from .rules.clock import SystemClock

            handler = CommandHandler(wiring, load_rules(time_scale=settings.time_scale), SystemClock(), repo)
            state = await repo.load(player)
            report = await handler.inspect(state)
            Console().print_json(data=report)
            return 0
    raise AssertionError(args)
