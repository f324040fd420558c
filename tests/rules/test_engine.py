"""The engine: starting, stepping, rewarding, retrying, pausing; deterministic timing and loot."""

from __future__ import annotations

from datetime import datetime, timedelta

from msgspec.structs import replace

from questlog.events.schema import (
    EquipmentEquipped,
    Equipped,
    PlayerLeveledUp,
    QueuePaused,
    RewardGranted,
    TaskCancelled,
    TaskFailed,
    TaskRetryScheduled,
    TaskStarted,
)
from questlog.projections.due import next_timer
from questlog.projections.player import fold
from questlog.projections.views import player_view, queue_view
from questlog.services.rules.commands import AdminEnqueue, AdminGrant, Cancel, Enqueue, Pause, Resume
from questlog.services.rules.rewards import settle_step
from questlog.services.rules.scheduling import advance, complete_step, retry

from . import T0, World


def enqueue(w: World, activity: str, target: str, quantity: int = 1) -> str:
    return w.send(Enqueue(command_id=w.next_id(), activity=activity, target=target, quantity=quantity)).result["task"][
        "task_id"
    ]


def step_timer_due(w: World, task: str) -> datetime | None:
    """When the processor's one timer completes the next step of `task`; None if it holds none."""
    timer = next_timer(w.state)
    return timer.due_at if timer is not None and timer.kind == "step" and timer.task_id == task else None


def events_of(w: World, cls: type) -> list:
    return [r.event for r in w.log if isinstance(r.event, cls)]


def test_a_task_runs_step_by_step_on_its_due_times() -> None:
    w = World()
    task = enqueue(w, "harvesting", "oak_log", 3)
    w.run()
    assert w.state.current is not None and w.state.current.task_id == task
    assert step_timer_due(w, task) == T0 + timedelta(seconds=3)
    # a timer for the wrong step or attempt, or firing early, is stale
    assert complete_step(w.state, task, 2, 1, T0 + timedelta(seconds=6)) == []
    assert complete_step(w.state, task, 1, 2, T0 + timedelta(seconds=3)) == []
    assert complete_step(w.state, task, 1, 1, T0 + timedelta(seconds=1)) == []
    done = complete_step(w.state, task, 1, 1, T0 + timedelta(seconds=3))
    assert [e.occurred_at for e in done] == [T0 + timedelta(seconds=3)]
    w.record(done, "timer")
    assert step_timer_due(w, task) is None  # step 2 waits for step 1's reward
    rewards = settle_step(w.state, task, 1, w.rules)
    w.record(rewards, "reward")
    assert settle_step(w.state, task, 1, w.rules) == []  # exactly once
    assert step_timer_due(w, task) == T0 + timedelta(seconds=6)
    w.run(60)
    assert w.state.current is None
    assert w.state.inventory["oak_log"] == 7
    steps = [r for r in w.log if r.type == "task.step_completed"]
    assert [r.occurred_at - T0 for r in steps] == [timedelta(seconds=s) for s in (3, 6, 9)]
    assert sum(1 for r in w.log if r.type == "reward.granted") == 3
    completed = next(r for r in w.log if r.type == "task.completed")
    assert completed.occurred_at == T0 + timedelta(seconds=9)


def test_time_scale_shortens_steps() -> None:
    w = World(time_scale=0.01)
    enqueue(w, "harvesting", "oak_log", 2)
    w.run()
    assert w.state.current is not None and w.state.current.step_seconds == 0.03


def test_crafting_behind_harvesting_starts_and_succeeds() -> None:
    w = World()
    enqueue(w, "harvesting", "oak_log", 4)  # 4 + 4 starter logs = 8
    craft = enqueue(w, "crafting", "plank", 4)  # needs 8 logs; only 4 at enqueue
    w.run(3600)
    started = [e for e in events_of(w, TaskStarted) if e.task_id == craft]
    assert started and started[0].reserved == {"oak_log": 8}
    assert not events_of(w, QueuePaused)
    assert w.state.stats.completed == 2
    rewards = [e for e in events_of(w, RewardGranted) if e.task_id == craft]
    assert sum(e.consumed.get("oak_log", 0) for e in rewards) == 8
    made = sum(e.items.get("plank", 0) for e in rewards)
    assert w.state.inventory.get("plank", 0) == made and made >= 1
    assert "oak_log" not in w.state.inventory


def test_crafting_without_materials_pauses_with_a_readable_reason() -> None:
    w = World()
    craft = enqueue(w, "crafting", "plank", 3)
    w.run()
    paused = events_of(w, QueuePaused)
    assert paused and paused[0].by == "system"
    assert paused[0].reason == "Crafting 3 plank needs 6 oak log; you have 4."
    assert w.state.current is None and w.state.queued[0].task_id == craft
    assert queue_view(w.state, w.clock.now())["pause_reason"] == paused[0].reason
    # more logs, resume: it starts
    w.send(AdminGrant(command_id="g", player_id="p-1", reason="test", items={"oak_log": 2}))
    w.send(Resume(command_id="r"))
    w.run(60)
    assert w.state.stats.completed == 1


