"""The live projector's writes: one script run per event-loop turn, into what serves and what is being built."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest_asyncio
import redis.asyncio as aioredis

from questlog.events.schema import NewEvent, PlayerCreated
from questlog.projections.read_models import ReadModels
from questlog.projections.state import PlayerState

from .rules import T0, World
from .servers import local_redis


class CountedReadModels(ReadModels):
    def __init__(self, redis: aioredis.Redis) -> None:
        super().__init__(redis)
        self.batches: list[int] = []

    async def _project_batch(self, states: list[PlayerState]) -> list[int]:
        self.batches.append(len(states))
        return await super()._project_batch(states)


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


async def test_states_projected_in_one_turn_go_in_one_script_run(redis: aioredis.Redis) -> None:
    read_models = CountedReadModels(redis)
    states = [created(f"p{i}", xp=i) for i in range(20)]
    applied = await asyncio.gather(*(read_models.project(s) for s in states))
    assert read_models.batches == [20]
    assert applied == [4] * 20, "queue, profile, leaderboard and stats, each once"
    assert await read_models.leaderboard("woodcutting", top=2) == [("p19", 19), ("p18", 18)]
    assert msgspec.json.decode(await redis.get("ql:profile:a:p:p3"))["skills"]["woodcutting"]["xp"] == 3
    assert await read_models.stats() == {"players": 20}


async def test_projecting_writes_the_building_namespace_too_and_never_goes_backwards(redis: aioredis.Redis) -> None:
    read_models = ReadModels(redis)
    await redis.set("ql:queue:building", "b")  # a rebuild of the queue projection is filling namespace b
    newer = created("p1", xp=5)
    older = msgspec.structs.replace(newer, last_seq=newer.last_seq - 1)
    assert await read_models.project(newer) == 5
    assert await redis.get("ql:queue:a:p:p1") == await redis.get("ql:queue:b:p:p1") is not None
    assert await read_models.project(older) == 0, "an older state changes nothing"
    await redis.delete("ql:queue:building")
    assert await read_models.project(msgspec.structs.replace(newer, last_seq=newer.last_seq + 1)) == 4
    assert await read_models.apply(newer, ["queue:b"]) == 0, "named targets: the same sequence check"
