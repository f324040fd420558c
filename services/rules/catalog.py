"""The game's content (catalog.toml) as typed, validated Structs, and the `Rules` bundle.

The catalog is data so designers can tune it without touching code; it is
validated completely at load so a typo fails at start-up, never mid-game.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import msgspec

from .errors import CatalogError

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
SKILLS = ("harvesting", "crafting", "combat")
ACTIVITIES = SKILLS  # each activity trains the skill of the same name
ITEM_KINDS = ("resource", "material", "food", "station", "equipment", "loot")
ARMOUR_SLOT = "armour"
WEAPON_SLOT = "weapon"


class XpCurve(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base: float
    exponent: float
    max_level: int


class Tuning(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level_speedup: float
    min_level_factor: float
    min_step_seconds: float
    success_per_level: float
    min_success: float
    max_success: float
    quality_per_level: float
    combat_scale: float
    min_win: float
    max_win: float
    retry_backoff_seconds: float
    retry_backoff_max_seconds: float
    tool_wear: int
    weapon_wear: int
    armour_wear: int
    armour_wear_on_loss: int
    failed_craft_xp: float
    lost_fight_xp: float
    combat_max_attempts: int
    max_quantity: int


class QualityTier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    threshold: float
    xp_multiplier: float


class Location(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: str
    requires: dict[str, int] = {}  # skill -> level


class Item(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    title: str
    kind: str

    @property
    def noun(self) -> str:
        """The title as it reads inside a sentence."""
        return self.title.lower()


class Gear(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    slot: str
    durability: int
    speed: float = 0.0
    attack: int = 0
    defence: int = 0
    tier: int = 1


class Drop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    item: str
    chance: float = 1.0
    min: int = 1
    max: int = 1


class Resource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    location: str
    level: int
    tool: str
    seconds: float
    xp: int
    item: str | None = None  # what one step yields; the target's own name by default
    amount: int = 1
    rare: list[Drop] = []


class Recipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    inputs: dict[str, int]
    level: int
    seconds: float
    xp: int
    success: float
    station: str | None = None
    tool: str | None = None
    output: str | None = None  # the target's own name by default
    amount: int = 1


class Enemy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    location: str
    level: int
    requires_level: int
    attack: int
    defence: int
    seconds: float
    xp: int
    loot: list[Drop] = []
    rare: list[Drop] = []


class Starter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    inventory: dict[str, int] = {}
    equipment: dict[str, str] = {}  # slot -> item
    xp: dict[str, int] = {}


class Catalog(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    skills: list[str]
    xp_curve: XpCurve
    tuning: Tuning
    quality: list[QualityTier]
    locations: dict[str, Location]
    items: dict[str, Item]
    gear: dict[str, Gear]
    harvesting: dict[str, Resource]
    crafting: dict[str, Recipe]
    combat: dict[str, Enemy]
    starter: Starter

    def output_of(self, recipe: str) -> str:
        return self.crafting[recipe].output or recipe

    def yield_of(self, resource: str) -> str:
        return self.harvesting[resource].item or resource

    def noun(self, item: str) -> str:
        found = self.items.get(item)
        return found.noun if found else item.replace("_", " ")

    def targets(self, activity: str) -> dict[str, Resource] | dict[str, Recipe] | dict[str, Enemy]:
        if activity == "harvesting":
            return self.harvesting
        if activity == "crafting":
            return self.crafting
        if activity == "combat":
            return self.combat
        raise KeyError(activity)

    def recipe_tier(self, recipe: str) -> int:
        """1 when a recipe consumes only gathered items, else 1 + the highest input's tier."""
        tiers: dict[str, int] = {}
        return _tier(self, recipe, tiers, ())


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """Everything decide and the engine need besides state: content and tuning knobs."""

    catalog: Catalog
    time_scale: float = 1.0  # multiplies every duration (QUESTLOG_TIME_SCALE)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalog; any inconsistency raises CatalogError."""
    source = path or CATALOG_PATH
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {source}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog {source} is not valid TOML: {exc}") from None
    return parse_catalog(raw, str(source))


def parse_catalog(raw: dict[str, Any], source: str = "<catalog>") -> Catalog:
    try:
        catalog = msgspec.convert(raw, Catalog)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"catalog {source}: {exc}") from None
    problems = _problems(catalog)
    if problems:
        raise CatalogError(f"catalog {source}: " + "; ".join(problems))
    return catalog


