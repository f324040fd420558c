"""Commands: what a player or an admin asks for. Decide turns one into events or an error.

Each command names its JSON-RPC method in `METHOD`; `parse_command` builds one from
params so every entry point (gateway, HTTP, CLI, NATS) validates the same way.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from .errors import InvalidCommand


class Command(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    METHOD: ClassVar[str]
    command_id: str
    expected_version: int | None = None


class Enqueue(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.enqueue"
    activity: str
    target: str
    quantity: int = 1
    priority: int = 0


class Cancel(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.cancel"
    task_id: str


class Reorder(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.reorder"
    order: list[str]


class Clear(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.clear"


class Pause(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.pause"
    reason: str | None = None


class Resume(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.resume"


class Configure(Command, frozen=True):
    METHOD: ClassVar[str] = "queue.configure"
    max_size: int | None = None
    auto_start: bool | None = None
    priority_mode: str | None = None


class AdminPause(Command, frozen=True):
    METHOD: ClassVar[str] = "admin.pause"
    player_id: str
    admin: str
    reason: str


class AdminResume(Command, frozen=True):
    METHOD: ClassVar[str] = "admin.resume"
    player_id: str
    admin: str


class AdminGrant(Command, frozen=True):
    METHOD: ClassVar[str] = "admin.grant"
    player_id: str
    admin: str
    reason: str
    items: dict[str, int] = {}
    xp: dict[str, int] = {}


class AdminEnqueue(Command, frozen=True):
    """An operator queues a task past the level/tool/station/location/queue-size checks."""

    METHOD: ClassVar[str] = "admin.enqueue"
    player_id: str
    admin: str
    activity: str
    target: str
    quantity: int = 1
    priority: int = 0


PlayerCommand = Enqueue | Cancel | Reorder | Clear | Pause | Resume | Configure
AdminCommand = AdminPause | AdminResume | AdminGrant | AdminEnqueue
AnyCommand = PlayerCommand | AdminCommand

COMMANDS: dict[str, type[Command]] = {cls.METHOD: cls for cls in (*PlayerCommand.__args__, *AdminCommand.__args__)}


def parse_command(method: str, params: dict[str, Any], command_id: str) -> Command:
    """Build the command of `method` from JSON-RPC params; malformed params raise InvalidCommand.

    `command_id` is the one the client gave (or the service generated); params'
    own `command_id`, if any, wins so a client's id is never replaced.
    """
    cls = COMMANDS.get(method)
    if cls is None:
        raise InvalidCommand("method", f"unknown command {method!r}")
    data = {"command_id": command_id, **params}
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("$.", 1)[-1].rstrip("`") if "$." in text else "params"
        raise InvalidCommand(field, text) from None
