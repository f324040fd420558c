"""The client contract in code: methods, their param schemas, and error codes.

The same Structs validate params (in the commands service and the gateway) and
generate the OpenRPC document (`rpc.discover`), so the two cannot drift. Every
domain error is mapped to a JSON-RPC error here and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from questlog.projections.views import iso

rfc3339 = iso  # the protocol's timestamps: UTC, milliseconds, Z

# -- error codes (docs/protocol.md) -------------------------------------------

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_AUTHENTICATED = -32001
FORBIDDEN = -32003
NOT_FOUND = -32004
CONFLICT = -32009
RULE_VIOLATED = -32010
RATE_LIMITED = -32029


class RpcError(Exception):
    """An error as the client sees it: code, message, data."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None) -> None:
        self.code, self.message, self.data = code, message, data
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RpcError:
        return cls(int(raw.get("code", INTERNAL_ERROR)), str(raw.get("message", "")), raw.get("data"))


_OUTCOMES = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal",
    NOT_AUTHENTICATED: "not_authenticated",
    FORBIDDEN: "forbidden",
    NOT_FOUND: "not_found",
    CONFLICT: "conflict",
    RULE_VIOLATED: "rule_violated",
    RATE_LIMITED: "rate_limited",
}


def outcome_name(code: int) -> str:
    """A metric label for an error code."""
    return _OUTCOMES.get(code, "error")


def invalid_params(field: str, reason: str) -> RpcError:
    return RpcError(INVALID_PARAMS, f"invalid params: {field}: {reason}", {"field": field, "reason": reason})


def not_authenticated(reason: str) -> RpcError:
    return RpcError(NOT_AUTHENTICATED, "not authenticated", {"reason": reason})


def forbidden(reason: str) -> RpcError:
    return RpcError(FORBIDDEN, "forbidden", {"reason": reason})


def not_found(what: str, id: str) -> RpcError:
    return RpcError(NOT_FOUND, f"{what} not found", {"what": what, "id": id})


def conflict(current_version: int) -> RpcError:
    return RpcError(CONFLICT, "the queue changed; reload and try again", {"current_version": current_version})


def rule_violated(rule: str, detail: str) -> RpcError:
    return RpcError(RULE_VIOLATED, detail, {"rule": rule, "detail": detail})


def rate_limited(retry_after_ms: int) -> RpcError:
    return RpcError(RATE_LIMITED, "too many requests; slow down", {"retry_after_ms": retry_after_ms})


def unavailable(reason: str, retry_after_ms: int = 1000) -> RpcError:
    """-32029 too: the system cannot take this now (overloaded, a service briefly away); try again."""
    return RpcError(RATE_LIMITED, reason, {"retry_after_ms": retry_after_ms, "reason": reason})


def internal(reason: str = "internal error") -> RpcError:
    return RpcError(INTERNAL_ERROR, reason)


# -- params ---------------------------------------------------------------------

CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
PlayerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TaskId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000)]
Amount = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]


