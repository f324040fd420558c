"""Loading a player's state: newest snapshot + the events after it, kept warm in memory.

Every service instance keeps recently used states (an LRU). A command may
decide on the cached state without asking the log (`fresh=False`): if the log
moved on, the append's optimistic-concurrency check refuses it and the caller
loads again with `fresh=True`, which reads only the events after the cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from nats.js.kv import KeyValue

from questlog.events.errors import EventLogError
from questlog.events.registry import EventRegistry
from questlog.events.schema import Recorded
from questlog.events.store import EventStore

from .player import evolve, initial_state
from .snapshots import SnapshotStore
from .state import STATE_SCHEMA, PlayerState

log = logging.getLogger("questlog.repository")


class PlayerRepository:
    def __init__(
        self,
        store: EventStore,
        snapshots: SnapshotStore[PlayerState] | None = None,
        *,
        cache_size: int = 10_000,
    ) -> None:
        self._store = store
        self._snapshots = snapshots
        self._cache: OrderedDict[str, PlayerState] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def with_snapshots(cls, store: EventStore, kv: KeyValue, *, cache_size: int = 10_000) -> PlayerRepository:
        """Loading from the newest snapshot (written by the snapshotter) plus the events after it."""
        return cls(store, SnapshotStore(kv, PlayerState, STATE_SCHEMA), cache_size=cache_size)

    async def load(self, player_id: str, *, fresh: bool = True, at_least_seq: int = 0) -> PlayerState:
        """The player's state; `fresh` reads what the log holds after the cached state.

        `at_least_seq`: a sequence the stream is known to hold (the event that
        triggered the caller), passed to the read so no replica answers without it.
        """
        state = self._cache.get(player_id)
        if state is None:
            state = await self._base(player_id)
            fresh = True
        if fresh:
            for rec in await self._store.read(player_id, after_seq=state.last_seq, at_least_seq=at_least_seq):
                state = evolve(state, rec)
        self.remember(state)
        return state

    def __contains__(self, player_id: object) -> bool:
        """Whether this process has the player's state cached."""
        return player_id in self._cache

    def holds(self, seen: Recorded) -> bool:
        """Whether the cached state already holds `seen` (this process appended or read past it)."""
        state = self._cache.get(seen.player_id)
        return state is not None and state.version >= seen.version and state.last_seq >= seen.seq

    def holding(self, seen: Recorded) -> PlayerState | None:
        """The cached state if it already holds `seen`, or `seen` is the very next event (folded in); else None.

        A consumer is handed each event it subscribes to in log order, so its
        cached state is usually one event short of the one in hand: folding
        that in costs no read. The state may still be behind the log (events
        not delivered yet); callers that append are checked by the append's
        concurrency check, and callers that project will see the later events.
        """
        state = self._cache.get(seen.player_id)
        if state is None:
            return None
        if state.version + 1 == seen.version and state.last_seq < seen.seq:
            state = evolve(state, seen)
        elif state.version < seen.version:
            return None  # events in between this process has not seen: read them
        self.remember(state)
        return state

    async def load_at(self, player_id: str, version: int, *, at_least_seq: int = 0) -> PlayerState:
        """Time travel: the state exactly at `version` (from a snapshot at or before it)."""
        state = await self._base(player_id)
        if state.version > version:
            state = initial_state(player_id)
        events = await self._store.read(
            player_id, after_seq=state.last_seq, to_version=version, at_least_seq=at_least_seq
        )
        for rec in events:
            state = evolve(state, rec)
        return state

    @property
    def registry(self) -> EventRegistry:
        return self._store.registry

    async def _base(self, player_id: str) -> PlayerState:
        if self._snapshots is not None:
            snap = await self._snapshots.get(player_id)
            if snap is not None and snap.player_id == player_id and await self._in_the_log(snap):
                return snap
        return initial_state(player_id)

    async def _in_the_log(self, snap: PlayerState) -> bool:
        """Whether the log holds the snapshot's last event where it says: a stream restored
        from a backup, or recreated, makes the bucket's snapshots describe another log."""
        if snap.version == 0:
            return True
        try:
            there = await self._store.at(snap.last_seq)
        except EventLogError:  # not an event of ours at that sequence
            there = None
        if there is not None and there.player_id == snap.player_id and there.version == snap.version:
            return True
        log.warning(
            "ignoring a snapshot the log does not match",
            extra={"player_id": snap.player_id, "version": snap.version, "seq": snap.last_seq},
        )
        return False

    def remember(self, state: PlayerState) -> None:
        """Keep a state this process just built (e.g. after its own append), unless a newer one is cached."""
        cached = self._cache.get(state.player_id)
        if cached is None or cached.version <= state.version:
            self._cache[state.player_id] = state
        self._cache.move_to_end(state.player_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
