"""The commands service: validate, load, decide, append with OCC, answer.

A NATS micro service (discoverable through `$SRV.PING/INFO/STATS`), one
endpoint per protocol method on `questlog.cmd.<method>`. The gateway, HTTP,
the CLI and other services all come through here, so every command takes one
path. Queries (queue.get, player.get, …) load state the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.micro import add_service
from nats.micro.request import Request as MicroRequest
from nats.micro.service import EndpointConfig, ServiceConfig
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from questlog.events.errors import ReadBehind, ReadTimedOut
from questlog.events.subjects import valid_player_id
from questlog.projections.read_models import ReadModels
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import SERVER_COMMAND_PREFIX, PlayerState
from questlog.projections.views import event_view, player_view, queue_view
from questlog.services.contract.command_client import Actor, CommandReply, CommandRequest, subject_for
from questlog.services.contract.protocol import METHODS, RpcError
from questlog.services.rules.catalog import Rules, catalog_view, load_rules
from questlog.services.rules.clock import Clock, SystemClock
from questlog.services.rules.commands import AdminCommand, Command, Request
from questlog.services.rules.decide import decide
from questlog.services.rules.errors import InvalidCommand, NotFound, RuleViolation, VersionConflict
from questlog.services.runtime.connections import Wiring, flushed
from questlog.services.runtime.metrics import QuestlogMetrics
from questlog.services.runtime.spawning import BoundedTasks

from .contract import protocol
from .decision_loop import DecisionLoop, TooMuchContention
from .warm_cache import keep_warm

log = logging.getLogger("questlog.commands")
_tracer = trace.get_tracer("questlog.commands")

SERVICE_NAME = "questlog-commands"
SERVICE_VERSION = "0.1.0"

_request_decoder = msgspec.json.Decoder(CommandRequest)
_encoder = msgspec.json.Encoder()


def domain_error(exc: Exception) -> RpcError:
    """The one place domain errors become protocol errors."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, RuleViolation):
        return protocol.rule_violated(exc.rule, exc.detail)
    if isinstance(exc, NotFound):
        return protocol.not_found(exc.what, exc.id)
    if isinstance(exc, VersionConflict):
        return protocol.conflict(exc.current_version)
    if isinstance(exc, InvalidCommand):
        return protocol.invalid_params(exc.field, exc.reason)
    if isinstance(exc, TooMuchContention | ReadBehind):
        return protocol.unavailable("the queue is changing too fast; try again", retry_after_ms=200)
    if isinstance(exc, ReadTimedOut | NatsTimeoutError):
        return protocol.unavailable("the game is busy; try again shortly")
    return protocol.internal()


