"""The aiohttp application: `/ws` (JSON-RPC sessions), `POST /rpc`, health, readiness, metrics, the web client."""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from questlog.projections.read_models import ReadModels
from questlog.services.contract.command_client import CommandClient
from questlog.services.notifier import Inbox
from questlog.services.presence import PresenceLeases, PresenceStore
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.metrics import QuestlogMetrics
from questlog.services.runtime.settings import RealtimeSettings, Settings
from questlog.services.runtime.telemetry import prometheus_text

from .admission import Admission
from .auth import AuthError, TokenVerifier
from .caps import ConnectionCaps
from .close_codes import CloseCode
from .live import LiveFeed
from .positions import PositionCheck
from .ratelimit import RateLimiter
from .routing import Caller, Router
from .session import Session, SessionServices
from .tallies import GatewayTallies
from .web import add_web_routes

log = logging.getLogger("questlog.gateway")


class Gateway:
    """Everything one gateway process shares between its connections."""

    def __init__(self, wiring: Wiring, rt: RealtimeSettings) -> None:
        self.wiring = wiring
        self.settings: Settings = wiring.settings
        self.rt = rt
        self.id = rt.gateway_id or f"gw-{uuid.uuid4().hex[:12]}"
        self.verifier = TokenVerifier(wiring.settings)
        self.commands = CommandClient(wiring.nc)
        self.limiter = RateLimiter(wiring.redis)
        self.presence = PresenceStore(wiring.redis, wiring.nc, rt.presence_ttl_s)
        self.leases = PresenceLeases(self.presence, self.id, rt.heartbeat_every_s)
        self.inbox = Inbox(wiring.redis, rt.inbox_max)
        self.caps = ConnectionCaps(rt)
        self.sessions: set[Session] = set()
        self.metrics = GatewayTallies(self.id)  # bumped in place: `gw.metrics.requests += 1`
        self.otel = QuestlogMetrics.from_global()  # the OpenTelemetry instruments (services/runtime/metrics.py)
        self.draining = False
        self.admission = Admission(
            max_inflight=rt.admission_max_inflight, max_latency_s=rt.admission_max_latency_ms / 1000
        )
        self.router = Router(
            self.commands, self.limiter, self.admission, rt, self.presence, self.inbox, self.metrics, self.otel
        )
        self.session_services = SessionServices(
            router=self.router,
            verifier=self.verifier,
            caps=self.caps,
            leases=self.leases,
            inbox=self.inbox,
            nc=wiring.nc,
            store=wiring.store,
            rt=rt,
            replay_limit=wiring.settings.replay_limit,
            tallies=self.metrics,
            otel=self.otel,
        )
        self.positions = PositionCheck(self._live_feeds, ReadModels(wiring.redis), rt.live_check_s)

    def _live_feeds(self) -> list[LiveFeed]:
        return [s.live for s in self.sessions if s.live is not None]


GATEWAY = web.AppKey("gateway", Gateway)
CHECKS = web.AppKey("position checks", asyncio.Task[None])


def client_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "unknown"


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: NATS is connected, Redis answers, and the gateway is not draining."""
    gw = request.app[GATEWAY]
    checks = {"nats": gw.wiring.nc.is_connected, "draining": not gw.draining}
    try:
        checks["redis"] = bool(await gw.wiring.redis.ping())
    except Exception:
        checks["redis"] = False
    ok = all(checks.values())
    return web.json_response({"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """The process registry: the OpenTelemetry instruments and every gateway's tallies (gateway/tallies.py)."""
    return web.Response(body=prometheus_text(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def websocket(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    ws = web.WebSocketResponse(
        heartbeat=gw.rt.heartbeat_s, max_msg_size=gw.settings.max_frame_bytes, compress=gw.rt.ws_deflate
    )
    await ws.prepare(request)
    ip = client_ip(request)
    if gw.draining:
        await ws.close(code=CloseCode.GOING_AWAY, message=b"gateway draining")
        return ws
    if not gw.caps.ip_joined(ip):
        gw.metrics.refused_connections += 1
        gw.otel.refused_by_rate_limit("connection")
        await ws.close(code=CloseCode.TOO_MANY, message=b"too many connections from this address")
        return ws
    session = Session(gw.session_services, ws, request, ip)
    gw.sessions.add(session)
    gw.metrics.sessions_total += 1
    gw.otel.connection_opened()
    try:
        await session.run()
    finally:
        gw.otel.connection_closed()
        gw.sessions.discard(session)
        gw.caps.ip_left(ip)
    return ws


async def rpc(request: web.Request) -> web.Response:
    """JSON-RPC over HTTP: `Authorization: Bearer <JWT>`, no session, no notifications."""
    gw = request.app[GATEWAY]
    identity = None
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        try:
            identity = gw.verifier.verify(header[7:].strip())
        except AuthError:
            identity = None  # every call then answers -32001
    body = await request.read()
    answer = await gw.router.answer_frame(body, Caller(identity, client_ip(request)))
    if answer is None:
        return web.Response(status=204)
    return web.Response(text=answer, content_type="application/json")


async def _drain(app: web.Application) -> None:
    """Shutdown: every socket is closed with 1001 so clients move to another gateway at once."""
    gw = app[GATEWAY]
    gw.draining = True
    for session in list(gw.sessions):
        session.close_soon(CloseCode.GOING_AWAY, "gateway draining", flush=True)
    closing = [s for s in gw.sessions]
    if closing:
        await asyncio.wait([asyncio.create_task(_closed(s)) for s in closing], timeout=5)
    await gw.leases.close()


async def _closed(session: Session) -> None:
    await session.wait_closed()


def create_app(wiring: Wiring, rt: RealtimeSettings | None = None) -> web.Application:
    gateway = Gateway(wiring, rt or wiring.settings.realtime)
    app = web.Application(client_max_size=wiring.settings.max_frame_bytes)
    app[GATEWAY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/ws", websocket)
    app.router.add_post("/rpc", rpc)
    add_web_routes(app, wiring.settings)  # the web client at `/`; `/dev/token` in dev mode only
    app.on_shutdown.append(_drain)

    checking = asyncio.Event()  # set: the position check stops

    async def start_leases(app: web.Application) -> None:
        app[GATEWAY].leases.start()
        app[CHECKS] = asyncio.create_task(app[GATEWAY].positions.run(checking))

    async def stop_checks(app: web.Application) -> None:
        checking.set()
        await app[CHECKS]

    app.on_startup.append(start_leases)
    app.on_cleanup.append(stop_checks)
    return app


async def serve(wiring: Wiring, host: str, port: int, rt: RealtimeSettings | None = None) -> web.AppRunner:
    rt = rt or wiring.settings.realtime
    runner = web.AppRunner(create_app(wiring, rt), access_log=None, shutdown_timeout=5)
    await runner.setup()
    # aiohttp's default backlog (128) overflows in a reconnect storm: the
    # kernel drops the rest, and their clients retry a second later.
    # reuse_port: one Python process serves from one core; the kernel spreads
    # the connections of a port over every process that listens on it.
    site = web.TCPSite(runner, host, port, backlog=rt.listen_backlog, reuse_port=rt.reuse_port or None)
    await site.start()
    return runner


async def serve_gateway(wiring: Wiring, stop: asyncio.Event) -> None:
    """The gateway as a service: serve until `stop`, then drain (close 1001) and return."""
    runner = await serve(wiring, wiring.settings.http_host, wiring.settings.http_port)
    wiring.ready("gateway").set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