def load_rules(time_scale: float = 1.0, path: Path | None = None) -> Rules:
    if not time_scale > 0:
        raise CatalogError("time_scale must be > 0")
    return Rules(catalog=load_catalog(path), time_scale=time_scale)


def _tier(catalog: Catalog, recipe: str, tiers: dict[str, int], path: tuple[str, ...]) -> int:
    if recipe in tiers:
        return tiers[recipe]
    if recipe in path:
        raise CatalogError(f"recipe cycle: {' -> '.join((*path, recipe))}")
    producers = {catalog.output_of(name): name for name in catalog.crafting}
    best = 0
    for item in catalog.crafting[recipe].inputs:
        if item in producers:
            best = max(best, _tier(catalog, producers[item], tiers, (*path, recipe)))
    tiers[recipe] = best + 1
    return best + 1


def _problems(c: Catalog) -> list[str]:
    """Every reference checked; returns readable problems instead of stopping at the first."""
    out: list[str] = []
    if tuple(c.skills) != SKILLS:
        out.append(f"skills must be {list(SKILLS)}, got {c.skills}")
    if c.xp_curve.base <= 0 or c.xp_curve.exponent <= 0 or c.xp_curve.max_level < 2:
        out.append("xp_curve needs base > 0, exponent > 0, max_level >= 2")
    if not c.quality:
        out.append("quality needs at least one tier")
    thresholds = [q.threshold for q in c.quality]
    if thresholds != sorted(thresholds):
        out.append("quality tiers must be listed by rising threshold")

    def item(ref: str, where: str) -> None:
        if ref not in c.items:
            out.append(f"{where} refers to unknown item {ref!r}")

    def drops(ds: list[Drop], where: str) -> None:
        for d in ds:
            item(d.item, where)
            if not 0 <= d.chance <= 1:
                out.append(f"{where}: chance of {d.item} must be within [0, 1]")
            if not 1 <= d.min <= d.max:
                out.append(f"{where}: drop {d.item} needs 1 <= min <= max")

    def location(ref: str, where: str) -> None:
        if ref not in c.locations:
            out.append(f"{where} refers to unknown location {ref!r}")

    for name, it in c.items.items():
        if it.kind not in ITEM_KINDS:
            out.append(f"item {name}: kind {it.kind!r} is not one of {list(ITEM_KINDS)}")
        if it.kind == "equipment" and name not in c.gear:
            out.append(f"item {name} is equipment but has no [gear.{name}] entry")
    slots = {g.slot for g in c.gear.values()}
    for name, g in c.gear.items():
        item(name, f"gear {name}")
        if name in c.items and c.items[name].kind != "equipment":
            out.append(f"gear {name}: item kind must be 'equipment'")
        if g.durability < 1:
            out.append(f"gear {name}: durability must be >= 1")
        if not 0 <= g.speed < 1:
            out.append(f"gear {name}: speed must be within [0, 1)")
    for name, loc in c.locations.items():
        for skill in loc.requires:
            if skill not in SKILLS:
                out.append(f"location {name} requires unknown skill {skill!r}")
    for name, r in c.harvesting.items():
        where = f"harvesting {name}"
        location(r.location, where)
        item(r.item or name, where)
        drops(r.rare, where)
        if r.tool not in slots:
            out.append(f"{where} needs tool {r.tool!r} but no gear has that slot")
        _positive(out, where, r.level, r.seconds, r.amount)
    for name, rc in c.crafting.items():
        where = f"crafting {name}"
        item(rc.output or name, where)
        for ref, qty in rc.inputs.items():
            item(ref, where)
            if qty < 1:
                out.append(f"{where}: input {ref} needs quantity >= 1")
        if not rc.inputs:
            out.append(f"{where} consumes nothing")
        if rc.station is not None:
            item(rc.station, where)
            if rc.station in c.items and c.items[rc.station].kind != "station":
                out.append(f"{where}: {rc.station!r} is not a station")
        if rc.tool is not None and rc.tool not in slots:
            out.append(f"{where} needs tool {rc.tool!r} but no gear has that slot")
        if not 0 < rc.success <= 1:
            out.append(f"{where}: success must be within (0, 1]")
        _positive(out, where, rc.level, rc.seconds, rc.amount)
    if WEAPON_SLOT not in slots and c.combat:
        out.append("combat needs gear with the 'weapon' slot")
    for name, e in c.combat.items():
        where = f"combat {name}"
        location(e.location, where)
        drops(e.loot, where)
        drops(e.rare, where)
        _positive(out, where, e.requires_level, e.seconds, e.level)
    for ref, qty in c.starter.inventory.items():
        item(ref, "starter inventory")
        if qty < 1:
            out.append(f"starter inventory: {ref} needs quantity >= 1")
    for slot, ref in c.starter.equipment.items():
        if ref not in c.gear:
            out.append(f"starter equipment {slot} refers to unknown gear {ref!r}")
        elif c.gear[ref].slot != slot:
            out.append(f"starter equipment: {ref} goes in slot {c.gear[ref].slot!r}, not {slot!r}")
    for skill in c.starter.xp:
        if skill not in SKILLS:
            out.append(f"starter xp names unknown skill {skill!r}")
    if not out:
        try:
            for name in c.crafting:
                c.recipe_tier(name)
        except CatalogError as exc:
            out.append(str(exc))
    return out


