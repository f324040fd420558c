"""A service started before NATS waits for it, says so once, and serves when it comes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from questlog.services.bench.stack import ServiceProcess
from questlog.services.runtime.embedded import free_port, nats_server

from .processes import service_env
from .servers import local_redis

pytestmark = pytest.mark.slow


async def status(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status


async def test_a_service_started_before_nats_waits_and_then_serves(tmp_path: Path) -> None:
    nats_port = free_port()
    async with local_redis(tmp_path) as redis:
        env = service_env(f"nats://127.0.0.1:{nats_port}", redis.url, QUESTLOG_LOG_LEVEL="INFO")
        reward = await ServiceProcess("reward", env, tmp_path, health=True).start()
        log = next(tmp_path.glob("reward-*.log"))

        async def said_it_waits() -> bool:
            assert reward.proc is not None and reward.proc.returncode is None, "the service exited"
            return "waiting to connect to NATS" in log.read_text()

        async with asyncio.timeout(30):
            while not await said_it_waits():
                await asyncio.sleep(0.05)  # another process's log: polled
        assert await status(reward.health_port, "/healthz") == 200
        assert await status(reward.health_port, "/readyz") == 503, "not ready without NATS"

        server = nats_server(nats_port, tmp_path / "nats")
        await server.start()
        try:
            await reward.ready()
            assert log.read_text().count("waiting to connect to NATS") == 1, "said once, not per attempt"
            assert reward.proc is not None and reward.proc.returncode is None
            assert await reward.stop() == 0
        finally:
            await server.stop()
