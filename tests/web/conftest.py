"""The browser tests' world: a whole system and a headless Chromium driven by Playwright.

The system: a private nats-server and redis-server, the engine's services in
this process (at `TIME_SCALE`, so a 3 s step takes 0.3 s), and the gateway as a
real `questlog run gateway` process in dev mode, so a test can kill and restart
it. The browser: Debian's `chromium` with a fresh profile per test; Playwright
only drives it (no downloaded browser). Without Chromium the tests fail, saying so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from questlog.services.bench.stack import ServiceProcess, http_ready
from questlog.services.contract.command_client import Actor, CommandClient
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.embedded import free_port
from questlog.services.runtime.settings import Settings

from ..stacks import in_process, private_stack

TIME_SCALE = 0.1
ENGINE = ("commands", "processor", "reward", "snapshotter", "projector")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    """Debian's chromium (QUESTLOG_CHROMIUM overrides), or None."""
    path = os.environ.get("QUESTLOG_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).is_file() else None


class Missing:
    """Stands in for the page when the browser cannot run: the test fails at its first use, saying why."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    def __getattr__(self, name: str) -> Any:
        pytest.fail(self._reason, pytrace=False)


class WebSystem:
    """The running system: the gateway process (restartable), and the engine's command path."""

    def __init__(self, settings: Settings, wiring: Wiring, env: dict[str, str], log_dir: Path) -> None:
        self.settings = settings
        self.wiring = wiring
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.gateway = ServiceProcess(
            "gateway",
            {
                **env,
                "QUESTLOG_HTTP_PORT": str(self.port),
                "QUESTLOG_DEV_MODE": "1",
                "QUESTLOG_TIME_SCALE": str(settings.time_scale),
            },
            log_dir,
        )
        self._commands = CommandClient(wiring.nc)

    @property
    def nc(self) -> NATS:
        return self.wiring.nc

    async def start_gateway(self) -> None:
        await self.gateway.start()
        await self.gateway_ready()

    async def kill_gateway(self) -> None:
        await self.gateway.kill9()

    async def gateway_ready(self, timeout: float = 30.0) -> None:
        await http_ready(self.base, self.gateway, timeout)

    async def call(self, method: str, player_id: str, **params: Any) -> Any:
        """A method through the commands service, as the player (what the server holds)."""
        return await self._commands.call(method, player_id, params, Actor(player_id, ()))


@asynccontextmanager
async def running_system(tmp: Path, time_scale: float = TIME_SCALE) -> AsyncIterator[WebSystem]:
    async with private_stack(tmp) as (settings, _nc, env):
        settings = msgspec.structs.replace(settings, time_scale=time_scale)
        async with in_process(settings, ENGINE) as wiring:
            system = WebSystem(settings, wiring, env, tmp)
            await system.start_gateway()
            try:
                yield system
            finally:
                if system.gateway.proc is not None:
                    await system.gateway.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def web_system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WebSystem]:
    async with running_system(tmp_path_factory.mktemp("web")) as system:
        yield system


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def playwright() -> AsyncIterator[Any]:
    """The Playwright driver (it only drives the browser; none is downloaded), or None if not installed."""
    try:
        from playwright.async_api import async_playwright, expect
    except ImportError:
        yield None
        return
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as driver:
        yield driver


@pytest_asyncio.fixture(loop_scope="session")
async def page(playwright: Any, web_system: WebSystem, tmp_path: Path) -> AsyncIterator[Any]:
    """A page in a fresh Chromium profile; uncaught errors in the page fail the test."""
    executable = chromium_path()
    if executable is None:
        yield Missing(
            "chromium is missing: the browser tests need Debian's chromium at /usr/bin/chromium "
            "(apt-get install -y chromium; .ci/run installs it), or QUESTLOG_CHROMIUM naming one"
        )
        return
    if playwright is None:
        yield Missing("playwright is missing: pip install -e '.[test]' (make test installs it)")
        return
    context = await launch_chromium(playwright, executable, tmp_path / "chromium-profile")
    page = context.pages[0] if context.pages else await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"errors in the page: {errors}"


async def launch_chromium(playwright: Any, executable: str, profile: Path) -> Any:
    """Headless Chromium with a fresh profile (a persistent context: the profile is ours, not a temp one)."""
    return await playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=executable,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1500, "height": 950},
    )


async def log_in(page: Any, system: WebSystem, player_id: str) -> None:
    """Open the page and use the dev login, until the session is up."""
    from playwright.async_api import expect

    await page.goto(f"{system.base}/")
    await page.fill("#login-player", player_id)
    await page.click("#login-submit")
    await expect(page.locator("#status")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#stats")).not_to_be_empty()  # the first state is shown


async def enqueue(page: Any, activity: str, target: str, quantity: int, priority: int = 0) -> None:
    """Fill and send the enqueue form (the answer is awaited by the caller)."""
    await page.click(f"label.tab:has(input[value='{activity}'])")
    await page.select_option("#target", target)
    await page.fill("#quantity", str(quantity))
    await page.fill("#priority", str(priority))
    await page.click("#enqueue-submit")
