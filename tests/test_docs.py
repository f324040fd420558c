"""The docs that describe code stay true to it: the event catalogue, the integration subjects."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from questlog.events.registry import default_registry
from questlog.events.subjects import live_player_events, player_events
from questlog.services.contract.command_client import subject_for

DOCS = Path(__file__).resolve().parent.parent / "docs"


def section(text: str, event_type: str) -> str:
    match = re.search(rf"^### `{re.escape(event_type)}`\n(.*?)(?=^### |^## )", text, re.M | re.S)
    assert match, f"docs/events.md has no section for {event_type}"
    return match.group(1)


def test_event_catalogue_lists_every_type_with_its_schema_and_fields() -> None:
    text = (DOCS / "events.md").read_text()
    registry = default_registry()
    for event_type in registry.types:
        cls = registry.payload_class(event_type)
        body = section(text, event_type)
        assert f"Schema {cls.SCHEMA}." in body, f"{event_type}: schema {cls.SCHEMA}"
        documented = set(re.findall(r"^\| `(\w+)` \|", body, re.M))
        fields = {f.name for f in msgspec.structs.fields(cls)}
        assert documented == fields, f"{event_type}: documented {sorted(documented)}, code {sorted(fields)}"
    listed = set(re.findall(r"^### `([\w.]+)`", text, re.M))
    assert listed == set(registry.types), f"documented types that do not exist: {listed - set(registry.types)}"


def test_integration_guide_uses_the_subjects_the_code_uses() -> None:
    text = (DOCS / "integration.md").read_text()
    assert subject_for("queue.enqueue") in text
    assert live_player_events("p").replace(".p.", ".*.").removesuffix(">") in text
    assert player_events("<player_id>").removesuffix(".>") in text