class CommandHandler:
    """Everything the endpoints do, callable without NATS (the CLI uses it too)."""

    def __init__(self, wiring: Wiring, rules: Rules, clock: Clock, repo: PlayerRepository) -> None:
        self.wiring = wiring
        self.rules = rules
        self.clock = clock
        self.repo = repo
        self.loop = DecisionLoop(wiring.store, repo)
        self.read_models = ReadModels(wiring.redis)
        # the methods served here besides the commands (which `decide` serves), by their Struct
        self.handlers: dict[type[Request], Callable[[str, Any, Actor], Awaitable[Any]]] = {
            protocol.CatalogGet: self._catalog,
            protocol.PlayerGet: self._player,
            protocol.QueueGet: self._queue,
            protocol.EventsReplay: self._replay,
            protocol.AdminReplay: self._admin_replay,
            protocol.AdminInspect: self._inspect,
            protocol.SyncPush: self._sync,
        }

    async def handle(self, method_name: str, player_id: str, raw_params: Any, actor: Actor) -> Any:
        method = METHODS.get(method_name)
        if method is None or method.served_by not in ("decide", "commands"):
            raise RpcError(protocol.METHOD_NOT_FOUND, f"method {method_name!r} is not served here")
        if not (valid_player_id(player_id) and valid_player_id(actor.player_id)):
            raise protocol.invalid_params("player_id", "1-64 letters, digits, '-' or '_'")
        if method.admin and "admin" not in actor.roles:
            raise protocol.forbidden(f"{method_name} needs the admin role")
        if not method.admin and actor.player_id != player_id and "admin" not in actor.roles:
            raise protocol.forbidden("a player can only act on their own data")
        params = protocol.parse_params(method, raw_params)
        if method.admin:
            await self._audit(method_name, actor, params)
        if isinstance(params, Command):
            return await self._command(player_id, params, actor)
        return await self.handlers[type(params)](player_id, params, actor)

    async def _command(self, player_id: str, command: Command, actor: Actor) -> Any:
        if isinstance(command, AdminCommand):
            player_id = command.player_id
            if not (await self.repo.load(player_id)).created:
                raise protocol.not_found("player", player_id)  # an operator's typo must not create a player
        if command.command_id is None:
            command = msgspec.structs.replace(command, command_id=f"{SERVER_COMMAND_PREFIX}{uuid.uuid4().hex}")
        admin = actor.player_id if isinstance(command, AdminCommand) else None
        outcome = await self.loop.run(
            player_id,
            lambda state: _as_tuple(decide(state, command, self.clock, self.rules, admin)),
            command_id=command.command_id,
        )
        return msgspec.to_builtins(outcome.result)

    async def _sync(self, player_id: str, params: protocol.SyncPush, actor: Actor) -> dict[str, Any]:
        """Offline commands in order; one failing does not stop the rest (docs/protocol.md)."""
        results = []
        for item in params.commands:
            command_id = item.params.get("command_id") if isinstance(item.params, dict) else None
            entry: dict[str, Any] = {"command_id": command_id, "ok": False}
            try:
                method = METHODS.get(item.method)
                if method is None or not method.syncable:
                    raise protocol.invalid_params("method", f"{item.method!r} cannot be sent through sync.push")
                if not command_id:
                    raise protocol.invalid_params("command_id", "every command in sync.push needs a command_id")
                command = protocol.parse_params(method, item.params)
                assert isinstance(command, Command)  # only commands are syncable
                result = await self._command(player_id, command, actor)
                entry.update(ok=True, version=result.get("version") if isinstance(result, dict) else None)
            except Exception as exc:  # each command fails alone
                err = domain_error(exc)
                if err.code == protocol.INTERNAL_ERROR:
                    log.exception("sync.push command failed", extra={"player_id": player_id})
                entry["error"] = err.to_dict()
            results.append(entry)
        state = await self.repo.load(player_id)
        return {"version": state.version, "results": results}

    async def _catalog(self, player_id: str, params: protocol.CatalogGet, actor: Actor) -> Any:
        return catalog_view(self.rules.catalog)

    async def _replay(self, player_id: str, params: protocol.EventsReplay, actor: Actor) -> Any:
        events = await self.wiring.store.read(player_id, from_version=params.from_version, limit=params.limit)
        return {"events": [event_view(e) for e in events]}

    async def _admin_replay(self, player_id: str, params: protocol.AdminReplay, actor: Actor) -> Any:
        events = await self.wiring.store.read(params.player_id, from_version=params.from_version, limit=params.limit)
        return {"events": [event_view(e) for e in events]}

    async def _queue(self, player_id: str, params: protocol.QueueGet, actor: Actor) -> Any:
        return await self._view("queue.get", player_id)

    async def _player(self, player_id: str, params: protocol.PlayerGet, actor: Actor) -> Any:
        return await self._view("player.get", player_id)

    async def _inspect(self, player_id: str, params: protocol.AdminInspect, actor: Actor) -> Any:
        state = await self.repo.load(params.player_id)
        if not state.created:
            raise protocol.not_found("player", params.player_id)
        return await self.inspect(state)

    async def _view(self, name: str, player_id: str) -> dict[str, Any]:
        """From the Redis read model when it is at the log's version; else folded here."""
        position = await self.wiring.store.position(player_id)
        view = await (self.read_models.queue(player_id) if name == "queue.get" else self.read_models.profile(player_id))
        if view is not None and view.get("version") == position.version:
            return view
        state = await self.repo.load(player_id)
        if name == "queue.get":
            return queue_view(state, state.updated_at or self.clock.now())
        return player_view(state)

    async def inspect(self, state: PlayerState) -> dict[str, Any]:
        last = await self.wiring.store.read(state.player_id, from_version=max(1, state.version - 19))
        from .processor import pending_timers

        return {
            "player_id": state.player_id,
            "version": state.version,
            "state": msgspec.to_builtins(state),
            "queue": queue_view(state, self.clock.now()),
            "player": player_view(state),
            "pending_timers": pending_timers(state),
            "last_events": [event_view(e) for e in last],
        }

    async def _audit(self, method_name: str, actor: Actor, params: Request) -> None:
        body = {
            "admin": actor.player_id,
            "method": method_name,
            "params": msgspec.to_builtins(params),
            "at": protocol.rfc3339(self.clock.now()),
        }
        await self.wiring.js.publish(f"audit.{actor.player_id}.{method_name}", _encoder.encode(body))


