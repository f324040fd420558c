"""The engine's pure decisions: what the processor and the reward service append, and when.

Every function here reads only the folded state and its arguments, and stamps each
event with a domain time derived from the log (the triggering event's occurred_at,
a step's due time, a retry time), never the wall clock. So processing live and
catching up after downtime append the same events with the same versions and times.

The per-task event flow (docs/game-rules.md has the full picture):
    task.started -> task.step_completed(1) -> reward.granted(1) [+ player.leveled_up]
    -> task.step_completed(2) -> ... -> reward.granted(n) + task.completed
A step never completes before the previous step's reward is granted, and the next
task never starts before the last reward, so the log's order is deterministic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from questlog.events.schema import (
    EquipmentEquipped,
    NewEvent,
    PlayerLeveledUp,
    QueuePaused,
    RewardGranted,
    TaskCompleted,
    TaskFailed,
    TaskRetryScheduled,
    TaskStarted,
    TaskStepCompleted,
)
from questlog.projections.due import Timer, next_timer, pending_reward
from questlog.projections.player import fold_new
from questlog.projections.state import PlayerState, Task, run_order

from . import formulas
from .catalog import ARMOUR_SLOT, WEAPON_SLOT, Catalog, Drop, Gear, Rules
from .rng import StepRng

TOLERANCE = timedelta(milliseconds=1)  # timers may carry times rounded to the millisecond


class Requirement(msgspec.Struct, frozen=True, kw_only=True):
    """What one unit of an activity on a target needs, resolved from the catalog."""

    activity: str
    target: str
    level: int
    location: str | None
    tool: str | None  # equipment slot that must be filled
    station: str | None
    materials: dict[str, int]  # per unit
    base_seconds: float


def requirement(catalog: Catalog, activity: str, target: str) -> Requirement | None:
    """None when the activity or target is unknown."""
    if activity == "harvesting" and target in catalog.harvesting:
        r = catalog.harvesting[target]
        return Requirement(
            activity=activity,
            target=target,
            level=r.level,
            location=r.location,
            tool=r.tool,
            station=None,
            materials={},
            base_seconds=r.seconds,
        )
    if activity == "crafting" and target in catalog.crafting:
        c = catalog.crafting[target]
        return Requirement(
            activity=activity,
            target=target,
            level=c.level,
            location=None,
            tool=c.tool,
            station=c.station,
            materials=dict(c.inputs),
            base_seconds=c.seconds,
        )
    if activity == "combat" and target in catalog.combat:
        e = catalog.combat[target]
        return Requirement(
            activity=activity,
            target=target,
            level=e.requires_level,
            location=e.location,
            tool=WEAPON_SLOT,
            station=None,
            materials={},
            base_seconds=e.seconds,
        )
    return None


def describe(catalog: Catalog, activity: str, target: str, quantity: int | None = None) -> str:
    """'Harvesting oak log', 'Crafting 3 plank', 'Fighting goblin': the start of a sentence."""
    if activity == "combat":
        return f"Fighting {target.replace('_', ' ')}"
    noun = catalog.noun(catalog.yield_of(target) if activity == "harvesting" else catalog.output_of(target))
    amount = f"{quantity} " if quantity is not None else ""
    return f"{activity.capitalize()} {amount}{noun}"


def spare(state: PlayerState, catalog: Catalog, slot: str, inventory: dict[str, int] | None = None) -> str | None:
    """The best item in the inventory for an empty slot: highest tier, then name."""
    stock = state.inventory if inventory is None else inventory
    fits = [item for item, qty in stock.items() if qty > 0 and item in catalog.gear and catalog.gear[item].slot == slot]
    if not fits:
        return None
    return sorted(fits, key=lambda item: (-catalog.gear[item].tier, item))[0]


def has_tool(state: PlayerState, catalog: Catalog, slot: str) -> bool:
    return slot in state.equipment or spare(state, catalog, slot) is not None


def gear_speed(state: PlayerState, catalog: Catalog, slot: str | None) -> float:
    if slot is None or slot not in state.equipment:
        return 0.0
    gear = catalog.gear.get(state.equipment[slot].item)
    return gear.speed if gear else 0.0


def task_step_seconds(state: PlayerState, req: Requirement, rules: Rules) -> float:
    """Step duration for this player now: the documented formula, times time_scale."""
    tuning = rules.catalog.tuning
    return formulas.step_seconds(
        req.base_seconds,
        state.level(req.activity),
        req.level,
        gear_speed(state, rules.catalog, req.tool),
        rules.time_scale,
        tuning,
    )


def level_problem(state: PlayerState, req: Requirement, catalog: Catalog) -> tuple[str, str] | None:
    """(rule, detail) when a level or location requirement is not met."""
    what = describe(catalog, req.activity, req.target)
    have = state.level(req.activity)
    if have < req.level:
        return "level_too_low", f"{what} needs {req.activity} level {req.level}; you are level {have}."
    if req.location is not None:
        loc = catalog.locations[req.location]
        for skill, level in loc.requires.items():
            if state.level(skill) < level:
                return (
                    "location_locked",
                    f"{loc.title} needs {skill} level {level}; you are level {state.level(skill)}.",
                )
    return None


def gear_problem(state: PlayerState, req: Requirement, catalog: Catalog) -> tuple[str, str] | None:
    """(rule, detail) when the tool or station is missing."""
    what = describe(catalog, req.activity, req.target)
    if req.tool is not None and not has_tool(state, catalog, req.tool):
        return "missing_tool", f"{what} needs a {req.tool.replace('_', ' ')}; you have none equipped or spare."
    if req.station is not None and state.inventory.get(req.station, 0) < 1:
        return "station_required", f"{what} needs a {catalog.noun(req.station)}; you do not own one."
    return None


def materials_problem(state: PlayerState, req: Requirement, quantity: int, catalog: Catalog) -> str | None:
    """A readable sentence when the inventory cannot cover the whole task's materials."""
    short = [
        (item, per * quantity, state.inventory.get(item, 0))
        for item, per in req.materials.items()
        if state.inventory.get(item, 0) < per * quantity
    ]
    if not short:
        return None
    what = describe(catalog, req.activity, req.target, quantity)
    if len(short) == 1:
        item, need, have = short[0]
        return f"{what} needs {need} {catalog.noun(item)}; you have {have}."
    parts = [f"{need} {catalog.noun(item)} (you have {have})" for item, need, have in short]
    return f"{what} needs " + ", ".join(parts[:-1]) + f" and {parts[-1]}."


