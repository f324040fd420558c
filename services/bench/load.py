"""`questlog bench load`: N WebSocket players issuing commands at a set rate through the real gateway.

Every service runs as its own `questlog run` subprocess; the players run in
this process with `gateway/client.py`. Measured: command latency as the client
sees it (send to answer), event delivery latency (stored in JetStream to read
by the client), commands and events per second, the gateway's memory per
connection and the CPU of every process. `--idle N` instead opens N sessions
that send nothing and measures the gateway's resident memory per connection.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import uuid

import aiohttp
import msgspec
from rich.console import Console

from questlog.gateway.auth import issue_token

from .display import Dashboard
from .players import LoadPlayer, RunOutcomes, connect_all
from .procfs import CpuUse, CpuWindow, rss_kb
from .results import BenchResult, Target, at_most
from .stack import BenchStack
from .stats import Latencies, LatencySummary
from .stored_times import StoredTimes

SERVICES = ("commands", "processor", "reward", "projector", "snapshotter", "presence", "notifier")
ENQUEUE_P99_MS = 50.0
DELIVERY_P99_MS = 20.0
IDLE_KB_PER_CONNECTION = 40.0
STRAGGLE_S = 30.0  # after the load window, how long unanswered calls may still take


class LoadFigures(msgspec.Struct, kw_only=True):
    players: int
    rate_per_player: float
    duration_s: float
    connect_s: float
    connect_failures: int
    commands_sent: int
    commands_ok: int
    commands_per_s: float
    errors: dict[str, int]
    command_latency: dict[str, LatencySummary]
    delivery_latency: LatencySummary
    delivery_unmatched: int
    events_received: int
    events_per_s: float
    generator_late: LatencySummary
    gateway_rss_mb_idle: float
    gateway_rss_mb_connected: float
    gateway_rss_mb_end: float
    gateway_kb_per_connection: float
    clients_gap_free: int
    cpu: list[CpuUse]


class IdleFigures(msgspec.Struct, kw_only=True):
    connections: int
    connect_s: float
    connect_failures: int
    gateway_rss_mb_before: float
    gateway_rss_mb_after: float
    gateway_kb_per_connection: float
    bench_rss_mb: float
    cpu_while_idle: list[CpuUse]


def new_players(
    stack: BenchStack, n: int, tally: RunOutcomes, run: str, *, resume_epoch: str | None = None
) -> list[LoadPlayer]:
    settings = stack.settings
    return [
        LoadPlayer(
            f"{run}-{i:05d}",
            stack.gateway_url,
            issue_token(settings, f"{run}-{i:05d}", ttl_s=4 * 3600),
            tally,
            resume_epoch=resume_epoch,
        )
        for i in range(n)
    ]


async def connect_with_progress(dash: Dashboard, players: list[LoadPlayer], label: str) -> tuple[float, int]:
    task = dash.phase(label, len(players))
    t0 = time.perf_counter()
    failures = await connect_all(players, on_done=lambda: dash.advance(task))
    return time.perf_counter() - t0, len(failures)


def delivery(players: list[LoadPlayer], stored: StoredTimes) -> tuple[LatencySummary, int]:
    lat, unmatched = Latencies(), 0
    for p in players:
        for version, arrived in p.received.arrivals.items():
            at = stored.stored_at(p.player_id, version)
            if at is None:
                unmatched += 1
            else:
                lat.add(arrived - at)
    return lat.summary(), unmatched


def latency_table(tally: RunOutcomes) -> dict[str, LatencySummary]:
    out = {m: lat.summary() for m, lat in sorted(tally.latency.items())}
    every = Latencies()
    for lat in tally.latency.values():
        every.extend(lat.samples)
    out["all"] = every.summary()
    return out


async def drive(
    dash: Dashboard, players: list[LoadPlayer], tally: RunOutcomes, rate: float, duration: float, seed: int
) -> float:
    """Every player plays for `duration`; the wall time it really took (the last answers included)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    until = loop.time() + duration
    task = dash.phase(f"{len(players)} players × {rate:g} cmd/s", duration)
    t0 = time.perf_counter()
    runs = [asyncio.create_task(p.play(rate, until, random.Random(rng.random()))) for p in players]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - t0
            dash.update(task, min(duration, elapsed))
            dash.stats["commands ok / sent"] = f"{tally.ok} / {tally.sent}"
            dash.stats["commands/s"] = f"{tally.ok / max(elapsed, 1e-9):.0f}"
            dash.stats["events received"] = f"{tally.events} ({tally.events / max(elapsed, 1e-9):.0f}/s)"
            dash.stats["errors"] = str(sum(tally.errors.values()))

    ticker = asyncio.create_task(tick())
    try:
        # bounded: every play loop ends at `until`; a call in flight then gets STRAGGLE_S more
        _, late = await asyncio.wait(runs, timeout=duration + STRAGGLE_S)
        tally.errors["still waiting at the end"] += len(late)
    finally:
        ticker.cancel()
        for r in runs:
            r.cancel()
    dash.finish(task)
    return time.perf_counter() - t0


