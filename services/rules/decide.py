"""decide: a player's or an admin's command against the folded state -> events + result.

Pure: time comes from the injected clock, ids are derived from the command id, and
an invalid command raises before any event exists, so nothing half-done is appended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from questlog.events.schema import (
    AdminGranted,
    Equipped,
    NewEvent,
    PlayerCreated,
    QueueCleared,
    QueueConfigured,
    QueuePaused,
    QueueReordered,
    QueueResumed,
    TaskCancelled,
    TaskEnqueued,
    TaskSpec,
)
from questlog.projections.due import pending_reward
from questlog.projections.player import fold_new
from questlog.projections.state import PlayerState, QueueConfig
from questlog.projections.views import config_view, spec_view

from .catalog import ACTIVITIES, Rules
from .clock import Clock
from .commands import (
    AdminEnqueue,
    AdminGrant,
    AdminPause,
    AdminResume,
    Cancel,
    Clear,
    Command,
    Configure,
    Enqueue,
    Pause,
    Reorder,
    Resume,
)
from .errors import InvalidCommand, NotFound, RuleViolation, VersionConflict
from .requirements import gear_problem, level_problem, requirement, task_step_seconds
from .rewards import level_ups, reward_step
from .rng import stable_id

PRIORITY_MODES = ("fifo", "priority")
MAX_QUEUE_SIZE = 100
MAX_PRIORITY = 1000
MAX_COMMAND_ID = 128


class Decision(msgspec.Struct, frozen=True):
    """The events to append atomically, and the JSON-RPC result once they land."""

    events: list[NewEvent]
    result: dict[str, Any]


def decide(state: PlayerState, command: Command, clock: Clock, rules: Rules) -> Decision:
    """Validate `command` against `state`; raise a RulesError or return the decision.

    A command id already in the state's memory returns the first result, no events.
    """
    if not command.command_id or len(command.command_id) > MAX_COMMAND_ID:
        raise InvalidCommand("command_id", f"must be 1 to {MAX_COMMAND_ID} characters")
    remembered = state.commands.get(command.command_id)
    if remembered is not None:
        return Decision([], _repeat_result(command, remembered.version, remembered.task, remembered.config))
    if command.expected_version is not None and command.expected_version != state.version:
        raise VersionConflict(state.version)
    player = getattr(command, "player_id", None)
    if player is not None and player != state.player_id:
        raise InvalidCommand("player_id", f"this command is for {player}, not {state.player_id}")
    admin = getattr(command, "admin", None)
    if admin is not None and not str(admin).strip():
        raise InvalidCommand("admin", "must name the operator")
    now = clock.now()
    events: list[NewEvent] = []
    s = state
    if not state.created:
        events.extend(player_created(rules, now))
        s = fold_new(state, events)
    more, extra = _handle(s, command, now, rules)
    events.extend(more)
    result: dict[str, Any] = {"version": state.version + len(events), **extra}
    return Decision(events, result)


def player_created(rules: Rules, at: datetime) -> list[NewEvent]:
    """A new player's first events: the starter kit, plus level-ups if it grants xp."""
    catalog = rules.catalog
    kit = catalog.starter
    created = PlayerCreated(
        skills={skill: kit.xp.get(skill, 0) for skill in catalog.skills},
        inventory=dict(kit.inventory),
        equipment={slot: Equipped(item, catalog.gear[item].durability) for slot, item in kit.equipment.items()},
    )
    base = PlayerState(player_id="", created=True)
    return [NewEvent(created, at), *level_ups(base, {k: v for k, v in kit.xp.items() if v}, at, rules)]


def _repeat_result(command: Command, version: int, task: TaskSpec | None, config: QueueConfig | None) -> dict[str, Any]:
    if isinstance(command, Enqueue | AdminEnqueue) and task is not None:
        return {"version": version, "task": spec_view(task)}
    if isinstance(command, Configure) and config is not None:
        return {"version": version, "config": config_view(config)}
    return {"version": version}


def _handle(s: PlayerState, c: Command, now: datetime, rules: Rules) -> tuple[list[NewEvent], dict[str, Any]]:
    if isinstance(c, Enqueue):
        return _enqueue(s, c.activity, c.target, c.quantity, c.priority, c.command_id, now, rules, None)
    if isinstance(c, AdminEnqueue):
        return _enqueue(s, c.activity, c.target, c.quantity, c.priority, c.command_id, now, rules, c.admin)
    if isinstance(c, Cancel):
        return _cancel(s, c, now, rules), {}
    if isinstance(c, Reorder):
        ids = [t.task_id for t in s.queued]
        if len(c.order) != len(set(c.order)) or sorted(c.order) != sorted(ids):
            raise RuleViolation("bad_order", "The new order must list every queued task exactly once.")
        return [NewEvent(QueueReordered(order=list(c.order)), now)], {}
    if isinstance(c, Clear):
        return [NewEvent(QueueCleared(task_ids=[t.task_id for t in s.queued]), now)], {}
    if isinstance(c, Pause):
        _not_admin_paused(s)
        reason = (c.reason or "").strip() or "Paused by you."
        return [NewEvent(QueuePaused(reason=reason[:200], by="player"), now)], {}
    if isinstance(c, Resume):
        _not_admin_paused(s)
        return [NewEvent(QueueResumed(by="player"), now)], {}
    if isinstance(c, Configure):
        return _configure(s, c, now)
    if isinstance(c, AdminPause):
        reason = c.reason.strip() or "Paused by an operator."
        return [NewEvent(QueuePaused(reason=reason, by=f"admin:{c.admin}"), now)], {}
    if isinstance(c, AdminResume):
        return [NewEvent(QueueResumed(by=f"admin:{c.admin}"), now)], {}
    if isinstance(c, AdminGrant):
        return _grant(s, c, now, rules), {}
    raise InvalidCommand("method", f"{type(c).__name__} is not a command decide knows")


