"""The snapshotter: every N events of a player, their folded state goes to the KV bucket.

It needs one event in N, so it skips `reward.granted` unread (about half of
an idle game's log; a reward always follows the step it settles, so no long
run of events goes by unseen). The snapshot is taken at each multiple of N
the player's log passed since the event this process was handed before, so
skipping events moves no snapshot. Its durable takes every event through one
wildcard: filtering types there would slow the stream (see the processor's).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from nats.aio.msg import Msg

from questlog.events.errors import ReadBehind
from questlog.events.schema import RewardGranted
from questlog.events.store import decode_stored
from questlog.events.subjects import EVENTS_WILDCARD, type_of
from questlog.projections.repository import PlayerRepository
from questlog.projections.snapshots import SnapshotStore
from questlog.projections.state import STATE_SCHEMA, PlayerState
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer

SKIPPED = RewardGranted.TYPE  # the most frequent type, which never comes alone


def snapshot_due(version: int, previous: int | None, every: int) -> int | None:
    """The multiple of `every` the log passed in (previous, version], if any.

    `previous` is the version of the last event this process was handed for
    the player; unknown (a restart), only `version` itself counts.
    """
    at = version // every * every
    after = version - 1 if previous is None else previous
    return at if at > after and at > 0 else None


class Snapshotter:
    def __init__(
        self, repo: PlayerRepository, snapshots: SnapshotStore[PlayerState], every: int, *, remember: int = 100_000
    ) -> None:
        self.repo, self.snapshots, self.every = repo, snapshots, every
        self.registry = repo.registry
        self._remember = remember
        self._handed: OrderedDict[str, int] = OrderedDict()  # player -> version of the last event handed

    async def on_event(self, msg: Msg) -> None:
        if type_of(msg.subject) == SKIPPED:
            return
        rec = decode_stored(msg, self.registry)
        at = snapshot_due(rec.version, self._handed.get(rec.player_id), self.every)
        if at is not None:
            state = await self.repo.load_at(rec.player_id, at, at_least_seq=rec.seq)
            if state.version != at:
                raise ReadBehind(rec.player_id, rec.seq, state.last_seq)  # redelivered, never a wrong snapshot
            await self.snapshots.put(rec.player_id, state)
        self._handed[rec.player_id] = max(rec.version, self._handed.get(rec.player_id, 0))
        self._handed.move_to_end(rec.player_id)
        while len(self._handed) > self._remember:
            self._handed.popitem(last=False)


async def serve_snapshotter(wiring: Wiring, stop: asyncio.Event) -> None:
    kv = await wiring.snapshots_bucket()
    snapshots = SnapshotStore(kv, PlayerState, STATE_SCHEMA)
    # a repository that folds from the last snapshot: each snapshot builds on the previous one
    repo = PlayerRepository(wiring.store, snapshots, cache_size=1000)
    spec = ConsumerSpec.of_service(wiring.settings, "snapshotter", [EVENTS_WILDCARD])
    snapshotter = Snapshotter(repo, snapshots, wiring.settings.snapshot_every)
    await run_consumer(wiring.nc, spec, snapshotter.on_event, stop, ready=wiring.ready("snapshotter"))