async def run_load(
    result: BenchResult, console: Console, *, players: int, rate: float, duration: float, seed: int
) -> None:
    tally = RunOutcomes()
    run = f"ld-{uuid.uuid4().hex[:6]}"
    async with BenchStack(SERVICES, gateway=True) as stack:
        assert stack.gateway is not None and stack.nc is not None
        gw_pid = stack.gateway.pid
        with Dashboard(console, "load") as dash:
            dash.stats["stack"] = "nats-server, redis-server, " + ", ".join(SERVICES) + ", gateway (subprocesses)"
            rss_idle = rss_kb(gw_pid)
            group = new_players(stack, players, tally, run)
            connect_s, failures = await connect_with_progress(dash, group, f"connecting {players} players")
            rss_connected = rss_kb(gw_pid)
            connected = [p for p in group if p.client.connected.is_set()]
            stored = StoredTimes(stack.nc)
            await stored.start()
            cpu = CpuWindow(stack.pids())
            cpu.start()
            events0 = tally.events
            wall = await drive(dash, connected, tally, rate, duration, seed)
            events_in_window = tally.events - events0
            usage = cpu.stop()
            rss_end = rss_kb(gw_pid)
            settle = dash.phase("letting the last events arrive", 1)
            await asyncio.sleep(1.0)  # the answers are in; events of the last commands may still be on the wire
            dash.finish(settle)
            await stored.stop()
            delivered, unmatched = delivery(connected, stored)
            gap_free = sum(1 for p in connected if _contiguous(p.received.versions))
            closing = dash.phase("closing clients", len(group))
            for chunk in range(0, len(group), 200):
                await asyncio.gather(*(p.close() for p in group[chunk : chunk + 200]))
                dash.advance(closing, len(group[chunk : chunk + 200]))
    figures = LoadFigures(
        players=players,
        rate_per_player=rate,
        duration_s=round(wall, 2),
        connect_s=round(connect_s, 2),
        connect_failures=failures,
        commands_sent=tally.sent,
        commands_ok=tally.ok,
        commands_per_s=round(tally.ok / wall, 1),
        errors=dict(tally.errors),
        command_latency=latency_table(tally),
        delivery_latency=delivered,
        delivery_unmatched=unmatched,
        events_received=events_in_window,
        events_per_s=round(events_in_window / wall, 1),
        generator_late=tally.late.summary(),
        gateway_rss_mb_idle=round(rss_idle / 1024, 1),
        gateway_rss_mb_connected=round(rss_connected / 1024, 1),
        gateway_rss_mb_end=round(rss_end / 1024, 1),
        gateway_kb_per_connection=round((rss_connected - rss_idle) / max(1, len(connected)), 1),
        clients_gap_free=gap_free,
        cpu=usage,
    )
    result.figures = figures
    enqueue = figures.command_latency.get("queue.enqueue", figures.command_latency["all"])
    result.targets = [
        at_most("enqueue p99", enqueue.p99_ms, ENQUEUE_P99_MS, "ms"),
        at_most("delivery p99", delivered.p99_ms, DELIVERY_P99_MS, "ms"),
    ]
    result.checks_passed = gap_free == len(connected) and failures == 0
    if tally.late.summary().p99_ms > 10:
        result.notes.append(
            "the generator sent some commands late (see generator_late): this process was short of CPU, "
            "so the offered rate was below the target rate at times"
        )


