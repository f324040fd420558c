"""Snapshots in the KV bucket only ever save work: broken ones fall back to the events."""

from __future__ import annotations

from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig

from questlog.events.store import EventStore
from questlog.events.streams import ensure_streams
from questlog.projections.player import evolve, initial_state
from questlog.projections.repository import PlayerRepository
from questlog.projections.snapshots import SnapshotStore
from questlog.projections.state import STATE_SCHEMA, PlayerState
from questlog.services.runtime.settings import Settings, load_settings

from .servers import local_nats
from .stacks import drained
from .watch import queue_idle, until


@pytest.fixture
def store(nc: NATS, settings: Settings) -> EventStore:
    return EventStore(nc, settings.streams.events)


async def scratch(store: EventStore, player_id: str) -> PlayerState:
    state = initial_state(player_id)
    for rec in await store.read(player_id):
        state = evolve(state, rec)
    return state


async def test_snapshotter_writes_every_n_and_loading_from_it_equals_a_full_fold(
    call, nc: NATS, store: EventStore, settings: Settings, player_id: str
) -> None:
    await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=30)
    events = await until(nc, store, player_id, lambda ev: len(ev) > settings.snapshot_every + 5 and queue_idle(ev), 60)
    await drained(nc, settings, "snapshotter")
    kv = await nc.jetstream().key_value(settings.streams.snapshots)
    snap = await SnapshotStore(kv, PlayerState, STATE_SCHEMA).get(player_id)
    assert snap is not None, f"the snapshotter should have written one after {settings.snapshot_every} events"
    assert snap.version % settings.snapshot_every == 0
    # the last multiple the log passed
    assert snap.version == events[-1].version // settings.snapshot_every * settings.snapshot_every
    assert snap == await PlayerRepository(store).load_at(player_id, snap.version)
    loaded = await PlayerRepository.with_snapshots(store, kv).load(player_id)
    assert loaded == await scratch(store, player_id)
    assert loaded.version == events[-1].version


@pytest.mark.parametrize("damage", ["corrupt", "older-schema", "other-player", "another-log", "not-this-version"])
async def test_a_bad_snapshot_falls_back_to_the_events(
    call, nc: NATS, store: EventStore, settings: Settings, player_id: str, damage: str
) -> None:
    await call("queue.pause", player_id)
    await call("queue.resume", player_id)
    kv = await nc.jetstream().key_value(settings.streams.snapshots)
    truth = await scratch(store, player_id)
    if damage == "corrupt":
        await kv.put(player_id, b'{"schema": 1, "state": {"player_id": 42')
    elif damage == "older-schema":
        await kv.put(player_id, msgspec.json.encode({"schema": STATE_SCHEMA - 1, "state": {"player_id": player_id}}))
    elif damage == "other-player":
        other = msgspec.structs.replace(truth, player_id="someone-else", version=1)
        await kv.put(player_id, msgspec.json.encode({"schema": STATE_SCHEMA, "state": other}))
    else:  # a stream restored or recreated under the bucket: the snapshot describes another log
        seq, version = (truth.last_seq + 1000, truth.version) if damage == "another-log" else (truth.last_seq, 1)
        other = msgspec.structs.replace(truth, last_seq=seq, version=version)
        await kv.put(player_id, msgspec.json.encode({"schema": STATE_SCHEMA, "state": other}))
    assert await PlayerRepository.with_snapshots(store, kv).load(player_id) == truth


async def test_a_bucket_made_before_direct_gets_gets_them_switched_on(tmp_path: Path) -> None:
    """Start-up takes an older deployment's bucket as it is and turns direct gets on, keeping its entries."""
    settings = load_settings({}, data_dir=str(tmp_path / "data"))
    async with local_nats(tmp_path) as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            old = await js.create_key_value(KeyValueConfig(bucket=settings.streams.snapshots, history=1))
            await old.put("p-1", b"kept")
            assert not (await js.stream_info(f"KV_{settings.streams.snapshots}")).config.allow_direct
            await ensure_streams(js, settings.streams, settings.replicas)
            await ensure_streams(js, settings.streams, settings.replicas)  # and again: nothing left to change
            assert (await js.stream_info(f"KV_{settings.streams.snapshots}")).config.allow_direct
            kv = await js.key_value(settings.streams.snapshots)
            assert (await kv.get("p-1")).value == b"kept"
        finally:
            await nc.close()
