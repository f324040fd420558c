"""decide: each command, each rule violation, idempotency and optimistic versions."""

from __future__ import annotations

import pytest

from questlog.events.schema import PlayerCreated, QueuePaused, TaskEnqueued
from questlog.projections.views import queue_view
from questlog.services.rules.commands import (
    AdminEnqueue,
    AdminGrant,
    AdminPause,
    AdminResume,
    Cancel,
    Clear,
    Configure,
    Enqueue,
    Pause,
    Reorder,
    Resume,
    parse_request,
)
from questlog.services.rules.decide import decide
from questlog.services.rules.errors import InvalidCommand, NotFound, RuleViolation, VersionConflict
from questlog.services.rules.rng import stable_id

from . import World


def enqueue(
    w: World, activity: str = "harvesting", target: str = "oak_log", quantity: int = 1, priority: int = 0
) -> dict:
    return w.send(
        Enqueue(command_id=w.next_id(), activity=activity, target=target, quantity=quantity, priority=priority)
    ).result


def violation(w: World, command) -> RuleViolation:
    before = w.state
    with pytest.raises(RuleViolation) as err:
        w.send(command)
    assert w.state == before  # an invalid command lands no event
    return err.value


def test_first_command_creates_the_player_with_the_starter_kit() -> None:
    w = World()
    result = enqueue(w)
    assert [r.type for r in w.log] == ["player.created", "task.enqueued"]
    assert isinstance(w.log[0].event, PlayerCreated)
    assert result["version"] == 2
    task = result["task"]
    assert task["task_id"] == stable_id("t-", "p-1", "c-1")
    assert task["status"] == "queued" and task["step_seconds"] == 3.0
    assert w.state.inventory["oak_log"] == 4
    assert w.state.equipment["axe"].item == "bronze_axe"


def test_same_command_id_returns_the_first_result_without_events() -> None:
    w = World()
    cmd = Enqueue(command_id="same", activity="harvesting", target="stone", quantity=2)
    first = w.send(cmd)
    w.clock.advance(3600)
    enqueue(w)
    again = w.send(cmd)
    assert again.events == []
    assert again.result == first.result
    conf = Configure(command_id="cfg", max_size=5)
    r1 = w.send(conf).result
    assert (
        w.send(conf).result
        == r1
        == {"version": r1["version"], "config": {"max_size": 5, "auto_start": True, "priority_mode": "fifo"}}
    )


def test_command_memory_is_bounded() -> None:
    w = World()
    w.memory = 5
    for _ in range(12):
        w.send(Pause(command_id=w.next_id()))
    assert len(w.state.commands) == 5
    assert "c-1" not in w.state.commands and "c-12" in w.state.commands


def test_expected_version_conflict() -> None:
    w = World()
    enqueue(w)
    with pytest.raises(VersionConflict) as err:
        w.send(Enqueue(command_id="x", activity="harvesting", target="stone", quantity=1, expected_version=1))
    assert err.value.current_version == 2
    again = Enqueue(command_id="y", activity="harvesting", target="stone", quantity=1, expected_version=2)
    assert w.send(again).result["version"] == 3


@pytest.mark.parametrize(
    ("activity", "target", "rule", "words"),
    [
        ("fishing", "trout", "unknown_activity", "no activity"),
        ("harvesting", "gold", "unknown_target", "nothing called 'gold'"),
        (
            "harvesting",
            "willow_log",
            "level_too_low",
            "Harvesting willow log needs harvesting level 8; you are level 1.",
        ),
        ("harvesting", "coal", "level_too_low", "level 4"),
        ("combat", "wolf", "level_too_low", "Fighting wolf needs combat level 4; you are level 1."),
        ("crafting", "copper_bar", "level_too_low", "Crafting copper bar needs crafting level 2; you are level 1."),
        ("crafting", "cooked_trout", "station_required", "needs a campfire"),
    ],
)
def test_rule_violations(activity: str, target: str, rule: str, words: str) -> None:
    w = World()
    err = violation(w, Enqueue(command_id="c", activity=activity, target=target, quantity=1))
    assert err.rule == rule
    assert words in err.detail
    assert err.data == {"rule": rule, "detail": err.detail}


def test_location_locked() -> None:
    w = World()
    w.send(AdminGrant(command_id="g", player_id="p-1", reason="test", xp={"harvesting": 5000}))
    err = violation(w, Enqueue(command_id="c", activity="harvesting", target="iron_ore", quantity=1))
    assert err.rule == "location_locked"
    assert err.detail == "Deep Mine needs combat level 3; you are level 1."


