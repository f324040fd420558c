"""What one unit of an activity on a target needs, and the sentences that say what is missing.

decide checks a task against these when it is queued, and the processor again when it
starts (levels, gear and materials may have changed in between); both time its steps
with task_step_seconds.
"""

from __future__ import annotations

import msgspec

from questlog.projections.state import PlayerState

from . import formulas
from .catalog import WEAPON_SLOT, Catalog, Rules


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