def _positive(out: list[str], where: str, level: int, seconds: float, amount: int) -> None:
    if level < 1:
        out.append(f"{where}: level must be >= 1")
    if seconds <= 0:
        out.append(f"{where}: seconds must be > 0")
    if amount < 1:
        out.append(f"{where}: amount must be >= 1")


# -- the catalog.get view ---------------------------------------------------------


def catalog_view(catalog: Catalog) -> dict[str, Any]:
    """What `catalog.get` returns: activities with targets, requirements, times, rewards."""
    c = catalog

    def drops(ds: list[Drop]) -> list[dict[str, Any]]:
        return [{"item": d.item, "chance": d.chance, "min": d.min, "max": d.max} for d in ds]

    def location_req(name: str) -> dict[str, int]:
        return dict(c.locations[name].requires)

    harvesting = [
        {
            "target": name,
            "title": c.items[c.yield_of(name)].title,
            "location": r.location,
            "requires": {"level": r.level, "tool": r.tool, "location": location_req(r.location)},
            "base_seconds": r.seconds,
            "rewards": {"xp": r.xp, "items": {c.yield_of(name): r.amount}, "rare": drops(r.rare)},
        }
        for name, r in c.harvesting.items()
    ]
    crafting = [
        {
            "target": name,
            "title": c.items[c.output_of(name)].title,
            "tier": c.recipe_tier(name),
            "requires": {
                "level": rc.level,
                "station": rc.station,
                "tool": rc.tool,
                "materials": dict(rc.inputs),
            },
            "base_seconds": rc.seconds,
            "success": rc.success,
            "rewards": {
                "xp": rc.xp,
                "items": {c.output_of(name): rc.amount},
                "quality": [q.name for q in c.quality],
            },
        }
        for name, rc in c.crafting.items()
    ]
    combat = [
        {
            "target": name,
            "title": name.replace("_", " ").title(),
            "location": e.location,
            "level": e.level,
            "attack": e.attack,
            "defence": e.defence,
            "requires": {"level": e.requires_level, "tool": WEAPON_SLOT, "location": location_req(e.location)},
            "base_seconds": e.seconds,
            "rewards": {"xp": e.xp, "loot": drops(e.loot), "rare": drops(e.rare)},
        }
        for name, e in c.combat.items()
    ]
    return {
        "skills": {
            s: {
                "xp_curve": {
                    "base": c.xp_curve.base,
                    "exponent": c.xp_curve.exponent,
                    "max_level": c.xp_curve.max_level,
                }
            }
            for s in c.skills
        },
        "activities": {
            "harvesting": {"skill": "harvesting", "targets": harvesting},
            "crafting": {"skill": "crafting", "targets": crafting},
            "combat": {"skill": "combat", "targets": combat},
        },
        "locations": {name: {"title": loc.title, "requires": dict(loc.requires)} for name, loc in c.locations.items()},
        "items": {name: {"title": it.title, "kind": it.kind} for name, it in c.items.items()},
        "equipment": {
            name: {
                "slot": g.slot,
                "durability": g.durability,
                "speed": g.speed,
                "attack": g.attack,
                "defence": g.defence,
                "tier": g.tier,
            }
            for name, g in c.gear.items()
        },
        "quality": [{"name": q.name, "threshold": q.threshold, "xp_multiplier": q.xp_multiplier} for q in c.quality],
        "starter_kit": {
            "inventory": dict(c.starter.inventory),
            "equipment": dict(c.starter.equipment),
            "xp": dict(c.starter.xp),
        },
    }
