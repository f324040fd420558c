"""The notifier: an inbox of notable events for offline players, and webhooks with retries.

A durable consumer on the EVENTS stream, filtered to the notable types. For a
player no gateway holds, the notification goes into a capped Redis list
(`inbox:<player>`, newest first) and the unread counter the gateway shows at
`session.hello`; a configured webhook is called as well, with retries and
jittered exponential backoff. Redelivery is harmless: the inbox remembers the
last stream sequence it took per player, and a delivered webhook is remembered
per (player, sequence).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import aiohttp
import msgspec
import redis.asyncio as aioredis
from nats.aio.msg import Msg

from questlog.events.registry import EventRegistry
from questlog.events.schema import PlayerLeveledUp, QueuePaused, Recorded, RewardGranted
from questlog.events.store import decode_stored
from questlog.events.subjects import EVENTS_WILDCARD, type_of
from questlog.services.contract.protocol import rfc3339
from questlog.services.runtime.batching import Coalescer
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer
from questlog.services.runtime.settings import Settings

from .presence import PresenceStore

log = logging.getLogger("questlog.notifier")

NOTABLE = ("task.completed", "player.leveled_up", "reward.granted", "queue.paused")
DURABLE = "notifier"

_encoder = msgspec.json.Encoder()


class Notification(msgspec.Struct, frozen=True):
    seq: int
    version: int
    type: str
    at: str
    title: str
    data: dict[str, Any]


def notification_for(rec: Recorded) -> Notification | None:
    """What a player would want to hear about while away; None for the rest."""
    event = rec.event
    title: str | None = None
    if rec.type == "task.completed":
        title = "A task is complete"
    elif isinstance(event, PlayerLeveledUp):
        title = f"{event.skill} reached level {event.level}"
    elif isinstance(event, RewardGranted) and event.rare:
        title = "Rare drop: " + ", ".join(event.rare)
    elif isinstance(event, QueuePaused) and event.by == "system":
        title = f"Your queue stopped: {event.reason}"
    if title is None:
        return None
    data = msgspec.to_builtins(event)
    return Notification(rec.seq, rec.version, rec.type, rfc3339(rec.occurred_at), title, data)


def inbox_key(player_id: str) -> str:
    return f"inbox:{player_id}"


def unread_key(player_id: str) -> str:
    return f"inbox:unread:{player_id}"


def _seen_seqs_key(player_id: str) -> str:
    return f"inbox:seen:{player_id}"


SEEN_KEEP = 1000  # stream sequences remembered per player to drop redeliveries

# KEYS inbox, unread, seen; ARGV seq, body, max, keep -> 1 if stored, 0 if seen before.
# Seen sequences are a set, not a high-water mark: the consumer does not hold a
# player's later messages back behind a failed one, so an older sequence may
# arrive after a newer one and must still be stored.
_PUSH = """
local seq = tonumber(ARGV[1])
local keep = tonumber(ARGV[4])
if redis.call('ZCARD', KEYS[3]) >= keep then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if seq <= tonumber(oldest[2]) then return 0 end
end
if redis.call('ZADD', KEYS[3], 'NX', seq, ARGV[1]) == 0 then return 0 end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -(keep + 1))
local max = tonumber(ARGV[3])
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('LTRIM', KEYS[1], 0, max - 1)
local unread = redis.call('INCR', KEYS[2])
if unread > max then redis.call('SET', KEYS[2], max) end
return 1
"""


class Inbox:
    """The offline inbox in Redis: what the notifier writes and the gateway reads."""

    def __init__(self, redis: aioredis.Redis, max_items: int = 100) -> None:
        self._redis = redis
        self._max = max_items
        self._push = redis.register_script(_PUSH)
        self._unread = Coalescer(self._unread_batch)  # every hello asks: one MGET for the hellos of a moment

    async def push(self, player_id: str, note: Notification) -> bool:
        stored = await self._push(
            keys=[inbox_key(player_id), unread_key(player_id), _seen_seqs_key(player_id)],
            args=[note.seq, _encoder.encode(note), self._max, SEEN_KEEP],
        )
        return bool(int(stored))

    async def unread(self, player_id: str) -> int:
        return await self._unread(player_id)

    async def _unread_batch(self, player_ids: list[str]) -> list[int]:
        return [int(raw or 0) for raw in await self._redis.mget([unread_key(p) for p in player_ids])]

    async def read(self, player_id: str, limit: int, mark_read: bool) -> dict[str, Any]:
        items = await self._redis.lrange(inbox_key(player_id), 0, limit - 1)
        unread = await self.unread(player_id)
        if mark_read and unread:
            unread = max(0, int(await self._redis.decrby(unread_key(player_id), min(unread, len(items)))))
        return {"unread": unread, "items": [msgspec.json.decode(i) for i in items]}


class WebhookFailed(Exception):
    pass


class Webhook:
    """POSTs a notification to the configured URL: retries with jittered exponential backoff.

    The retries of one delivery stay within `budget_s`, well inside the
    consumer's ack wait (`QUESTLOG_ACK_WAIT_S`); past it the message fails and JetStream
    redelivers it later with its own backoff, so a dead endpoint never makes
    the same message run twice at once.
    """

    budget_s = 20.0

    def __init__(self, url: str, attempts: int, backoff_s: float, timeout_s: float, redis: aioredis.Redis) -> None:
        self._url = url
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._redis = redis
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, player_id: str, note: Notification) -> None:
        done_key = f"webhook:done:{player_id}:{note.seq}"
        if await self._redis.exists(done_key):
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = {"player_id": player_id, "notification": msgspec.to_builtins(note)}
        last_error = "no attempt"
        started = time.monotonic()
        for attempt in range(self._attempts):
            if attempt:
                delay = self._backoff_s * 2 ** (attempt - 1)
                if time.monotonic() - started + delay + (self._timeout.total or 0) > self.budget_s:
                    break
                await asyncio.sleep(delay / 2 + random.random() * delay / 2)  # backoff between attempts
            try:
                async with self._session.post(
                    self._url, json=body, headers={"Idempotency-Key": f"{player_id}:{note.seq}"}
                ) as resp:
                    if 200 <= resp.status < 300:
                        await self._redis.set(done_key, 1, ex=86400)
                        return
                    last_error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last_error = repr(exc)
            log.warning(
                "webhook attempt failed",
                extra={"player_id": player_id, "seq": note.seq, "attempt": attempt + 1, "error": last_error},
            )
        raise WebhookFailed(f"webhook for {player_id} seq {note.seq}: {last_error}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Notifier:
    def __init__(self, registry: EventRegistry, presence: PresenceStore, inbox: Inbox, webhook: Webhook | None) -> None:
        self._registry = registry
        self._presence = presence
        self._inbox = inbox
        self._webhook = webhook

    async def handle(self, msg: Msg) -> None:
        if type_of(msg.subject) not in NOTABLE:
            return
        rec = decode_stored(msg, self._registry)
        note = notification_for(rec)
        if note is None:
            return
        (status,) = await self._presence.get([rec.player_id])
        if status["online"]:
            return  # the live stream told them already
        if await self._inbox.push(rec.player_id, note):
            log.info("inbox notification", extra={"player_id": rec.player_id, "type": rec.type, "seq": rec.seq})
        if self._webhook is not None:
            await self._webhook.deliver(rec.player_id, note)


def notifier_spec(settings: Settings, durable: str = DURABLE) -> ConsumerSpec:
    # one wildcard, the notable types chosen in `handle` (see the processor's durable)
    return ConsumerSpec.of_service(settings, durable, [EVENTS_WILDCARD])


async def serve_notifier(wiring: Wiring, stop: asyncio.Event, *, rt: Any = None, durable: str = DURABLE) -> None:
    rt = rt or wiring.settings.realtime
    presence = PresenceStore(wiring.redis, wiring.nc, rt.presence_ttl_s)
    inbox = Inbox(wiring.redis, rt.inbox_max)
    webhook = (
        Webhook(rt.webhook_url, rt.webhook_attempts, rt.webhook_backoff_s, rt.webhook_timeout_s, wiring.redis)
        if rt.webhook_url
        else None
    )
    notifier = Notifier(wiring.store.registry, presence, inbox, webhook)
    try:
        spec = notifier_spec(wiring.settings, durable)
        await run_consumer(wiring.nc, spec, notifier.handle, stop, ready=wiring.ready("notifier"))
    finally:
        if webhook is not None:
            await webhook.close()
