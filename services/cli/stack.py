"""`questlog up`: the whole system on one machine, with embedded NATS and Redis."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

import msgspec
from rich.console import Console

from questlog.events.streams import StreamMismatch
from questlog.gateway.auth import issue_token
from questlog.services.runtime.connections import UnreachableError, Wiring, connect
from questlog.services.runtime.embedded import EmbeddedError, ServerProcess, check_port_free, nats_server, redis_server
from questlog.services.runtime.settings import Settings
from questlog.services.runtime.startup import StartupTimeout
from questlog.services.runtime.telemetry import serve_metrics, setup_telemetry

from .roster import ServiceMain, services

log = logging.getLogger("questlog.up")
DEV_PLAYER = "dev-player"


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def run_services(wiring: Wiring, chosen: dict[str, ServiceMain], stop: asyncio.Event) -> None:
    """Run services side by side until `stop`, or until one of them fails."""
    tasks = {asyncio.create_task(main(wiring, stop), name=name): name for name, main in chosen.items()}
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("service %s failed", tasks[task], exc_info=result)
            raise result


async def up(settings: Settings, console: Console | None = None) -> int:
    console = console or Console(stderr=False)
    telemetry = setup_telemetry("questlog")
    stop = asyncio.Event()
    _stop_on_signals(stop)
    data = settings.data_path
    started: list[ServerProcess] = []
    try:
        check_port_free("the gateway, QUESTLOG_HTTP_PORT", settings.http_host, settings.http_port)
        if not settings.nats_url:
            check_port_free("nats-server, QUESTLOG_NATS_PORT", "127.0.0.1", settings.nats_port)
        if not settings.redis_url:
            check_port_free("redis-server, QUESTLOG_REDIS_PORT", "127.0.0.1", settings.redis_port)
        if not settings.nats_url:
            n = await nats_server(settings.nats_port, data / "nats").start()
            started.append(n)
            settings = msgspec.structs.replace(settings, nats_url=n.url)
        if not settings.redis_url:
            (data / "redis").mkdir(parents=True, exist_ok=True)
            r = await redis_server(settings.redis_port, data / "redis").start()
            started.append(r)
            settings = msgspec.structs.replace(settings, redis_url=r.url)
        settings = msgspec.structs.replace(settings, dev_mode=True).with_jwt_secret()
        async with connect(settings, name="questlog-up") as wiring:
            tune_gc()
            runner = asyncio.create_task(run_services(wiring, services(), stop))
            ready = asyncio.create_task(wiring.ready("gateway").wait())
            await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done():
                _banner(console, settings)
            else:
                ready.cancel()
            await runner
        return 0
    except (EmbeddedError, StreamMismatch, UnreachableError, StartupTimeout) as exc:
        print(f"questlog up: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(started):
            await server.stop()
        telemetry.shutdown()


def _banner(console: Console, settings: Settings) -> None:
    token = issue_token(settings, DEV_PLAYER)
    console.print(f"[bold green]questlog is up[/]  web client: http://{settings.http_host}:{settings.http_port}/")
    console.print(f"NATS {settings.nats_url}   Redis {settings.redis_url}   data {settings.data_path}/")
    console.print(f"dev token for player {DEV_PLAYER} (24 h):")
    console.print(token, soft_wrap=True, highlight=False)
    console.print("Ctrl-C stops everything.")


# Young objects per collection: with CPython's 700 a busy service spends its CPU
# collecting short-lived messages (docs/operations.md, Tuning).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """For a long-running service, once started: fewer, larger collections, and what start-up built
    (modules, settings, connections) out of every collection's way for good."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_process(settings: Settings, chosen: dict[str, ServiceMain]) -> int:
    """`questlog run <name>[,<name>…]`: services in one process on the configured NATS and Redis, until SIGTERM.

    Several in one process share its connections and event loop: one worker
    per core running a few services costs less CPU than a process each.
    """
    name = "+".join(chosen)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    telemetry = setup_telemetry(f"questlog-{name}")
    serving: list[Wiring] = []  # the wiring once connected: /readyz asks it
    metrics = (
        await serve_metrics(
            settings.http_host,
            settings.metrics_port,
            ready=lambda: bool(serving) and all(serving[0].ready(n).is_set() for n in chosen),
        )
        if settings.metrics_port
        else None
    )
    try:
        async with connect(settings, name=f"questlog-{name}") as wiring:
            serving.append(wiring)
            tune_gc()
            await run_services(wiring, chosen, stop)
    except (UnreachableError, StartupTimeout, StreamMismatch) as exc:
        log.error("questlog run %s: %s", name, exc)
        print(f"questlog run {name}: {exc}", file=sys.stderr)
        return 1
    finally:
        if metrics is not None:
            await metrics.cleanup()
        telemetry.shutdown()
    return 0
