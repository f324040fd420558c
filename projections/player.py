"""evolve: fold one recorded event into a player's state. Pure, total, and strict.

Every event type is handled; an unknown payload raises, as the log's rules say.
evolve never consults the catalog: every number it needs is in the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from msgspec.structs import replace

from questlog.events.schema import (
    AdminGranted,
    EquipmentEquipped,
    Equipped,
    NewEvent,
    Payload,
    PlayerCreated,
    PlayerLeveledUp,
    QueueCleared,
    QueueConfigured,
    QueuePaused,
    QueueReordered,
    QueueResumed,
    Recorded,
    RewardGranted,
    TaskCancelled,
    TaskCompleted,
    TaskEnqueued,
    TaskFailed,
    TaskRetryScheduled,
    TaskStarted,
    TaskStepCompleted,
)

from .state import (
    COMMAND_MEMORY,
    FINISHED_MEMORY,
    UNREMEMBERED_PREFIXES,
    CommandOutcome,
    PlayerState,
    QueueConfig,
    Skill,
    Task,
)


class UnfoldableEvent(Exception):
    """An event that cannot apply to this state (wrong player, version gap, unknown type)."""


def initial_state(player_id: str) -> PlayerState:
    return PlayerState(player_id=player_id)


def fold(
    events: Iterable[Recorded],
    state: PlayerState | None = None,
    memory: int = COMMAND_MEMORY,
    player_id: str | None = None,
) -> PlayerState:
    """Fold events in version order onto `state` (a snapshot) or onto a fresh player.

    With no state and no events, `player_id` names the fresh player to return.
    """
    current = state if state is not None else (initial_state(player_id) if player_id else None)
    for recorded in events:
        if current is None:
            current = initial_state(recorded.player_id)
        current = evolve(current, recorded, memory)
    if current is None:
        raise UnfoldableEvent("fold needs a state or at least one event")
    return current


def fold_new(state: PlayerState, events: Iterable[NewEvent], command_id: str | None = None) -> PlayerState:
    """The state after `events` as the store would record them next: versions following the
    state's, no stream sequence yet. Decisions look ahead with it; tests record with it."""
    current = state
    for new in events:
        recorded = Recorded(
            player_id=current.player_id,
            version=current.version + 1,
            occurred_at=new.occurred_at,
            event=new.event,
            command_id=command_id,
        )
        current = evolve(current, recorded)
    return current


def evolve(state: PlayerState, recorded: Recorded, memory: int = COMMAND_MEMORY) -> PlayerState:
    """The state after `recorded`. Versions must be dense: version == state.version + 1."""
    if recorded.player_id != state.player_id:
        raise UnfoldableEvent(f"event of {recorded.player_id} folded into {state.player_id}")
    if recorded.version != state.version + 1:
        raise UnfoldableEvent(f"player {state.player_id}: expected version {state.version + 1}, got {recorded.version}")
    s = _apply(state, recorded.event, recorded.occurred_at)
    commands = s.commands
    if recorded.command_id is not None and not recorded.command_id.startswith(UNREMEMBERED_PREFIXES):
        commands = _remember(commands, recorded, memory)
    return replace(
        s,
        version=recorded.version,
        last_seq=recorded.seq or state.last_seq,
        updated_at=recorded.occurred_at,
        commands=commands,
    )


def _remember(commands: dict[str, CommandOutcome], recorded: Recorded, memory: int) -> dict[str, CommandOutcome]:
    assert recorded.command_id is not None
    out = dict(commands)
    previous = out.pop(recorded.command_id, None)
    event = recorded.event
    task = previous.task if previous else None
    config = previous.config if previous else None
    if isinstance(event, TaskEnqueued):
        task = event.task
    elif isinstance(event, QueueConfigured):
        config = QueueConfig(event.max_size, event.auto_start, event.priority_mode)
    out[recorded.command_id] = CommandOutcome(version=recorded.version, task=task, config=config)
    while len(out) > memory:
        del out[next(iter(out))]
    return out


def _add(inventory: dict[str, int], items: dict[str, int], sign: int = 1) -> dict[str, int]:
    out = dict(inventory)
    for item, qty in items.items():
        left = out.get(item, 0) + sign * qty
        if left < 0:
            raise UnfoldableEvent(f"inventory of {item} would go negative ({left})")
        if left:
            out[item] = left
        else:
            out.pop(item, None)
    return out


