"""No decision on a state that lacks its trigger, when a read comes back behind the log.

With `allow_direct` every replica of an R3 stream answers direct gets, and one
that has not applied the newest entries answers without them. A consumer is
handed an event, reads the player's log, and the read ends before that event:
deciding "nothing to do" on it and acknowledging would lose the trigger (a step
never rewarded, a task never started, a timer never followed, and no timer
pending: the queue stops for good). `LaggingReplica` answers reads the way such a
replica does, on a real server; every service must read again rather than decide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from questlog.events.schema import NewEvent, Recorded
from questlog.events.store import EventStore, Position
from questlog.events.subjects import player_events
from questlog.projections.due import next_timer
from questlog.projections.repository import PlayerRepository
from questlog.services.processor import Processor
from questlog.services.reward import RewardService
from questlog.services.rules.clock import FixedClock
from questlog.services.rules.commands import Enqueue
from questlog.services.rules.scheduling import advance, complete_step
from questlog.services.runtime.connections import Wiring, connect
from questlog.services.runtime.settings import Settings

from .direct_gets import watched
from .lagging import LaggingReplica
from .rules import T0, World
from .stacks import private_stack


@pytest_asyncio.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Settings, NATS]]:
    """A server of its own: the session's services must not do the work these tests watch."""
    async with private_stack(tmp_path) as (settings, nc, _env):
        yield settings, nc


@pytest.fixture
def settings(stack: tuple[Settings, NATS]) -> Settings:
    return stack[0]


@pytest.fixture
def nc(stack: tuple[Settings, NATS]) -> NATS:
    return stack[1]


@pytest_asyncio.fixture
async def wiring(settings: Settings) -> AsyncIterator[Wiring]:
    async with connect(settings, name="stale-reads") as w:
        yield w


async def stored(store: EventStore, player_id: str, log: list[Recorded]) -> list[Recorded]:
    """A log the pure game core wrote (`World`), appended to the real stream."""
    out: list[Recorded] = []
    for rec in log:
        (landed,) = await store.append(
            player_id,
            [NewEvent(rec.event, rec.occurred_at)],
            expected=Position(out[-1].version, out[-1].seq) if out else Position(),
            causation_id=f"world-{rec.version}",
        )
        out.append(landed)
    return out


async def delivered(nc: NATS, settings: Settings, player_id: str, rec: Recorded) -> Msg:
    """`rec` as a durable consumer hands it over (a real JetStream message)."""
    sub = await nc.jetstream().pull_subscribe(player_events(player_id), stream=settings.streams.events)
    try:
        for msg in await sub.fetch(rec.version, timeout=5):
            if msg.metadata.sequence.stream == rec.seq:
                return msg
    finally:
        await sub.unsubscribe()
    raise AssertionError(f"event at {rec.seq} not delivered")


def enqueued(world: World) -> str:
    task = world.send(Enqueue(command_id=world.next_id(), activity="harvesting", target="oak_log", quantity=2))
    return str(task.result["task"]["task_id"])


async def test_the_reward_service_rereads_a_log_behind_the_step_it_was_handed(
    nc: NATS, settings: Settings, wiring: Wiring, player_id: str
) -> None:
    world = World(player_id)
    task = enqueued(world)
    world.record(advance(world.state, T0, world.rules), "advance")
    due = next_timer(world.state)
    assert due is not None
    world.record(complete_step(world.state, task, 1, 1, due.due_at), "timer")
    log = await stored(wiring.store, player_id, world.log)
    step = log[-1]
    assert step.type == "task.step_completed"

    lagging = LaggingReplica(nc, settings.streams.events, hidden_from=step.seq)
    service = RewardService(wiring, world.rules, PlayerRepository(lagging))
    await service.on_step(await delivered(nc, settings, player_id, step))

    assert lagging.stale_reads == 1, "the first read came back without the step"
    after = await wiring.store.read(player_id)
    assert [r.type for r in after[len(log) :]][:1] == ["reward.granted"], "the step was rewarded all the same"


async def test_the_processor_rereads_a_log_behind_the_enqueue_it_was_handed(
    nc: NATS, settings: Settings, wiring: Wiring, player_id: str
) -> None:
    world = World(player_id)
    enqueued(world)
    log = await stored(wiring.store, player_id, world.log)
    trigger = log[-1]
    assert trigger.type == "task.enqueued"

    lagging = LaggingReplica(nc, settings.streams.events, hidden_from=trigger.seq)
    processor = Processor(wiring, world.rules, FixedClock(T0), PlayerRepository(lagging))
    await processor.on_event(await delivered(nc, settings, player_id, trigger))

    assert lagging.stale_reads == 1
    after = await wiring.store.read(player_id)
    assert "task.started" in [r.type for r in after[len(log) :]], "the task started all the same"


async def test_a_timer_fires_no_decision_on_a_state_before_the_one_it_was_set_from(
    nc: NATS, settings: Settings, wiring: Wiring, player_id: str
) -> None:
    world = World(player_id)
    enqueued(world)
    world.record(advance(world.state, T0, world.rules), "advance")
    log = await stored(wiring.store, player_id, world.log)
    timer = next_timer(await PlayerRepository(wiring.store).load(player_id))
    assert timer is not None and timer.after_seq == log[-1].seq, "the timer says which state it was set from"

    lagging = LaggingReplica(nc, settings.streams.events, hidden_from=log[-1].seq)
    processor = Processor(wiring, world.rules, FixedClock(timer.due_at), PlayerRepository(lagging))
    await processor.fire(timer)

    assert lagging.stale_reads == 1
    after = await wiring.store.read(player_id)
    fired = after[len(log) :]
    assert [r.type for r in fired][:2] == ["task.step_completed", "reward.granted"], "the step completed all the same"
    # the processor settles the step it completed, in the decision after it
    assert fired[0].causation_id.startswith("timer:") and fired[1].causation_id.startswith("catch-up")


async def test_reads_for_a_trigger_ask_for_a_replica_that_holds_it(settings: Settings, player_id: str) -> None:
    """What lets the server keep a replica behind from answering (nats-server 2.12+: `min_last_seq`)."""
    async with watched(settings) as (store, gets):
        world = World(player_id)
        enqueued(world)
        log = await stored(store, player_id, world.log)
        await gets.start()
        await PlayerRepository(store).load(player_id, at_least_seq=log[-1].seq)
        await gets.stop()
    assert gets.requests and all(r.get("min_last_seq") == log[-1].seq for r in gets.requests), gets.requests
