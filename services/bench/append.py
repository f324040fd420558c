"""`questlog bench append`: EventStore.append against raw nats-py publishes, same server, same run.

Both sides append one `task.enqueued` event at a time to each of P players
concurrently (one writer per player: OCC serialises a player's appends), with
the same headers: `Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence` and
`…-Subject: players.<id>.events.>`, as a request that waits for the PubAck.
The raw side sends a body encoded once up front (the same size as the
store's); the store encodes each event, builds its headers, traces, records
metrics and checks the ack, as it does in a service. Telemetry is set up as
`questlog run` sets it up. Rounds alternate raw, store, raw, store after a
warm-up, so neither side gets a warmer server. The ratio is store / raw.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import msgspec
from nats.aio.client import Client as NATS
from rich.console import Console

from questlog.events import codec
from questlog.events.schema import NewEvent, Recorded, TaskEnqueued, TaskSpec
from questlog.events.store import EventStore, Position
from questlog.events.subjects import event_subject, player_events

from .display import Dashboard
from .procfs import CpuUse, CpuWindow
from .results import BenchResult, at_least
from .stack import BenchStack
from .stats import Latencies, LatencySummary

RATIO_TARGET = 0.7
WARMUP_S = 1.0


class SideFigures(msgspec.Struct):
    appends: int
    seconds: float
    per_s: float
    latency: LatencySummary


class AppendFigures(msgspec.Struct, kw_only=True):
    players: int
    rounds: int
    round_s: float
    body_bytes: int
    raw: SideFigures
    store: SideFigures
    ratio: float
    conflicts: int
    cpu: list[CpuUse]


class _Ack(msgspec.Struct):
    seq: int = 0
    error: dict[str, object] | None = None


_ack = msgspec.json.Decoder(_Ack)


def enqueued(player_id: str, n: int) -> TaskEnqueued:
    now = datetime.now(UTC)
    spec = TaskSpec(
        task_id=f"t-{player_id}-{n}",
        activity="harvesting",
        target="oak_log",
        quantity=1,
        step_seconds=3.0,
        enqueued_at=now,
    )
    return TaskEnqueued(task=spec)


class Side:
    """Counters of one side across its rounds."""

    def __init__(self) -> None:
        self.appends = 0
        self.seconds = 0.0
        self.latency = Latencies()
        self.conflicts = 0

    def figures(self) -> SideFigures:
        return SideFigures(
            self.appends,
            round(self.seconds, 3),
            round(self.appends / max(self.seconds, 1e-9), 1),
            self.latency.summary(),
        )


async def store_writer(store: EventStore, player_id: str, pos: list[Position], until: float, side: Side | None) -> None:
    loop = asyncio.get_running_loop()
    events = [NewEvent(enqueued(player_id, 1), datetime.now(UTC))]  # built once, as the raw side's body is
    while loop.time() < until:
        t0 = time.perf_counter()
        recs = await store.append(player_id, events, expected=pos[0], command_id=f"c-{uuid.uuid4().hex}")
        if side is not None:
            side.latency.add(time.perf_counter() - t0)
            side.appends += 1
        pos[0] = Position(recs[-1].version, recs[-1].seq)


async def raw_writer(
    nc: NATS, player_id: str, body: bytes, seq: list[int], until: float, side: Side | None, *, prefix: str = ""
) -> None:
    """Raw OCC appends to one player until `until`; `prefix` puts them on a scratch stream's subjects."""
    loop = asyncio.get_running_loop()
    subject = prefix + event_subject(player_id, "task.enqueued")
    scope = prefix + player_events(player_id)
    while loop.time() < until:
        headers = {
            "Nats-Msg-Id": f"{player_id}:c-{uuid.uuid4().hex}:0",
            "Nats-Expected-Last-Subject-Sequence": str(seq[0]),
            "Nats-Expected-Last-Subject-Sequence-Subject": scope,
        }
        t0 = time.perf_counter()
        reply = await nc.request(subject, body, timeout=5.0, headers=headers)
        ack = _ack.decode(reply.data)
        if ack.error is not None:
            raise RuntimeError(f"raw append refused: {ack.error}")
        if side is not None:
            side.latency.add(time.perf_counter() - t0)
            side.appends += 1
        seq[0] = ack.seq


async def run_append(result: BenchResult, console: Console, *, players: int, round_s: float, rounds: int = 2) -> None:
    from questlog.services.runtime.telemetry import setup_telemetry

    telemetry = setup_telemetry("questlog-bench")
    run = uuid.uuid4().hex[:6]
    raw, stored = Side(), Side()
    try:
        async with BenchStack(()) as stack:
            assert stack.nc is not None
            nc = stack.nc
            store = EventStore(nc, stack.settings.streams.events, metrics=telemetry.metrics)
            raw_ids = [f"ar-{run}-{i}" for i in range(players)]
            store_ids = [f"as-{run}-{i}" for i in range(players)]
            sample = Recorded(
                player_id=raw_ids[0],
                version=1,
                occurred_at=datetime.now(UTC),
                event=enqueued(raw_ids[0], 1),
                command_id=f"c-{uuid.uuid4().hex}",
            )
            body = codec.encode(sample)  # the same shape and size as what the store sends
            raw_seq = {p: [0] for p in raw_ids}
            store_pos = {p: [Position()] for p in store_ids}
            loop = asyncio.get_running_loop()

            async def raw_round(seconds: float, side: Side | None) -> None:
                until = loop.time() + seconds
                t0 = time.perf_counter()
                await asyncio.gather(*(raw_writer(nc, p, body, raw_seq[p], until, side) for p in raw_ids))
                if side is not None:
                    side.seconds += time.perf_counter() - t0

            async def store_round(seconds: float, side: Side | None) -> None:
                until = loop.time() + seconds
                t0 = time.perf_counter()
                await asyncio.gather(*(store_writer(store, p, store_pos[p], until, side) for p in store_ids))
                if side is not None:
                    side.seconds += time.perf_counter() - t0

            with Dashboard(console, "append") as dash:
                dash.stats["shape"] = (
                    f"{players} players concurrently, 1 event per append, OCC on players.<id>.events.>"
                )
                task = dash.phase("warm-up, then raw / store rounds", 2 + 2 * rounds)
                await raw_round(WARMUP_S, None)
                dash.advance(task)
                await store_round(WARMUP_S, None)
                dash.advance(task)
                cpu = CpuWindow(stack.pids())
                cpu.start()
                for _ in range(rounds):
                    await raw_round(round_s, raw)
                    dash.advance(task)
                    dash.stats["raw"] = f"{raw.appends / max(raw.seconds, 1e-9):.0f} appends/s"
                    await store_round(round_s, stored)
                    dash.advance(task)
                    dash.stats["store"] = f"{stored.appends / max(stored.seconds, 1e-9):.0f} appends/s"
                usage = cpu.stop()
    finally:
        telemetry.shutdown()
    r, s = raw.figures(), stored.figures()
    ratio = s.per_s / max(r.per_s, 1e-9)
    result.figures = AppendFigures(
        players=players,
        rounds=rounds,
        round_s=round_s,
        body_bytes=len(body),
        raw=r,
        store=s,
        ratio=round(ratio, 3),
        conflicts=raw.conflicts + stored.conflicts,
        cpu=usage,
    )
    result.targets = [at_least("append ratio store/raw", ratio, RATIO_TARGET)]
