"""Presence: who is online, across every gateway, from heartbeats with a TTL.

Redis holds, per player, a sorted set of the gateways holding them, each
scored with the time its lease expires (`presence:gw:<player>`), an index of
players by their latest lease (`presence:index`) and the last time each was
seen (`presence:seen:<player>`). A gateway renews its leases every TTL/3; a
crashed gateway stops renewing, so its players go offline when their last
lease expires — and only if no other gateway holds them. The presence service
sweeps expired leases; every transition (online ↔ offline) is decided by one
Lua script, so exactly one process publishes `presence.changed.<player>` on NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from questlog.services.contract.protocol import rfc3339
from questlog.services.runtime.batching import Coalescer
from questlog.services.runtime.connections import Wiring

log = logging.getLogger("questlog.presence")

INDEX = "presence:index"
GW_PREFIX = "presence:gw:"
SEEN_PREFIX = "presence:seen:"


def _gw_key(player_id: str) -> str:
    return GW_PREFIX + player_id


def _last_seen_key(player_id: str) -> str:
    return SEEN_PREFIX + player_id


def changed_subject(player_id: str) -> str:
    return f"presence.changed.{player_id}"


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# The joins and leaves of one moment go in one script run (services/runtime/batching.py).
# KEYS index; ARGV ttl_ms, then (1 join | 0 leave, player, gateway) triples
# -> per triple {1 if the player changed state, last seen ms}: the announcement is
# built from the same atomic step, with no second read. Triples apply in order, so
# a join and a leave of one player in the same run end as they were asked.
_TRANSITIONS = (
    _NOW
    + """
local out = {}
local until_ms = now + tonumber(ARGV[1])
for i = 2, #ARGV, 3 do
  local player, gateway = ARGV[i + 1], ARGV[i + 2]
  local gw = '"""
    + GW_PREFIX
    + """' .. player
  redis.call('SET', '"""
    + SEEN_PREFIX
    + """' .. player, now)
  redis.call('ZREMRANGEBYSCORE', gw, '-inf', now)
  local changed = 0
  if ARGV[i] == '1' then
    if redis.call('ZCARD', gw) == 0 then changed = 1 end
    redis.call('ZADD', gw, until_ms, gateway)
    redis.call('ZADD', KEYS[1], 'GT', until_ms, player)
  else
    redis.call('ZREM', gw, gateway)
    if redis.call('ZCARD', gw) == 0 then
      redis.call('DEL', gw)
      changed = redis.call('ZREM', KEYS[1], player)
    end
  end
  out[#out + 1] = {changed, now}
end
return out
"""
)

# KEYS gw, index, seen; ARGV player -> went offline (every lease had expired)?
_SWEEP = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local live = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #live == 0 then
  redis.call('DEL', KEYS[1])
  return {redis.call('ZREM', KEYS[2], ARGV[1]), redis.call('GET', KEYS[3]) or 0}
end
redis.call('ZADD', KEYS[2], live[2], ARGV[1])
return {0, 0}
"""
)

# KEYS index; ARGV gateway, ttl_ms, player... -> the players this gateway holds no live lease on.
# Extends live leases only: a lease that was released, swept or has expired is
# left to `join` (under the player's lock), which announces a comeback.
# Builds each player's keys from the id: questlog runs on one Redis, not a cluster.
_RENEW = (
    _NOW
    + """
local until_ms = now + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local player = ARGV[i]
  local gw = '"""
    + GW_PREFIX
    + """' .. player
  redis.call('ZREMRANGEBYSCORE', gw, '-inf', now)  -- crashed gateways' leases, and ours if it lapsed
  if redis.call('ZSCORE', gw, ARGV[1]) then
    redis.call('ZADD', gw, until_ms, ARGV[1])
    redis.call('ZADD', KEYS[1], 'GT', until_ms, player)
    redis.call('SET', '"""
    + SEEN_PREFIX
    + """' .. player, now)
  else
    lost[#lost + 1] = player
  end
end
return lost
"""
)

# KEYS gw, seen -> {online, last_seen_ms}
_GET = (
    _NOW
    + """
local n = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local seen = redis.call('GET', KEYS[2])
return {n > 0 and 1 or 0, seen or 0}
"""
)


class PresenceChanged(msgspec.Struct, frozen=True):
    player_id: str
    online: bool
    last_seen: str | None = None


_encoder = msgspec.json.Encoder()


