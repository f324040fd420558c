"""Which code answers a method: the session, the gateway itself, or the commands service.

Shared by the WebSocket session and `POST /rpc`. Order of checks: the method
exists, the rate limits hold, the caller is authenticated, the role allows it,
the params validate (one Struct per method in `services/contract/protocol.py`); only then
is a command forwarded — always for the player named in the caller's token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from questlog.services.commands import domain_error
from questlog.services.contract import protocol
from questlog.services.contract.command_client import Actor
from questlog.services.contract.protocol import METHODS, Method, RpcError

from . import jsonrpc
from .auth import Identity
from .openrpc import openrpc_document
from .ratelimit import Bucket, Claim

if TYPE_CHECKING:
    from .app import Gateway

_tracer = trace.get_tracer("questlog.gateway")
log = logging.getLogger("questlog.gateway")


class SessionMethods(Protocol):
    """What a WebSocket session adds to routing: its own methods and notifications."""

    async def session_method(self, method: Method, params: protocol.Params, caller: Caller) -> Any: ...

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
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

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
        self._gw.metrics.requests += 1
        name = item.method if item.method in METHODS else "unknown"
        try:
            # one trace per request: the commands service, the append and every
            # service reacting to the events continue it (context in NATS headers)
            with _tracer.start_as_current_span(f"rpc {name}", kind=SpanKind.SERVER, attributes={"rpc.method": name}):
                value = await self.route(item, caller)
        except RpcError as err:
            self._gw.metrics.errors += 1
            return None if item.notification else jsonrpc.error(item.id, err)
        except Exception as exc:
            self._gw.metrics.errors += 1
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
        if method.kind == "session":
            if caller.session is None:
                raise RpcError(protocol.METHOD_NOT_FOUND, f"{method.name} is only served over the WebSocket")
            return await caller.session.session_method(method, protocol.parse_params(method, call.params), caller)
        identity = caller.identity
        if identity is None:
            raise protocol.not_authenticated("call session.hello first")
        if identity.expires_at <= time.time():
            raise protocol.not_authenticated("the token has expired")
        if method.admin and not identity.is_admin:
            raise protocol.forbidden(f"{method.name} needs the admin role")
        params = protocol.parse_params(method, call.params)
        if method.kind == "gateway":
            return await self._local(method, params, identity, caller)
        admission = self._gw.admission
        if not admission.admit():
            self._gw.otel.refused_by_admission()
            raise protocol.unavailable("the game is busy; try again shortly", admission.retry_after_ms())
        started = time.monotonic()
        try:
            return await self._gw.commands.call(
                method.name,
                identity.player_id,
                msgspec.to_builtins(params),
                Actor(identity.player_id, identity.roles),
            )
        finally:
            admission.done(time.monotonic() - started)

    async def _limit(self, caller: Caller) -> None:
        rt = self._gw.rt
        claims = [Claim("ip", caller.ip, Bucket(rt.rate_ip_per_s, rt.rate_ip_burst))]
        if caller.identity is not None:
            claims.append(
                Claim("player", caller.identity.player_id, Bucket(rt.rate_player_per_s, rt.rate_player_burst))
            )
        wait = await self._gw.limiter.take(claims)
        if wait:
            self._gw.otel.refused_by_rate_limit("method")
            raise protocol.rate_limited(wait)

    async def _local(self, method: Method, params: Any, identity: Identity, caller: Caller) -> Any:
        name = method.name
        if name == "rpc.discover":
            return openrpc_document()
        if name == "presence.get":
            return await self._gw.presence.get(params.player_ids)
        if name == "inbox.get":
            return await self._gw.inbox.read(identity.player_id, params.limit, params.mark_read)
        if name in ("presence.subscribe", "presence.unsubscribe"):
            if caller.session is None:
                raise RpcError(protocol.METHOD_NOT_FOUND, f"{name} needs a WebSocket session")
            if name == "presence.subscribe":
                await caller.session.subscribe_presence(params.player_ids)
            else:
                await caller.session.unsubscribe_presence(params.player_ids)
            return {}
        raise RpcError(protocol.METHOD_NOT_FOUND, f"method not found: {name}")


Query = Callable[[str], Awaitable[Any]]


def query_as(gateway: Gateway, identity: Identity) -> Query:
    """A state query through the commands service, as the identity's own player."""

    async def query(method: str) -> Any:
        return await gateway.commands.call(method, identity.player_id, {}, Actor(identity.player_id, identity.roles))

    return query
