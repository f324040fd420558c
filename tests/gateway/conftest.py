"""A gateway running in the test process on a free port, on the session's real servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from aiohttp import web

from questlog.gateway.app import GATEWAY, Gateway, serve
from questlog.gateway.auth import issue_token
from questlog.services.runtime.connections import Wiring, connect
from questlog.services.runtime.settings import RealtimeSettings, Settings

TEST_RT = dict(
    rate_ip_per_s=100_000.0,
    rate_ip_burst=100_000,
    rate_player_per_s=1000.0,
    rate_player_burst=1000,
    presence_ttl_s=3.0,
    heartbeat_s=15.0,
    max_conns_per_ip=10_000,
)


class RunningGateway:
    def __init__(self, runner: web.AppRunner, wiring: Wiring) -> None:
        self.runner = runner
        self.wiring = wiring
        host, port = runner.addresses[0][:2]
        self.base = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}/ws"

    @property
    def gw(self) -> Gateway:
        return self.runner.app[GATEWAY]


async def start_gateway(wiring: Wiring, **rt: Any) -> RunningGateway:
    settings = RealtimeSettings(**{**TEST_RT, **rt})
    runner = await serve(wiring, "127.0.0.1", 0, settings)
    return RunningGateway(runner, wiring)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway_wiring(settings: Settings, system: object) -> AsyncIterator[Wiring]:
    async with connect(settings, name="test-gateway") as wiring:
        yield wiring


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def gateway(gateway_wiring: Wiring) -> AsyncIterator[RunningGateway]:
    running = await start_gateway(gateway_wiring)
    yield running
    await running.runner.cleanup()


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    def make(player_id: str, *, admin: bool = False, ttl_s: int = 3600) -> str:
        return issue_token(settings, player_id, admin=admin, ttl_s=ttl_s)

    return make


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class RawSocket:
    """A bare WebSocket speaking JSON-RPC by hand: for framing, errors and close codes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = 0
        self.notes: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self.ws.send_str(msgspec.json.encode(message).decode())

    async def recv(self, timeout: float = 15.0) -> Any:
        msg = await self.ws.receive(timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg.type, msg.data, self.ws.close_code)
        return msgspec.json.decode(msg.data)

    async def request(self, method: str, params: Any = None, timeout: float = 15.0) -> dict[str, Any]:
        """The response to this request (notifications seen meanwhile are kept in `notes`)."""
        self._ids += 1
        rid = self._ids
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            body["params"] = params
        await self.send(body)
        while True:
            answer = await self.recv(timeout)
            if isinstance(answer, dict) and answer.get("id") == rid:
                return answer
            self.notes.append(answer)

    async def events(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        """The next `n` event notifications' params (including any already kept in `notes`)."""
        out = [m["params"] for m in self.notes if m.get("method") == "event"]
        self.notes = [m for m in self.notes if m.get("method") != "event"]
        async with asyncio.timeout(timeout):
            while len(out) < n:
                m = await self.recv(timeout)
                if isinstance(m, dict) and m.get("method") == "event":
                    out.append(m["params"])
                else:
                    self.notes.append(m)
        return out

    async def closed(self, timeout: float = 15.0) -> int | None:
        """Read until the server closes; the close code."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return self.ws.close_code
                if msg.type == aiohttp.WSMsgType.ERROR:
                    return self.ws.close_code


@pytest_asyncio.fixture(loop_scope="session")
async def open_socket(http: aiohttp.ClientSession, gateway: RunningGateway):
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def _open(url: str | None = None, **kw: Any) -> RawSocket:
        ws = await http.ws_connect(url or gateway.ws_url, **kw)
        opened.append(ws)
        return RawSocket(ws)

    yield _open
    for ws in opened:
        await ws.close()
