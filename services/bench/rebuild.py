"""`questlog bench rebuild`: a full projection rebuild against a raw ordered-consumer read of the same log.

The log is written first: each player's events come from the game rules
themselves (`decide` for enqueues, `scheduling.catch_up` for what the processor
and reward service would have written: tasks started, steps completed,
rewards, level-ups), so the rebuild folds the event mix a real log holds.
Then, on the same server: a raw read (ordered consumer, every message taken,
nothing decoded), the rebuild (`projections/rebuild.py`, exactly what
`questlog projections rebuild` runs: decode, fold, write the Redis read
models, swap), and the raw read again. Ratio = rebuild events/s over the mean
raw events/s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console

from questlog.events.schema import NewEvent
from questlog.events.store import EventStore, Position
from questlog.events.subjects import EVENTS_WILDCARD
from questlog.projections.player import fold_new, initial_state
from questlog.projections.read_models import ReadModels
from questlog.projections.rebuild import rebuild
from questlog.services.rules.catalog import Rules, load_rules
from questlog.services.rules.clock import FixedClock
from questlog.services.rules.commands import Enqueue
from questlog.services.rules.decide import decide
from questlog.services.rules.errors import RulesError
from questlog.services.rules.scheduling import catch_up

from .display import Dashboard
from .procfs import CpuUse, CpuWindow
from .results import BenchResult, at_least
from .stack import BenchStack

RATIO_TARGET = 0.6
APPEND_CHUNK = 100  # events per atomic append while filling the log
TARGETS = ("oak_log", "stone", "copper_ore", "trout")


class RebuildFigures(msgspec.Struct, kw_only=True):
    players: int
    events: int
    fill_s: float
    raw_read_s: list[float]
    raw_per_s: float
    rebuild_s: float
    rebuild_per_s: float
    rebuilt_players: int
    ratio: float
    event_types: dict[str, int]
    cpu: list[CpuUse]  # over the reads and the rebuild


def player_log(player_id: str, n: int, rules: Rules, start: datetime) -> list[NewEvent]:
    """About `n` events of one player, as the commands service, processor and reward service write them."""
    clock = FixedClock(start)
    state = initial_state(player_id)
    out: list[NewEvent] = []
    i = 0
    while len(out) < n:
        command_id = f"{player_id}-{i}"
        enqueue = Enqueue(command_id=command_id, activity="harvesting", target=TARGETS[i % len(TARGETS)], quantity=2)
        i += 1
        try:
            decision = decide(state, enqueue, clock, rules)
        except RulesError:
            break  # e.g. a worn-out tool: this player's log ends here
        state = fold_new(state, decision.events, command_id)
        out.extend(decision.events)
        clock.advance(3600)
        for batch in catch_up(state, clock.now(), rules, 1000):
            state = fold_new(state, batch)
            out.extend(batch)
        if not decision.events:
            break
    return out[:n] if len(out) > n else out


async def fill(store: EventStore, logs: dict[str, list[NewEvent]], on_progress: Callable[[int], object]) -> int:
    gate = asyncio.Semaphore(50)
    total = 0

    async def one(player_id: str, events: list[NewEvent]) -> None:
        nonlocal total
        async with gate:
            pos = Position()
            for k in range(0, len(events), APPEND_CHUNK):
                chunk = events[k : k + APPEND_CHUNK]
                recs = await store.append(player_id, chunk, expected=pos, causation_id=f"bench-fill-{k}")
                pos = Position(recs[-1].version, recs[-1].seq)
                total += len(recs)
                on_progress(len(recs))

    await asyncio.gather(*(one(p, ev) for p, ev in logs.items()))
    return total


async def raw_read(nc: NATS, stream: str) -> tuple[int, float]:
    """Every message of the log through an ordered consumer, nothing decoded: (messages, seconds)."""
    js = nc.jetstream()
    t0 = time.perf_counter()
    sub = await js.subscribe(
        EVENTS_WILDCARD,
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    n = 0
    try:
        while True:
            msg = await sub.next_msg(timeout=30)
            n += 1
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return n, time.perf_counter() - t0


async def run_rebuild(result: BenchResult, console: Console, *, players: int, events: int) -> None:
    run = f"rb-{uuid.uuid4().hex[:6]}"
    rules = load_rules()
    per_player = max(1, events // players)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    async with BenchStack(()) as stack:
        assert stack.nc is not None
        store = EventStore(stack.nc, stack.settings.streams.events)
        redis = aioredis.from_url(stack.settings.redis_url or "")
        try:
            with Dashboard(console, "rebuild") as dash:
                logs = {
                    f"{run}-{i:05d}": player_log(f"{run}-{i:05d}", per_player, rules, start) for i in range(players)
                }
                planned = sum(len(v) for v in logs.values())
                types: dict[str, int] = {}
                for evs in logs.values():
                    for e in evs:
                        types[e.event.TYPE] = types.get(e.event.TYPE, 0) + 1
                task = dash.phase(f"writing {planned} events of {players} players", planned)
                t0 = time.perf_counter()
                await fill(store, logs, lambda k: dash.advance(task, k))
                fill_s = time.perf_counter() - t0
                in_log = await store.last_seq()
                dash.stats["log"] = f"{in_log} events, written in {fill_s:.1f} s"
                raws: list[tuple[int, float]] = []
                cpu = CpuWindow(stack.pids())
                cpu.start()
                task = dash.phase("raw ordered-consumer read", 1)
                raws.append(await raw_read(stack.nc, stack.settings.streams.events))
                dash.finish(task)
                dash.stats["raw read"] = f"{raws[0][0] / raws[0][1]:.0f} events/s"
                task = dash.phase("projection rebuild", in_log)
                t0 = time.perf_counter()
                report = await rebuild(store, ReadModels(redis), progress=lambda n, total: dash.update(task, n))
                rebuild_s = time.perf_counter() - t0
                dash.finish(task)
                dash.stats["rebuild"] = f"{report.events / rebuild_s:.0f} events/s"
                task = dash.phase("raw ordered-consumer read, again", 1)
                raws.append(await raw_read(stack.nc, stack.settings.streams.events))
                dash.finish(task)
                usage = cpu.stop()
        finally:
            await redis.aclose()
    raw_per_s = sum(n for n, _ in raws) / sum(s for _, s in raws)
    rebuild_per_s = report.events / rebuild_s
    ratio = rebuild_per_s / raw_per_s
    result.figures = RebuildFigures(
        players=players,
        events=report.events,
        fill_s=round(fill_s, 2),
        raw_read_s=[round(s, 3) for _, s in raws],
        raw_per_s=round(raw_per_s, 1),
        rebuild_s=round(rebuild_s, 3),
        rebuild_per_s=round(rebuild_per_s, 1),
        rebuilt_players=report.players,
        ratio=round(ratio, 3),
        event_types=dict(sorted(types.items())),
        cpu=usage,
    )
    result.targets = [at_least("rebuild ratio rebuild/raw", ratio, RATIO_TARGET)]
    result.checks_passed = report.events == in_log and all(n == in_log for n, _ in raws)
