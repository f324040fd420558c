"""Live delivery repairs gaps without waiting for the next event, and never drops the one that revealed it."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from questlog.events.schema import Recorded
from questlog.gateway.live import LiveFeed
from questlog.gateway.positions import PositionCheck
from questlog.projections.read_models import ReadModels
from questlog.projections.repository import PlayerRepository
from questlog.services.runtime.connections import Wiring, flushed

from ..lagging import LaggingReplica
from .test_recovery import append


class Received:
    """What a feed emitted, and a way to await a version."""

    def __init__(self) -> None:
        self.versions: list[int] = []
        self._wanted: dict[int, asyncio.Event] = {}

    def emit(self, rec: Recorded) -> bool:
        self.versions.append(rec.version)
        for version, event in self._wanted.items():
            if rec.version >= version:
                event.set()
        return True

    async def reached(self, version: int, timeout: float = 10) -> None:
        event = self._wanted.setdefault(version, asyncio.Event())
        if self.versions and self.versions[-1] >= version:
            return
        await asyncio.wait_for(event.wait(), timeout)


async def test_a_short_gap_read_is_asked_again_and_the_revealing_event_kept(
    gateway_wiring: Wiring, player_id: str
) -> None:
    store = gateway_wiring.store
    (first,) = await append(store, player_id, 1)
    received, failed = Received(), asyncio.Event()
    lagging = LaggingReplica(gateway_wiring.nc, gateway_wiring.settings.streams.events, hidden_from=first.seq + 1)
    feed = LiveFeed(gateway_wiring.nc, lagging, player_id, received.emit, failed.set)
    feed.start(first.version, first.seq)
    await asyncio.wait_for(asyncio.shield(feed.caught_up), 10)
    (lost,) = await append(store, player_id, 1)  # stored before the feed subscribes: its republish is "lost"
    await feed.subscribe()
    await flushed(gateway_wiring.nc)
    (revealing,) = await append(store, player_id, 1)  # arrives live and reveals the gap
    await received.reached(revealing.version)
    await feed.close()
    assert received.versions == [lost.version, revealing.version]
    assert lagging.stale_reads == 1, "the first read of the gap came back short"
    assert not failed.is_set()


async def test_a_lost_last_event_reaches_the_session_by_the_periodic_check(
    gateway_wiring: Wiring, redis_client: aioredis.Redis, player_id: str
) -> None:
    store = gateway_wiring.store
    (first,) = await append(store, player_id, 1)
    received = Received()
    feed = LiveFeed(gateway_wiring.nc, store, player_id, received.emit, lambda: None)
    feed.start(first.version, first.seq)  # never subscribed: every republish is "lost"
    await asyncio.wait_for(asyncio.shield(feed.caught_up), 10)
    (last,) = await append(store, player_id, 1)  # nothing after it will reveal the gap
    read_models = ReadModels(redis_client)
    await read_models.project([await PlayerRepository(store).load(player_id)])  # what the projector does
    check = PositionCheck(lambda: [feed], read_models, every_s=60)
    assert await check.once() == 1
    await received.reached(last.version)
    await feed.close()
    assert received.versions == [last.version]
    assert await check.once() == 0, "caught up: nothing more to ask"
