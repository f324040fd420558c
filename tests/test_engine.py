"""The engine running in-process against real NATS: tasks run with no client attached."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from questlog.events.store import EventStore
from questlog.projections.due import Timer
from questlog.services.contract.command_client import Actor, CommandClient
from questlog.services.runtime.settings import Settings
from questlog.services.timers import timer_decoder

from .stacks import in_process, private_stack
from .watch import queue_idle, types, until


@pytest.fixture
def store(nc: NATS, settings: Settings) -> EventStore:
    return EventStore(nc, settings.streams.events)


async def test_a_harvest_runs_to_completion_with_one_reward_per_step(
    call, nc: NATS, store: EventStore, player_id: str
) -> None:
    await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=3)
    events = await until(nc, store, player_id, queue_idle)
    steps = [e.event.step for e in events if e.type == "task.step_completed"]
    rewards = Counter(e.event.step for e in events if e.type == "reward.granted")
    assert steps == [1, 2, 3]
    assert rewards == Counter({1: 1, 2: 1, 3: 1})
    assert types(events)[-1] == "task.completed" or "task.completed" in types(events)
    # each step's occurred_at is its due time: evenly spaced from the start
    started = next(e for e in events if e.type == "task.started")
    step_events = [e for e in events if e.type == "task.step_completed"]
    gaps = [(b.occurred_at - a.occurred_at).total_seconds() for a, b in pairwise([started, *step_events])]
    assert all(abs(g - started.event.step_seconds) < 1e-3 for g in gaps), gaps
    player = await call("player.get", player_id)
    assert player["inventory"].get("oak_log", 0) >= 3


async def test_crafting_behind_the_harvest_that_feeds_it_starts_and_succeeds(
    call, nc: NATS, store: EventStore, player_id: str
) -> None:
    await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=4)
    await call("queue.enqueue", player_id, activity="crafting", target="plank", quantity=2)
    events = await until(nc, store, player_id, queue_idle)
    order = [e.type for e in events if e.type in ("task.started", "task.completed")]
    assert order == ["task.started", "task.completed", "task.started", "task.completed"]
    craft_start = [e for e in events if e.type == "task.started"][1]
    last_harvest_reward = [e for e in events if e.type == "reward.granted"][3]
    assert last_harvest_reward.version < craft_start.version, "rewards land before the next task starts"
    assert craft_start.event.reserved.get("oak_log") == 4


async def test_crafting_without_materials_pauses_the_queue_with_a_reason(
    call, nc: NATS, store: EventStore, player_id: str
) -> None:
    await call("queue.enqueue", player_id, activity="crafting", target="plank", quantity=50)
    events = await until(nc, store, player_id, lambda ev: "queue.paused" in types(ev))
    paused = next(e for e in events if e.type == "queue.paused")
    assert paused.event.by == "system"
    assert "oak" in paused.event.reason.lower() and "plank" in paused.event.reason.lower()
    queue = await call("queue.get", player_id)
    assert queue["paused"] is True and queue["pause_reason"] == paused.event.reason


async def test_pause_then_resume_moves_the_step_and_the_task_still_completes(tmp_path: Path) -> None:
    """The moved step gets a new durable timer; the first one fires stale and does nothing.

    Steps of 0.3 s (own stack, time scale 0.1) so the pause lands while a step's
    timer is scheduled and not yet due.
    """
    player_id = "pauser"
    async with (
        private_stack(tmp_path, time_scale="0.1") as (settings, nc, _env),
        in_process(settings, ("commands", "processor", "reward")),
    ):
        store = EventStore(nc, settings.streams.events)
        client = CommandClient(nc)
        me = Actor(player_id)
        scheduled = asyncio.Event()

        step2: list[Timer] = []

        async def on_schedule(msg) -> None:  # the processor publishing the durable timer of step 2
            if msg.subject.split(".")[5] == "step2":
                step2.append(timer_decoder.decode(msg.data))
                scheduled.set()

        sub = await nc.subscribe(f"timers.schedule.{player_id}.>", cb=on_schedule)
        await client.call(
            "queue.enqueue", player_id, {"activity": "harvesting", "target": "oak_log", "quantity": 4}, me
        )
        await asyncio.wait_for(scheduled.wait(), 10)
        await sub.unsubscribe()
        await client.call("queue.pause", player_id, {}, me)
        # Let the paused step's first timer come due (and fire, stale): the
        # scenario needs time itself to pass, there is no event to await.
        wait = (step2[0].due_at - datetime.now(UTC)).total_seconds() + 0.2
        await asyncio.sleep(max(0.0, wait))
        await client.call("queue.resume", player_id, {}, me)
        events = await until(nc, store, player_id, queue_idle, timeout=30)
    steps = [e.event.step for e in events if e.type == "task.step_completed"]
    assert steps == [1, 2, 3, 4]
    resumed = next(e for e in events if e.type == "queue.resumed")
    after = [e for e in events if e.type == "task.step_completed" and e.version > resumed.version]
    started = next(e for e in events if e.type == "task.started")
    first_due = resumed.occurred_at.timestamp() + started.event.step_seconds
    assert abs(after[0].occurred_at.timestamp() - first_due) < 2e-3, "the interrupted step restarts at the resume"


async def test_a_resume_without_a_pause_does_not_disturb_the_running_task(
    call, nc: NATS, store: EventStore, player_id: str
) -> None:
    await call("queue.enqueue", player_id, activity="harvesting", target="stone", quantity=6)
    await until(nc, store, player_id, lambda ev: "task.step_completed" in types(ev))
    await call("queue.resume", player_id)
    events = await until(nc, store, player_id, queue_idle, timeout=60)
    started = next(e for e in events if e.type == "task.started")
    dues = [e.occurred_at for e in events if e.type == "task.step_completed"]
    expected = [started.occurred_at.timestamp() + k * started.event.step_seconds for k in range(1, 7)]
    assert all(abs(d.timestamp() - x) < 2e-3 for d, x in zip(dues, expected, strict=True))