class PresenceStore:
    """The Redis side of presence; every call is one atomic script."""

    def __init__(self, redis: aioredis.Redis, nc: NATS, ttl_s: float) -> None:
        self._redis = redis
        self._nc = nc
        self._ttl_ms = int(ttl_s * 1000)
        self._transitions = redis.register_script(_TRANSITIONS)
        self._transition = Coalescer(self._run_transitions)
        self._sweep = redis.register_script(_SWEEP)
        self._get = redis.register_script(_GET)
        self._renew = redis.register_script(_RENEW)

    async def join(self, player_id: str, gateway_id: str) -> None:
        """Take or renew this gateway's lease on the player; announce them if they came online."""
        came, seen = await self._transition((True, player_id, gateway_id))
        if came:
            await self._announce(player_id, True, seen)

    async def renew(self, player_ids: list[str], gateway_id: str) -> list[str]:
        """Extend this gateway's live leases in one call; the players whose lease is gone."""
        if not player_ids:
            return []
        lost = await self._renew(keys=[INDEX], args=[gateway_id, self._ttl_ms, *player_ids])
        return [p.decode() if isinstance(p, bytes) else str(p) for p in lost]

    async def leave(self, player_id: str, gateway_id: str) -> None:
        went, seen = await self._transition((False, player_id, gateway_id))
        if went:
            await self._announce(player_id, False, seen)

    async def _run_transitions(self, asked: list[tuple[bool, str, str]]) -> list[tuple[bool, int]]:
        args: list[str | int] = [self._ttl_ms]
        for join, player, gateway_id in asked:
            args.extend((1 if join else 0, player, gateway_id))
        answers = await self._transitions(keys=[INDEX], args=args)
        return [(bool(int(changed)), int(seen)) for changed, seen in answers]

    async def sweep_once(self, batch: int = 500) -> int:
        """Players whose every lease expired go offline; returns how many did."""
        sec, usec = await self._redis.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        due = await self._redis.zrangebyscore(INDEX, "-inf", now_ms, start=0, num=batch)
        gone = 0
        for raw in due:
            player_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            went, seen = await self._sweep(
                keys=[_gw_key(player_id), INDEX, _last_seen_key(player_id)], args=[player_id]
            )
            if int(went):
                gone += 1
                await self._announce(player_id, False, int(seen or 0))
        return gone

    async def get(self, player_ids: list[str]) -> list[dict[str, Any]]:
        out = []
        for player_id in player_ids:
            online, seen = await self._get(keys=[_gw_key(player_id), _last_seen_key(player_id)])
            out.append(msgspec.to_builtins(self._view(player_id, bool(int(online)), int(seen or 0))))
        return out

    async def _announce(self, player_id: str, online: bool, seen_ms: int) -> None:
        change = self._view(player_id, online, seen_ms)
        log.info("presence changed", extra={"player_id": player_id, "online": change.online})
        await self._nc.publish(changed_subject(player_id), _encoder.encode(change))

    @staticmethod
    def _view(player_id: str, online: bool, seen_ms: int) -> PresenceChanged:
        last_seen = rfc3339(datetime.fromtimestamp(seen_ms / 1000, UTC)) if seen_ms else None
        return PresenceChanged(player_id=player_id, online=online, last_seen=last_seen)


class PlayerLocks:
    """One lock per player, kept only while someone holds or waits for it.

    Join, leave and renewal of one player must reach Redis in order; different
    players need not wait for each other (one lock for all made a reconnect
    storm queue its hellos behind each other's Redis round trips).
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, player_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(player_id, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[player_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[player_id]
            if users == 1:
                del self._locks[player_id]
            else:
                self._locks[player_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class PresenceLeases:
    """One gateway's side: counts its sockets per player and keeps their leases renewed."""

    RENEW_BATCH = 500  # players per renewal script call

    def __init__(self, store: PresenceStore, gateway_id: str, renew_every_s: float) -> None:
        self._store = store
        self._gateway_id = gateway_id
        self._renew_every_s = renew_every_s
        self._counts: dict[str, int] = {}
        self._locks = PlayerLocks()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._renew(), name="presence-renew")

    async def connected(self, player_id: str) -> None:
        async with self._locks.hold(player_id):
            self._counts[player_id] = self._counts.get(player_id, 0) + 1
            if self._counts[player_id] == 1:
                await self._store.join(player_id, self._gateway_id)

    async def disconnected(self, player_id: str) -> None:
        async with self._locks.hold(player_id):
            left = self._counts.get(player_id, 0) - 1
            if left > 0:
                self._counts[player_id] = left
                return
            self._counts.pop(player_id, None)
            await self._store.leave(player_id, self._gateway_id)

    async def renew_once(self) -> None:
        """Renew every lease this gateway holds, RENEW_BATCH players per Redis call.

        No lock is needed for the batch: it only extends leases that are still
        there, so it cannot undo a `leave`. A lease found gone while its player
        is still connected here (it expired: Redis or this process stalled) is
        taken again with `join` under the player's lock, which announces it.
        """
        players = list(self._counts)
        for i in range(0, len(players), self.RENEW_BATCH):
            for player_id in await self._store.renew(players[i : i + self.RENEW_BATCH], self._gateway_id):
                async with self._locks.hold(player_id):
                    if player_id in self._counts:
                        await self._store.join(player_id, self._gateway_id)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self._renew_every_s)
            try:
                await self.renew_once()
            except Exception:
                log.exception("presence renewal failed", extra={"gateway_id": self._gateway_id})

    async def close(self) -> None:
        """A clean shutdown releases every lease at once instead of waiting for the TTL."""
        if self._task is not None:
            self._task.cancel()
        for player_id in list(self._counts):
            async with self._locks.hold(player_id):
                if self._counts.pop(player_id, None) is None:
                    continue
                try:
                    await self._store.leave(player_id, self._gateway_id)
                except Exception:
                    log.exception("presence release failed", extra={"player_id": player_id})


async def serve_presence(wiring: Wiring, stop: asyncio.Event) -> None:
    """Sweep expired leases until `stop`; any number of instances may run."""
    rt = wiring.settings.realtime
    await run_sweeper(wiring, stop, rt.presence_ttl_s, rt.presence_sweep_s)


async def run_sweeper(wiring: Wiring, stop: asyncio.Event, ttl_s: float, every_s: float) -> None:
    store = PresenceStore(wiring.redis, wiring.nc, ttl_s)
    wiring.ready("presence").set()
    while not stop.is_set():
        try:
            await store.sweep_once()
        except Exception:
            log.exception("presence sweep failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
