"""Real nats-server and redis-server processes for the test session.

Started from the same launcher `questlog up` uses, on free ports, in temporary
directories. With QUESTLOG_TEST_CONTAINERS=1 and a Docker engine, the servers
run in containers instead (testcontainers).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from questlog.services.runtime.embedded import ServerProcess, free_port, nats_server, redis_server


def containers_wanted() -> bool:
    return os.environ.get("QUESTLOG_TEST_CONTAINERS") == "1"


@asynccontextmanager
async def local_nats(tmp: Path) -> AsyncIterator[ServerProcess]:
    server = nats_server(free_port(), tmp / "nats")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def local_redis(tmp: Path) -> AsyncIterator[ServerProcess]:
    (tmp / "redis").mkdir(parents=True, exist_ok=True)
    server = redis_server(free_port(), tmp / "redis", persist=False)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def container_urls() -> AsyncIterator[tuple[str, str]]:
    """(nats_url, redis_url) of containers; fails loudly when Docker is absent."""
    if shutil.which("docker") is None:
        raise RuntimeError("QUESTLOG_TEST_CONTAINERS=1 but no docker client is installed")
    try:
        from testcontainers.core.container import DockerContainer
        from testcontainers.redis import RedisContainer
    except ImportError as exc:
        raise RuntimeError("QUESTLOG_TEST_CONTAINERS=1 needs `pip install -e .[containers]`") from exc
    nats = DockerContainer("nats:2.12").with_command("-js").with_exposed_ports(4222)
    with nats, RedisContainer("redis:7") as redis:
        nats_url = f"nats://{nats.get_container_host_ip()}:{nats.get_exposed_port(4222)}"
        redis_url = f"redis://{redis.get_container_host_ip()}:{redis.get_exposed_port(6379)}/0"
        yield nats_url, redis_url
