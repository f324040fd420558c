"""The read shapes of docs/protocol.md (`queue.get`, `player.get`, a task), as plain JSON dicts.

Times are RFC 3339 UTC strings with milliseconds, like every `at` in the protocol.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from questlog.events.schema import Recorded, TaskSpec

from .player import step_due_at
from .state import PlayerState, QueueConfig, Task, run_order


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_view(rec: Recorded) -> dict[str, Any]:
    """An event as clients see it: `events.replay` entries and the `event` notification's params."""
    return {
        "version": rec.version,
        "type": rec.type,
        "at": iso(rec.occurred_at),
        "data": msgspec.to_builtins(rec.event),
    }


def config_view(config: QueueConfig) -> dict[str, Any]:
    return {"max_size": config.max_size, "auto_start": config.auto_start, "priority_mode": config.priority_mode}


def spec_view(spec: TaskSpec) -> dict[str, Any]:
    """A task as it stood when queued: the `task` of an enqueue result (also on a repeat)."""
    return {
        "task_id": spec.task_id,
        "activity": spec.activity,
        "target": spec.target,
        "quantity": spec.quantity,
        "steps_done": 0,
        "priority": spec.priority,
        "status": "queued",
        "enqueued_at": iso(spec.enqueued_at),
        "step_seconds": spec.step_seconds,
        "attempts": 0,
    }


def task_view(task: Task, status: str, eta: datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "task_id": task.task_id,
        "activity": task.activity,
        "target": task.target,
        "quantity": task.quantity,
        "steps_done": task.steps_done,
        "priority": task.priority,
        "status": status,
        "enqueued_at": iso(task.enqueued_at),
        "step_seconds": task.step_seconds,
        "attempts": task.attempts,
    }
    if task.started_at is not None:
        out["started_at"] = iso(task.started_at)
    if eta is not None:
        out["eta"] = iso(eta)
    if task.admin is not None:
        out["admin"] = task.admin
    return out


def current_eta(state: PlayerState) -> datetime | None:
    """When the current task should finish if nothing pauses it."""
    task = state.current
    if task is None or state.paused:
        return None
    if task.status == "retrying" and task.retry_at is not None:
        return task.retry_at + timedelta(seconds=task.step_seconds * (task.quantity - task.steps_done))
    if task.status == "running":
        return step_due_at(task, task.quantity)
    return None


def queue_view(state: PlayerState, now: datetime) -> dict[str, Any]:
    """`queue.get`: queued tasks in the order they will run, each with an estimated eta."""
    current = None
    running_until = current_eta(state)
    if state.current is not None:
        status = "paused" if state.paused else state.current.status
        current = task_view(state.current, status, running_until)
    queued: list[dict[str, Any]] = []
    estimate = not state.paused and state.config.auto_start
    cursor = max(running_until or now, now) if state.current is None or running_until else None
    for task in run_order(state):
        eta = None
        if estimate and cursor is not None:
            cursor = cursor + timedelta(seconds=task.step_seconds * task.quantity)
            eta = cursor
        queued.append(task_view(task, "queued", eta))
    s = state.stats
    return {
        "version": state.version,
        "paused": state.paused,
        "pause_reason": state.pause_reason,
        "paused_by": state.paused_by,
        "config": config_view(state.config),
        "current": current,
        "queued": queued,
        "stats": {
            "completed": s.completed,
            "cancelled": s.cancelled,
            "failed": s.failed,
            "steps": s.steps,
            "completed_by_activity": dict(s.completed_by_activity),
            "steps_by_activity": dict(s.steps_by_activity),
            "fights_won": s.fights_won,
            "fights_lost": s.fights_lost,
            "crafts_failed": s.crafts_failed,
            "rare_drops": s.rare_drops,
        },
    }


def player_view(state: PlayerState) -> dict[str, Any]:
    """`player.get`: skills, inventory (reserved materials not included) and equipment."""
    return {
        "version": state.version,
        "skills": {name: {"level": sk.level, "xp": sk.xp} for name, sk in state.skills.items()},
        "inventory": {item: qty for item, qty in state.inventory.items() if qty > 0},
        "equipment": {slot: {"item": eq.item, "durability": eq.durability} for slot, eq in state.equipment.items()},
        "reserved": state.reserved,
    }
