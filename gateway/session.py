"""One WebSocket connection: authentication, its bounded send queue, live events, presence.

Every frame is answered in its own task (responses may come in any order, as
JSON-RPC allows), at most `max_inflight` at once: beyond that the socket is not
read, which slows a flooding client down instead of queueing without bound.
Everything the server sends goes through one bounded queue drained by one
writer; a client that does not read fast enough fills it and is closed with
4008, and can resume without losing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import WSMsgType, web
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from questlog.events.schema import Recorded
from questlog.events.subjects import valid_player_id
from questlog.services.contract import protocol
from questlog.services.contract.protocol import HelloParams, Method, RefreshParams, RpcError, rfc3339
from questlog.services.presence import changed_subject

from . import jsonrpc
from .auth import AuthError, Identity
from .deflate import release_compressor
from .live import LiveFeed
from .mailbox import Mailbox, MailboxFull
from .progress import METHOD as PROGRESS
from .progress import ProgressTracker
from .recovery import recover
from .routing import Caller, query_as

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("questlog.gateway.session")

# Close codes (docs/protocol.md)
GOING_AWAY = 1001
TOKEN_EXPIRED = 4001
TOO_SLOW = 4008
TOO_MANY = 4029
INTERNAL = 1011
CLOSE_TIMEOUT_S = 10.0


def event_params(rec: Recorded) -> dict[str, Any]:
    """An `event` notification's params: version, type, at (domain time), data."""
    return {
        "version": rec.version,
        "type": rec.type,
        "at": rfc3339(rec.occurred_at),
        "data": msgspec.to_builtins(rec.event),
    }


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


