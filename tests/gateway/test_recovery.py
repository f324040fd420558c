"""Recovery exactly as docs/protocol.md says: missed events in order, then live ones; else the state."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import msgspec
import pytest

from questlog.events.schema import NewEvent, QueuePaused, Recorded
from questlog.events.store import EventStore
from questlog.gateway.live import LiveFeed
from questlog.services.runtime.connections import Wiring

from .conftest import start_gateway

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def append(store: EventStore, player_id: str, n: int) -> list[Recorded]:
    out: list[Recorded] = []
    for _ in range(n):
        pos = await store.position(player_id)
        out += await store.append(
            player_id,
            [NewEvent(QueuePaused(reason="test", by="admin:test"), NOW)],
            expected=pos,
            causation_id=f"t-{uuid.uuid4().hex}",
        )
    return out


@pytest.fixture
def store(gateway_wiring: Wiring) -> EventStore:
    return gateway_wiring.store


async def hello(sock, token: str, resume: dict | None = None) -> dict:
    params: dict = {"token": token}
    if resume is not None:
        params["resume"] = resume
    answer = await sock.request("session.hello", params)
    assert "result" in answer, answer
    return answer["result"]


async def test_resume_gets_exactly_the_missed_versions_then_live_ones(open_socket, token, player_id, store) -> None:
    await append(store, player_id, 2)
    first = await open_socket()
    h1 = await hello(first, token(player_id))
    assert h1["version"] == 2 and h1["recovered"] is False
    await append(store, player_id, 3)
    live = await first.events(3)
    assert [e["version"] for e in live] == [3, 4, 5]
    assert live[0]["type"] == "queue.paused" and live[0]["at"] == "2026-11-23T10:00:00.000Z"
    assert live[0]["data"] == {"reason": "test", "by": "admin:test"}
    await first.ws.close()

    await append(store, player_id, 4)  # missed while away
    second = await open_socket()
    h2 = await hello(second, token(player_id), {"epoch": h1["epoch"], "version": 5})
    assert (h2["recovered"], h2["missed"], h2["version"], h2["state"]) == (True, 4, 9, None)
    await append(store, player_id, 2)  # live, after the replay
    got = await second.events(6)
    assert [e["version"] for e in got] == [6, 7, 8, 9, 10, 11]
    # nothing more: the answer to a later request comes after every notification queued before it
    await second.request("rpc.discover")
    assert [m for m in second.notes if m.get("method") == "event"] == []


async def test_events_stored_during_the_resume_are_neither_lost_nor_doubled(
    open_socket, token, player_id, store
) -> None:
    await append(store, player_id, 3)
    sock = await open_socket()
    writer = asyncio.create_task(append(store, player_id, 40))
    h = await hello(sock, token(player_id), {"epoch": await store.epoch(), "version": 1})
    assert h["recovered"] is True
    await writer
    got = await sock.events(42)
    assert [e["version"] for e in got] == list(range(2, 44))
    await sock.request("rpc.discover")
    assert [m for m in sock.notes if m.get("method") == "event"] == []


async def test_past_the_replay_limit_the_state_comes_instead(
    open_socket, token, player_id, store, gateway_wiring: Wiring
) -> None:
    small = Wiring(
        msgspec.structs.replace(gateway_wiring.settings, replay_limit=3), gateway_wiring.nc, gateway_wiring.redis
    )
    running = await start_gateway(small)
    try:
        await append(store, player_id, 5)
        sock = await open_socket(running.ws_url)
        h = await hello(sock, token(player_id), {"epoch": await store.epoch(), "version": 1})
        assert h["recovered"] is False and h["version"] == 5
        queue = (await sock.request("queue.get"))["result"]
        player = (await sock.request("player.get"))["result"]
        assert h["state"] == {"queue": queue, "player": player}
        await append(store, player_id, 1)
        assert [e["version"] for e in await sock.events(1)] == [6]  # live continues after the state
        within = await open_socket(running.ws_url)
        h2 = await hello(within, token(player_id), {"epoch": h["epoch"], "version": 3})
        assert (h2["recovered"], h2["missed"]) == (True, 3)
    finally:
        await running.runner.cleanup()


@pytest.mark.parametrize("resume", [{"epoch": "another-epoch", "version": 1}, "future"])
async def test_a_foreign_epoch_or_a_future_version_is_not_recoverable(
    open_socket, token, player_id, store, resume
) -> None:
    await append(store, player_id, 2)
    if resume == "future":
        resume = {"epoch": await store.epoch(), "version": 50}
    sock = await open_socket()
    h = await hello(sock, token(player_id), resume)
    assert h["recovered"] is False and h["version"] == 2 and h["state"] is not None


async def test_a_gap_on_the_live_path_is_repaired_from_jetstream(gateway_wiring: Wiring, player_id, store) -> None:
    await append(store, player_id, 2)
    emitted: list[int] = []
    got_five = asyncio.Event()

    def emit(rec: Recorded) -> bool:
        emitted.append(rec.version)
        if rec.version == 5:
            got_five.set()
        return True

    feed = LiveFeed(gateway_wiring.nc, store, player_id, emit, lambda: None)
    pos = await store.position(player_id)
    feed.start(pos.version, pos.seq)  # not subscribed: the live messages of 3 and 4 are "lost"
    await asyncio.wait_for(asyncio.shield(feed.caught_up), 10)
    later = await append(store, player_id, 3)
    feed._arrivals.put(later[-1])  # only version 5 arrives live
    await asyncio.wait_for(got_five.wait(), 10)
    await feed.close()
    assert emitted == [3, 4, 5]
    assert feed.repaired == 2
