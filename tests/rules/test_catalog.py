"""The catalog file: content the issue requires, validation at load, the catalog.get view."""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec
import pytest

from questlog.services.rules.catalog import CATALOG_PATH, catalog_view, load_catalog, parse_catalog
from questlog.services.rules.errors import CatalogError

from . import CATALOG


def raw() -> dict:
    return tomllib.loads(CATALOG_PATH.read_text())


def test_content_meets_the_brief() -> None:
    c = CATALOG
    assert c.skills == ["harvesting", "crafting", "combat"]
    assert len(c.harvesting) >= 6
    assert len({r.location for r in c.harvesting.values()}) >= 3
    assert all(r.tool and r.level >= 1 for r in c.harvesting.values())
    assert len(c.crafting) >= 6
    assert {c.recipe_tier(n) for n in c.crafting} >= {1, 2}
    assert any(r.station for r in c.crafting.values())
    assert len(c.combat) >= 5
    assert all(e.rare for e in c.combat.values())
    slots = {g.slot for g in c.gear.values()}
    assert {"weapon", "armour", "axe", "pickaxe"} <= slots


def test_recipes_consume_what_the_game_produces() -> None:
    c = CATALOG
    produced = {c.yield_of(n) for n in c.harvesting} | {c.output_of(n) for n in c.crafting}
    for recipe in c.crafting.values():
        assert set(recipe.inputs) <= produced


def test_starter_kit_is_usable() -> None:
    kit = CATALOG.starter
    for slot, item in kit.equipment.items():
        assert CATALOG.gear[item].slot == slot
    assert kit.inventory["oak_log"] >= 2  # one plank can be crafted at once


def test_unknown_item_reference_is_refused() -> None:
    data = raw()
    data["crafting"]["plank"]["inputs"] = {"unobtainium": 1}
    with pytest.raises(CatalogError, match="unknown item 'unobtainium'"):
        parse_catalog(data)


def test_missing_tool_slot_is_refused() -> None:
    data = raw()
    data["harvesting"]["stone"]["tool"] = "chisel"
    with pytest.raises(CatalogError, match="needs tool 'chisel'"):
        parse_catalog(data)


def test_station_must_be_a_station() -> None:
    data = raw()
    data["crafting"]["plank"]["station"] = "oak_log"
    with pytest.raises(CatalogError, match="is not a station"):
        parse_catalog(data)


def test_recipe_cycle_is_refused() -> None:
    data = raw()
    data["crafting"]["plank"]["inputs"] = {"furnace": 1}
    with pytest.raises(CatalogError, match="cycle"):
        parse_catalog(data)


def test_bad_starter_equipment_slot() -> None:
    data = raw()
    data["starter"]["equipment"]["axe"] = "bronze_sword"
    with pytest.raises(CatalogError, match="goes in slot"):
        parse_catalog(data)


def test_type_errors_and_unreadable_files(tmp_path: Path) -> None:
    data = raw()
    data["harvesting"]["stone"]["level"] = "high"
    with pytest.raises(CatalogError, match="level"):
        parse_catalog(data)
    broken = tmp_path / "c.toml"
    broken.write_text("[[[")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(broken)
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.toml")


def test_catalog_view_is_json_and_complete() -> None:
    view = catalog_view(CATALOG)
    msgspec.json.encode(view)
    acts = view["activities"]
    assert set(acts) == {"harvesting", "crafting", "combat"}
    oak = next(t for t in acts["harvesting"]["targets"] if t["target"] == "oak_log")
    assert oak["requires"]["tool"] == "axe" and oak["base_seconds"] == 3.0
    assert "rewards" in oak
    plank = next(t for t in acts["crafting"]["targets"] if t["target"] == "plank")
    assert plank["requires"]["materials"] == {"oak_log": 2}
    rat = next(t for t in acts["combat"]["targets"] if t["target"] == "rat")
    assert rat["rewards"]["rare"]
    assert view["starter_kit"]["equipment"]["weapon"] == "bronze_sword"