def _as_tuple(decision: Any) -> tuple[list[Any], Any]:
    return list(decision.events), decision.result


async def serve_commands(
    wiring: Wiring,
    stop: asyncio.Event,
    *,
    rules: Rules | None = None,
    clock: Clock | None = None,
    metrics: QuestlogMetrics | None = None,
) -> None:
    """The micro service: one endpoint per method, in the `questlog-commands` queue group."""
    rules = rules or load_rules(time_scale=wiring.settings.time_scale)
    repo = await wiring.players()
    handler = CommandHandler(wiring, rules, clock or SystemClock(), repo)
    metrics = metrics or QuestlogMetrics.from_global()
    service = await add_service(
        wiring.nc,
        ServiceConfig(name=SERVICE_NAME, version=SERVICE_VERSION, description="questlog player and admin commands"),
    )
    inflight = BoundedTasks(MAX_INFLIGHT, "answering a command")
    for method in METHODS.values():
        if method.served_by in ("decide", "commands"):
            await service.add_endpoint(
                EndpointConfig(
                    name=method.name.replace(".", "-"),
                    subject=subject_for(method.name),
                    handler=_spawning(inflight, _endpoint(handler, method.name, metrics)),
                    metadata={"kind": method.kind, "admin": str(method.admin).lower()},
                )
            )
    warm = await keep_warm(wiring.nc, repo)
    await flushed(wiring.nc)  # the server knows our subscriptions before anyone is told we are ready
    wiring.ready("commands").set()
    try:
        await stop.wait()
    finally:
        await service.stop()
        await inflight.drain(INFLIGHT_DRAIN_S)
        with contextlib.suppress(Exception):  # the connection may be closing already
            await warm.unsubscribe()


# nats-py's micro service awaits an endpoint's handler before it reads that
# endpoint's next request: one `queue.enqueue` at a time per process, however
# many players wait. Each request is answered in its own task instead, at
# most MAX_INFLIGHT at once (beyond that the subscription's buffer waits).
MAX_INFLIGHT = 512
INFLIGHT_DRAIN_S = 10.0


def _spawning(
    tasks: BoundedTasks, answer: Callable[[MicroRequest], Coroutine[Any, Any, None]]
) -> Callable[[MicroRequest], Awaitable[None]]:
    async def on_request(req: MicroRequest) -> None:
        await tasks.spawn(answer(req))

    return on_request


def _endpoint(
    handler: CommandHandler, method_name: str, metrics: QuestlogMetrics
) -> Callable[[MicroRequest], Coroutine[Any, Any, None]]:
    async def on_request(req: MicroRequest) -> None:
        ctx = propagate.extract(req.headers or {})
        started, outcome = time.perf_counter(), "ok"
        with _tracer.start_as_current_span(f"command {method_name}", context=ctx, kind=SpanKind.SERVER):
            try:
                body = _request_decoder.decode(req.data)
                result = await handler.handle(method_name, body.player_id, body.params, body.actor)
                reply = CommandReply(result=result)
            except msgspec.DecodeError as exc:
                outcome = "invalid_params"
                reply = CommandReply(error=protocol.invalid_params("request", str(exc)).to_dict())
            except Exception as exc:
                err = domain_error(exc)
                outcome = protocol.outcome_name(err.code)
                if err.code == protocol.INTERNAL_ERROR:
                    log.exception("command failed", extra={"method": method_name})
                reply = CommandReply(error=err.to_dict())
        await req.respond(_encoder.encode(reply))
        metrics.command_handled(method_name, outcome, time.perf_counter() - started)

    return on_request
