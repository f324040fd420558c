"""Which services exist and how each one runs: `questlog run <name>` and `questlog up`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .wiring import Wiring

# A service runs until `stop` is set, then drains and returns.
ServiceMain = Callable[[Wiring, asyncio.Event], Awaitable[None]]


async def _commands(wiring: Wiring, stop: asyncio.Event) -> None:
    from .commands import serve_commands

    await serve_commands(wiring, stop)


async def _processor(wiring: Wiring, stop: asyncio.Event) -> None:
    from .processor import serve_processor

    await serve_processor(wiring, stop)


async def _reward(wiring: Wiring, stop: asyncio.Event) -> None:
    from .reward import serve_reward

    await serve_reward(wiring, stop)


async def _snapshotter(wiring: Wiring, stop: asyncio.Event) -> None:
    from .snapshotter import serve_snapshotter

    await serve_snapshotter(wiring, stop)


async def _presence(wiring: Wiring, stop: asyncio.Event) -> None:
    from .presence import serve_presence

    await serve_presence(wiring, stop)


async def _notifier(wiring: Wiring, stop: asyncio.Event) -> None:
    from .notifier import serve_notifier

    await serve_notifier(wiring, stop)


async def _projector(wiring: Wiring, stop: asyncio.Event) -> None:
    from .projector import serve_projector

    await serve_projector(wiring, stop)


async def _gateway(wiring: Wiring, stop: asyncio.Event) -> None:
    from questlog.gateway.app import serve

    runner = await serve(wiring, wiring.settings.http_host, wiring.settings.http_port)
    wiring.ready("gateway").set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def services() -> dict[str, ServiceMain]:
    """Every service, in start-up order (the gateway last, so it starts on a ready system)."""
    return {
        "commands": _commands,
        "processor": _processor,
        "reward": _reward,
        "snapshotter": _snapshotter,
        "projector": _projector,
        "presence": _presence,
        "notifier": _notifier,
        "gateway": _gateway,
    }