def test_cancel_running_task_keeps_done_steps_and_refunds_the_rest() -> None:
    w = World()
    w.send(AdminGrant(command_id="g", player_id="p-1", reason="t", items={"oak_log": 6}))
    craft = enqueue(w, "crafting", "plank", 5)  # reserves 10 logs
    w.run()
    assert w.state.inventory.get("oak_log", 0) == 0
    w.run(7)  # two steps done (due at 3 and 6), both rewarded
    assert w.state.current is not None and w.state.current.steps_done == 2
    d = w.send(Cancel(command_id="x", task_id=craft))
    ev = d.events[-1].event
    assert isinstance(ev, TaskCancelled) and ev.steps_done == 2 and ev.refunded == {"oak_log": 6}
    assert w.state.inventory["oak_log"] == 6
    assert w.state.current is None


def test_cancel_grants_a_completed_steps_pending_reward_first() -> None:
    w = World()
    task = enqueue(w, "harvesting", "stone", 5)
    w.run()
    w.record(complete_step(w.state, task, 1, 1, T0 + timedelta(seconds=3)), "timer")
    d = w.send(Cancel(command_id="x", task_id=task))
    assert [e.event.TYPE for e in d.events] == ["reward.granted", "task.cancelled"]
    assert w.state.inventory["stone"] == 1
    assert settle_step(w.state, task, 1, w.rules) == []


def test_pause_stops_steps_and_resume_restarts_the_step_clock() -> None:
    w = World()
    task = enqueue(w, "harvesting", "oak_log", 3)
    w.run(4)  # step 1 done at +3
    w.clock.advance(1)  # +5
    w.send(Pause(command_id="p"))
    assert next_timer(w.state) is None
    assert complete_step(w.state, task, 2, 1, T0 + timedelta(seconds=6)) == []
    w.run(100)  # nothing happens while paused
    assert w.state.current is not None and w.state.current.steps_done == 1
    assert queue_view(w.state, w.clock.now())["current"]["status"] == "paused"
    w.send(Resume(command_id="r"))  # at +105
    assert step_timer_due(w, task) == T0 + timedelta(seconds=108)
    w.run(100)
    steps = [r.occurred_at - T0 for r in w.log if r.type == "task.step_completed"]
    assert steps == [timedelta(seconds=s) for s in (3, 108, 111)]


def test_combat_lost_fights_retry_with_backoff_then_fail() -> None:
    w = World()
    w.send(AdminEnqueue(command_id="a", player_id="p-1", activity="combat", target="dragon_whelp", quantity=5))
    w.run(3600)
    retries = events_of(w, TaskRetryScheduled)
    failed = events_of(w, TaskFailed)
    assert len(failed) == 1 and failed[0].attempts == 3 and failed[0].reason == "Defeated by the dragon whelp 3 times."
    assert [r.attempt for r in retries] == [2, 3]
    recs = [r for r in w.log if r.type == "task.retry_scheduled"]
    gaps = [r.event.retry_at - r.occurred_at for r in recs]
    assert gaps == [timedelta(seconds=10), timedelta(seconds=20)]
    starts = [r for r in w.log if r.type == "task.started"]
    assert [s.event.attempt for s in starts] == [1, 2, 3]
    assert [s.occurred_at for s in starts[1:]] == [r.event.retry_at for r in recs]
    assert w.state.current is None and w.state.stats.failed == 1
    assert w.state.stats.fights_lost >= 3


def test_retry_timer_checks() -> None:
    w = World()
    w.send(AdminEnqueue(command_id="a", player_id="p-1", activity="combat", target="dragon_whelp", quantity=5))
    for _ in range(200):
        w.run(0.5)
        if w.state.current is not None and w.state.current.status == "retrying":
            break
    task = w.state.current
    assert task is not None and task.status == "retrying" and task.retry_at is not None
    assert retry(w.state, task.task_id, 3, task.retry_at) == []  # wrong attempt
    assert retry(w.state, task.task_id, 2, task.retry_at - timedelta(seconds=5)) == []  # too early
    events = retry(w.state, task.task_id, 2, task.retry_at)
    assert [e.occurred_at for e in events] == [task.retry_at]


def test_winning_fights_give_loot_and_xp_and_wear_gear() -> None:
    w = World(player_id="p-hero")
    enqueue(w, "combat", "rat", 10)
    w.run(3600)
    assert w.state.stats.fights_won + w.state.stats.fights_lost >= 10
    assert w.state.skills["combat"].xp > 0
    assert w.state.equipment["weapon"].durability < 150
    if w.state.stats.fights_won:
        assert w.state.inventory.get("rat_tail", 0) >= 1 or w.state.stats.fights_won < 3


