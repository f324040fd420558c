"""Subject names: one subject tree per player aggregate, the event type last."""

from __future__ import annotations

import re

_PLAYER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

EVENTS_WILDCARD = "players.*.events.>"
# Where the EVENTS stream republishes each event once stored (stream RePublish).
LIVE_REPUBLISH = "live.players.{{wildcard(1)}}.events.>"
LIVE_WILDCARD = "live.players.*.events.>"  # every player's republished events


def valid_player_id(player_id: str) -> bool:
    """Player ids become subject tokens, so only token-safe characters are allowed."""
    return bool(_PLAYER_ID.match(player_id))


def event_subject(player_id: str, event_type: str) -> str:
    return f"players.{player_id}.events.{event_type}"


def player_events(player_id: str) -> str:
    """The whole aggregate: the OCC scope, the read filter and the live subscription."""
    return f"players.{player_id}.events.>"


def live_player_events(player_id: str) -> str:
    """Committed events only, as they are stored: what the gateway subscribes to."""
    return f"live.players.{player_id}.events.>"


def events_of_type(event_type: str) -> str:
    """Every player's events of one type, for services that react to it."""
    return f"players.*.events.{event_type}"


def type_of(subject: str) -> str:
    """The event type of `players.<id>.events.<type>` (a type may hold dots)."""
    return subject.split(".", 3)[3]
