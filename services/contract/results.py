"""What each method answers: the result Structs a method's entry names (`Request.RESULT`).

Handlers build plain JSON; these Structs describe it for `rpc.discover`, and the
end-to-end tests convert real answers into them, so a field added on one side
and not the other fails a test. Times are RFC 3339 UTC strings.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Result(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Empty(Result):
    pass


class ConfigView(Result):
    max_size: int
    auto_start: bool
    priority_mode: str


class TaskView(Result):
    task_id: str
    activity: str
    target: str
    quantity: int
    steps_done: int
    priority: int
    status: str
    enqueued_at: str
    step_seconds: float
    attempts: int
    started_at: str | None = None
    eta: str | None = None
    admin: str | None = None


class CommandResult(Result):
    version: int
    task: TaskView | None = None  # queue.enqueue, admin.enqueue
    config: ConfigView | None = None  # queue.configure


class QueueStats(Result):
    completed: int
    cancelled: int
    failed: int
    steps: int
    completed_by_activity: dict[str, int]
    steps_by_activity: dict[str, int]
    fights_won: int
    fights_lost: int
    crafts_failed: int
    rare_drops: int


class QueueView(Result):
    version: int
    paused: bool
    pause_reason: str | None
    paused_by: str | None
    config: ConfigView
    current: TaskView | None
    queued: list[TaskView]
    stats: QueueStats


class SkillView(Result):
    level: int
    xp: int


class EquippedView(Result):
    item: str
    durability: int


class PlayerView(Result):
    version: int
    skills: dict[str, SkillView]
    inventory: dict[str, int]
    equipment: dict[str, EquippedView]
    reserved: dict[str, int]


class ActivityView(Result):
    skill: str
    targets: list[dict[str, Any]]


class CatalogView(Result):
    """docs/protocol.md, `catalog.get`: targets with requirements, times and rewards."""

    skills: dict[str, Any]
    activities: dict[str, ActivityView]
    locations: dict[str, Any]
    items: dict[str, Any]
    equipment: dict[str, Any]
    quality: list[dict[str, Any]]
    starter_kit: dict[str, Any]


class EventView(Result):
    version: int
    type: str
    at: str
    data: dict[str, Any]


class EventsPage(Result):
    events: list[EventView]


class SyncResult(Result):
    command_id: str | None
    ok: bool
    version: int | None = None
    error: dict[str, Any] | None = None


class SyncResults(Result):
    version: int
    results: list[SyncResult]


class FullState(Result):
    queue: QueueView
    player: PlayerView


class Hello(Result):
    session_id: str
    player_id: str
    epoch: str
    version: int
    recovered: bool
    missed: int
    heartbeat_s: float
    state: FullState | None
    unread: int


class Refreshed(Result):
    expires_at: str


class Presence(Result):
    player_id: str
    online: bool
    last_seen: str | None = None


PresenceList = list[Presence]


class InboxPage(Result):
    unread: int
    items: list[dict[str, Any]]


class PendingTimer(Result):
    task_id: str
    kind: str
    step: int
    attempt: int
    due_at: str


class Inspection(Result):
    player_id: str
    version: int
    state: dict[str, Any]
    queue: QueueView
    player: PlayerView
    pending_timers: list[PendingTimer]
    last_events: list[EventView]


class OpenRpcDocument(msgspec.Struct, kw_only=True):
    openrpc: str
    info: dict[str, Any]
    methods: list[dict[str, Any]]
    components: dict[str, Any]


RESULTS: dict[str, Any] = {
    name: value
    for name, value in dict(globals()).items()
    if (isinstance(value, type) and issubclass(value, msgspec.Struct) and value is not Result) or name == "PresenceList"
}
