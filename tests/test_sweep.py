"""Nothing stays stuck: a queue whose trigger was lost is found by the durable sweep and driven again.

The messages that should have moved the queue are taken off the services'
durables before they start (as a dead-lettered message, or a lost timer,
leaves them): without the sweep, these queues would wait for ever.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from nats.aio.client import Client as NATS

from questlog.events.schema import NewEvent, Recorded
from questlog.events.store import EventStore, Position
from questlog.events.subjects import events_of_type
from questlog.projections.due import next_timer
from questlog.services.processor import processor_spec
from questlog.services.rules.commands import Enqueue
from questlog.services.rules.scheduling import advance, complete_step
from questlog.services.runtime.consumer import ConsumerSpec, ensure_consumer
from questlog.services.runtime.metrics import QuestlogMetrics
from questlog.services.runtime.pulling import Pull
from questlog.services.runtime.settings import Settings

from .rules import T0, World
from .stacks import in_process, private_stack
from .watch import queue_idle, until

pytestmark = pytest.mark.slow


async def lost(nc: NATS, spec: ConsumerSpec) -> int:
    """Every message pending on the durable, taken and acknowledged unhandled; how many."""
    await ensure_consumer(nc.jetstream(), spec)
    pull = await Pull(nc, spec.stream, spec.durable, batch=256).start()
    taken = 0
    try:
        while msgs := await pull.next(0.5):
            for msg in msgs:
                await msg.ack()
            taken += len(msgs)
    finally:
        await pull.close()
    return taken


async def stored(store: EventStore, player_id: str, world: World) -> list[Recorded]:
    out: list[Recorded] = []
    for rec in world.log:
        out += await store.append(
            player_id,
            [NewEvent(rec.event, rec.occurred_at)],
            expected=Position(out[-1].version, out[-1].seq) if out else Position(),
            causation_id=f"world-{rec.version}",
        )
    return out


@pytest.mark.parametrize("left", ["no-timer", "no-reward"])
async def test_a_queue_nothing_will_move_is_found_and_finished(tmp_path: Path, left: str) -> None:
    async with private_stack(tmp_path) as (base, nc, _env):
        settings: Settings = msgspec.structs.replace(base, sweep_every_s=1, sweep_grace_s=0.2)
        player_id = f"stuck-{left}"
        world = World(player_id, time_scale=settings.time_scale, at=T0)
        world.send(Enqueue(command_id="c1", activity="harvesting", target="oak_log", quantity=3))
        world.record(advance(world.state, T0, world.rules), "advance")  # started: its first timer never set
        if left == "no-reward":
            timer = next_timer(world.state)
            assert timer is not None
            world.record(complete_step(world.state, timer.task_id, 1, 1, timer.due_at), "timer")  # never rewarded
        store = EventStore(nc, settings.streams.events)
        await stored(store, player_id, world)

        events = processor_spec(settings)
        rewards = ConsumerSpec.of_service(settings, "reward", [events_of_type("task.step_completed")])
        assert await lost(nc, events) > 0
        assert await lost(nc, rewards) == (1 if left == "no-reward" else 0)
        stuck = QuestlogMetrics.from_global().stuck.counts
        before = sum(stuck.values())

        async with in_process(settings, ("processor", "reward", "projector")):
            log = await until(nc, store, player_id, queue_idle, timeout=30)

        swept = [e for e in log if (e.causation_id or "").startswith("sweep")]
        assert swept, "the sweep wrote what was due"
        if left == "no-reward":
            assert swept[0].type == "reward.granted", "the owed reward came first"
        assert sum(stuck.values()) > before, "counted as a stuck queue found"
        steps = [(e.event.task_id, e.event.step) for e in log if e.type == "task.step_completed"]
        rewarded = [(e.event.task_id, e.event.step) for e in log if e.type == "reward.granted"]
        assert sorted(steps) == sorted(rewarded) and len(steps) == 3, "each step once, each rewarded once"
