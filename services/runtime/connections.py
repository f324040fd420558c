"""The connections every service shares: NATS, JetStream, Redis and the event store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from questlog.events.store import EventStore
from questlog.events.streams import ensure_streams
from questlog.projections.repository import PlayerRepository

from .metrics import QuestlogMetrics
from .settings import Settings
from .startup import patiently

log = logging.getLogger("questlog.wiring")

REDIS_POOL_SIZE = 64  # connections per process; Redis runs one command at a time anyway
REDIS_POOL_WAIT_S = 10.0  # how long a command waits for a free connection before failing


async def flushed(nc: NATS) -> None:
    """Until the server has everything sent on `nc` so far, subscriptions included.

    nats-py 2.16's `flush()` writes its PING straight to the socket, ahead of
    commands still queued for its flusher task, such as a SUB just made: its
    PONG can come back before the server has seen the SUB, and a request from
    another connection then finds no responder. The first flush gives the
    flusher its turn; the second PING follows the SUBs. In a cluster this
    proves only that the server `nc` is connected to has them; the others
    learn of them a moment later.
    """
    await nc.flush()
    await nc.flush()


class Wiring:
    def __init__(self, settings: Settings, nc: NATS, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.redis = redis
        self.store = EventStore(nc, settings.streams.events, metrics=QuestlogMetrics.from_global())
        self._ready: dict[str, asyncio.Event] = {}

    async def players(self, *, cache_size: int = 10_000) -> PlayerRepository:
        """A repository loading player state from snapshots plus later events."""
        return PlayerRepository.with_snapshots(self.store, await self.snapshots_bucket(), cache_size=cache_size)

    async def snapshots_bucket(self) -> KeyValue:
        bucket = self.settings.streams.snapshots
        return await patiently(
            f"open the {bucket} bucket", lambda: self.js.key_value(bucket), deadline_s=self.settings.startup_timeout_s
        )

    def ready(self, name: str) -> asyncio.Event:
        """Set by a service once it serves; awaited by whoever starts it."""
        return self._ready.setdefault(name, asyncio.Event())

    async def ready_when(self, name: str, *parts: asyncio.Event) -> None:
        """Set `ready(name)` once every part is (a service of several consumers)."""
        for part in parts:
            await part.wait()
        self.ready(name).set()


class UnreachableError(RuntimeError):
    """NATS could not be reached; the message is one line for a person."""


@asynccontextmanager
async def connect(
    settings: Settings, *, name: str = "questlog", create_streams: bool = True, persistent: bool = True
) -> AsyncIterator[Wiring]:
    """Connect to NATS and Redis; drain NATS and close Redis on the way out.

    `persistent` (a service): wait for NATS and JetStream as long as the
    start-up deadline allows, and reconnect for ever once connected. Otherwise
    (the command line): one attempt, and a readable error.
    """
    if not settings.nats_url or not settings.redis_url:
        raise ValueError("QUESTLOG_NATS_URL and QUESTLOG_REDIS_URL must be set to run a service")
    nc = await _nats(settings, name, persistent)
    # redis-py's asyncio pool refuses a command beyond its connection limit outright
    # (MaxConnectionsError); a blocking pool makes a burst wait for a connection.
    redis = aioredis.Redis.from_pool(  # from_pool: closing the client closes the pool
        aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT_S
        )
    )
    try:
        if create_streams:
            js, deadline = nc.jetstream(), settings.startup_timeout_s
            await patiently("reach JetStream (a meta leader)", js.account_info, deadline_s=deadline)
            await patiently(
                "create or update the streams",
                lambda: ensure_streams(js, settings.streams, settings.replicas),
                deadline_s=deadline,
            )
        yield Wiring(settings, nc, redis)
    finally:
        if not nc.is_closed:
            await nc.drain()
        await redis.aclose()


async def _nats(settings: Settings, name: str, persistent: bool) -> NATS:
    assert settings.nats_url
    # A comma list names several seeds of a cluster, so a start-up never depends on one node.
    servers = [u.strip() for u in settings.nats_url.split(",") if u.strip()]
    connected = False
    waiting_said = False

    async def on_error(exc: Exception) -> None:
        nonlocal waiting_said
        if connected:
            log.warning("nats: %s", exc or type(exc).__name__, extra={"connection": name})
        elif persistent and not waiting_said:  # every failed first attempt comes here: say it once
            waiting_said = True
            log.warning(
                "waiting to connect to NATS at %s (%s); retrying for up to %.0f s",
                settings.nats_url,
                exc or type(exc).__name__,
                settings.startup_timeout_s,
                extra={"connection": name},
            )

    connecting = nats.connect(
        servers,
        name=name,
        error_cb=on_error,
        connect_timeout=2,
        reconnect_time_wait=0.5 if persistent else 2,
        # a service waits for NATS as long as it takes; a command-line call gives up
        max_reconnect_attempts=-1 if persistent else 1,
        allow_reconnect=persistent,
    )
    try:
        nc = await (asyncio.wait_for(connecting, settings.startup_timeout_s) if persistent else connecting)
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise UnreachableError(f"cannot reach NATS at {settings.nats_url}: {exc or type(exc).__name__}") from None
    connected = True
    if waiting_said:
        log.info("connected to NATS", extra={"connection": name})
    return nc
