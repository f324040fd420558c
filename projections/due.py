"""When a player's queue next needs a service to act, read off the state alone.

The processor holds one timer per player (`next_timer`); a completed step waits
for its reward (`pending_reward`); a queue with a task to start waits for the
processor. `attention_at` folds these into one time, the `due` read model that
the stuck-queue sweep reads: a player still listed well past it was dropped
by whatever should have moved them (a dead-lettered message, a lost timer).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from .player import step_due_at
from .state import PlayerState, run_order


class Timer(msgspec.Struct, frozen=True, kw_only=True):
    """The one timer the processor should hold for a player: a step or a retry.

    services/timers.py schedules it as it stands (its JSON is the message body).
    """

    player_id: str
    task_id: str
    attempt: int
    kind: str  # step | retry
    step: int
    due_at: datetime
    # the stream sequence of the state the timer was set from: it fires no decision on less
    after_seq: int = 0


def next_timer(state: PlayerState) -> Timer | None:
    """The timer the processor should have scheduled for this player, if any."""
    task = state.current
    if task is None or state.paused:
        return None
    if task.status == "running" and task.steps_done < task.quantity and task.rewarded == task.steps_done:
        due = step_due_at(task, task.steps_done + 1)
        if due is None:
            return None
        return Timer(
            player_id=state.player_id,
            task_id=task.task_id,
            attempt=task.attempts,
            kind="step",
            step=task.steps_done + 1,
            due_at=due,
            after_seq=state.last_seq,
        )
    if task.status == "retrying" and task.retry_at is not None:
        return Timer(
            player_id=state.player_id,
            task_id=task.task_id,
            attempt=task.attempts + 1,
            kind="retry",
            step=task.steps_done,
            due_at=task.retry_at,
            after_seq=state.last_seq,
        )
    return None


def pending_reward(state: PlayerState) -> int | None:
    """The step of the current task that is completed but not yet rewarded."""
    task = state.current
    if task is None or task.rewarded >= task.steps_done:
        return None
    return task.rewarded + 1


def attention_at(state: PlayerState) -> datetime | None:
    """When a service should next move this queue; None while it waits for the player
    (empty, paused, or nothing may start)."""
    if not state.created or state.paused:
        return None
    task = state.current
    if task is not None:
        if pending_reward(state) is not None:
            return task.last_step_at or state.updated_at
        timer = next_timer(state)
        return timer.due_at if timer is not None else state.updated_at
    if (state.config.auto_start or state.start_requested) and run_order(state):
        return state.updated_at
    return None