def _finish(state: PlayerState, task_id: str, outcome: str) -> dict[str, str]:
    out = dict(state.finished)
    out.pop(task_id, None)
    out[task_id] = outcome
    while len(out) > FINISHED_MEMORY:
        del out[next(iter(out))]
    return out


def _bump(counts: dict[str, int], key: str, by: int = 1) -> dict[str, int]:
    out = dict(counts)
    out[key] = out.get(key, 0) + by
    return out


def _require_current(state: PlayerState, task_id: str, event: Payload) -> Task:
    if state.current is None or state.current.task_id != task_id:
        raise UnfoldableEvent(f"{event.TYPE} for {task_id}, which is not the current task")
    return state.current


def _add_xp(skills: dict[str, Skill], xp: dict[str, int]) -> dict[str, Skill]:
    out = dict(skills)
    for skill, gained in xp.items():
        old = out.get(skill, Skill())
        out[skill] = Skill(xp=old.xp + gained, level=old.level)
    return out


def _apply(s: PlayerState, e: Payload, at: datetime) -> PlayerState:
    if isinstance(e, PlayerCreated):
        return replace(
            s,
            created=True,
            skills={name: Skill(xp=xp) for name, xp in e.skills.items()},
            inventory=_add({}, e.inventory),
            equipment=dict(e.equipment),
        )
    if isinstance(e, PlayerLeveledUp):
        skills = dict(s.skills)
        skills[e.skill] = Skill(xp=skills.get(e.skill, Skill()).xp, level=e.level)
        return replace(s, skills=skills)
    if isinstance(e, TaskEnqueued):
        return replace(s, queued=[*s.queued, Task.from_spec(e.task, e.admin)])
    if isinstance(e, TaskCancelled):
        inventory = _add(s.inventory, e.refunded)
        stats = replace(s.stats, cancelled=s.stats.cancelled + 1)
        finished = _finish(s, e.task_id, "cancelled")
        if s.current is not None and s.current.task_id == e.task_id:
            return replace(s, current=None, inventory=inventory, stats=stats, finished=finished)
        queued = [t for t in s.queued if t.task_id != e.task_id]
        if len(queued) == len(s.queued):
            raise UnfoldableEvent(f"task.cancelled for unknown task {e.task_id}")
        return replace(s, queued=queued, inventory=inventory, stats=stats, finished=finished)
    if isinstance(e, QueueReordered):
        by_id = {t.task_id: t for t in s.queued}
        if sorted(by_id) != sorted(e.order):
            raise UnfoldableEvent("queue.reordered does not name exactly the queued tasks")
        return replace(s, queued=[by_id[i] for i in e.order])
    if isinstance(e, QueueCleared):
        gone = set(e.task_ids)
        finished = s.finished
        for task_id in e.task_ids:
            finished = _finish(replace(s, finished=finished), task_id, "cancelled")
        return replace(
            s,
            queued=[t for t in s.queued if t.task_id not in gone],
            inventory=_add(s.inventory, e.refunded),
            stats=replace(s.stats, cancelled=s.stats.cancelled + len(gone)),
            finished=finished,
        )
    if isinstance(e, QueuePaused):
        return replace(s, paused=True, pause_reason=e.reason, paused_by=e.by)
    if isinstance(e, QueueResumed):
        current = s.current
        if s.paused and current is not None and current.status == "running":
            # the step interrupted by the pause starts again from the resume
            current = replace(current, segment_at=at, segment_steps=current.steps_done)
        elif current is not None and current.status == "retrying" and current.retry_at and current.retry_at < at:
            current = replace(current, retry_at=at)
        return replace(s, paused=False, pause_reason=None, paused_by=None, start_requested=True, current=current)
    if isinstance(e, QueueConfigured):
        return replace(s, config=QueueConfig(e.max_size, e.auto_start, e.priority_mode))
    if isinstance(e, TaskStarted):
        if s.current is not None and s.current.task_id == e.task_id:
            task, queued = s.current, s.queued  # a retry: the same task, a new attempt
        elif s.current is None:
            found = [t for t in s.queued if t.task_id == e.task_id]
            if not found:
                raise UnfoldableEvent(f"task.started for unknown task {e.task_id}")
            task = found[0]
            queued = [t for t in s.queued if t.task_id != e.task_id]
        else:
            raise UnfoldableEvent(f"task.started for {e.task_id} while {s.current.task_id} runs")
        task = replace(
            task,
            status="running",
            attempts=e.attempt,
            step_seconds=e.step_seconds,
            started_at=task.started_at or at,
            segment_at=at,
            segment_steps=task.steps_done,
            retry_at=None,
            reserved=_add(task.reserved, e.reserved),
        )
        return replace(
            s,
            current=task,
            queued=queued,
            inventory=_add(s.inventory, e.reserved, -1),
            start_requested=False,
        )
    if isinstance(e, TaskStepCompleted):
        task = _require_current(s, e.task_id, e)
        task = replace(task, steps_done=e.step, last_step_at=at)
        stats = replace(
            s.stats, steps=s.stats.steps + 1, steps_by_activity=_bump(s.stats.steps_by_activity, task.activity)
        )
        return replace(s, current=task, stats=stats)
    if isinstance(e, RewardGranted):
        task = _require_current(s, e.task_id, e)
        task = replace(task, rewarded=e.step, reserved=_add(task.reserved, e.consumed, -1))
        equipment = dict(s.equipment)
        for slot, lost in e.durability.items():
            worn = equipment.get(slot)
            if worn is None:
                continue
            if worn.durability - lost <= 0:
                del equipment[slot]  # broken
            else:
                equipment[slot] = Equipped(worn.item, worn.durability - lost)
        stats = s.stats
        if task.activity == "combat":
            stats = replace(
                stats,
                fights_won=stats.fights_won + (1 if e.success else 0),
                fights_lost=stats.fights_lost + (0 if e.success else 1),
            )
        elif task.activity == "crafting" and not e.success:
            stats = replace(stats, crafts_failed=stats.crafts_failed + 1)
        if e.rare:
            stats = replace(stats, rare_drops=stats.rare_drops + len(e.rare))
        return replace(
            s,
            current=task,
            inventory=_add(s.inventory, e.items),
            skills=_add_xp(s.skills, e.xp),
            equipment=equipment,
            stats=stats,
        )
    if isinstance(e, TaskCompleted):
        task = _require_current(s, e.task_id, e)
        stats = replace(
            s.stats,
            completed=s.stats.completed + 1,
            completed_by_activity=_bump(s.stats.completed_by_activity, task.activity),
        )
        return replace(
            s,
            current=None,
            inventory=_add(s.inventory, e.refunded),
            stats=stats,
            finished=_finish(s, e.task_id, "completed"),
        )
    if isinstance(e, TaskFailed):
        _require_current(s, e.task_id, e)
        return replace(
            s,
            current=None,
            inventory=_add(s.inventory, e.refunded),
            stats=replace(s.stats, failed=s.stats.failed + 1),
            finished=_finish(s, e.task_id, "failed"),
        )
    if isinstance(e, TaskRetryScheduled):
        task = _require_current(s, e.task_id, e)
        return replace(s, current=replace(task, status="retrying", retry_at=e.retry_at))
    if isinstance(e, EquipmentEquipped):
        equipment = dict(s.equipment)
        equipment[e.slot] = Equipped(e.item, e.durability)
        return replace(s, equipment=equipment, inventory=_add(s.inventory, {e.item: 1}, -1))
    if isinstance(e, AdminGranted):
        inventory = dict(s.inventory)
        for item, qty in e.items.items():
            left = max(0, inventory.get(item, 0) + qty)  # an admin may take items away, never below 0
            if left:
                inventory[item] = left
            else:
                inventory.pop(item, None)
        return replace(s, inventory=inventory, skills=_add_xp(s.skills, e.xp))
    raise UnfoldableEvent(f"evolve does not know {type(e).__name__}")


def step_due_at(task: Task, step: int) -> datetime | None:
    """When step `step` of the task's current segment falls due."""
    if task.segment_at is None:
        return None
    return task.segment_at + timedelta(seconds=task.step_seconds * (step - task.segment_steps))
