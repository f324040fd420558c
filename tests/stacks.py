"""A private stack per test (own nats-server and redis-server) and services run in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from questlog.events.streams import ensure_streams
from questlog.services.cli.roster import services
from questlog.services.cli.stack import run_services
from questlog.services.commands import SERVICE_NAME
from questlog.services.runtime.connections import Wiring, connect
from questlog.services.runtime.settings import Settings, load_settings

from .processes import service_env
from .servers import local_nats, local_redis

TIME_SCALE = "0.01"


@asynccontextmanager
async def private_stack(
    tmp: Path, time_scale: str = TIME_SCALE
) -> AsyncIterator[tuple[Settings, NATS, dict[str, str]]]:
    """(settings, a NATS connection, the environment for `questlog run` subprocesses)."""
    async with local_nats(tmp) as n, local_redis(tmp) as r:
        settings = load_settings(
            {},
            nats_url=n.url,
            redis_url=r.url,
            time_scale=float(time_scale),
            jwt_secret="test-secret-test-secret-test-secret",
            data_dir=str(tmp / "data"),
            ack_wait_s=5,
        )
        nc = await nats.connect(n.url)
        await ensure_streams(nc.jetstream(), settings.streams, settings.replicas)
        try:
            yield settings, nc, service_env(n.url, r.url, QUESTLOG_TIME_SCALE=time_scale)
        finally:
            await nc.drain()


async def commands_ready(nc: NATS, timeout_s: float = 30.0) -> None:
    """Until the commands service answers $SRV.PING on `nc` (it registers once started).

    Also after it said ready in-process: about one run in fifty the first
    request from another connection met "no responders" (not understood yet).
    """
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                await nc.request(f"$SRV.PING.{SERVICE_NAME}", b"", timeout=0.5)
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                await asyncio.sleep(0.05)  # another connection's state: polled


@asynccontextmanager
async def in_process(settings: Settings, names: tuple[str, ...]) -> AsyncIterator[Wiring]:
    stop = asyncio.Event()
    chosen = {k: v for k, v in services().items() if k in names}
    async with connect(settings, name="test-in-process") as wiring:
        task = asyncio.create_task(run_services(wiring, chosen, stop))
        if "commands" in names:
            await asyncio.wait_for(wiring.ready("commands").wait(), 20)
            probe = await nats.connect(settings.nats_url)  # a connection of its own, as a test's client is
            try:
                await commands_ready(probe, timeout_s=10)
            finally:
                await probe.close()
        try:
            yield wiring
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def drained(nc: NATS, settings: Settings, durable: str, timeout: float = 60) -> None:
    """Until a durable consumer has nothing pending or unacknowledged.

    JetStream has no event for "consumer caught up", so this polls consumer info.
    """
    js = nc.jetstream()
    async with asyncio.timeout(timeout):
        while True:
            try:
                info = await js.consumer_info(settings.streams.events, durable)
            except NotFoundError:  # the service (just restarted) has not created it yet
                info = None
            if info is not None and info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)
