"""The client contract in code: the methods, their entries, and the error codes.

Every method is one Struct (services/rules/commands.py for commands, below for the
rest): it validates params where the method is served and renders `rpc.discover`,
so the two cannot drift. Every domain error is mapped to a JSON-RPC error here.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from questlog.projections.views import iso
from questlog.services.rules.commands import (
    PlayerId,
    Request,
    Role,
    ServedBy,
    Version,
    parse_request,
    summary,
)
from questlog.services.rules.errors import InvalidCommand, NotFound, RuleViolation, VersionConflict

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


# -- the methods ----------------------------------------------------------------
# Commands (the ones that append events) are in services/rules/commands.py; the
# rest are here. Each Struct is its method's one definition (see Request).

CODE_OF: dict[type[Exception], int] = {
    RuleViolation: RULE_VIOLATED,
    NotFound: NOT_FOUND,
    VersionConflict: CONFLICT,
    InvalidCommand: INVALID_PARAMS,
}


class ResumeFrom(msgspec.Struct, forbid_unknown_fields=True):
    epoch: str
    version: Version


class SessionHello(Request, frozen=True):
    """Authenticate the socket, optionally resuming from a version"""

    METHOD: ClassVar[str] = "session.hello"
    SERVED_BY: ClassVar[ServedBy] = "session"
    RESULT: ClassVar[str] = "Hello"
    token: str
    resume: ResumeFrom | None = None


class SessionRefresh(Request, frozen=True):
    """Swap in a new token without reconnecting"""

    METHOD: ClassVar[str] = "session.refresh"
    SERVED_BY: ClassVar[ServedBy] = "session"
    RESULT: ClassVar[str] = "Refreshed"
    token: str


class CatalogGet(Request, frozen=True):
    """Activities with targets, requirements, durations and rewards"""

    METHOD: ClassVar[str] = "catalog.get"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "CatalogView"


class PlayerGet(Request, frozen=True):
    """Skills, inventory and equipment at the current version"""

    METHOD: ClassVar[str] = "player.get"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "PlayerView"


class QueueGet(Request, frozen=True):
    """The queue: current task, queued tasks, config and stats"""

    METHOD: ClassVar[str] = "queue.get"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "QueueView"


class SyncCommand(msgspec.Struct, forbid_unknown_fields=True):
    method: str
    params: dict[str, Any] = {}


class SyncPush(Request, frozen=True):
    """Apply commands queued while offline, in order"""

    METHOD: ClassVar[str] = "sync.push"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "SyncResults"
    commands: Annotated[list[SyncCommand], msgspec.Meta(max_length=200)]


class EventsReplay(Request, frozen=True):
    """Own events from a version"""

    METHOD: ClassVar[str] = "events.replay"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "EventsPage"
    from_version: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


class PresenceGet(Request, frozen=True):
    """Online status of players"""

    METHOD: ClassVar[str] = "presence.get"
    SERVED_BY: ClassVar[ServedBy] = "gateway"
    RESULT: ClassVar[str] = "PresenceList"
    player_ids: Annotated[list[PlayerId], msgspec.Meta(max_length=100)]


class PresenceSubscribe(PresenceGet, frozen=True):
    """Receive presence.changed for players"""

    METHOD: ClassVar[str] = "presence.subscribe"
    RESULT: ClassVar[str] = "Empty"


class PresenceUnsubscribe(PresenceGet, frozen=True):
    """Stop presence.changed for players"""

    METHOD: ClassVar[str] = "presence.unsubscribe"
    RESULT: ClassVar[str] = "Empty"


class RpcDiscover(Request, frozen=True):
    """This API's OpenRPC document"""

    METHOD: ClassVar[str] = "rpc.discover"
    SERVED_BY: ClassVar[ServedBy] = "gateway"
    RESULT: ClassVar[str] = "OpenRpcDocument"


class InboxGet(Request, frozen=True):
    """Notifications kept while offline, and the unread count (newest first; read marks them read unless told not to)"""

    METHOD: ClassVar[str] = "inbox.get"
    SERVED_BY: ClassVar[ServedBy] = "gateway"
    RESULT: ClassVar[str] = "InboxPage"
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 20
    mark_read: bool = True


class AdminInspect(Request, frozen=True):
    """State, queue, pending timers and last events"""

    METHOD: ClassVar[str] = "admin.inspect"
    ROLE: ClassVar[Role] = "admin"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RAISES: ClassVar[tuple[type[Exception], ...]] = (NotFound,)
    RESULT: ClassVar[str] = "Inspection"
    player_id: PlayerId


class AdminReplay(Request, frozen=True):
    """A player's events from a version"""

    METHOD: ClassVar[str] = "admin.replay"
    ROLE: ClassVar[Role] = "admin"
    SERVED_BY: ClassVar[ServedBy] = "commands"
    RESULT: ClassVar[str] = "EventsPage"
    player_id: PlayerId
    from_version: Annotated[int, msgspec.Meta(ge=1, le=2**53)] = 1
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 100


class Method(msgspec.Struct, frozen=True):
    """A method's entry, read off its Struct: everything but its handler, which is found by the Struct."""

    name: str
    params: type[Request]
    summary: str
    role: Role
    served_by: ServedBy
    result: str
    errors: tuple[int, ...]  # besides those any call may get (-32600, -32602, -32001, -32029, -32603)
    syncable: bool

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    @property
    def kind(self) -> str:
        """ "command" (appends events), "query" (reads state), "gateway", "session": where it is served."""
        if self.served_by == "decide" or self.params is SyncPush:
            return "command"
        return "query" if self.served_by == "commands" else self.served_by

    @classmethod
    def of(cls, request: type[Request]) -> Method:
        errors = {CODE_OF[e] for e in request.RAISES} | ({FORBIDDEN} if request.ROLE == "admin" else set())
        return cls(
            name=request.METHOD,
            params=request,
            summary=summary(request),
            role=request.ROLE,
            served_by=request.SERVED_BY,
            result=request.RESULT,
            errors=tuple(sorted(errors - {INVALID_PARAMS}, reverse=True)),
            syncable=request.SYNCABLE,
        )


def _requests(base: type[Request]) -> list[type[Request]]:
    out = []
    for cls in base.__subclasses__():
        if "METHOD" in cls.__dict__:
            out.append(cls)
        out.extend(_requests(cls))
    return out


METHODS: dict[str, Method] = {r.METHOD: Method.of(r) for r in _requests(Request)}


def parse_params(method: Method, raw: Any) -> Request:
    """Validate raw JSON params into the method's Struct, or raise -32602 naming the field."""
    try:
        return parse_request(method.params, raw)
    except InvalidCommand as exc:
        raise invalid_params(exc.field, exc.reason) from None