class Session:
    def __init__(self, gateway: Gateway, ws: web.WebSocketResponse, request: web.Request, ip: str) -> None:
        self.id = uuid.uuid4().hex
        self.gw = gateway
        self.ws = ws
        self.request = request
        self.ip = ip
        self.identity: Identity | None = None
        self.live: LiveFeed | None = None
        self.sent_events = 0
        self.close_code: int | None = None
        # one extra slot, so a flushing close always fits behind what is queued
        self._out: Mailbox[str | _Close] = Mailbox(gateway.rt.send_queue_size + 1)
        self._flushing = False
        self._inflight = asyncio.Semaphore(gateway.rt.max_inflight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._presence: dict[str, Subscription] = {}
        self._expiry: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self._hello_lock = asyncio.Lock()
        self._counted = False
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.progress = ProgressTracker()  # for `task.progress` beside task.started / step_completed
        self._learning: dict[str, asyncio.Task[None]] = {}

    # -- the connection's life ----------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.id}")
        try:
            async for msg in self.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._inflight.acquire()
                self._spawn(msg.data)  # no local keeps the task: a finished one would live as long as the socket
        finally:
            writer.cancel()
            for task in list(self._tasks):
                task.cancel()
            try:
                await self._teardown()
            finally:
                self._finished.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._finished)

    def _spawn(self, data: str | bytes) -> None:
        task = asyncio.create_task(self._frame(data))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._inflight.release()

    async def _frame(self, data: str | bytes) -> None:
        caller = Caller(self.identity, self.ip, self)
        answer = await self.gw.router.answer_frame(data, caller)
        if answer is not None:
            self._queue(answer)
        for action in caller.after_send:
            action()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        quiet: asyncio.TimerHandle | None = None  # gives the compressor back if nothing follows
        try:
            while True:
                item = await self._out.get()
                if quiet is not None:
                    quiet.cancel()
                    quiet = None
                if isinstance(item, _Close):
                    self._begin_close(item.code, item.reason)
                    return
                await self.ws.send_str(item)
                if not self._out:
                    quiet = loop.call_later(self.gw.rt.deflate_idle_s, release_compressor, self.ws)
        finally:
            if quiet is not None:
                quiet.cancel()

    def _queue(self, text: str) -> bool:
        if self._closing is not None or self._flushing:
            return False
        try:
            if len(self._out) >= self.gw.rt.send_queue_size:
                raise MailboxFull
            self._out.put(text)
            return True
        except MailboxFull:
            self.gw.metrics.too_slow += 1
            log.warning("send queue overflowed; closing", extra={"session_id": self.id, "player_id": self._pid()})
            self.close_soon(TOO_SLOW, "too slow")
            return False

    def notify(self, method: str, params: Any) -> bool:
        return self._queue(jsonrpc.encode(jsonrpc.notification(method, params)))

    def send_event(self, rec: Recorded) -> bool:
        self.sent_events += 1
        self.gw.metrics.events_sent += 1
        sent = self.notify("event", event_params(rec))
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
            queue = await query_as(self.gw, identity)("queue.get")
            params = self.progress.learn(rec, queue.get("current") if isinstance(queue, dict) else None)
            if params is not None:
                self.notify(PROGRESS, params)
        except Exception:
            log.warning("task.progress: the queue could not be read", extra={"player_id": identity.player_id})
        finally:
            self._learning.pop(task_id, None)

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close with `code`: at once, or (`flush`) once what is already queued has been sent."""
        if flush and not self._flushing and self._closing is None:
            self._flushing = True
            self.close_code = code
            self._out.put(_Close(code, reason))
            return
        self._begin_close(code, reason)

    def _begin_close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self.close_code = code
            self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode(), drain=False), CLOSE_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError, ConnectionError):
            transport = self.request.transport
            if transport is not None:
                transport.abort()

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
            self.gw.connections.player_left(self.identity.player_id)
            try:
                await self.gw.leases.disconnected(self.identity.player_id)
            except Exception:
                log.exception("presence release failed", extra={"player_id": self.identity.player_id})

    def _pid(self) -> str | None:
        return self.identity.player_id if self.identity else None

    # -- session.* ------------------------------------------------------------------

    async def session_method(self, method: Method, params: protocol.Params, caller: Caller) -> Any:
        if method.name == "session.hello":
            assert isinstance(params, HelloParams)
            return await self._hello(params, caller)
        assert isinstance(params, RefreshParams)
        return self._refresh(params)

    def _verify(self, token: str) -> Identity:
        try:
            identity = self.gw.verifier.verify(token)
        except AuthError as exc:
            raise protocol.not_authenticated(exc.reason) from None
        if not valid_player_id(identity.player_id):
            raise protocol.not_authenticated("the token's sub is not a valid player id")
        return identity

    async def _hello(self, params: HelloParams, caller: Caller) -> dict[str, Any]:
        async with self._hello_lock:
            if self.identity is not None:
                raise RpcError(protocol.INVALID_REQUEST, "session.hello was already called on this socket")
            identity = self._verify(params.token)
            if not self.gw.connections.player_joined(identity.player_id):
                self.gw.otel.refused_by_rate_limit("connection")
                caller.after_send.append(
                    lambda: self.close_soon(TOO_MANY, "too many connections for this player", flush=True)
                )
                raise protocol.rate_limited(1000)
            try:
                live = LiveFeed(
                    self.gw.wiring.nc, self.gw.wiring.store, identity.player_id, self.send_event, self._live_failed
                )
                await live.subscribe()  # first: whatever lands from now on is buffered
                try:
                    rec = await recover(
                        self.gw.wiring.store,
                        identity.player_id,
                        params.resume,
                        self.gw.settings.replay_limit,
                        query_as(self.gw, identity),
                    )
                    unread = await self.gw.inbox.unread(identity.player_id)
                except BaseException:
                    await live.close()
                    raise
            except BaseException:
                self.gw.connections.player_left(identity.player_id)
                raise
            self._counted = True
            self.gw.otel.recovery(rec.recovered, len(rec.events))
            self.identity = identity
            caller.identity = identity
            self.live = live
            self._arm_expiry(identity)
            try:
                await self.gw.leases.connected(identity.player_id)
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
                "heartbeat_s": self.gw.rt.heartbeat_s,
                "state": rec.state,
                "unread": unread,
            }

    def _refresh(self, params: RefreshParams) -> dict[str, Any]:
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
        self._expiry = loop.call_later(delay, self.close_soon, TOKEN_EXPIRED, "token expired")

    def _live_failed(self) -> None:
        self.close_soon(INTERNAL, "live delivery failed; resume")

    # -- presence ---------------------------------------------------------------------

    async def subscribe_presence(self, player_ids: list[str]) -> None:
        limit = self.gw.rt.max_presence_subscriptions
        for player_id in player_ids:
            if player_id in self._presence:
                continue
            if len(self._presence) >= limit:
                raise protocol.invalid_params("player_ids", f"at most {limit} presence subscriptions per session")
            self._presence[player_id] = await self.gw.wiring.nc.subscribe(
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
