"""What happened: the payload of every event type, at its current schema version.

Each payload is a frozen msgspec Struct with two class constants: `TYPE`, the
event type written in the envelope and the subject, and `SCHEMA`, its version.
Changing a payload incompatibly means raising `SCHEMA` and registering an
upcaster for the old shape in `events/registry.py` (`default_registry`); the log itself is never
rewritten.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import msgspec


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    TYPE: ClassVar[str]
    SCHEMA: ClassVar[int] = 1


class Equipped(msgspec.Struct, frozen=True, omit_defaults=True):
    item: str
    durability: int


class TaskSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A task as it was queued; everything later is derived from events."""

    task_id: str
    activity: str  # harvesting | crafting | combat
    target: str
    quantity: int
    priority: int = 0
    step_seconds: float
    enqueued_at: datetime
    max_attempts: int = 3


# -- player lifecycle -------------------------------------------------------


class PlayerCreated(Payload, frozen=True):
    """Version 1 of every player: the starter kit, so inventory is only ever derived."""

    TYPE: ClassVar[str] = "player.created"
    skills: dict[str, int] = {}  # skill -> xp
    inventory: dict[str, int] = {}
    equipment: dict[str, Equipped] = {}


class PlayerLeveledUp(Payload, frozen=True):
    TYPE: ClassVar[str] = "player.leveled_up"
    skill: str
    level: int


# -- queue commands -----------------------------------------------------------


class TaskEnqueued(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.enqueued"
    task: TaskSpec
    admin: str | None = None  # set when an admin bypassed validation


class TaskCancelled(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.cancelled"
    task_id: str
    steps_done: int = 0
    refunded: dict[str, int] = {}


class QueueReordered(Payload, frozen=True):
    TYPE: ClassVar[str] = "queue.reordered"
    order: list[str]


class QueueCleared(Payload, frozen=True):
    TYPE: ClassVar[str] = "queue.cleared"
    task_ids: list[str]
    refunded: dict[str, int] = {}


class QueuePaused(Payload, frozen=True):
    TYPE: ClassVar[str] = "queue.paused"
    reason: str
    by: str = "player"  # player | system | admin:<name>


class QueueResumed(Payload, frozen=True):
    TYPE: ClassVar[str] = "queue.resumed"
    by: str = "player"


class QueueConfigured(Payload, frozen=True):
    TYPE: ClassVar[str] = "queue.configured"
    max_size: int
    auto_start: bool
    priority_mode: str  # fifo | priority


# -- the engine -----------------------------------------------------------------


class TaskStarted(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.started"
    task_id: str
    steps: int
    step_seconds: float
    attempt: int = 1
    reserved: dict[str, int] = {}  # materials taken from the inventory for the whole task


class TaskStepCompleted(Payload, frozen=True):
    """`occurred_at` of this event is the step's due time, not when it was processed."""

    TYPE: ClassVar[str] = "task.step_completed"
    task_id: str
    step: int


class RewardGranted(Payload, frozen=True):
    TYPE: ClassVar[str] = "reward.granted"
    task_id: str
    step: int
    success: bool = True
    xp: dict[str, int] = {}
    items: dict[str, int] = {}
    rare: list[str] = []
    quality: str | None = None
    durability: dict[str, int] = {}  # slot -> durability lost
    consumed: dict[str, int] = {}  # reserved materials used up by this step


class TaskCompleted(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.completed"
    task_id: str
    steps_done: int
    refunded: dict[str, int] = {}


class TaskFailed(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.failed"
    task_id: str
    reason: str
    attempts: int
    refunded: dict[str, int] = {}


class TaskRetryScheduled(Payload, frozen=True):
    TYPE: ClassVar[str] = "task.retry_scheduled"
    task_id: str
    attempt: int
    retry_at: datetime
    reason: str


class EquipmentEquipped(Payload, frozen=True):
    """A spare from the inventory went into an empty slot (at a task's start or after a break)."""

    TYPE: ClassVar[str] = "equipment.equipped"
    slot: str
    item: str
    durability: int


# -- operators ------------------------------------------------------------------


class AdminGranted(Payload, frozen=True):
    TYPE: ClassVar[str] = "admin.granted"
    admin: str
    reason: str
    items: dict[str, int] = {}
    xp: dict[str, int] = {}


DomainEvent = (
    PlayerCreated
    | PlayerLeveledUp
    | TaskEnqueued
    | TaskCancelled
    | QueueReordered
    | QueueCleared
    | QueuePaused
    | QueueResumed
    | QueueConfigured
    | TaskStarted
    | TaskStepCompleted
    | RewardGranted
    | TaskCompleted
    | TaskFailed
    | TaskRetryScheduled
    | EquipmentEquipped
    | AdminGranted
)

PAYLOADS: tuple[type[Payload], ...] = DomainEvent.__args__


class Recorded(msgspec.Struct, frozen=True, kw_only=True):
    """An event as it stands in the log: payload plus envelope metadata."""

    player_id: str
    version: int
    occurred_at: datetime
    event: Payload
    command_id: str | None = None
    causation_id: str | None = None
    seq: int = 0  # stream sequence; 0 until stored

    @property
    def type(self) -> str:
        return self.event.TYPE


class NewEvent(msgspec.Struct, frozen=True):
    """An event a decision wants appended; the store assigns its version."""

    event: Payload
    occurred_at: datetime
