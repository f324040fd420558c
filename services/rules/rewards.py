"""What a completed step earns, by activity, and what follows it for the task.

reward_step rolls the step's items and drops, xp and level-ups, and the wear on the gear
(equipping a spare for what broke); settle_step adds the task's end, failure or retry.
The rolls are seeded by player, task, step and attempt, and the events take the step's
due time, so a step settled twice, live or in a catch-up, earns exactly the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from questlog.events.schema import (
    EquipmentEquipped,
    NewEvent,
    PlayerLeveledUp,
    RewardGranted,
    TaskCompleted,
    TaskFailed,
    TaskRetryScheduled,
)
from questlog.projections.player import fold_new
from questlog.projections.state import PlayerState

from . import formulas
from .catalog import ARMOUR_SLOT, WEAPON_SLOT, Catalog, Drop, Gear, Rules
from .requirements import requirement, spare
from .rng import StepRng


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


def _gear(state: PlayerState, catalog: Catalog, slot: str) -> Gear | None:
    worn = state.equipment.get(slot)
    return catalog.gear.get(worn.item) if worn else None
