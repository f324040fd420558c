"""What crash tests ask of services run as real subprocesses (services/bench/stack.py: ServiceProcess)."""

from __future__ import annotations

import asyncio
import os

import aiohttp
import nats.errors
from nats.aio.client import Client as NATS

from questlog.services.bench.stack import ServiceProcess


async def held_messages(nc: NATS, durables: list[tuple[str, str]], timeout: float = 30.0) -> bool:
    """Until one of the (stream, durable) consumers has messages delivered and not yet acknowledged
    (work in flight); False if none had any within `timeout` (polled: consumer state raises no event)."""
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for stream, durable in durables:
            try:
                if (await js.consumer_info(stream, durable)).num_ack_pending:
                    return True
            except nats.errors.Error:
                pass  # not created yet, or the server is busy: ask again
        await asyncio.sleep(0.02)
    return False


async def metric(proc: ServiceProcess, name: str) -> float:
    """The sum of a counter's samples on the process's `/metrics` (0 when it has none yet)."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{proc.health_port}/metrics") as r:
        text = await r.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def service_env(nats_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUESTLOG_")}
    env.update(
        QUESTLOG_NATS_URL=nats_url,
        QUESTLOG_REDIS_URL=redis_url,
        QUESTLOG_JWT_SECRET="test-secret-test-secret-test-secret",
        QUESTLOG_LOG_LEVEL="WARNING",
        QUESTLOG_ACK_WAIT_S="5",  # what a killed service held comes back in 5 s, not 30
    )
    env.update(extra)
    return env
