"""The web client's routes: the page and its modules, and the dev login that exists only in dev mode."""

from __future__ import annotations

import re

import aiohttp
import msgspec

from questlog.gateway.web import STATIC_DIR
from questlog.services.runtime.connections import Wiring

from .conftest import start_gateway


async def test_the_page_and_every_module_it_imports_are_served(gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.base}/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        page = await resp.text()
    assert '<script type="module" src="/static/js/main.js">' in page
    modules = sorted(p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*.js"))
    assert "js/main.js" in modules
    for module in modules:
        async with http.get(f"{gateway.base}/static/{module}") as resp:
            assert resp.status == 200, module
            assert "javascript" in resp.content_type, (module, resp.content_type)
            source = await resp.text()
        for imported in re.findall(r"""^import .* from "(\./[\w./-]+)";$""", source, re.M):
            target = (STATIC_DIR / module).parent / imported
            assert target.is_file(), f"{module} imports {imported}, which does not exist"


async def test_dev_login_is_off_unless_dev_mode(gateway, http: aiohttp.ClientSession) -> None:
    assert gateway.wiring.settings.dev_mode is False
    async with http.post(f"{gateway.base}/dev/token", json={"player_id": "p-1"}) as resp:
        assert resp.status == 404


async def test_dev_login_in_dev_mode_issues_a_token_the_gateway_accepts(
    gateway_wiring: Wiring, http: aiohttp.ClientSession, player_id: str
) -> None:
    dev = Wiring(
        msgspec.structs.replace(gateway_wiring.settings, dev_mode=True), gateway_wiring.nc, gateway_wiring.redis
    )
    running = await start_gateway(dev)
    try:
        async with http.post(f"{running.base}/dev/token", json={"player_id": player_id}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["player_id"] == player_id
        async with http.post(f"{running.base}/dev/token", json={"player_id": "no spaces"}) as resp:
            assert resp.status == 400
        async with http.post(f"{running.base}/dev/token", data=b"{") as resp:
            assert resp.status == 400
        async with http.ws_connect(running.ws_url) as ws:
            await ws.send_json(
                {"jsonrpc": "2.0", "id": 1, "method": "session.hello", "params": {"token": body["token"]}}
            )
            answer = await ws.receive_json(timeout=15)
        assert answer["result"]["player_id"] == player_id
    finally:
        await running.runner.cleanup()
