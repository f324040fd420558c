"""The live projector's writes: one script run per event-loop turn, into what serves and what is being built,
only for states the log rests at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import msgspec
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from redis.exceptions import ResponseError

from questlog.events.schema import NewEvent, PlayerCreated, QueuePaused
from questlog.events.store import EventStore, Position
from questlog.events.subjects import player_events
from questlog.projections.read_models import NAMES, ReadModels
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import PlayerState
from questlog.services.projector import Projector
from questlog.services.runtime.settings import Settings

from .rules import T0, World
from .servers import local_redis


class CountedReadModels(ReadModels):
    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self.batches: list[int] = []

    async def project(self, states: Sequence[PlayerState]) -> list[int]:
        self.batches.append(len(states))
        return await super().project(states)


@pytest_asyncio.fixture
async def redis(tmp_path: Path) -> AsyncIterator[aioredis.Redis]:
    async with local_redis(tmp_path) as server:
        client = aioredis.from_url(server.url)
        yield client
        await client.aclose()


def created(player_id: str, xp: int = 0) -> PlayerState:
    world = World(player_id)
    world.record([NewEvent(PlayerCreated(skills={"woodcutting": xp}), T0)])
    return world.state


async def test_states_projected_in_one_turn_go_in_one_script_run(nc: NATS, redis: aioredis.Redis) -> None:
    read_models = CountedReadModels(redis)
    projector = Projector(PlayerRepository(EventStore(nc)), read_models)
    states = [created(f"p{i}", xp=i) for i in range(20)]
    applied = await asyncio.gather(*(projector.write(s) for s in states))
    assert read_models.batches == [20]
    assert applied == [len(NAMES)] * 20, "queue, profile, leaderboard, stats and due, each once"
    assert await read_models.leaderboard("woodcutting", top=2) == [("p19", 19), ("p18", 18)]
    assert msgspec.json.decode(await redis.get("ql:profile:a:p:p3"))["skills"]["woodcutting"]["xp"] == 3
    assert await read_models.stats() == {"players": 20}


async def test_projecting_writes_the_building_namespace_too_and_never_goes_backwards(redis: aioredis.Redis) -> None:
    read_models = ReadModels(redis)
    await redis.set("ql:queue:building", "b")  # a rebuild of the queue projection is filling namespace b
    newer = created("p1", xp=5)
    older = msgspec.structs.replace(newer, last_seq=newer.last_seq - 1)
    assert await read_models.project([newer]) == [len(NAMES) + 1], "every projection, and queue:b too"
    assert await redis.get("ql:queue:a:p:p1") == await redis.get("ql:queue:b:p:p1") is not None
    assert await read_models.project([older]) == [0], "an older state changes nothing"
    await redis.delete("ql:queue:building")
    assert await read_models.project([msgspec.structs.replace(newer, last_seq=newer.last_seq + 1)]) == [len(NAMES)]
    assert await read_models.apply(newer, ["queue:b"]) == 0, "named targets: the same sequence check"


async def test_a_script_that_failed_halfway_counts_no_share_twice_when_run_again(redis: aioredis.Redis) -> None:
    """The sequence is recorded last, so a retry re-applies: each total must move with the player's share of it."""
    read_models = ReadModels(redis)
    base = created("p1")
    before = msgspec.structs.replace(base, stats=msgspec.structs.replace(base.stats, rare_drops=3))
    assert await read_models.apply(before, ["stats:a"]) == 1
    after = msgspec.structs.replace(
        base, last_seq=base.last_seq + 1, stats=msgspec.structs.replace(base.stats, completed=2, steps=5)
    )
    # Taking back the rare drops (no longer in the share) overflows: the script stops after the new counts.
    await redis.hset("ql:stats:a", "rare_drops", -(2**63) + 1)
    with pytest.raises(ResponseError, match="overflow"):
        await read_models.apply(after, ["stats:a"])
    await redis.hset("ql:stats:a", "rare_drops", 3)
    assert await read_models.apply(after, ["stats:a"]) == 1, "not marked current by the failed run"
    totals = {k.decode(): int(v) for k, v in (await redis.hgetall("ql:stats:a")).items()}
    assert totals == {"players": 1, "tasks_completed": 2, "steps": 5}


async def test_the_projector_writes_the_states_the_log_rests_at(
    nc: NATS, settings: Settings, redis: aioredis.Redis, player_id: str
) -> None:
    """Middle of an append: folded, not written. Its last event: written. A redelivery behind the cache: nothing."""
    store = EventStore(nc, settings.streams.events)
    created_at = NewEvent(PlayerCreated(skills={"woodcutting": 0}), T0)
    (first,) = await store.append(player_id, [created_at], expected=Position(), command_id="c1")
    paused = [NewEvent(QueuePaused(reason=f"r{i}"), T0) for i in range(3)]
    await store.append(player_id, paused, expected=Position(1, first.seq), command_id="c2")
    sub = await nc.jetstream().pull_subscribe(player_events(player_id), stream=settings.streams.events)
    e1, e2, e3, e4 = await sub.fetch(4, timeout=5)
    await sub.unsubscribe()
    read_models = CountedReadModels(redis)
    projector = Projector(PlayerRepository(store), read_models)

    async def written_after(msg: Msg) -> int:
        before = sum(read_models.batches)
        await projector.on_event(msg)
        return sum(read_models.batches) - before

    assert [await written_after(m) for m in (e1, e2, e3, e4)] == [1, 0, 0, 1]
    assert msgspec.json.decode(await redis.get(f"ql:profile:a:p:{player_id}"))["version"] == 4
    assert await written_after(e1) == 0, "redelivered after the cache moved on: already written"
    assert await written_after(e4) == 1, "the cache's own last event again: written again, harmlessly"
