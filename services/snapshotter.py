"""The snapshotter: every N events of a player, their folded state goes to the KV bucket."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from questlog.events.errors import ReadBehind
from questlog.events.store import decode_stored
from questlog.events.subjects import EVENTS_WILDCARD
from questlog.projections.repository import PlayerRepository
from questlog.projections.snapshots import SnapshotStore
from questlog.projections.state import STATE_SCHEMA, PlayerState
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer


class Snapshotter:
    def __init__(self, repo: PlayerRepository, snapshots: SnapshotStore[PlayerState], every: int) -> None:
        self.repo, self.snapshots, self.every = repo, snapshots, every
        self.registry = repo.registry

    async def on_event(self, msg: Msg) -> None:
        rec = decode_stored(msg, self.registry)
        if rec.version % self.every:
            return
        state = await self.repo.load_at(rec.player_id, rec.version, at_least_seq=rec.seq)
        if state.version != rec.version:
            raise ReadBehind(rec.player_id, rec.seq, state.last_seq)  # redelivered, never a wrong snapshot
        await self.snapshots.put(rec.player_id, state)


async def serve_snapshotter(wiring: Wiring, stop: asyncio.Event) -> None:
    kv = await wiring.snapshots_bucket()
    snapshots = SnapshotStore(kv, PlayerState, STATE_SCHEMA)
    # a repository that folds from the last snapshot: each snapshot builds on the previous one
    repo = PlayerRepository(wiring.store, snapshots, cache_size=1000)
    spec = ConsumerSpec.of_service(wiring.settings, "snapshotter", [EVENTS_WILDCARD])
    snapshotter = Snapshotter(repo, snapshots, wiring.settings.snapshot_every)
    await run_consumer(wiring.nc, spec, snapshotter.on_event, stop, ready=wiring.ready("snapshotter"))