def test_station_required_at_a_level_that_allows_the_recipe() -> None:
    w = World()
    w.send(AdminGrant(command_id="g", player_id="p-1", reason="test", xp={"crafting": 500}))
    err = violation(w, Enqueue(command_id="c", activity="crafting", target="copper_bar", quantity=1))
    assert err.rule == "station_required"
    assert err.detail == "Crafting copper bar needs a furnace; you do not own one."


def test_missing_tool() -> None:
    w = World()
    enqueue(w)
    w.state = w.state.__class__(**{**{f: getattr(w.state, f) for f in w.state.__struct_fields__}, "equipment": {}})
    err = violation(w, Enqueue(command_id="c", activity="harvesting", target="stone", quantity=1))
    assert err.rule == "missing_tool" and "pickaxe" in err.detail
    err = violation(w, Enqueue(command_id="d", activity="combat", target="rat", quantity=1))
    assert err.rule == "missing_tool" and "weapon" in err.detail


def test_queue_full_and_configure() -> None:
    w = World()
    w.send(Pause(command_id="p"))
    w.send(Configure(command_id="cfg", max_size=2))
    enqueue(w)
    enqueue(w)
    full = Enqueue(command_id="c", activity="harvesting", target="oak_log", quantity=1)
    assert violation(w, full).rule == "queue_full"
    with pytest.raises(RuleViolation, match="queue_too_long"):
        w.send(Configure(command_id="small", max_size=1))
    with pytest.raises(InvalidCommand) as err:
        parse_request(Configure, {"command_id": "bad", "priority_mode": "random"})
    assert err.value.field == "priority_mode"
    with pytest.raises(InvalidCommand) as err:
        parse_request(Configure, {"command_id": "bad2", "max_size": 0})
    assert err.value.field == "max_size"


def test_invalid_params() -> None:
    """The Struct bounds the shape (one place); decide holds the content limit (the catalog's)."""
    base = {"activity": "harvesting", "target": "oak_log", "quantity": 1}
    for raw, field in [
        ({**base, "command_id": "a", "quantity": 0}, "quantity"),
        ({**base, "command_id": "c", "priority": 10**6}, "priority"),
        ({**base, "command_id": ""}, "command_id"),
        ({**base, "command_id": "x" * 129}, "command_id"),
        ({**base, "quantity": "x"}, "quantity"),
        ({"activity": "harvesting", "target": "oak_log"}, "quantity"),
        ({**base, "activity": "dancing"}, "activity"),
        ({**base, "colour": "red"}, "colour"),
        (["harvesting"], "params"),
    ]:
        with pytest.raises(InvalidCommand) as err:
            parse_request(Enqueue, raw)
        assert err.value.field == field, raw
    w = World()
    with pytest.raises(InvalidCommand) as err:
        w.send(Enqueue(command_id="b", activity="harvesting", target="oak_log", quantity=10**6))
    assert err.value.field == "quantity" and str(w.rules.catalog.tuning.max_quantity) in err.value.reason
    with pytest.raises(InvalidCommand) as err:
        w.send(Enqueue(activity="harvesting", target="oak_log", quantity=1))
    assert err.value.field == "command_id"
    assert w.log == []


def test_parse_request() -> None:
    cmd = parse_request(Enqueue, {"activity": "harvesting", "target": "stone", "quantity": 1})
    assert isinstance(cmd, Enqueue) and cmd.command_id is None and cmd.priority == 0
    assert parse_request(Cancel, {"task_id": "t", "command_id": "mine"}).command_id == "mine"


def test_cancel_queued_and_unknown_and_finished() -> None:
    w = World()
    w.send(Pause(command_id="p"))
    task = enqueue(w)["task"]
    assert w.send(Cancel(command_id="x", task_id=task["task_id"])).result == {"version": 4}
    assert w.state.queued == []
    with pytest.raises(NotFound) as err:
        w.send(Cancel(command_id="y", task_id="t-nope"))
    assert err.value.data == {"what": "task", "id": "t-nope"}
    with pytest.raises(RuleViolation) as rv:
        w.send(Cancel(command_id="z", task_id=task["task_id"]))
    assert rv.value.rule == "not_cancellable"