def _not_admin_paused(s: PlayerState) -> None:
    if s.paused and s.paused_by is not None and s.paused_by.startswith("admin:"):
        raise RuleViolation("paused_by_admin", f"An operator paused your queue: {s.pause_reason}")


def _enqueue(
    s: PlayerState,
    activity: str,
    target: str,
    quantity: int,
    priority: int,
    command_id: str,
    now: datetime,
    rules: Rules,
    admin: str | None,
) -> tuple[list[NewEvent], dict[str, Any]]:
    catalog = rules.catalog
    tuning = catalog.tuning
    if quantity < 1:
        raise InvalidCommand("quantity", "must be at least 1")
    if quantity > tuning.max_quantity:
        raise InvalidCommand("quantity", f"must be at most {tuning.max_quantity}")
    if abs(priority) > MAX_PRIORITY:
        raise InvalidCommand("priority", f"must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    if activity not in ACTIVITIES:
        raise RuleViolation(
            "unknown_activity", f"There is no activity called {activity!r}; choose harvesting, crafting or combat."
        )
    req = requirement(catalog, activity, target)
    if req is None:
        raise RuleViolation("unknown_target", f"There is nothing called {target!r} in {activity}; see the catalog.")
    if admin is None:
        problem = level_problem(s, req, catalog) or gear_problem(s, req, catalog)
        if problem is not None:
            raise RuleViolation(*problem)
        if len(s.queued) >= s.config.max_size:
            raise RuleViolation(
                "queue_full", f"Your queue is full ({s.config.max_size} tasks); cancel one or wait for one to finish."
            )
    task_id = stable_id("t-", s.player_id, command_id)
    if s.task(task_id) is not None:
        raise InvalidCommand("command_id", "already used for a task in the queue")
    spec = TaskSpec(
        task_id=task_id,
        activity=activity,
        target=target,
        quantity=quantity,
        priority=priority,
        step_seconds=task_step_seconds(s, req, rules),
        enqueued_at=now,
        max_attempts=tuning.combat_max_attempts if activity == "combat" else 1,
    )
    return [NewEvent(TaskEnqueued(task=spec, admin=admin), now)], {"task": spec_view(spec)}


def _cancel(s: PlayerState, c: Cancel, now: datetime, rules: Rules) -> list[NewEvent]:
    task = s.task(c.task_id)
    if task is None:
        if c.task_id in s.finished:
            raise RuleViolation("not_cancellable", f"That task already {s.finished[c.task_id]}.")
        raise NotFound("task", c.task_id)
    events: list[NewEvent] = []
    if s.current is not None and s.current.task_id == task.task_id:
        if task.steps_done >= task.quantity:
            raise RuleViolation("not_cancellable", "That task is finishing its last step.")
        step = pending_reward(s)
        if step is not None:
            events.extend(reward_step(s, task.task_id, step, rules))  # a done step keeps its reward
        after = fold_new(s, events)
        assert after.current is not None
        task = after.current
    cancelled = TaskCancelled(task_id=task.task_id, steps_done=task.steps_done, refunded=dict(task.reserved))
    events.append(NewEvent(cancelled, now))
    return events


def _configure(s: PlayerState, c: Configure, now: datetime) -> tuple[list[NewEvent], dict[str, Any]]:
    cfg = s.config
    max_size = cfg.max_size if c.max_size is None else c.max_size
    if not 1 <= max_size <= MAX_QUEUE_SIZE:
        raise InvalidCommand("max_size", f"must be between 1 and {MAX_QUEUE_SIZE}")
    mode = cfg.priority_mode if c.priority_mode is None else c.priority_mode
    if mode not in PRIORITY_MODES:
        raise InvalidCommand("priority_mode", "must be 'fifo' or 'priority'")
    if max_size < len(s.queued):
        raise RuleViolation(
            "queue_too_long",
            f"Your queue holds {len(s.queued)} tasks; cancel some before lowering its size to {max_size}.",
        )
    auto = cfg.auto_start if c.auto_start is None else c.auto_start
    event = QueueConfigured(max_size=max_size, auto_start=auto, priority_mode=mode)
    return [NewEvent(event, now)], {"config": config_view(QueueConfig(max_size, auto, mode))}


def _grant(s: PlayerState, c: AdminGrant, now: datetime, rules: Rules) -> list[NewEvent]:
    catalog = rules.catalog
    for item in c.items:
        if item not in catalog.items:
            raise InvalidCommand("items", f"unknown item {item!r}")
    for skill, xp in c.xp.items():
        if skill not in catalog.skills:
            raise InvalidCommand("xp", f"unknown skill {skill!r}")
        if xp < 0:
            raise InvalidCommand("xp", "xp can only be granted, not taken")
    if not c.reason.strip():
        raise InvalidCommand("reason", "an admin grant needs a reason")
    grant = AdminGranted(admin=c.admin, reason=c.reason, items=dict(c.items), xp=dict(c.xp))
    return [NewEvent(grant, now), *level_ups(s, {k: v for k, v in c.xp.items() if v}, now, rules)]
