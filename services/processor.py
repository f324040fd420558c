"""The processor: runs every queue, with or without a connected client.

It reacts to the events that can make a queue move (a task queued, a reward
granted, a task finished, a resume…) and to durable timers. Each reaction is
state-based: load the player, ask the engine what is due by now, append. A
step due in the future becomes a JetStream scheduled message; when it fires,
the processor completes the step, settles its reward and starts what comes
next, one append per decision without reading again (the reward service
leaves the steps it wrote to it). Many steps already due (the processor was
down, or steps are short) are caught up in atomic batches of whole
decisions, each event with its due time as `occurred_at`, so a catch-up
writes exactly the events live processing would have written.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from functools import partial
from typing import Any

from nats.aio.msg import Msg

from questlog.events.schema import NewEvent, Recorded
from questlog.events.store import decode_stored, ends_its_append
from questlog.events.subjects import EVENTS_WILDCARD, type_of
from questlog.projections.due import Timer, next_timer
from questlog.projections.read_models import ReadModels
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import PlayerState
from questlog.services.rules.catalog import Rules, load_rules
from questlog.services.rules.clock import Clock, SystemClock
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer
from questlog.services.runtime.settings import Settings

from .decision_loop import DecisionLoop
from .rules.scheduling import catch_up
from .sweep import SWEEP_SUBJECT, Sweep, schedule_sweeps
from .timers import DUE_SUBJECTS, TimerScheduler, schedule_subject, timer_decoder

log = logging.getLogger("questlog.processor")

CATCH_UP_BATCH = 500  # events per atomic append while catching up
# From this many events due at once, one atomic batch; below, an append per decision:
# nats-server spends far more on an atomic batch than on a lone event (docs/benchmarks.md).
BATCH_FROM = 8

# What the processor's appends are caused by. Each step it writes it settles
# itself in its next decision (scheduling.catch_up), and should it crash between
# the two, the timer or event it was handling comes back and it settles then.
TIMER, CATCH_UP, SWEEP = "timer:", "catch-up", "sweep"
SETTLES_ITS_STEPS = (TIMER, CATCH_UP, SWEEP)

# Events after which the queue may have something to do. Any other event must
# never make work due or move the next timer by itself: the processor is not
# woken by it, and may decide on a state that ends at the trigger's append.
TRIGGERS = frozenset(
    {
        "player.created",
        "task.enqueued",
        "task.cancelled",
        "queue.reordered",
        "queue.cleared",
        "queue.resumed",
        "queue.configured",
        "task.started",
        "reward.granted",
        "task.completed",
        "task.failed",
        "task.retry_scheduled",
        "admin.granted",
    }
)


def pending_timers(state: PlayerState) -> list[dict[str, Any]]:
    """For `admin.inspect`: what the processor will do next for this player, and when."""
    timer = next_timer(state)
    if timer is None:
        return []
    return [
        {
            "task_id": timer.task_id,
            "kind": timer.kind,
            "step": timer.step,
            "attempt": timer.attempt,
            "due_at": timer.due_at.isoformat(),
        }
    ]


class Processor:
    def __init__(self, wiring: Wiring, rules: Rules, clock: Clock, repo: PlayerRepository) -> None:
        self.rules = rules
        self.clock = clock
        self.loop = DecisionLoop(wiring.store, repo)
        self.scheduler = TimerScheduler(wiring.js)
        self.registry = wiring.store.registry

    async def on_event(self, msg: Msg) -> None:
        if type_of(msg.subject) not in TRIGGERS:
            return
        rec = decode_stored(msg, self.registry)
        # In the middle of an append (a reward and the level-up after it), the
        # state up to this event is one the log never rested at: read instead,
        # unless the cached state is already past it (this process wrote it).
        seen = rec if ends_its_append(msg.headers or {}) or self.loop.repo.holds(rec) else None
        await self.drive(rec.player_id, seen=seen, after_seq=rec.seq)

    async def on_timer(self, msg: Msg) -> None:
        await self.fire(timer_decoder.decode(msg.data))

    async def fire(self, timer: Timer) -> None:
        """A due timer: the step, its reward and what starts after, each decision appended by
        itself (a stale timer writes only what else is due)."""
        # Up to the timer's own time even if this clock is a little behind the server's.
        # No read if the cache reaches the state the timer was set from: a later event
        # that moved the timer is a trigger, handled on its own, and an append on a
        # stale cache is refused by its concurrency check.
        await self.drive(
            timer.player_id,
            after_seq=timer.after_seq,
            causation_id=f"{TIMER}{schedule_subject(timer)}",
            at_least=timer.due_at,
            fresh=False,
        )

    async def drive(
        self,
        player_id: str,
        *,
        seen: Recorded | None = None,
        after_seq: int = 0,
        causation_id: str = CATCH_UP,
        at_least: datetime | None = None,
        fresh: bool = True,
    ) -> None:
        """Write what is due by now (a start, a step, its reward), then schedule the next timer.

        Each append holds whole decisions, each event at its due time, so a
        queue that waited (the processor was down) gets exactly the events
        live processing would have written.
        `seen`: the event that made us drive, so a cached state holding it needs no read.
        `after_seq`: what triggered us is at this sequence; no decision is taken on less.
        `fresh=False`: the first decision may take the cached state as it is.
        """
        while True:
            now = self.clock.now() if at_least is None else max(self.clock.now(), at_least)
            outcome = await self.loop.run(
                player_id,
                partial(self._catch_up, now=now),
                causation_id=causation_id,
                fresh=fresh,
                seen=seen,
                after_seq=after_seq,
            )
            if not outcome.recorded:
                break
            # what this process appended is its cached state: the next decision needs no read
            fresh, seen, after_seq, causation_id = False, None, outcome.state.last_seq, CATCH_UP
        timer = next_timer(outcome.state)
        if timer is not None and timer.due_at > now:
            await self.scheduler.schedule(timer)
        # (due, yet nothing to write: a timer would only fire again at once)

    async def unstick(self, player_id: str) -> bool:
        """Write everything due by now for a queue nothing moved (the sweep), then schedule its
        next timer; whether anything was written."""
        moved = False
        while True:
            caught = await self.loop.run(
                player_id, partial(self._catch_up, now=self.clock.now()), causation_id=SWEEP, fresh=True
            )
            if not caught.recorded:
                break
            moved = True
        await self.drive(player_id, after_seq=caught.state.last_seq)
        return moved

    def _catch_up(self, state: PlayerState, now: datetime) -> tuple[list[NewEvent], None]:
        decisions = catch_up(state, now, self.rules, CATCH_UP_BATCH)
        if sum(len(d) for d in decisions) < BATCH_FROM:
            # an atomic batch costs the server more than a few appends of one event each
            decisions = decisions[:1]
        return [e for d in decisions for e in d], None


def processor_spec(settings: Settings) -> ConsumerSpec:
    """The durable of the events the processor reacts to."""
    # One wildcard filter, the TRIGGERS chosen in on_event: durables with many filter
    # subjects make nats-server slower to store and republish every event (docs/benchmarks.md).
    return ConsumerSpec.of_service(settings, "processor", [EVENTS_WILDCARD])


async def serve_processor(
    wiring: Wiring, stop: asyncio.Event, *, rules: Rules | None = None, clock: Clock | None = None
) -> None:
    rules = rules or load_rules(time_scale=wiring.settings.time_scale)
    processor = Processor(wiring, rules, clock or SystemClock(), await wiring.players())
    s = wiring.settings
    events = processor_spec(s)
    timers = ConsumerSpec.of_service(s, "processor-timers", [DUE_SUBJECTS], stream=s.streams.timers)
    sweep = Sweep(processor.unstick, ReadModels(wiring.redis), processor.clock, s.sweep_grace_s, s.sweep_every_s)
    await schedule_sweeps(wiring.js, s.sweep_every_s)
    sweeps = ConsumerSpec.of_service(s, "processor-sweep", [SWEEP_SUBJECT], stream=s.streams.timers)
    parts = [asyncio.Event() for _ in range(3)]
    await asyncio.gather(
        run_consumer(wiring.nc, events, processor.on_event, stop, ready=parts[0]),
        run_consumer(wiring.nc, timers, processor.on_timer, stop, ready=parts[1]),
        run_consumer(wiring.nc, sweeps, sweep.on_tick, stop, ready=parts[2]),
        wiring.ready_when("processor", *parts),
    )
