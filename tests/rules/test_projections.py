"""Folding and the read views: snapshots round-trip, views have the protocol's shapes."""

from __future__ import annotations

import msgspec
import pytest
from msgspec.structs import replace

from questlog.events import codec
from questlog.events.registry import default_registry
from questlog.events.schema import NewEvent
from questlog.projections.player import UnfoldableEvent, evolve, fold, fold_new, initial_state
from questlog.projections.state import PlayerState
from questlog.projections.views import player_view, queue_view
from questlog.services.rules.commands import Enqueue, Pause

from . import World


def busy_world() -> World:
    w = World()
    w.send(Enqueue(command_id="a", activity="harvesting", target="oak_log", quantity=3))
    w.send(Enqueue(command_id="b", activity="crafting", target="plank", quantity=2, priority=2))
    w.send(Enqueue(command_id="c", activity="combat", target="rat", quantity=2))
    w.run(4)
    return w


def test_snapshot_round_trip_and_codec_round_trip() -> None:
    w = busy_world()
    blob = msgspec.json.encode(w.state)
    assert msgspec.json.decode(blob, type=PlayerState) == w.state
    registry = default_registry()
    decoded = [codec.decode(codec.encode(r), registry, seq=r.seq) for r in w.log]
    assert fold(decoded) == w.state


def test_evolve_refuses_gaps_and_other_players() -> None:
    w = busy_world()
    with pytest.raises(UnfoldableEvent):
        evolve(initial_state("p-1"), w.log[1])
    with pytest.raises(UnfoldableEvent):
        evolve(initial_state("p-2"), w.log[0])


def test_evolve_records_command_ids() -> None:
    w = busy_world()
    assert w.state.commands["a"].version == 2
    assert w.state.commands["a"].task is not None and w.state.commands["a"].task.target == "oak_log"
    assert w.state.last_seq == len(w.log)
    assert not any(cid.startswith("engine:") for cid in w.state.commands)


def test_fold_new_folds_as_the_store_records() -> None:
    """New events folded with their command id give the state of the recorded log, bar
    the stream sequence only the store assigns."""
    w = busy_world()
    state = initial_state("p-1")
    for r in w.log:
        state = fold_new(state, [NewEvent(r.event, r.occurred_at)], r.command_id)
    assert state == replace(w.state, last_seq=0)
    assert fold_new(w.state, []) == w.state


def test_queue_view_shape() -> None:
    w = busy_world()
    view = queue_view(w.state, w.clock.now())
    msgspec.json.encode(view)
    assert set(view) >= {"version", "paused", "pause_reason", "config", "current", "queued", "stats"}
    cur = view["current"]
    assert set(cur) >= {
        "task_id",
        "activity",
        "target",
        "quantity",
        "steps_done",
        "priority",
        "status",
        "enqueued_at",
        "started_at",
        "step_seconds",
        "eta",
        "attempts",
    }
    assert cur["status"] == "running" and cur["steps_done"] == 1 and cur["eta"] == "2026-11-23T10:00:09.000Z"
    assert [t["target"] for t in view["queued"]] == ["plank", "rat"]
    assert view["queued"][0]["eta"] == "2026-11-23T10:00:15.000Z"
    w.send(Pause(command_id="p"))
    view = queue_view(w.state, w.clock.now())
    assert view["current"]["status"] == "paused" and "eta" not in view["current"]


def test_player_view_shape() -> None:
    w = busy_world()
    view = player_view(w.state)
    msgspec.json.encode(view)
    assert view["skills"]["harvesting"] == {"level": 1, "xp": 8}
    assert view["inventory"]["oak_log"] == 5
    assert view["equipment"]["axe"] == {"item": "bronze_axe", "durability": 149}