class RawSession:
    """A bare socket that declines permessage-deflate, says hello, and holds: `--no-deflate`."""

    def __init__(self, url: str, token: str, epoch: str) -> None:
        self.url, self.token, self.epoch = url, token, epoch
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.open = False

    async def connect(self, http: aiohttp.ClientSession) -> None:
        self.ws = await http.ws_connect(self.url, compress=0, max_msg_size=0, heartbeat=None)
        hello = {"token": self.token, "resume": {"epoch": self.epoch, "version": 0}}
        await self.ws.send_str(
            msgspec.json.encode({"jsonrpc": "2.0", "id": 1, "method": "session.hello", "params": hello}).decode()
        )
        answer = msgspec.json.decode((await self.ws.receive(timeout=60)).data)
        if "result" not in answer:
            raise RuntimeError(f"hello refused: {answer}")
        self.open = True

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def run_idle(
    result: BenchResult, console: Console, *, connections: int, hold_s: float, deflate: bool = True
) -> None:
    """N sessions that only hold their socket; the gateway's RSS growth per connection."""
    if not deflate:
        await _run_idle_raw(result, console, connections=connections, hold_s=hold_s)
        return
    tally = RunOutcomes()
    run = f"idle-{uuid.uuid4().hex[:6]}"
    async with BenchStack(("commands", "presence"), gateway=True) as stack:
        assert stack.gateway is not None and stack.nc is not None
        gw_pid = stack.gateway.pid
        epoch = await _epoch(stack)
        with Dashboard(console, "load --idle") as dash:
            dash.stats["stack"] = "nats-server, redis-server, commands, presence, gateway (subprocesses)"
            before = rss_kb(gw_pid)
            group = new_players(stack, connections, tally, run, resume_epoch=epoch)
            connect_s, failures = await connect_with_progress(dash, group, f"opening {connections} idle sessions")
            hold = dash.phase(f"holding them idle for {hold_s:g} s", hold_s)
            cpu = CpuWindow(stack.pids())
            cpu.start()
            t0 = time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < hold_s:
                await asyncio.sleep(min(0.5, hold_s - elapsed))
                dash.update(hold, min(hold_s, time.perf_counter() - t0))
                dash.stats["gateway RSS"] = f"{rss_kb(gw_pid) / 1024:.1f} MB"
            usage = cpu.stop()
            after = rss_kb(gw_pid)
            bench_rss = rss_kb(os.getpid())
            open_ = sum(1 for p in group if p.client.connected.is_set())
            closing = dash.phase("closing", len(group))
            for chunk in range(0, len(group), 500):
                await asyncio.gather(*(p.close() for p in group[chunk : chunk + 500]))
                dash.advance(closing, len(group[chunk : chunk + 500]))
    per_conn = (after - before) / max(1, open_)
    result.figures = IdleFigures(
        connections=open_,
        connect_s=round(connect_s, 2),
        connect_failures=failures,
        gateway_rss_mb_before=round(before / 1024, 1),
        gateway_rss_mb_after=round(after / 1024, 1),
        gateway_kb_per_connection=round(per_conn, 1),
        bench_rss_mb=round(bench_rss / 1024, 1),
        cpu_while_idle=usage,
    )
    result.targets = [
        Target(
            "gateway memory per idle connection",
            f"<= {IDLE_KB_PER_CONNECTION:g} KB",
            round(per_conn, 1),
            per_conn <= IDLE_KB_PER_CONNECTION,
        )
    ]
    result.checks_passed = failures == 0


async def _epoch(stack: BenchStack) -> str:
    from questlog.events.store import EventStore

    assert stack.nc is not None
    return await EventStore(stack.nc, stack.settings.streams.events).epoch()


def _contiguous(versions: list[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(versions))


async def _run_idle_raw(result: BenchResult, console: Console, *, connections: int, hold_s: float) -> None:
    run = f"idle-{uuid.uuid4().hex[:6]}"
    async with BenchStack(("commands", "presence"), gateway=True) as stack:
        assert stack.gateway is not None
        gw_pid = stack.gateway.pid
        epoch = await _epoch(stack)
        sessions = [
            RawSession(stack.gateway_url, issue_token(stack.settings, f"{run}-{i:05d}", ttl_s=3600), epoch)
            for i in range(connections)
        ]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            with Dashboard(console, "load --idle --no-deflate") as dash:
                before = rss_kb(gw_pid)
                task = dash.phase(f"opening {connections} idle sessions without deflate", connections)
                gate = asyncio.Semaphore(200)
                failures = 0
                t0 = time.perf_counter()

                async def one(s: RawSession) -> None:
                    nonlocal failures
                    async with gate:
                        try:
                            await s.connect(http)
                        except Exception:
                            failures += 1
                        dash.advance(task)

                await asyncio.gather(*(one(s) for s in sessions))
                connect_s = time.perf_counter() - t0
                cpu = CpuWindow(stack.pids())
                cpu.start()
                await asyncio.sleep(hold_s)  # idle on purpose: nothing to wait for but time
                usage = cpu.stop()
                after = rss_kb(gw_pid)
                bench_rss = rss_kb(os.getpid())
                open_ = sum(1 for s in sessions if s.open)
                for chunk in range(0, len(sessions), 500):
                    await asyncio.gather(*(s.close() for s in sessions[chunk : chunk + 500]))
    per_conn = (after - before) / max(1, open_)
    result.figures = IdleFigures(
        connections=open_,
        connect_s=round(connect_s, 2),
        connect_failures=failures,
        gateway_rss_mb_before=round(before / 1024, 1),
        gateway_rss_mb_after=round(after / 1024, 1),
        gateway_kb_per_connection=round(per_conn, 1),
        bench_rss_mb=round(bench_rss / 1024, 1),
        cpu_while_idle=usage,
    )
    result.targets = [
        Target(
            "gateway memory per idle connection (no deflate)",
            f"<= {IDLE_KB_PER_CONNECTION:g} KB",
            round(per_conn, 1),
            per_conn <= IDLE_KB_PER_CONNECTION,
        )
    ]
    result.checks_passed = failures == 0
