"""A player's state as folded from their events: the aggregate decide and the engine read.

Snapshots store this Struct as JSON; `STATE_SCHEMA` changes whenever its shape
changes incompatibly, so an older snapshot is ignored and the state rebuilt from events.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from questlog.events.schema import Equipped, TaskSpec

STATE_SCHEMA = 1
COMMAND_MEMORY = 1000
FINISHED_MEMORY = 100
# Engine appends (processor, reward) use command ids with this prefix; they are not
# remembered, so timer traffic never evicts the players' own command ids.
ENGINE_COMMAND_PREFIX = "engine:"
# Ids the commands service makes up for a command sent without one: nobody can
# repeat them, so remembering them would only push out the clients' own ids.
SERVER_COMMAND_PREFIX = "srv-"
UNREMEMBERED_PREFIXES = (ENGINE_COMMAND_PREFIX, SERVER_COMMAND_PREFIX)


class Skill(msgspec.Struct, frozen=True):
    xp: int = 0
    level: int = 1


class QueueConfig(msgspec.Struct, frozen=True):
    max_size: int = 10
    auto_start: bool = True
    priority_mode: str = "fifo"  # fifo | priority


class Task(msgspec.Struct, frozen=True, kw_only=True):
    """A queued or current task. `status`: queued | running | retrying."""

    task_id: str
    activity: str
    target: str
    quantity: int
    priority: int = 0
    step_seconds: float
    enqueued_at: datetime
    max_attempts: int = 1
    admin: str | None = None
    status: str = "queued"
    steps_done: int = 0
    rewarded: int = 0  # steps whose reward.granted is folded: exactly-once guard
    attempts: int = 0  # the attempt now running (0 before the first start)
    started_at: datetime | None = None
    segment_at: datetime | None = None  # when steps began counting: start, retry or resume
    segment_steps: int = 0  # steps_done at segment_at
    last_step_at: datetime | None = None  # due time of the newest completed step
    retry_at: datetime | None = None
    reserved: dict[str, int] = {}  # materials held for the steps still to come

    @classmethod
    def from_spec(cls, spec: TaskSpec, admin: str | None = None) -> Task:
        return cls(
            task_id=spec.task_id,
            activity=spec.activity,
            target=spec.target,
            quantity=spec.quantity,
            priority=spec.priority,
            step_seconds=spec.step_seconds,
            enqueued_at=spec.enqueued_at,
            max_attempts=spec.max_attempts,
            admin=admin,
        )


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    steps: int = 0
    completed_by_activity: dict[str, int] = {}
    steps_by_activity: dict[str, int] = {}
    fights_won: int = 0
    fights_lost: int = 0
    crafts_failed: int = 0
    rare_drops: int = 0


class CommandOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a remembered command did: enough to answer a repeat with the first result."""

    version: int
    task: TaskSpec | None = None
    config: QueueConfig | None = None


class PlayerState(msgspec.Struct, frozen=True, kw_only=True):
    player_id: str
    version: int = 0  # version of the last folded event
    last_seq: int = 0  # stream sequence of that event
    updated_at: datetime | None = None  # occurred_at of that event
    created: bool = False
    skills: dict[str, Skill] = {}
    inventory: dict[str, int] = {}
    equipment: dict[str, Equipped] = {}
    paused: bool = False
    pause_reason: str | None = None
    paused_by: str | None = None  # player | system | admin:<name>
    config: QueueConfig = QueueConfig()
    start_requested: bool = False  # a resume asks for one start even with auto_start off
    current: Task | None = None
    queued: list[Task] = []  # queue order (enqueue order unless reordered)
    stats: Stats = Stats()
    finished: dict[str, str] = {}  # recent finished task id -> completed | failed | cancelled
    commands: dict[str, CommandOutcome] = {}  # recent command id -> outcome, oldest first

    @property
    def reserved(self) -> dict[str, int]:
        """Materials taken out of the inventory for the current task and not yet used."""
        return dict(self.current.reserved) if self.current else {}

    def task(self, task_id: str) -> Task | None:
        if self.current is not None and self.current.task_id == task_id:
            return self.current
        for task in self.queued:
            if task.task_id == task_id:
                return task
        return None

    def level(self, skill: str) -> int:
        found = self.skills.get(skill)
        return found.level if found else 1


def run_order(state: PlayerState) -> list[Task]:
    """Queued tasks in the order they will start: queue order in fifo mode; in priority
    mode the highest priority first, ties by queue order (enqueue order unless reordered)."""
    if state.config.priority_mode == "priority":
        return [t for _, t in sorted(enumerate(state.queued), key=lambda it: (-it[1].priority, it[0]))]
    return list(state.queued)