def test_loot_is_deterministic_for_the_same_ids() -> None:
    def play(player: str) -> list:
        w = World(player_id=player)
        w.send(Enqueue(command_id="same", activity="combat", target="rat", quantity=8))
        w.send(Enqueue(command_id="same2", activity="harvesting", target="copper_ore", quantity=20))
        w.run(7200)
        return [(r.type, r.version, r.occurred_at, r.event) for r in w.log]

    assert play("p-a") == play("p-a")
    assert play("p-a") != play("p-b")


def test_level_up_is_emitted_when_xp_crosses_a_boundary() -> None:
    w = World()
    enqueue(w, "harvesting", "oak_log", 6)  # 8 xp a step; level 2 at 40 xp
    w.run(3600)
    ups = [r for r in w.log if isinstance(r.event, PlayerLeveledUp)]
    assert [(u.event.skill, u.event.level) for u in ups] == [("harvesting", 2)]
    reward_before = w.log[ups[0].version - 2]
    assert reward_before.type == "reward.granted" and ups[0].occurred_at == reward_before.occurred_at
    assert w.state.skills["harvesting"] == type(w.state.skills["harvesting"])(xp=48, level=2)


def test_broken_tool_is_replaced_by_a_spare_or_fails_the_task_then_pauses_later_tasks() -> None:
    w = World()
    enqueue(w, "harvesting", "stone", 1)
    w.run()
    worn = replace(
        w.state,
        equipment={**w.state.equipment, "pickaxe": Equipped("bronze_pickaxe", 2)},
        inventory={**w.state.inventory, "iron_pickaxe": 1},
    )
    w.state = worn
    w.log = []  # the state was edited by hand; the log is no longer a full history
    w.run(100)
    swaps = events_of(w, EquipmentEquipped)
    assert swaps == []  # durability 2 -> 1, not broken yet
    w.send(Enqueue(command_id="more", activity="harvesting", target="stone", quantity=3))
    w.run(100)
    swaps = events_of(w, EquipmentEquipped)
    assert swaps and swaps[0].item == "iron_pickaxe" and swaps[0].slot == "pickaxe"
    assert w.state.stats.completed == 2
    # now break it with no spare: the task fails, the next one pauses the queue
    w.state = replace(w.state, equipment={**w.state.equipment, "pickaxe": Equipped("iron_pickaxe", 1)})
    w.send(Enqueue(command_id="m2", activity="harvesting", target="stone", quantity=3))
    w.send(Enqueue(command_id="m3", activity="harvesting", target="copper_ore", quantity=1))
    w.run(100)
    failed = events_of(w, TaskFailed)
    assert failed and failed[0].reason == "Your iron pickaxe broke and you have no spare."
    paused = events_of(w, QueuePaused)
    assert paused and "needs a pickaxe" in paused[-1].reason
    assert "pickaxe" not in player_view(w.state)["equipment"]


def test_empty_slot_is_filled_from_the_inventory_at_start() -> None:
    w = World()
    w.send(Pause(command_id="p"))
    w.state = replace(
        w.state,
        equipment={k: v for k, v in w.state.equipment.items() if k != "axe"},
        inventory={**w.state.inventory, "iron_axe": 1},
    )
    w.log = []
    enqueue(w, "harvesting", "oak_log", 1)
    w.send(Resume(command_id="r"))
    w.run()
    ev = [e for e in events_of(w, EquipmentEquipped)]
    assert ev and ev[0].item == "iron_axe"
    assert w.state.current is not None and w.state.current.step_seconds == 2.4  # 3 s * (1 - 0.2)


def test_advance_clamps_to_the_last_event_time() -> None:
    w = World()
    enqueue(w, "harvesting", "oak_log", 1)
    events = advance(w.state, T0 - timedelta(hours=1), w.rules)
    assert events and events[-1].occurred_at == T0


def test_catch_up_equals_live_processing() -> None:
    def scenario(w: World, live: bool) -> None:
        w.send(Enqueue(command_id="a", activity="harvesting", target="oak_log", quantity=6))
        w.send(Enqueue(command_id="b", activity="crafting", target="plank", quantity=4))
        w.send(Enqueue(command_id="c", activity="combat", target="rat", quantity=6))
        w.send(Enqueue(command_id="d", activity="crafting", target="plank", quantity=9))
        if live:
            for _ in range(2000):
                w.run(0.25)
        else:
            w.run(500)

    live, late = World(), World()
    scenario(live, True)
    scenario(late, False)
    key = [(r.version, r.type, r.occurred_at, r.event) for r in live.log]
    assert key == [(r.version, r.type, r.occurred_at, r.event) for r in late.log]
    assert fold(live.log) == live.state
