"""The aiohttp application: HTTP endpoints and (later) the WebSocket JSON-RPC server."""

from __future__ import annotations

from aiohttp import web

from questlog.services.wiring import Wiring

WIRING = web.AppKey("wiring", Wiring)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: NATS is connected and Redis answers."""
    wiring = request.app[WIRING]
    checks = {"nats": wiring.nc.is_connected}
    try:
        checks["redis"] = bool(await wiring.redis.ping())
    except Exception:
        checks["redis"] = False
    ok = all(checks.values())
    return web.json_response({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)


def create_app(wiring: Wiring) -> web.Application:
    app = web.Application(client_max_size=wiring.settings.max_frame_bytes)
    app[WIRING] = wiring
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def serve(wiring: Wiring, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(wiring), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
