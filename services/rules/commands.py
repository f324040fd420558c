"""Requests: what a player or an admin asks for. Each Struct is its method's one definition.

A request Struct is the method's params schema (msgspec validates the JSON into it
and renders it for `rpc.discover`), and its class variables are the method's entry:
its name, role, who serves it, what it may raise and its result Struct. A `Command`
changes the player's log: `decide` turns one into events or an error.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from .errors import InvalidCommand, NotFound, RuleViolation, VersionConflict

Role = Literal["player", "admin"]
# "decide" (a command: events appended), "commands" (read or sync by the commands
# service), "gateway" (served by the gateway itself), "session" (WebSocket only)
ServedBy = Literal["decide", "commands", "gateway", "session"]
Activity = Literal["harvesting", "crafting", "combat"]

# The protocol's bounds on a parameter's shape; content limits (a task's
# quantity, a player's queue size) are the catalog's and decide checks them.
CommandId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
PlayerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
TaskId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Version = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
Quantity = Annotated[int, msgspec.Meta(ge=1)]
Priority = Annotated[int, msgspec.Meta(ge=-1000, le=1000)]
Amount = Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)]
QueueSize = Annotated[int, msgspec.Meta(ge=1, le=100)]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One JSON-RPC method: the params are the fields; the summary is the docstring's first line."""

    METHOD: ClassVar[str]
    ROLE: ClassVar[Role] = "player"
    SERVED_BY: ClassVar[ServedBy]
    RAISES: ClassVar[tuple[type[Exception], ...]] = ()
    RESULT: ClassVar[str] = "Empty"  # the name of its result Struct in services/contract/results.py
    SYNCABLE: ClassVar[bool] = False  # `sync.push` may carry it


class Command(Request, frozen=True, kw_only=True):
    SERVED_BY: ClassVar[ServedBy] = "decide"
    RAISES: ClassVar[tuple[type[Exception], ...]] = (InvalidCommand, RuleViolation, VersionConflict)
    RESULT: ClassVar[str] = "CommandResult"
    # None: the commands service makes one up (such a command cannot be repeated safely)
    command_id: CommandId | None = None
    expected_version: Version | None = None


class Enqueue(Command, frozen=True):
    """Queue an activity"""

    METHOD: ClassVar[str] = "queue.enqueue"
    SYNCABLE: ClassVar[bool] = True
    activity: Activity
    target: Name
    quantity: Quantity
    priority: Priority = 0


class Cancel(Command, frozen=True):
    """Cancel a queued or running task"""

    METHOD: ClassVar[str] = "queue.cancel"
    SYNCABLE: ClassVar[bool] = True
    RAISES: ClassVar[tuple[type[Exception], ...]] = (*Command.RAISES, NotFound)
    task_id: TaskId


class Reorder(Command, frozen=True):
    """Reorder the queued tasks (all their ids)"""

    METHOD: ClassVar[str] = "queue.reorder"
    SYNCABLE: ClassVar[bool] = True
    order: Annotated[list[TaskId], msgspec.Meta(max_length=1000)]


class Clear(Command, frozen=True):
    """Cancel every queued task"""

    METHOD: ClassVar[str] = "queue.clear"
    SYNCABLE: ClassVar[bool] = True


class Pause(Command, frozen=True):
    """Stop starting tasks"""

    METHOD: ClassVar[str] = "queue.pause"
    SYNCABLE: ClassVar[bool] = True
    reason: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Resume(Command, frozen=True):
    """Start tasks again"""

    METHOD: ClassVar[str] = "queue.resume"
    SYNCABLE: ClassVar[bool] = True


class Configure(Command, frozen=True):
    """Set max size, auto start and priority mode"""

    METHOD: ClassVar[str] = "queue.configure"
    SYNCABLE: ClassVar[bool] = True
    max_size: QueueSize | None = None
    auto_start: bool | None = None
    priority_mode: Literal["fifo", "priority"] | None = None


class AdminCommand(Command, frozen=True):
    """An operator's command on another player; `decide` is told the operator's name."""

    ROLE: ClassVar[Role] = "admin"
    RAISES: ClassVar[tuple[type[Exception], ...]] = (*Command.RAISES, NotFound)
    player_id: PlayerId


class AdminPause(AdminCommand, frozen=True):
    """Pause a player's queue"""

    METHOD: ClassVar[str] = "admin.pause"
    reason: Reason


class AdminResume(AdminCommand, frozen=True):
    """Resume a player's queue"""

    METHOD: ClassVar[str] = "admin.resume"


class AdminGrant(AdminCommand, frozen=True):
    """Grant items or xp"""

    METHOD: ClassVar[str] = "admin.grant"
    reason: Reason
    items: dict[Name, Amount] = {}
    xp: dict[Name, Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]] = {}


class AdminEnqueue(AdminCommand, frozen=True):
    """Queue a task bypassing validation (the level/tool/station/location/queue-size checks)"""

    METHOD: ClassVar[str] = "admin.enqueue"
    activity: Activity
    target: Name
    quantity: Quantity
    priority: Priority = 0


def summary(request: type[Request]) -> str:
    return (request.__doc__ or request.METHOD).strip().splitlines()[0]


def params_object(raw: Any) -> dict[str, Any]:
    """JSON-RPC params as this API takes them: by name, an object (absent: empty)."""
    if raw is None:
        return {}
    if isinstance(raw, list):
        raise InvalidCommand("params", "must be an object (named parameters)")
    if not isinstance(raw, dict):
        raise InvalidCommand("params", "must be an object")
    return raw


def parse_request(request: type[Request], raw: Any) -> Request:
    """Validate raw JSON params into the method's Struct, or raise InvalidCommand naming the field."""
    try:
        return msgspec.convert(params_object(raw), request)
    except msgspec.ValidationError as exc:
        raise InvalidCommand(*_field_and_reason(str(exc))) from None


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
