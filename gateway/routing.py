"""Which code answers a method: the session, the gateway itself, or the commands service.

Shared by the WebSocket session and `POST /rpc`. Order of checks: the method
exists, the rate limits hold, the caller is authenticated; then the method is
served where its Struct says (`SERVED_BY`), which checks the role and the params.
A forwarded call always acts as the player named in the caller's token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from questlog.services.commands import domain_error
from questlog.services.contract import protocol
from questlog.services.contract.command_client import Actor, CommandClient
from questlog.services.contract.protocol import METHODS, RpcError
from questlog.services.notifier import Inbox
from questlog.services.presence import PresenceStore
from questlog.services.rules.commands import Request, params_object
from questlog.services.rules.errors import InvalidCommand
from questlog.services.runtime.metrics import QuestlogMetrics
from questlog.services.runtime.settings import RealtimeSettings

from . import jsonrpc
from .admission import Admission
from .auth import Identity
from .openrpc import openrpc_document
from .ratelimit import Bucket, Claim, RateLimiter
from .recovery import Query
from .tallies import GatewayTallies

_tracer = trace.get_tracer("questlog.gateway")
log = logging.getLogger("questlog.gateway")


class SessionMethods(Protocol):
    """What a WebSocket session adds to routing: its own methods and presence subscriptions."""

    async def session_method(self, params: Request, caller: Caller) -> Any: ...

    async def subscribe_presence(self, player_ids: list[str]) -> None: ...

    async def unsubscribe_presence(self, player_ids: list[str]) -> None: ...


class Caller:
    """Who sent one frame: the identity (if authenticated), the address, the session (WebSocket only)."""

    def __init__(self, identity: Identity | None, ip: str, session: SessionMethods | None = None) -> None:
        self.identity = identity
        self.ip = ip
        self.session = session
        self.after_send: list[Callable[[], None]] = []  # run once this frame's answer is queued


class Router:
    """Checks the envelope, authentication and limits; serves the gateway's own methods; forwards the rest.

    Params of a forwarded method are validated where it is served (the commands service).
    """

    def __init__(
        self,
        commands: CommandClient,
        limiter: RateLimiter,
        admission: Admission,
        rt: RealtimeSettings,
        presence: PresenceStore,
        inbox: Inbox,
        tallies: GatewayTallies,
        otel: QuestlogMetrics,
    ) -> None:
        self._commands = commands
        self._limiter = limiter
        self._admission = admission
        self._rt = rt
        self._presence = presence
        self._inbox = inbox
        self._tallies = tallies
        self._otel = otel
        # the methods the gateway serves itself, by their Struct (protocol.py: SERVED_BY "gateway")
        self._local: dict[type[Request], Callable[[Any, Identity, Caller], Awaitable[Any]]] = {
            protocol.RpcDiscover: self._discover,
            protocol.PresenceGet: self._presence_get,
            protocol.PresenceSubscribe: self._presence_subscribe,
            protocol.PresenceUnsubscribe: self._presence_unsubscribe,
            protocol.InboxGet: self._inbox_get,
        }

    async def answer_frame(self, data: str | bytes, caller: Caller) -> str | None:
        """The encoded answer to one frame, or None when it held only notifications."""
        frame = jsonrpc.parse_frame(data)
        answers = await asyncio.gather(*(self._answer(item, caller) for item in frame.items))
        out = [a for a in answers if a is not None]
        if not out:
            return None
        return jsonrpc.encode(out if frame.batch else out[0])

    async def _answer(self, item: jsonrpc.Call | jsonrpc.Invalid, caller: Caller) -> dict[str, Any] | None:
        if isinstance(item, jsonrpc.Invalid):
            return jsonrpc.error(item.id, item.error)
        self._tallies.requests += 1
        name = item.method if item.method in METHODS else "unknown"
        try:
            # one trace per request: the commands service, the append and every
            # service reacting to the events continue it (context in NATS headers)
            with _tracer.start_as_current_span(f"rpc {name}", kind=SpanKind.SERVER, attributes={"rpc.method": name}):
                value = await self.route(item, caller)
        except RpcError as err:
            self._tallies.errors += 1
            return None if item.notification else jsonrpc.error(item.id, err)
        except Exception as exc:
            self._tallies.errors += 1
            answer = domain_error(exc)  # a read that timed out under load is -32029, not -32603
            if answer.code == protocol.INTERNAL_ERROR:
                log.exception("request failed", extra={"method": item.method})
            return None if item.notification else jsonrpc.error(item.id, answer)
        return None if item.notification else jsonrpc.result(item.id, value)

    async def route(self, call: jsonrpc.Call, caller: Caller) -> Any:
        method = METHODS.get(call.method)
        if method is None:
            raise RpcError(protocol.METHOD_NOT_FOUND, f"method not found: {call.method[:100]}")
        await self._limit(caller)
        if method.served_by == "session":
            if caller.session is None:
                raise RpcError(protocol.METHOD_NOT_FOUND, f"{method.name} is only served over the WebSocket")
            return await caller.session.session_method(protocol.parse_params(method, call.params), caller)
        identity = caller.identity
        if identity is None:
            raise protocol.not_authenticated("call session.hello first")
        if identity.expires_at <= time.time():
            raise protocol.not_authenticated("the token has expired")
        if method.served_by == "gateway":
            if method.admin and not identity.is_admin:
                raise protocol.forbidden(f"{method.name} needs the admin role")
            params = protocol.parse_params(method, call.params)
            return await self._local[method.params](params, identity, caller)
        if not self._admission.admit():
            self._otel.refused_by_admission()
            raise protocol.unavailable("the game is busy; try again shortly", self._admission.retry_after_ms())
        started = time.monotonic()
        try:
            return await self._commands.call(
                method.name,
                identity.player_id,
                _object_or_nothing(call.params),
                Actor(identity.player_id, identity.roles),
            )
        finally:
            self._admission.done(time.monotonic() - started)

    def query_as(self, identity: Identity) -> Query:
        """A state query through the commands service, as the identity's own player."""

        async def query(method: str) -> Any:
            actor = Actor(identity.player_id, identity.roles)
            return await self._commands.call(method, identity.player_id, {}, actor)

        return query

    async def _limit(self, caller: Caller) -> None:
        rt = self._rt
        claims = [Claim("ip", caller.ip, Bucket(rt.rate_ip_per_s, rt.rate_ip_burst))]
        if caller.identity is not None:
            claims.append(
                Claim("player", caller.identity.player_id, Bucket(rt.rate_player_per_s, rt.rate_player_burst))
            )
        wait = await self._limiter.take(claims)
        if wait:
            self._otel.refused_by_rate_limit("method")
            raise protocol.rate_limited(wait)

    async def _discover(self, params: protocol.RpcDiscover, identity: Identity, caller: Caller) -> Any:
        return openrpc_document()

    async def _presence_get(self, params: protocol.PresenceGet, identity: Identity, caller: Caller) -> Any:
        return await self._presence.get(params.player_ids)

    async def _presence_subscribe(self, params: protocol.PresenceSubscribe, identity: Identity, caller: Caller) -> Any:
        await _session_of(caller, params).subscribe_presence(params.player_ids)
        return {}

    async def _presence_unsubscribe(
        self, params: protocol.PresenceUnsubscribe, identity: Identity, caller: Caller
    ) -> Any:
        await _session_of(caller, params).unsubscribe_presence(params.player_ids)
        return {}

    async def _inbox_get(self, params: protocol.InboxGet, identity: Identity, caller: Caller) -> Any:
        return await self._inbox.read(identity.player_id, params.limit, params.mark_read)


def _session_of(caller: Caller, params: Request) -> SessionMethods:
    if caller.session is None:
        raise RpcError(protocol.METHOD_NOT_FOUND, f"{params.METHOD} needs a WebSocket session")
    return caller.session


def _object_or_nothing(params: Any) -> dict[str, Any]:
    """Params as sent, once they are an object: their fields are validated where the method is served."""
    try:
        return params_object(params)
    except InvalidCommand as exc:
        raise protocol.invalid_params(exc.field, exc.reason) from None
