"""What operators read: a player's events as a timeline, a live tail, a JSONL export."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.table import Table

from questlog.events.schema import Recorded
from questlog.events.store import EventStore
from questlog.events.subjects import EVENTS_WILDCARD, player_events
from questlog.services.contract.protocol import rfc3339

_encoder = msgspec.json.Encoder()


def as_json(rec: Recorded) -> dict[str, Any]:
    return {
        "seq": rec.seq,
        "player_id": rec.player_id,
        "version": rec.version,
        "type": rec.type,
        "schema": rec.event.SCHEMA,
        "occurred_at": rfc3339(rec.occurred_at),
        "command_id": rec.command_id,
        "causation_id": rec.causation_id,
        "data": msgspec.to_builtins(rec.event),
    }


def summary(rec: Recorded) -> str:
    """One readable line of what happened."""
    data = msgspec.to_builtins(rec.event)
    if rec.type == "task.enqueued":
        t = data["task"]
        return f"{t['activity']} {t['quantity']}× {t['target']} ({t['task_id']})"
    parts = []
    for key, value in data.items():
        if value in ({}, [], None, ""):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k} {_compact(v)}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(map(str, value))
        parts.append(f"{key}={value}")
    return "  ".join(parts)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + " ".join(str(v) for v in value.values()) + ")"
    return str(value)


def timeline_table(events: Iterable[Recorded], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col, style in (("ver", "bold"), ("occurred at", "dim"), ("type", "cyan"), ("what", ""), ("by", "dim")):
        table.add_column(col, style=style, overflow="fold")
    for rec in events:
        table.add_row(
            str(rec.version), rfc3339(rec.occurred_at), rec.type, summary(rec), rec.command_id or rec.causation_id or ""
        )
    return table


async def replay(
    store: EventStore,
    player_id: str,
    *,
    from_version: int = 1,
    types: list[str] | None = None,
    as_jsonl: bool = False,
    out: IO[str] | None = None,
) -> int:
    events = await store.read(player_id, from_version=from_version)
    if types:
        events = [e for e in events if any(e.type == t or e.type.startswith(t + ".") for t in types)]
    out = out or sys.stdout
    if as_jsonl:
        for rec in events:
            out.write(_encoder.encode(as_json(rec)).decode() + "\n")
    else:
        Console(file=out).print(timeline_table(events, f"player {player_id}: {len(events)} events"))
    return len(events)


async def tail(store: EventStore, player_id: str | None, out: IO[str] | None = None) -> None:
    """Follow the log from now on (Ctrl-C stops)."""
    subject = player_events(player_id) if player_id else EVENTS_WILDCARD
    console = Console(file=out or sys.stdout)
    start = await _next_seq(store)
    async for rec in store.replay(subject=subject, start_seq=start, follow=True):
        console.print(
            f"[dim]{rfc3339(rec.occurred_at)}[/] [bold]{rec.player_id}[/] v{rec.version} "
            f"[cyan]{rec.type}[/] {summary(rec)}",
            highlight=False,
        )


async def export(store: EventStore, out: IO[str] | None = None, subject: str = EVENTS_WILDCARD) -> int:
    out = out or sys.stdout
    n = 0
    async for rec in store.replay(subject=subject):
        out.write(_encoder.encode(as_json(rec)).decode() + "\n")
        n += 1
    return n


async def _next_seq(store: EventStore) -> int:
    return await store.last_seq() + 1