def test_reorder_and_bad_order() -> None:
    w = World()
    w.send(Pause(command_id="p"))
    ids = [enqueue(w, target=t)["task"]["task_id"] for t in ("oak_log", "stone", "trout")]
    w.send(Reorder(command_id="r", order=[ids[2], ids[0], ids[1]]))
    assert [t.task_id for t in w.state.queued] == [ids[2], ids[0], ids[1]]
    for order in ([ids[0], ids[1]], [ids[0], ids[0], ids[1]], [*ids, "t-x"]):
        assert violation(w, Reorder(command_id=f"bad-{len(order)}-{order[-1]}", order=order)).rule == "bad_order"


def test_clear_removes_waiting_tasks_only() -> None:
    w = World()
    enqueue(w)
    enqueue(w, target="stone")
    enqueue(w, target="trout")
    w.run()  # the first task starts
    assert w.state.current is not None
    w.send(Clear(command_id="clr"))
    assert w.state.queued == [] and w.state.current is not None
    assert w.state.stats.cancelled == 2


def test_pause_resume_and_admin_pause() -> None:
    w = World()
    w.send(Pause(command_id="p", reason="lunch"))
    assert w.state.paused and w.state.pause_reason == "lunch" and w.state.paused_by == "player"
    w.send(Resume(command_id="r"))
    assert not w.state.paused
    w.send(AdminPause(command_id="ap", player_id="p-1", reason="investigating"), admin="alice")
    assert w.state.paused_by == "admin:alice"
    assert violation(w, Resume(command_id="r2")).rule == "paused_by_admin"
    w.send(AdminResume(command_id="ar", player_id="p-1"), admin="alice")
    assert not w.state.paused
    with pytest.raises(InvalidCommand):
        w.send(AdminPause(command_id="other", player_id="p-2", reason="x"), admin="alice")


def test_admin_grant_levels_up_and_admin_enqueue_bypasses() -> None:
    w = World()
    d = w.send(
        AdminGrant(command_id="g", player_id="p-1", reason="bug refund", items={"iron_bar": 3}, xp={"combat": 400}),
        admin="bob",
    )
    assert [e.event.TYPE for e in d.events] == ["player.created", "admin.granted", "player.leveled_up"]
    assert w.state.skills["combat"].level == 4 and w.state.inventory["iron_bar"] == 3
    with pytest.raises(InvalidCommand):
        w.send(AdminGrant(command_id="g2", player_id="p-1", reason="x", items={"nope": 1}), admin="bob")
    d = w.send(
        AdminEnqueue(command_id="ae", player_id="p-1", activity="combat", target="dragon_whelp", quantity=1),
        admin="bob",
    )
    ev = d.events[0].event
    assert isinstance(ev, TaskEnqueued) and ev.admin == "bob"
    assert queue_view(w.state, w.clock.now())["queued"][0]["admin"] == "bob" or w.state.current is not None


def test_priority_mode_order() -> None:
    w = World()
    w.send(Configure(command_id="cfg", priority_mode="priority", auto_start=False))
    low = enqueue(w, priority=1)["task"]["task_id"]
    high = enqueue(w, target="stone", priority=5)["task"]["task_id"]
    high2 = enqueue(w, target="trout", priority=5)["task"]["task_id"]
    view = queue_view(w.state, w.clock.now())
    assert [t["task_id"] for t in view["queued"]] == [high, high2, low]
    w.send(Resume(command_id="go"))  # with auto_start off, resume starts one task
    w.run()
    assert w.state.current is not None and w.state.current.task_id == high


def test_fifo_order_and_auto_start_off() -> None:
    w = World()
    w.send(Configure(command_id="cfg", auto_start=False))
    first = enqueue(w, priority=0)["task"]["task_id"]
    enqueue(w, target="stone", priority=9)
    w.run(100)
    assert w.state.current is None  # nothing starts by itself
    w.send(Resume(command_id="go"))
    w.run()
    assert w.state.current is not None and w.state.current.task_id == first
    w.run(10)
    assert w.state.current is None  # only one task started


def test_decide_does_not_touch_the_input_state() -> None:
    w = World()
    enqueue(w)
    snapshot = w.state
    copy = type(snapshot)(**{f: getattr(snapshot, f) for f in snapshot.__struct_fields__})
    decide(snapshot, Enqueue(command_id="zz", activity="harvesting", target="stone", quantity=1), w.clock, w.rules)
    assert snapshot == copy


def test_pause_reason_is_kept_in_event() -> None:
    w = World()
    d = w.send(Pause(command_id="p"))
    ev = d.events[-1].event
    assert isinstance(ev, QueuePaused) and ev.by == "player" and ev.reason == "Paused by you."