def next_task(state: PlayerState) -> Task | None:
    """fifo: the queue's head. priority: the highest priority, ties by queue order."""
    order = run_order(state)
    return order[0] if order else None


# -- the processor ------------------------------------------------------------------


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


# -- the reward service --------------------------------------------------------------


def settle_step(state: PlayerState, task_id: str, step: int, rules: Rules) -> list[NewEvent]:
    """The rewards of a completed step, exactly once, then the task's end if it ended.

    Returns [] when that step is already rewarded (or is not the step awaiting reward).
    """
    events = reward_step(state, task_id, step, rules)
    if not events:
        return []
    after = fold_new(state, events)
    task = after.current
    assert task is not None
    at = events[0].occurred_at
    reward = events[0].event
    assert isinstance(reward, RewardGranted)
    catalog = rules.catalog
    req = requirement(catalog, task.activity, task.target)
    needed = req.tool if req is not None else None
    if needed is not None and needed not in after.equipment and task.steps_done < task.quantity and task.admin is None:
        broken = state.equipment.get(needed)
        name = catalog.noun(broken.item) if broken else needed
        reason = f"Your {name} broke and you have no spare."
        events.append(
            NewEvent(
                TaskFailed(task_id=task_id, reason=reason, attempts=task.attempts, refunded=dict(task.reserved)), at
            )
        )
        return events
    if task.activity == "combat" and not reward.success:
        foe = task.target.replace("_", " ")
        if task.attempts >= task.max_attempts:
            reason = f"Defeated by the {foe} {task.attempts} times."
            events.append(
                NewEvent(
                    TaskFailed(task_id=task_id, reason=reason, attempts=task.attempts, refunded=dict(task.reserved)), at
                )
            )
            return events
        if task.steps_done < task.quantity:
            backoff = formulas.retry_backoff_seconds(task.attempts, rules.time_scale, catalog.tuning)
            events.append(
                NewEvent(
                    TaskRetryScheduled(
                        task_id=task_id,
                        attempt=task.attempts + 1,
                        retry_at=at + timedelta(seconds=backoff),
                        reason=f"Knocked out by the {foe}; back on your feet in {backoff:g} s.",
                    ),
                    at,
                )
            )
            return events
    if task.steps_done >= task.quantity:
        events.append(
            NewEvent(TaskCompleted(task_id=task_id, steps_done=task.steps_done, refunded=dict(task.reserved)), at)
        )
    return events


