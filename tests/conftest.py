from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from questlog.events.streams import ensure_streams
from questlog.services.runtime.settings import Settings, load_settings

from .servers import container_urls, containers_wanted, local_nats, local_redis


class Stack:
    """URLs of the session's servers, and the processes when we own them."""

    def __init__(self, nats_url: str, redis_url: str, nats_proc=None, redis_proc=None, tmp: Path | None = None):
        self.nats_url, self.redis_url = nats_url, redis_url
        self.nats_proc, self.redis_proc, self.tmp = nats_proc, redis_proc, tmp


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("servers")
    async with AsyncExitStack() as es:
        if containers_wanted():
            nats_url, redis_url = await es.enter_async_context(container_urls())
            yield Stack(nats_url, redis_url, tmp=tmp)
        else:
            n = await es.enter_async_context(local_nats(tmp))
            r = await es.enter_async_context(local_redis(tmp))
            yield Stack(n.url, r.url, n, r, tmp)


@pytest.fixture(scope="session")
def settings(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        {},
        nats_url=stack.nats_url,
        redis_url=stack.redis_url,
        data_dir=str(tmp_path_factory.mktemp("data")),
        jwt_secret="test-secret-test-secret-test-secret",
        time_scale=0.01,
        ack_wait_s=5,  # what a killed service held comes back in 5 s, not 30
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def nc(settings: Settings) -> AsyncIterator[NATS]:
    client = await nats.connect(settings.nats_url, drain_timeout=5)
    await ensure_streams(client.jetstream(), settings.streams, settings.replicas)
    yield client
    await client.drain()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(settings.redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def player_id() -> str:
    """A fresh aggregate per test: tests share the servers, never a player."""
    return f"p-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def system(settings: Settings, nc: NATS) -> AsyncIterator[object]:
    """The engine's services running in this process for the session."""
    import asyncio

    from questlog.services.cli.roster import services
    from questlog.services.cli.stack import run_services
    from questlog.services.runtime.connections import connect

    stop = asyncio.Event()
    chosen = {
        k: v for k, v in services().items() if k in ("commands", "processor", "reward", "snapshotter", "projector")
    }
    async with connect(settings, name="test-system") as wiring:
        task = asyncio.create_task(run_services(wiring, chosen, stop))
        await asyncio.wait_for(wiring.ready("commands").wait(), 20)
        yield wiring
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def call(system, nc: NATS):
    """call(method, player_id, **params) through the commands service, as that player."""
    from questlog.services.contract.command_client import Actor, CommandClient

    client = CommandClient(nc)

    async def _call(method: str, as_player: str, /, roles: tuple[str, ...] = (), actor: str | None = None, **params):
        return await client.call(method, as_player, params, Actor(actor or as_player, roles))

    return _call


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Finished spans of the process's tracer provider (installed here if nobody did)."""
    from questlog.services.runtime.telemetry import setup_telemetry

    # no exporter here, so a sampler must be asked for, or nothing is recorded
    sampled = {"OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    setup_telemetry("questlog-tests", environ=sampled, registry=CollectorRegistry())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter
