"""One player's session on a WebSocket: hello and refresh, live events, progress, presence.

The socket itself (frames in, the bounded send queue out, closing) is the
`Transport`'s; a session is what the protocol does over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from questlog.events.schema import Recorded
from questlog.events.store import EventStore
from questlog.events.subjects import valid_player_id
from questlog.projections.views import event_view
from questlog.services.contract import protocol
from questlog.services.contract.protocol import RpcError, SessionHello, SessionRefresh, rfc3339
from questlog.services.notifier import Inbox
from questlog.services.presence import PresenceLeases, changed_subject
from questlog.services.rules.commands import Request
from questlog.services.runtime.metrics import QuestlogMetrics
from questlog.services.runtime.settings import RealtimeSettings

from .auth import AuthError, Identity, TokenVerifier
from .caps import ConnectionCaps
from .close_codes import CloseCode
from .live import LiveFeed
from .progress import METHOD as PROGRESS
from .progress import ProgressTracker
from .recovery import recover
from .routing import Caller, Router
from .tallies import GatewayTallies
from .transport import Transport

log = logging.getLogger("questlog.gateway.session")


@dataclass(frozen=True, slots=True)
class SessionServices:
    """What a session uses of its gateway process, shared by every session there."""

    router: Router
    verifier: TokenVerifier
    caps: ConnectionCaps
    leases: PresenceLeases
    inbox: Inbox
    nc: NATS
    store: EventStore
    rt: RealtimeSettings
    replay_limit: int
    tallies: GatewayTallies
    otel: QuestlogMetrics


class Session:
    def __init__(self, services: SessionServices, ws: web.WebSocketResponse, request: web.Request, ip: str) -> None:
        self.id = uuid.uuid4().hex
        self._s = services
        rt = services.rt
        self.transport = Transport(
            ws,
            request,
            send_queue_size=rt.send_queue_size,
            max_inflight=rt.max_inflight,
            deflate_idle_s=rt.deflate_idle_s,
            on_overflow=self._overflowed,
        )
        self.ws = ws
        self.ip = ip
        self.identity: Identity | None = None
        self.live: LiveFeed | None = None
        self.sent_events = 0
        self._presence: dict[str, Subscription] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._hello_lock = asyncio.Lock()
        self._counted = False
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.progress = ProgressTracker()  # for `task.progress` beside task.started / step_completed
        self._learning: dict[str, asyncio.Task[None]] = {}
        self._methods: dict[type[Request], Callable[[Any, Caller], Awaitable[Any]]] = {
            SessionHello: self._hello,
            SessionRefresh: self._refresh,
        }

    # -- the connection's life ----------------------------------------------------

    async def run(self) -> None:
        try:
            await self.transport.serve(self._frame)
        finally:
            try:
                await self._teardown()
            finally:
                self._finished.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._finished)

    @property
    def close_code(self) -> int | None:
        return self.transport.close_code

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        self.transport.close_soon(code, reason, flush=flush)

    async def _frame(self, data: str | bytes) -> None:
        caller = Caller(self.identity, self.ip, self)
        answer = await self._s.router.answer_frame(data, caller)
        if answer is not None:
            self.transport.send(answer)
        for action in caller.after_send:
            action()

    def _overflowed(self) -> None:
        self._s.tallies.too_slow += 1
        log.warning("send queue overflowed; closing", extra={"session_id": self.id, "player_id": self._pid()})

    def notify(self, method: str, params: Any) -> bool:
        return self.transport.notify(method, params)

    def send_event(self, rec: Recorded) -> bool:
        self.sent_events += 1
        self._s.tallies.events_sent += 1
        sent = self.notify("event", event_view(rec))
        if sent:
            self._send_progress(rec)
        return sent

    def _send_progress(self, rec: Recorded) -> None:
        params = self.progress.after(rec)
        if params is not None:
            self.notify(PROGRESS, params)
            return
        task_id = self.progress.unknown(rec)
        if task_id is not None and task_id not in self._learning and self.identity is not None:
            # resumed in the middle of a task: ask the queue once how many steps it has
            self._learning[task_id] = asyncio.create_task(self._learn_progress(task_id, rec, self.identity))

    async def _learn_progress(self, task_id: str, rec: Recorded, identity: Identity) -> None:
        try:
            queue = await self._s.router.query_as(identity)("queue.get")
            params = self.progress.learn(rec, queue.get("current") if isinstance(queue, dict) else None)
            if params is not None:
                self.notify(PROGRESS, params)
        except Exception:
            log.warning("task.progress: the queue could not be read", extra={"player_id": identity.player_id})
        finally:
            self._learning.pop(task_id, None)

    async def _teardown(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        for learning in list(self._learning.values()):
            learning.cancel()
        if self.live is not None:
            await self.live.close()
        for sub in self._presence.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._presence.clear()
        if self._counted and self.identity is not None:
            self._s.caps.player_left(self.identity.player_id)
            try:
                await self._s.leases.disconnected(self.identity.player_id)
            except Exception:
                log.exception("presence release failed", extra={"player_id": self.identity.player_id})

    def _pid(self) -> str | None:
        return self.identity.player_id if self.identity else None

    # -- session.* ------------------------------------------------------------------

    async def session_method(self, params: Request, caller: Caller) -> Any:
        return await self._methods[type(params)](params, caller)

    def _verify(self, token: str) -> Identity:
        try:
            identity = self._s.verifier.verify(token)
        except AuthError as exc:
            raise protocol.not_authenticated(exc.reason) from None
        if not valid_player_id(identity.player_id):
            raise protocol.not_authenticated("the token's sub is not a valid player id")
        return identity

    async def _hello(self, params: SessionHello, caller: Caller) -> dict[str, Any]:
        async with self._hello_lock:
            if self.identity is not None:
                raise RpcError(protocol.INVALID_REQUEST, "session.hello was already called on this socket")
            identity = self._verify(params.token)
            if not self._s.caps.player_joined(identity.player_id):
                self._s.otel.refused_by_rate_limit("connection")
                caller.after_send.append(
                    lambda: self.close_soon(CloseCode.TOO_MANY, "too many connections for this player", flush=True)
                )
                raise protocol.rate_limited(1000)
            try:
                live = LiveFeed(self._s.nc, self._s.store, identity.player_id, self.send_event, self._live_failed)
                await live.subscribe()  # first: whatever lands from now on is buffered
                try:
                    rec = await recover(
                        self._s.store,
                        identity.player_id,
                        params.resume,
                        self._s.replay_limit,
                        self._s.router.query_as(identity),
                    )
                    unread = await self._s.inbox.unread(identity.player_id)
                except BaseException:
                    await live.close()
                    raise
            except BaseException:
                self._s.caps.player_left(identity.player_id)
                raise
            self._counted = True
            self._s.otel.recovery(rec.recovered, len(rec.events))
            self.identity = identity
            caller.identity = identity
            self.live = live
            self._arm_expiry(identity)
            try:
                await self._s.leases.connected(identity.player_id)
            except Exception:  # presence is best effort: never leave a hello half done
                log.warning("presence lease failed at hello", extra={"player_id": identity.player_id}, exc_info=True)

            def after_answer() -> None:
                for e in rec.events:
                    self.send_event(e)
                live.start(rec.version, rec.last_seq)

            caller.after_send.append(after_answer)
            log.info(
                "session started",
                extra={
                    "session_id": self.id,
                    "player_id": identity.player_id,
                    "recovered": rec.recovered,
                    "missed": rec.missed,
                    "version": rec.version,
                },
            )
            return {
                "session_id": self.id,
                "player_id": identity.player_id,
                "epoch": rec.epoch,
                "version": rec.version,
                "recovered": rec.recovered,
                "missed": rec.missed,
                "heartbeat_s": self._s.rt.heartbeat_s,
                "state": rec.state,
                "unread": unread,
            }

    async def _refresh(self, params: SessionRefresh, caller: Caller) -> dict[str, Any]:
        if self.identity is None:
            raise protocol.not_authenticated("call session.hello first")
        identity = self._verify(params.token)
        if identity.player_id != self.identity.player_id:
            raise protocol.forbidden("the new token names another player")
        self.identity = identity
        self._arm_expiry(identity)
        return {"expires_at": rfc3339(datetime.fromtimestamp(identity.expires_at, UTC))}

    def _arm_expiry(self, identity: Identity) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        delay = max(0.0, identity.expires_at - time.time())
        self._expiry = loop.call_later(delay, self.close_soon, CloseCode.TOKEN_EXPIRED, "token expired")

    def _live_failed(self) -> None:
        self.close_soon(CloseCode.INTERNAL, "live delivery failed; resume")

    # -- presence ---------------------------------------------------------------------

    async def subscribe_presence(self, player_ids: list[str]) -> None:
        limit = self._s.rt.max_presence_subscriptions
        for player_id in player_ids:
            if player_id in self._presence:
                continue
            if len(self._presence) >= limit:
                raise protocol.invalid_params("player_ids", f"at most {limit} presence subscriptions per session")
            self._presence[player_id] = await self._s.nc.subscribe(
                changed_subject(player_id), cb=self._presence_changed
            )

    async def unsubscribe_presence(self, player_ids: list[str]) -> None:
        for player_id in player_ids:
            sub = self._presence.pop(player_id, None)
            if sub is not None:
                await sub.unsubscribe()

    async def _presence_changed(self, msg: Msg) -> None:
        try:
            params = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            return
        self.notify("presence.changed", params)