class Params(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class NoParams(Params):
    pass


class Resume(msgspec.Struct, forbid_unknown_fields=True):
    epoch: str
    version: Version


class HelloParams(Params):
    token: str
    resume: Resume | None = None


class RefreshParams(Params):
    token: str


class EnqueueParams(Params):
    activity: Literal["harvesting", "crafting", "combat"]
    target: Name
    quantity: Quantity
    priority: Priority = 0
    command_id: CommandId | None = None
    expected_version: Version | None = None


class CancelParams(Params):
    task_id: TaskId
    command_id: CommandId | None = None
    expected_version: Version | None = None


class ReorderParams(Params):
    order: Annotated[list[TaskId], msgspec.Meta(max_length=1000)]
    command_id: CommandId | None = None
    expected_version: Version | None = None


class SimpleCommandParams(Params):
    """queue.clear, queue.pause, queue.resume."""

    command_id: CommandId | None = None
    expected_version: Version | None = None


class ConfigureParams(Params):
    max_size: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None
    auto_start: bool | None = None
    priority_mode: Literal["fifo", "priority"] | None = None
    command_id: CommandId | None = None
    expected_version: Version | None = None


class SyncCommand(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    params: dict[str, Any] = {}


class SyncPushParams(Params):
    commands: Annotated[list[SyncCommand], msgspec.Meta(max_length=200)]


class ReplayParams(Params):
    from_version: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


class PlayerIdsParams(Params):
    player_ids: Annotated[list[PlayerId], msgspec.Meta(max_length=100)]


class AdminPlayerParams(Params):
    player_id: PlayerId


class AdminReplayParams(Params):
    player_id: PlayerId
    from_version: Annotated[int, msgspec.Meta(ge=1, le=2**53)] = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 100


class AdminPauseParams(Params):
    player_id: PlayerId
    reason: Reason


class AdminGrantParams(Params):
    player_id: PlayerId
    reason: Reason
    items: dict[Name, Amount] = {}
    xp: dict[Name, Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]] = {}


class AdminEnqueueParams(Params):
    """An operator queues a task past the level/tool/station checks (recorded on the event)."""

    player_id: PlayerId
    activity: Literal["harvesting", "crafting", "combat"]
    target: Name
    quantity: Quantity
    priority: Priority = 0
    command_id: CommandId | None = None


class InboxParams(Params):
    """The offline inbox (notifier): newest first; read marks them read unless told not to."""

    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    mark_read: bool = True


class Method(msgspec.Struct, frozen=True):
    name: str
    params: type[Params]
    summary: str
    admin: bool = False
    # where it is served: "session" (gateway only), "command" (appends events),
    # "query" (reads state), "gateway" (gateway-local, e.g. presence)
    kind: str = "command"


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "session.hello", HelloParams, "Authenticate the socket, optionally resuming from a version", kind="session"
        ),
        Method("session.refresh", RefreshParams, "Swap in a new token without reconnecting", kind="session"),
        Method("catalog.get", NoParams, "Activities with targets, requirements, durations and rewards", kind="query"),
        Method("player.get", NoParams, "Skills, inventory and equipment at the current version", kind="query"),
        Method("queue.get", NoParams, "The queue: current task, queued tasks, config and stats", kind="query"),
        Method("queue.enqueue", EnqueueParams, "Queue an activity"),
        Method("queue.cancel", CancelParams, "Cancel a queued or running task"),
        Method("queue.reorder", ReorderParams, "Reorder the queued tasks (all their ids)"),
        Method("queue.clear", SimpleCommandParams, "Cancel every queued task"),
        Method("queue.pause", SimpleCommandParams, "Stop starting tasks"),
        Method("queue.resume", SimpleCommandParams, "Start tasks again"),
        Method("queue.configure", ConfigureParams, "Set max size, auto start and priority mode"),
        Method("sync.push", SyncPushParams, "Apply commands queued while offline, in order"),
        Method("events.replay", ReplayParams, "Own events from a version", kind="query"),
        Method("presence.get", PlayerIdsParams, "Online status of players", kind="gateway"),
        Method("presence.subscribe", PlayerIdsParams, "Receive presence.changed for players", kind="gateway"),
        Method("presence.unsubscribe", PlayerIdsParams, "Stop presence.changed for players", kind="gateway"),
        Method("rpc.discover", NoParams, "This API's OpenRPC document", kind="gateway"),
        Method("inbox.get", InboxParams, "Notifications kept while offline, and the unread count", kind="gateway"),
        Method(
            "admin.inspect", AdminPlayerParams, "State, queue, pending timers and last events", admin=True, kind="query"
        ),
        Method("admin.replay", AdminReplayParams, "A player's events from a version", admin=True, kind="query"),
        Method("admin.pause", AdminPauseParams, "Pause a player's queue", admin=True),
        Method("admin.resume", AdminPlayerParams, "Resume a player's queue", admin=True),
        Method("admin.grant", AdminGrantParams, "Grant items or xp", admin=True),
        Method("admin.enqueue", AdminEnqueueParams, "Queue a task bypassing validation", admin=True),
    ]
}

# Commands `sync.push` may carry.
SYNCABLE = frozenset(
    {"queue.enqueue", "queue.cancel", "queue.reorder", "queue.clear", "queue.pause", "queue.resume", "queue.configure"}
)


def parse_params(method: Method, raw: Any) -> Params:
    """Validate raw JSON params into the method's Struct, or raise -32602 naming the field."""
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        raise invalid_params("params", "must be an object (named parameters)")
    if not isinstance(raw, dict):
        raise invalid_params("params", "must be an object")
    try:
        return msgspec.convert(raw, method.params)
    except msgspec.ValidationError as exc:
        field, reason = _field_and_reason(str(exc))
        raise invalid_params(field, reason) from None


def _field_and_reason(text: str) -> tuple[str, str]:
    # msgspec says e.g. "Expected `int`, got `str` - at `$.quantity`"
    if " - at `$." in text:
        reason, _, where = text.rpartition(" - at `$.")
        return where.rstrip("`"), reason
    if text.startswith("Object missing required field `"):
        return text.split("`")[1], "is required"
    if text.startswith("Object contains unknown field `"):
        return text.split("`")[1], "is not a parameter of this method"
    return "params", text
