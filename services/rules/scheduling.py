"""When the queue moves: the next task to start, a step completing, a retry, and catch-up.

Every function here reads only the folded state and its arguments, and stamps each
event with a domain time derived from the log (the triggering event's occurred_at,
a step's due time, a retry time), never the wall clock. So processing live and
catching up after downtime append the same events with the same versions and times.

The per-task event flow (docs/game-rules.md has the full picture):
    task.started -> task.step_completed(1) -> reward.granted(1) [+ player.leveled_up]
    -> task.step_completed(2) -> ... -> reward.granted(n) + task.completed
A step never completes before the previous step's reward is granted, and the next
task never starts before the last reward, so the log's order is deterministic.
The one timer a queue waits for is projections.due.next_timer: it reads the state alone.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from questlog.events.schema import (
    EquipmentEquipped,
    NewEvent,
    QueuePaused,
    TaskStarted,
    TaskStepCompleted,
)
from questlog.projections.due import next_timer, pending_reward
from questlog.projections.player import fold_new
from questlog.projections.state import PlayerState, Task, run_order

from .catalog import ARMOUR_SLOT, Rules
from .requirements import gear_problem, level_problem, materials_problem, requirement, spare, task_step_seconds
from .rewards import settle_step

TOLERANCE = timedelta(milliseconds=1)  # timers may carry times rounded to the millisecond


def next_task(state: PlayerState) -> Task | None:
    """fifo: the queue's head. priority: the highest priority, ties by queue order."""
    order = run_order(state)
    return order[0] if order else None


def advance(state: PlayerState, at: datetime, rules: Rules) -> list[NewEvent]:
    """Start the next task if the queue allows, else pause with a reason, else nothing.

    `at` is the occurred_at of the event that made a start possible; it is raised to
    the state's last event time so the log's times never run backwards.
    """
    if not state.created or state.current is not None or state.paused:
        return []
    if not (state.config.auto_start or state.start_requested):
        return []
    task = next_task(state)
    if task is None:
        return []
    if state.updated_at is not None and state.updated_at > at:
        at = state.updated_at
    catalog = rules.catalog
    req = requirement(catalog, task.activity, task.target)
    if req is None:
        reason = f"{task.activity} {task.target.replace('_', ' ')} is no longer in the game; cancel that task."
        return [NewEvent(QueuePaused(reason=reason, by="system"), at)]
    if task.admin is None:
        problem = level_problem(state, req, catalog) or gear_problem(state, req, catalog)
        if problem is not None:
            return [NewEvent(QueuePaused(reason=problem[1], by="system"), at)]
    missing = materials_problem(state, req, task.quantity, catalog)
    if missing is not None:
        return [NewEvent(QueuePaused(reason=missing, by="system"), at)]
    events: list[NewEvent] = []
    slots = [req.tool] if req.tool else []
    if task.activity == "combat":
        slots.append(ARMOUR_SLOT)
    for slot in slots:
        if slot not in state.equipment:
            item = spare(state, catalog, slot)
            if item is not None:
                events.append(
                    NewEvent(EquipmentEquipped(slot=slot, item=item, durability=catalog.gear[item].durability), at)
                )
    scratch = fold_new(state, events)
    reserved = {item: per * task.quantity for item, per in req.materials.items()}
    started = TaskStarted(
        task_id=task.task_id,
        steps=task.quantity,
        step_seconds=task_step_seconds(scratch, req, rules),
        attempt=1,
        reserved=reserved,
    )
    events.append(NewEvent(started, at))
    return events


def complete_step(state: PlayerState, task_id: str, step: int, attempt: int, due_at: datetime) -> list[NewEvent]:
    """A step timer fired: `task.step_completed` at the step's due time, or [] if the timer is stale."""
    timer = next_timer(state)
    if (
        timer is None
        or timer.kind != "step"
        or timer.task_id != task_id
        or timer.attempt != attempt
        or timer.step != step
        or due_at < timer.due_at - TOLERANCE
    ):
        return []
    return [NewEvent(TaskStepCompleted(task_id=task_id, step=step), timer.due_at)]


def retry(state: PlayerState, task_id: str, attempt: int, at: datetime) -> list[NewEvent]:
    """A retry timer fired: start the new attempt where the last one stopped."""
    timer = next_timer(state)
    task = state.current
    if (
        task is None
        or timer is None
        or timer.kind != "retry"
        or timer.task_id != task_id
        or timer.attempt != attempt
        or at < timer.due_at - TOLERANCE
    ):
        return []
    started = TaskStarted(task_id=task_id, steps=task.quantity, step_seconds=task.step_seconds, attempt=attempt)
    return [NewEvent(started, timer.due_at)]


def catch_up(state: PlayerState, now: datetime, rules: Rules, limit: int = 1000) -> list[list[NewEvent]]:
    """Everything the processor and reward service would have appended up to `now`.

    Returns whole decisions (append each one atomically, or several together); a
    decision is never split. Stops once `limit` events are gathered: call again.
    """
    batches: list[list[NewEvent]] = []
    count = 0
    s = state
    while count < limit:
        batch = advance(s, s.updated_at or now, rules)
        if not batch:
            step = pending_reward(s)
            if step is not None and s.current is not None:
                batch = settle_step(s, s.current.task_id, step, rules)
        if not batch:
            timer = next_timer(s)
            if timer is not None and timer.due_at <= now:
                if timer.kind == "step":
                    batch = complete_step(s, timer.task_id, timer.step, timer.attempt, timer.due_at)
                else:
                    batch = retry(s, timer.task_id, timer.attempt, timer.due_at)
        if not batch:
            break
        s = fold_new(s, batch)
        batches.append(batch)
        count += len(batch)
    return batches
