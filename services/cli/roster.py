"""Which services exist and how each one runs: `questlog run <name>` and `questlog up`."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any

from questlog.services.runtime.connections import Wiring

# A service runs until `stop` is set, then drains and returns.
ServiceMain = Callable[[Wiring, asyncio.Event], Coroutine[Any, Any, None]]

# name -> the module and function that run it, imported only when it runs,
# in start-up order (the gateway last, so it starts on a ready system)
_ROSTER = {
    "commands": "questlog.services.commands:serve_commands",
    "processor": "questlog.services.processor:serve_processor",
    "reward": "questlog.services.reward:serve_reward",
    "snapshotter": "questlog.services.snapshotter:serve_snapshotter",
    "projector": "questlog.services.projector:serve_projector",
    "presence": "questlog.services.presence:serve_presence",
    "notifier": "questlog.services.notifier:serve_notifier",
    "gateway": "questlog.gateway.app:serve_gateway",
}


def _lazy(target: str) -> ServiceMain:
    async def main(wiring: Wiring, stop: asyncio.Event) -> None:
        module, function = target.split(":")
        await getattr(importlib.import_module(module), function)(wiring, stop)

    return main


def services() -> dict[str, ServiceMain]:
    """Every service, in start-up order."""
    return {name: _lazy(target) for name, target in _ROSTER.items()}