def reward_step(state: PlayerState, task_id: str, step: int, rules: Rules) -> list[NewEvent]:
    """reward.granted for one step, its level-ups and any spare equipped for broken gear.

    The task's end is not decided here (settle_step does that); a cancel uses this
    alone to grant a completed step's reward before it removes the task.
    """
    task = state.current
    if task is None or task.task_id != task_id or step != task.rewarded + 1 or step > task.steps_done:
        return []
    catalog, tuning = rules.catalog, rules.catalog.tuning
    at = task.last_step_at or task.segment_at or state.updated_at
    assert at is not None
    rng = StepRng.for_step(state.player_id, task_id, step, task.attempts)
    level = state.level(task.activity)
    items: dict[str, int] = {}
    rare: list[str] = []
    durability: dict[str, int] = {}
    consumed: dict[str, int] = {}
    success = True
    quality: str | None = None
    xp = 0

    def roll_drops(drops: list[Drop], label: str, into_rare: bool) -> None:
        for i, drop in enumerate(drops):
            if rng.chance(f"{label}:{i}:{drop.item}", drop.chance):
                items[drop.item] = items.get(drop.item, 0) + rng.between(
                    f"{label}-qty:{i}:{drop.item}", drop.min, drop.max
                )
                if into_rare:
                    rare.append(drop.item)

    def wear(slot: str, role: str) -> None:
        if slot in state.equipment:
            durability[slot] = formulas.durability_loss(role, success, tuning)

    if task.activity == "harvesting" and task.target in catalog.harvesting:
        res = catalog.harvesting[task.target]
        items[catalog.yield_of(task.target)] = res.amount
        roll_drops(res.rare, "rare", True)
        xp = res.xp
        wear(res.tool, "tool")
    elif task.activity == "crafting" and task.target in catalog.crafting:
        recipe = catalog.crafting[task.target]
        consumed = {item: min(per, task.reserved.get(item, 0)) for item, per in recipe.inputs.items()}
        consumed = {item: qty for item, qty in consumed.items() if qty > 0}
        chance = formulas.craft_success_chance(recipe.success, level, recipe.level, tuning)
        success = rng.chance("craft", chance)
        if success:
            tier = formulas.quality_tier(rng.roll("quality"), level, recipe.level, catalog.quality, tuning)
            quality = tier.name
            items[catalog.output_of(task.target)] = recipe.amount
            xp = formulas.scaled_xp(recipe.xp, tier.xp_multiplier)
        else:
            xp = formulas.scaled_xp(recipe.xp, tuning.failed_craft_xp)
        if recipe.tool is not None:
            wear(recipe.tool, "tool")
    elif task.activity == "combat" and task.target in catalog.combat:
        enemy = catalog.combat[task.target]
        weapon = _gear(state, catalog, WEAPON_SLOT)
        armour = _gear(state, catalog, ARMOUR_SLOT)
        p = formulas.win_probability(level, weapon, armour, enemy, tuning)
        success = rng.chance("fight", p)
        if success:
            roll_drops(enemy.loot, "loot", False)
            roll_drops(enemy.rare, "rare", True)
            xp = enemy.xp
        else:
            xp = formulas.scaled_xp(enemy.xp, tuning.lost_fight_xp)
        wear(WEAPON_SLOT, "weapon")
        wear(ARMOUR_SLOT, "armour")
    granted = RewardGranted(
        task_id=task_id,
        step=step,
        success=success,
        xp={task.activity: xp} if xp else {},
        items=items,
        rare=rare,
        quality=quality,
        durability=durability,
        consumed=consumed,
    )
    events = [NewEvent(granted, at)]
    events.extend(level_ups(state, granted.xp, at, rules))
    after = fold_new(state, events)
    for slot in sorted(durability):
        if slot not in after.equipment:
            item = spare(after, catalog, slot)
            if item is not None:
                equip = EquipmentEquipped(slot=slot, item=item, durability=catalog.gear[item].durability)
                events.append(NewEvent(equip, at))
                after = fold_new(after, events[-1:])
    return events


def level_ups(state: PlayerState, xp: dict[str, int], at: datetime, rules: Rules) -> list[NewEvent]:
    """player.leveled_up for every skill whose xp gain crosses a level boundary (the new level)."""
    out: list[NewEvent] = []
    curve = rules.catalog.xp_curve
    for skill in sorted(xp):
        before = state.skills.get(skill)
        old_xp, old_level = (before.xp, before.level) if before else (0, 1)
        new_level = formulas.level_for_xp(old_xp + xp[skill], curve)
        if new_level > old_level:
            out.append(NewEvent(PlayerLeveledUp(skill=skill, level=new_level), at))
    return out


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


def _gear(state: PlayerState, catalog: Catalog, slot: str) -> Gear | None:
    worn = state.equipment.get(slot)
    return catalog.gear.get(worn.item) if worn else None


__all__ = [
    "Requirement",
    "Timer",
    "advance",
    "catch_up",
    "complete_step",
    "next_task",
    "next_timer",
    "pending_reward",
    "requirement",
    "retry",
    "reward_step",
    "run_order",
    "settle_step",
]
