"""Awaiting what the log says: subscribe to live events, check a condition on every arrival."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from nats.aio.client import Client as NATS

from questlog.events.schema import QueueCleared, Recorded, TaskCancelled, TaskCompleted, TaskEnqueued, TaskFailed
from questlog.events.store import EventStore
from questlog.events.subjects import live_player_events


async def until(
    nc: NATS,
    store: EventStore,
    player_id: str,
    done: Callable[[list[Recorded]], bool],
    timeout: float = 30.0,
) -> list[Recorded]:
    """The player's whole log once `done(log)` holds; re-checked whenever an event is stored."""
    changed = asyncio.Event()

    async def on_live(_msg) -> None:
        changed.set()

    sub = await nc.subscribe(live_player_events(player_id), cb=on_live)
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                events = await store.read(player_id)
                if done(events):
                    return events
                await changed.wait()
    except TimeoutError:
        events = await store.read(player_id)
        tail = [(e.version, e.type) for e in events[-8:]]
        raise AssertionError(f"{player_id}: condition not met in {timeout}s; last events {tail}") from None
    finally:
        await sub.unsubscribe()


def types(events: list[Recorded]) -> list[str]:
    return [e.type for e in events]


def queue_idle(events: list[Recorded]) -> bool:
    """Every enqueued task reached an end (completed, failed or cancelled)."""
    queued = {e.event.task.task_id for e in events if isinstance(e.event, TaskEnqueued)}
    ended = {e.event.task_id for e in events if isinstance(e.event, TaskCompleted | TaskFailed | TaskCancelled)}
    cleared = {t for e in events if isinstance(e.event, QueueCleared) for t in e.event.task_ids}
    return bool(queued) and queued <= ended | cleared
