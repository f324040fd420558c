"""decide: a player's or an admin's command against the folded state -> events + result.

Pure: time comes from the injected clock, ids are derived from the command id, and
an invalid command raises before any event exists, so nothing half-done is appended.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

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
    AdminCommand,
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


class Decision(msgspec.Struct, frozen=True):
    """The events to append atomically, and the JSON-RPC result once they land."""

    events: list[NewEvent]
    result: dict[str, Any]


class Context(msgspec.Struct, frozen=True):
    """What a command's handler decides with besides the state and the command."""

    now: datetime
    rules: Rules
    admin: str | None  # the operator who sent an admin command


C = TypeVar("C", bound=Command)
Outcome = tuple[list[NewEvent], dict[str, Any]]
Handler = Callable[[PlayerState, Any, Context], Outcome]
HANDLERS: dict[type[Command], Handler] = {}


def handles(command: type[C]) -> Callable[[Callable[[PlayerState, C, Context], Outcome]], Handler]:
    """Register the function that decides `command` (one per Command Struct)."""

    def register(handler: Callable[[PlayerState, C, Context], Outcome]) -> Handler:
        HANDLERS[command] = handler
        return handler

    return register


def decide(state: PlayerState, command: Command, clock: Clock, rules: Rules, admin: str | None = None) -> Decision:
    """Validate `command` against `state`; raise a RulesError or return the decision.

    A command id already in the state's memory returns the first result, no events.
    `admin` names the operator who sent an admin command.
    """
    if not command.command_id:
        raise InvalidCommand("command_id", "is required")
    remembered = state.commands.get(command.command_id)
    if remembered is not None:
        return Decision([], _repeat_result(remembered.version, remembered.task, remembered.config))
    if command.expected_version is not None and command.expected_version != state.version:
        raise VersionConflict(state.version)
    if isinstance(command, AdminCommand):
        if command.player_id != state.player_id:
            raise InvalidCommand("player_id", f"this command is for {command.player_id}, not {state.player_id}")
        if admin is None or not admin.strip():
            raise InvalidCommand("admin", "must name the operator")
    handler = HANDLERS.get(type(command))
    if handler is None:
        raise InvalidCommand("method", f"{type(command).__name__} is not a command decide knows")
    now = clock.now()
    events: list[NewEvent] = []
    s = state
    if not state.created:
        events.extend(player_created(rules, now))
        s = fold_new(state, events)
    more, extra = handler(s, command, Context(now, rules, admin))
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


def _repeat_result(version: int, task: TaskSpec | None, config: QueueConfig | None) -> dict[str, Any]:
    """A repeat answers what the first answer said: only enqueues remember a task, configures a config."""
    out: dict[str, Any] = {"version": version}
    if task is not None:
        out["task"] = spec_view(task)
    if config is not None:
        out["config"] = config_view(config)
    return out


@handles(Enqueue)
def _enqueue_by_player(s: PlayerState, c: Enqueue, ctx: Context) -> Outcome:
    return _enqueue(s, c.activity, c.target, c.quantity, c.priority, _id(c), ctx.now, ctx.rules, None)


@handles(AdminEnqueue)
def _enqueue_by_admin(s: PlayerState, c: AdminEnqueue, ctx: Context) -> Outcome:
    return _enqueue(s, c.activity, c.target, c.quantity, c.priority, _id(c), ctx.now, ctx.rules, ctx.admin)


@handles(Cancel)
def _cancel_task(s: PlayerState, c: Cancel, ctx: Context) -> Outcome:
    return _cancel(s, c, ctx.now, ctx.rules), {}


@handles(Reorder)
def _reorder(s: PlayerState, c: Reorder, ctx: Context) -> Outcome:
    ids = [t.task_id for t in s.queued]
    if len(c.order) != len(set(c.order)) or sorted(c.order) != sorted(ids):
        raise RuleViolation("bad_order", "The new order must list every queued task exactly once.")
    return [NewEvent(QueueReordered(order=list(c.order)), ctx.now)], {}


@handles(Clear)
def _clear(s: PlayerState, c: Clear, ctx: Context) -> Outcome:
    return [NewEvent(QueueCleared(task_ids=[t.task_id for t in s.queued]), ctx.now)], {}


@handles(Pause)
def _pause(s: PlayerState, c: Pause, ctx: Context) -> Outcome:
    _not_admin_paused(s)
    reason = (c.reason or "").strip() or "Paused by you."
    return [NewEvent(QueuePaused(reason=reason, by="player"), ctx.now)], {}


@handles(Resume)
def _resume(s: PlayerState, c: Resume, ctx: Context) -> Outcome:
    _not_admin_paused(s)
    return [NewEvent(QueueResumed(by="player"), ctx.now)], {}


@handles(Configure)
def _configure_queue(s: PlayerState, c: Configure, ctx: Context) -> Outcome:
    return _configure(s, c, ctx.now)


@handles(AdminPause)
def _admin_pause(s: PlayerState, c: AdminPause, ctx: Context) -> Outcome:
    reason = c.reason.strip() or "Paused by an operator."
    return [NewEvent(QueuePaused(reason=reason, by=f"admin:{ctx.admin}"), ctx.now)], {}


@handles(AdminResume)
def _admin_resume(s: PlayerState, c: AdminResume, ctx: Context) -> Outcome:
    return [NewEvent(QueueResumed(by=f"admin:{ctx.admin}"), ctx.now)], {}


@handles(AdminGrant)
def _admin_grant(s: PlayerState, c: AdminGrant, ctx: Context) -> Outcome:
    assert ctx.admin is not None  # decide checked it
    return _grant(s, c, ctx.admin, ctx.now, ctx.rules), {}


def _id(c: Command) -> str:
    assert c.command_id is not None  # decide checked it
    return c.command_id


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
    if quantity > tuning.max_quantity:
        raise InvalidCommand("quantity", f"must be at most {tuning.max_quantity}")
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
    mode = cfg.priority_mode if c.priority_mode is None else c.priority_mode
    if max_size < len(s.queued):
        raise RuleViolation(
            "queue_too_long",
            f"Your queue holds {len(s.queued)} tasks; cancel some before lowering its size to {max_size}.",
        )
    auto = cfg.auto_start if c.auto_start is None else c.auto_start
    event = QueueConfigured(max_size=max_size, auto_start=auto, priority_mode=mode)
    return [NewEvent(event, now)], {"config": config_view(QueueConfig(max_size, auto, mode))}


def _grant(s: PlayerState, c: AdminGrant, admin: str, now: datetime, rules: Rules) -> list[NewEvent]:
    catalog = rules.catalog
    for item in c.items:
        if item not in catalog.items:
            raise InvalidCommand("items", f"unknown item {item!r}")
    for skill in c.xp:
        if skill not in catalog.skills:
            raise InvalidCommand("xp", f"unknown skill {skill!r}")
    if not c.reason.strip():
        raise InvalidCommand("reason", "an admin grant needs a reason")
    grant = AdminGranted(admin=admin, reason=c.reason, items=dict(c.items), xp=dict(c.xp))
    return [NewEvent(grant, now), *level_ups(s, {k: v for k, v in c.xp.items() if v}, now, rules)]
