"""Rebuilding read models from the log, blue/green, while the live projector keeps serving.

A full rebuild fills the namespace that is not serving (the live projector
writes there too while it is marked `building`, so nothing that lands during
the rebuild is missed), then swaps `active` in one MULTI. A one-player rebuild
refolds that player and overwrites their entries in place.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from questlog.events.store import EventStore
from questlog.events.subjects import EVENTS_WILDCARD

from .player import evolve, initial_state
from .read_models import NAMES, ReadModels
from .state import PlayerState

Progress = Callable[[int, int], None]  # (events read so far, events expected)


class RebuildReport(msgspec.Struct, frozen=True):
    names: tuple[str, ...]
    namespaces: dict[str, str]
    events: int
    players: int


async def rebuild(
    store: EventStore,
    read_models: ReadModels,
    names: tuple[str, ...] = NAMES,
    *,
    progress: Progress | None = None,
) -> RebuildReport:
    redis = read_models.redis
    targets: dict[str, str] = {}
    for name in names:
        active = await read_models.active(name)
        target = "b" if active == "a" else "a"
        await redis.set(f"ql:{name}:building", target)
        await read_models.drop_namespace(name, target)
        targets[name] = target
    expected = await store.last_seq()
    states: dict[str, PlayerState] = {}
    count = 0
    async for rec in store.replay(subject=EVENTS_WILDCARD):
        state = states.get(rec.player_id) or initial_state(rec.player_id)
        states[rec.player_id] = evolve(state, rec)
        count += 1
        if progress and count % 500 == 0:
            progress(count, max(expected, count))
    if progress:
        progress(count, count)
    write_to = [f"{name}:{ns}" for name, ns in targets.items()]
    for state in states.values():
        await read_models.apply(state, write_to)
    async with redis.pipeline(transaction=True) as swap:
        for name, ns in targets.items():
            swap.set(f"ql:{name}:active", ns)
            swap.delete(f"ql:{name}:building")
        await swap.execute()
    return RebuildReport(names=names, namespaces=targets, events=count, players=len(states))


async def rebuild_player(
    store: EventStore, read_models: ReadModels, player_id: str, names: tuple[str, ...] = NAMES
) -> RebuildReport:
    """Refold one player from their events and overwrite their entries in the serving namespaces."""
    state = initial_state(player_id)
    events = await store.read(player_id)
    for rec in events:
        state = evolve(state, rec)
    targets = await read_models.targets(names)
    for target in targets:
        name, ns = target.split(":")
        await read_models.redis.hdel(f"ql:{name}:{ns}:seq", player_id)
    await read_models.apply(state, targets)
    return RebuildReport(
        names=names, namespaces={t.split(":")[0]: t.split(":")[1] for t in targets}, events=len(events), players=1
    )
