"""`questlog bench players`: an idle game as it is played, open loop.

N players connected through the gateway, each with a queue running at the
catalog's real durations (time scale 1; three tasks of a thousand steps, so no
queue runs dry), each sending a command at random (Poisson) intervals
averaging T seconds from a fixed mix. The load is offered whatever the system
answers: a slow answer does not slow the next command. After a warm-up, one
window of at least 60 s is measured: per-method latency, delivery (stored to
received), stored events/s, CPU of every process, the CPU of the system's own
processes per stored event, and nats-server messages per stored event (from
its monitoring counters).

Modes:
* `--saturate`: every step due at once (time scale near zero) with the same
  command mix: the stored events/s the system sustains, against raw OCC
  appends/s measured on the same server in the same run (a scratch stream
  with the log's configuration, so nothing reacts to it).
* `--find-capacity`: more players at a time at the default interval until
  command or delivery p99 passes 100 ms (or commands are refused); the
  largest number that held.
* `--overload K`: K times the commands/s held at capacity for a while, then
  back: admitted and refused counts, both latencies, and how long latency
  takes to return to within 20 % of what it was before.

Every mode ends by pausing every queue and checking the log: versions dense,
one reward per step, every acknowledged command at its version, every client
received exactly its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from typing import Any

import aiohttp
import msgspec
from rich.console import Console

from questlog.events.store import EventStore
from questlog.events.streams import stream_configs
from questlog.gateway.auth import issue_token
from questlog.services.contract.command_client import Actor, CommandClient
from questlog.services.contract.protocol import RATE_LIMITED, RpcError
from questlog.services.runtime.startup import patiently

from .append import Side, raw_writer
from .checks import LogCheck, check_acknowledged, check_player, check_received
from .display import Dashboard
from .load import SERVICES, latency_table
from .players import LoadPlayer, RunOutcomes, connect_all
from .procfs import CpuUse, CpuWindow
from .results import BenchResult, Target, at_least, at_most
from .stack import BenchStack
from .stats import Latencies, LatencySummary, summarize
from .stored_times import StoredTimes

# The command mix: what idle-game players do when they glance in.
MIX: tuple[tuple[str, float], ...] = (
    ("queue.get", 0.25),
    ("player.get", 0.25),
    ("queue.enqueue", 0.30),
    ("queue.reorder", 0.10),
    ("queue.cancel", 0.10),
)
LONG_TASKS = (("harvesting", "oak_log"), ("harvesting", "stone"), ("harvesting", "copper_ore"))
TASK_STEPS = 1000  # the catalog's largest quantity: a queue does not run dry within a run
QUEUE_ROOM = 8  # enqueue only while fewer are queued (the default queue holds 10)
SPARES = {"bronze_axe": 10, "bronze_pickaxe": 20}  # a tool lasts 150 steps; no queue stops for want of one
SATURATE_TIME_SCALE = 0.0001  # every step due at once (the catalog's floor is 1 ms a step)

# Targets (Capacity, part 2) reported by every run.
ENQUEUE_P99_MS = 50.0
DELIVERY_P99_MS = 50.0
CPU_MS_PER_EVENT = 0.5
SATURATE_RATIO = 0.25
CAPACITY_PLAYERS = 5000
# --find-capacity: a step holds while both p99s stay within this and few are refused
CAPACITY_P99_MS = 100.0
CAPACITY_REFUSED = 0.01
# --overload targets
OVERLOAD_ADMITTED_P99_MS = 250.0
RECOVERY_WITHIN = 0.2  # back to within 20 % of the p99 before
RECOVERY_S = 10.0
RAW_BENCH = "RAWBENCH"
SLICE_S = 2.0  # --overload: latency after it is judged in slices of this many seconds


class Window(msgspec.Struct, kw_only=True):
    """One measured stretch of a run."""

    players: int
    seconds: float
    commands_sent: int
    commands_ok: int
    commands_refused: int
    errors: dict[str, int]
    command_latency: dict[str, LatencySummary]
    refusal_latency: LatencySummary
    delivery_latency: LatencySummary
    stored_events: int
    stored_events_per_s: float
    nats_msgs_per_stored_event: float | None
    system_cpu_ms_per_stored_event: float | None
    cpu: list[CpuUse]
    generator_late: LatencySummary


class CapacityStep(msgspec.Struct):
    players: int
    command_p99_ms: float
    delivery_p99_ms: float
    refused_fraction: float
    held: bool


class OverloadFigures(msgspec.Struct, kw_only=True):
    factor: float
    capacity_players: int
    capacity_commands_per_s: float
    offered_commands_per_s: float
    seconds: float
    admitted: int
    refused: int
    admitted_latency: LatencySummary
    refused_latency: LatencySummary
    p99_before_ms: float
    recovered_after_s: float | None  # None: not within the watch after the overload


class PlayersFigures(msgspec.Struct, kw_only=True):
    mode: str
    players: int
    mean_interval_s: float
    mix: dict[str, float]
    time_scale: float
    warmup_s: float
    connect_s: float
    connect_failures: int
    window: Window | None = None
    raw_appends_per_s: float | None = None
    saturate_ratio: float | None = None
    capacity_steps: list[CapacityStep] = []
    capacity_players: int | None = None
    overload: OverloadFigures | None = None
    check: LogCheck | None = None
    clients_resumed_with_state: int = 0  # fell behind (4008), came back past the replay limit


@dataclasses.dataclass
class Options:
    players: int = 1000
    interval_s: float = 10.0
    duration_s: float = 60.0
    warmup_s: float = 15.0
    seed: int = 1
    saturate: bool = False
    find_capacity: bool = False
    overload: float | None = None
    capacity_players: int | None = None  # --overload without --find-capacity: the capacity to start from
    step_players: int = 250  # --find-capacity: players at the first step, and added at each next one
    # --workers: the services grouped into worker processes ("commands,processor,reward"), else one each
    workers: tuple[str, ...] = SERVICES


# -- the players ------------------------------------------------------------------------------


class IdlePlayer(LoadPlayer):
    """A player with long tasks running, who glances in at random moments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queued: list[str] = []  # task ids waiting behind the running one, as last seen
        self.mean_s = 10.0
        self._n = 0
        self._wake = asyncio.Event()

    def pace(self, mean_s: float) -> None:
        """A new mean interval, from now on (a Poisson process has no memory to keep)."""
        self.mean_s = mean_s
        self._wake.set()

    def next_id(self) -> str:
        self._n += 1
        return f"{self.player_id}-{self._n}"

    async def persist(self, method: str, params: dict[str, Any], give_up_s: float = 120.0) -> Any:
        """A command that must land (set-up, the final pause): resent after a -32029 or a lost answer,
        with the same command id; None if refused for good (a paused queue paused again)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + give_up_s
        while loop.time() < until:
            result, error = await self.attempt(method, params)
            if result is not None:
                return result
            if error is not None and error.code != RATE_LIMITED:
                return None
            wait_ms = (error.data or {}).get("retry_after_ms", 500) if error is not None else 500
            await asyncio.sleep(min(5.0, wait_ms / 1000))  # the server asked for this back-off
        raise RuntimeError(f"{self.player_id}: {method} did not land in {give_up_s:.0f} s")

    async def set_up(self, admin: CommandClient, *, hold: bool = False) -> None:
        """Spare tools (the starter kit's wear out after 150 steps), three long tasks queued;
        `hold`: auto start off, so every queue starts when `start` says."""
        # the first command creates the player, whom the grant then needs
        await self.persist("queue.configure", {"auto_start": not hold, "command_id": self.next_id()})
        grant = {"player_id": self.player_id, "reason": "bench spares", "items": SPARES}
        await over_nats(admin, "admin.grant", "bench", grant, Actor("bench", ("admin",)))
        for activity, target in LONG_TASKS:
            params = {"activity": activity, "target": target, "quantity": TASK_STEPS, "command_id": self.next_id()}
            await self.persist("queue.enqueue", params)
        await self.look()

    async def start(self, commands: CommandClient) -> None:
        """Auto start on, through NATS as another service would (not the gateway): the queues that
        start first saturate the system, and its admission control would make the rest wait."""
        params = {"auto_start": True, "command_id": self.next_id()}
        await over_nats(commands, "queue.configure", self.player_id, params, Actor(self.player_id))

    async def look(self) -> None:
        view = await self.persist("queue.get", {})
        self.queued = [t["task_id"] for t in (view or {}).get("queued", [])]

    def pick(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        method = rng.choices([m for m, _ in MIX], weights=[w for _, w in MIX])[0]
        if method == "queue.enqueue" and len(self.queued) >= QUEUE_ROOM:
            method = "queue.cancel"
        if method == "queue.cancel" and not self.queued:
            method = "queue.enqueue"
        if method == "queue.reorder" and len(self.queued) < 2:
            method = "queue.get"
        if method == "queue.enqueue":
            activity, target = LONG_TASKS[rng.randrange(len(LONG_TASKS))]
            return method, {
                "activity": activity,
                "target": target,
                "quantity": TASK_STEPS,
                "command_id": self.next_id(),
            }
        if method == "queue.cancel":
            return method, {"task_id": self.queued[-1], "command_id": self.next_id()}
        if method == "queue.reorder":
            return method, {"order": list(reversed(self.queued)), "command_id": self.next_id()}
        return method, {}

    async def glance(self, rng: random.Random) -> None:
        method, params = self.pick(rng)
        result = await self.send(method, params)
        if result is None:
            return
        if method == "queue.get":
            self.queued = [t["task_id"] for t in result.get("queued", [])]
        elif method == "queue.enqueue":
            self.queued.append(result["task"]["task_id"])
        elif method == "queue.cancel":
            self.queued = [t for t in self.queued if t != params["task_id"]]
        elif method == "queue.reorder":
            self.queued = list(params["order"])

    async def play_open(self, stop: asyncio.Event, rng: random.Random) -> None:
        """Commands at Poisson moments averaging `mean_s` apart, until `stop`; each in its own task,
        so a slow answer never delays the next command (an open loop)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time() + rng.expovariate(1 / self.mean_s)
        inflight: set[asyncio.Task[None]] = set()
        while not stop.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), delay)
                except TimeoutError:
                    pass
                else:  # a new pace, or the end
                    next_at = loop.time() + rng.expovariate(1 / self.mean_s)
                    continue
            else:
                self.tally.late.add(-delay)
            task = asyncio.create_task(self.glance(rng))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            next_at += rng.expovariate(1 / self.mean_s)
        if inflight:
            await asyncio.wait(inflight, timeout=30)


async def over_nats(commands: CommandClient, method: str, player_id: str, params: dict[str, Any], actor: Actor) -> Any:
    """A command sent as another service sends it, resent (same command) while the answer is "try again"."""
    for _ in range(30):
        try:
            return await commands.call(method, player_id, params, actor)
        except RpcError as exc:
            if exc.code != RATE_LIMITED:
                raise
            await asyncio.sleep(1.0)  # a service briefly away: the server said try again
    raise RuntimeError(f"{method} for {player_id} kept being refused")


async def drained(stack: BenchStack, durables: tuple[str, ...], timeout: float) -> None:
    """Until the durables have nothing pending or unacknowledged (polled: consumer state has no event)."""
    assert stack.nc is not None
    js = stack.nc.jetstream()
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        infos = [await js.consumer_info(stack.settings.streams.events, d) for d in durables]
        if all(i.num_pending == 0 and i.num_ack_pending == 0 for i in infos):
            return
        await asyncio.sleep(0.5)


def new_players(stack: BenchStack, n: int, run: str, first: int = 0) -> list[IdlePlayer]:
    return [
        IdlePlayer(
            f"{run}-{i:05d}",
            stack.gateway_url,
            issue_token(stack.settings, f"{run}-{i:05d}", ttl_s=6 * 3600),
            RunOutcomes(),
        )
        for i in range(first, first + n)
    ]


# -- measuring ---------------------------------------------------------------------------------


class Meter:
    """Reads what a window needs from the stack: stream position, server counters, CPU."""

    def __init__(self, stack: BenchStack) -> None:
        self.stack = stack
        assert stack.nc is not None
        self.nc = stack.nc

    async def last_seq(self) -> int:
        # a saturated server may take longer than a request's timeout to answer
        js, stream = self.nc.jetstream(), self.stack.settings.streams.events
        info = await patiently("read the stream's last sequence", lambda: js.stream_info(stream), deadline_s=60)
        return info.state.last_seq

    async def server_msgs(self) -> int | None:
        """Messages in and out of nats-server so far (/varz); None for an external server."""
        port = self.stack.nats_monitor_port
        if not port:
            return None
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/varz") as r:
            varz = await r.json()
        return int(varz["in_msgs"]) + int(varz["out_msgs"])


def _system_cpu_seconds(usage: list[CpuUse], seconds: float) -> float:
    """CPU of nats, redis, the services and the gateway: not the generator, not anything else."""
    ours = [u for u in usage if u.name not in (CpuWindow.OTHERS, "bench (load generator)")]
    return sum(u.cpu_percent for u in ours) / 100 * seconds


async def measure(
    meter: Meter, players: list[IdlePlayer], seconds: float, dash: Dashboard, label: str
) -> tuple[Window, RunOutcomes]:
    tally = RunOutcomes()
    for p in players:
        p.tally = tally
    stored = StoredTimes(meter.nc)
    await stored.start()
    seq0, msgs0 = await meter.last_seq(), await meter.server_msgs()
    cpu = CpuWindow(meter.stack.pids())
    cpu.start()
    t0 = time.perf_counter()
    task = dash.phase(label, seconds)
    while (elapsed := time.perf_counter() - t0) < seconds:
        await asyncio.sleep(min(1.0, seconds - elapsed))  # the window itself: measured by the clock
        dash.update(task, min(seconds, time.perf_counter() - t0))
        dash.stats["commands ok / sent"] = f"{tally.ok} / {tally.sent}"
        dash.stats["refused (-32029)"] = str(sum(len(v) for v in tally.refusals.values()))
    wall = time.perf_counter() - t0
    usage = cpu.stop()
    seq1, msgs1 = await meter.last_seq(), await meter.server_msgs()
    await stored.stop()
    dash.finish(task)
    by_id = {p.player_id: p for p in players}
    delivered = Latencies()
    for player_id, version in stored.seen():
        arrived = by_id[player_id].received.arrivals.get(version) if player_id in by_id else None
        at = stored.stored_at(player_id, version)
        if arrived is not None and at is not None:
            delivered.add(arrived - at)
    events = seq1 - seq0
    # the bench's own subscription to the stored events is no part of the system's traffic
    msgs = None if msgs0 is None or msgs1 is None else msgs1 - msgs0 - len(stored)
    refusals = Latencies()
    for lat in tally.refusals.values():
        refusals.extend(lat.samples)
    window = Window(
        players=len(players),
        seconds=round(wall, 2),
        commands_sent=tally.sent,
        commands_ok=tally.ok,
        commands_refused=len(refusals),
        errors=dict(tally.errors),
        command_latency=latency_table(tally) if tally.latency else {},
        refusal_latency=refusals.summary(),
        delivery_latency=delivered.summary(),
        stored_events=events,
        stored_events_per_s=round(events / wall, 1),
        nats_msgs_per_stored_event=round(msgs / events, 2) if msgs is not None and events else None,
        system_cpu_ms_per_stored_event=(round(1000 * _system_cpu_seconds(usage, wall) / events, 3) if events else None),
        cpu=usage,
        generator_late=tally.late.summary(),
    )
    return window, tally


async def raw_appends_per_s(stack: BenchStack, seconds: float = 10.0, writers: int = 100) -> float:
    """The append scenario's raw side on a scratch copy of the log's stream: the server's OCC ceiling."""
    assert stack.nc is not None
    nc, js = stack.nc, stack.nc.jetstream()
    config = stream_configs(stack.settings.streams, stack.settings.replicas)[0]
    scratch = dataclasses.replace(
        config,
        name=RAW_BENCH,
        subjects=[f"rawbench.{s}" for s in config.subjects or []],
        republish=None,
    )
    await js.add_stream(scratch)
    try:
        body = b'{"type":"task.enqueued","schema":1,"player_id":"raw","version":1,"data":{}}' + b" " * 180
        seqs = {f"raw-{i}": [0] for i in range(writers)}
        side = Side()
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(
            *(raw_writer(nc, p, body, seq, until, side, prefix="rawbench.") for p, seq in seqs.items())
        )
        side.seconds = time.perf_counter() - t0
        return round(side.appends / side.seconds, 1)
    finally:
        await js.delete_stream(RAW_BENCH)


# -- the end: every queue paused, the log checked --------------------------------------------------


async def settle_and_check(stack: BenchStack, players: list[IdlePlayer], dash: Dashboard) -> LogCheck:
    assert stack.nc is not None
    task = dash.phase("pausing every queue", len(players))
    gate = asyncio.Semaphore(100)
    # through NATS, as another service would: a saturated system's gateway admits few commands
    commands = CommandClient(stack.nc, timeout=30.0)

    async def pause(p: IdlePlayer) -> None:
        async with gate:
            params = {"command_id": p.next_id()}
            with contextlib.suppress(RpcError):  # already paused (the players beyond capacity)
                await over_nats(commands, "queue.pause", p.player_id, params, Actor(p.player_id))
            dash.advance(task)

    await asyncio.gather(*(pause(p) for p in players))
    draining = dash.phase("letting the services drain their backlog", 1)
    await drained(stack, ("processor", "reward"), timeout=600)
    dash.finish(draining)
    # long logs: patient reads, a few at a time
    store = EventStore(stack.nc, stack.settings.streams.events, timeout=30.0)
    check = LogCheck()
    logs: dict[str, list[Any]] = {}
    reading = dash.phase("checking every log", len(players))
    deadline = time.monotonic() + 300
    readers = asyncio.Semaphore(16)

    async def read(p: IdlePlayer) -> None:
        async with readers:
            while True:  # a step completed just before the pause gets its reward a moment later
                log = await store.read(p.player_id)
                probe = LogCheck()
                check_player(probe, p.player_id, log)
                if not probe.missing_rewards or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)  # the reward service's progress: polled
            logs[p.player_id] = log
            dash.advance(reading)

    await asyncio.gather(*(read(p) for p in players))
    for p in players:
        check_player(check, p.player_id, logs[p.player_id])
    check_acknowledged(check, logs, [a for p in players for a in p.acked])
    catching = dash.phase("letting every client catch up", len(players))
    deadline = time.monotonic() + 120  # a client still reconnecting (backoff) has this long
    for p in players:
        log = logs[p.player_id]
        end = log[-1].version if log else 0
        while p.received.versions[-1:] < [end] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # events still on the wire to this client: polled
        # a client that fell too far behind (4008) resumed with the full state at some version: from
        # there on it must hold every event, before it the state stands for what it skipped
        since = max((int(hello["version"]) for hello in p.client.states), default=0)
        tail = [v for v in p.received.versions if v > since]
        check_received(check, p.player_id, tail, log, first=since + 1)
        dash.advance(catching)
    return check


# -- the modes ----------------------------------------------------------------------------------


async def run_players(result: BenchResult, console: Console, opts: Options) -> None:
    mode = "saturate" if opts.saturate else "find-capacity" if opts.find_capacity else "open-loop"
    if opts.overload is not None:
        mode = "overload"
    scale = SATURATE_TIME_SCALE if opts.saturate else 1.0
    run = f"pl-{uuid.uuid4().hex[:6]}"
    rng = random.Random(opts.seed)
    figures = PlayersFigures(
        mode=mode,
        players=opts.players,
        mean_interval_s=opts.interval_s,
        mix=dict(MIX),
        time_scale=scale,
        warmup_s=opts.warmup_s,
        connect_s=0.0,
        connect_failures=0,
    )
    async with BenchStack(opts.workers, gateway=True, time_scale=scale) as stack:
        meter = Meter(stack)
        assert stack.nc is not None
        admin = CommandClient(stack.nc, timeout=30.0)
        stop = asyncio.Event()
        everyone: list[IdlePlayer] = []
        plays: list[asyncio.Task[None]] = []
        with Dashboard(console, f"players ({mode})") as dash:
            dash.stats["stack"] = "nats-server, redis-server, " + ", ".join(opts.workers) + ", gateway (subprocesses)"
            if opts.saturate:
                dash.phase("raw OCC appends on a scratch stream", 1)
                figures.raw_appends_per_s = await raw_appends_per_s(stack)
                dash.stats["raw appends/s"] = f"{figures.raw_appends_per_s:.0f}"

            async def join(n: int) -> list[IdlePlayer]:
                group = new_players(stack, n, run, first=len(everyone))
                task = dash.phase(f"connecting {n} players (and setting up their queues)", n)
                t0 = time.perf_counter()
                failures = await connect_all(group, on_done=lambda: None)
                ready = [p for p in group if p.client.connected.is_set()]
                gate = asyncio.Semaphore(100)

                async def set_up(p: IdlePlayer) -> None:
                    async with gate:
                        await p.set_up(admin, hold=opts.saturate)
                        dash.advance(task)

                await asyncio.gather(*(set_up(p) for p in ready))
                if opts.saturate:  # every queue starts at once: every step is due
                    await asyncio.gather(*(p.start(admin) for p in ready))
                figures.connect_s = round(figures.connect_s + time.perf_counter() - t0, 2)
                figures.connect_failures += len(failures)
                for p in ready:
                    p.mean_s = opts.interval_s
                    plays.append(asyncio.create_task(p.play_open(stop, random.Random(rng.random()))))
                everyone.extend(ready)
                return ready

            try:
                if opts.find_capacity or (opts.overload is not None and opts.capacity_players is None):
                    await find_capacity(figures, meter, join, everyone, opts, dash)
                elif opts.overload is not None and opts.capacity_players is not None:
                    await join(opts.capacity_players)  # --capacity given: start there
                    await warm_up(dash, opts.warmup_s)
                else:
                    await join(opts.players)
                    await warm_up(dash, opts.warmup_s)
                    figures.window, _ = await measure(
                        meter, everyone, opts.duration_s, dash, f"measuring {len(everyone)} players"
                    )
                if opts.overload is not None:
                    if opts.capacity_players is not None and len(everyone) < opts.capacity_players:
                        await join(opts.capacity_players - len(everyone))
                        await warm_up(dash, opts.warmup_s)
                    figures.overload = await overload(meter, everyone, opts, dash)
                if opts.saturate and figures.window and figures.raw_appends_per_s:
                    figures.saturate_ratio = round(figures.window.stored_events_per_s / figures.raw_appends_per_s, 3)
            finally:
                stop.set()
                for p in everyone:
                    p.pace(p.mean_s)  # wakes it to see `stop`
                await asyncio.gather(*plays, return_exceptions=True)
            figures.check = await settle_and_check(stack, everyone, dash)
            # the first hello carries a state too; any later one is a resume past the replay limit
            figures.clients_resumed_with_state = sum(1 for p in everyone if len(p.client.states) > 1)
            closing = dash.phase("closing clients", len(everyone))
            for chunk in range(0, len(everyone), 200):
                await asyncio.gather(*(p.close() for p in everyone[chunk : chunk + 200]))
                dash.advance(closing, len(everyone[chunk : chunk + 200]))
    result.figures = figures
    result.targets = targets(figures)
    result.checks_passed = figures.check is not None and figures.check.ok and figures.connect_failures == 0


async def warm_up(dash: Dashboard, seconds: float) -> None:
    task = dash.phase(f"warming up for {seconds:g} s", seconds)
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        await asyncio.sleep(min(1.0, seconds - elapsed))  # the warm-up is a span of time
        dash.update(task, min(seconds, time.perf_counter() - t0))
    dash.finish(task)


def _p99(window: Window, method: str | None = None) -> float:
    table = window.command_latency
    if method is not None and method in table:
        return table[method].p99_ms
    return table["all"].p99_ms if "all" in table else 0.0


async def find_capacity(
    figures: PlayersFigures, meter: Meter, join: Any, everyone: list[IdlePlayer], opts: Options, dash: Dashboard
) -> None:
    """More players each step until a p99 passes the limit, commands are refused, or `players` are on."""
    step_s = opts.duration_s / 2
    held = 0
    while len(everyone) < opts.players:
        await join(opts.step_players)
        await warm_up(dash, opts.warmup_s)
        window, _ = await measure(meter, everyone, step_s, dash, f"step: {len(everyone)} players")
        refused = window.commands_refused / max(1, window.commands_sent)
        ok = (
            _p99(window) <= CAPACITY_P99_MS
            and window.delivery_latency.p99_ms <= CAPACITY_P99_MS
            and refused <= CAPACITY_REFUSED
        )
        figures.capacity_steps.append(
            CapacityStep(len(everyone), _p99(window), window.delivery_latency.p99_ms, round(refused, 4), ok)
        )
        dash.stats["capacity so far"] = f"{held} players"
        if not ok:
            break
        held = len(everyone)
        figures.window = window
    figures.capacity_players = held
    opts.capacity_players = held or opts.step_players


async def overload(meter: Meter, players: list[IdlePlayer], opts: Options, dash: Dashboard) -> OverloadFigures:
    """The commands/s held at capacity, times K, for a while; then back, watching latency recover."""
    assert opts.overload is not None
    factor = opts.overload
    capacity = opts.capacity_players or len(players)
    active, beyond = players[:capacity], players[capacity:]
    for p in beyond:  # the step past capacity: quiet, their queues paused, so the load is capacity's
        p.pace(1e9)
    gate = asyncio.Semaphore(100)

    async def pause(p: IdlePlayer) -> None:
        async with gate:
            await p.persist("queue.pause", {"command_id": p.next_id()})

    await asyncio.gather(*(pause(p) for p in beyond))
    await warm_up(dash, opts.warmup_s)  # what the paused ones had due drains first
    before, _ = await measure(meter, players, opts.duration_s / 4, dash, f"before: {capacity} players at capacity")
    for p in active:
        p.pace(opts.interval_s / factor)
    during, tally = await measure(meter, players, opts.duration_s / 3, dash, f"overload ×{factor:g}")
    for p in active:
        p.pace(opts.interval_s)
    p99_before = _p99(before)
    recovered = await watch_recovery(players, p99_before, dash)
    admitted = Latencies()
    for lat in tally.latency.values():
        admitted.extend(lat.samples)
    refused = Latencies()
    for lat in tally.refusals.values():
        refused.extend(lat.samples)
    return OverloadFigures(
        factor=factor,
        capacity_players=capacity,
        capacity_commands_per_s=round(capacity / opts.interval_s, 1),
        offered_commands_per_s=round(during.commands_sent / during.seconds, 1),
        seconds=during.seconds,
        admitted=len(admitted),
        refused=len(refused),
        admitted_latency=admitted.summary(),
        refused_latency=refused.summary(),
        p99_before_ms=p99_before,
        recovered_after_s=recovered,
    )


async def watch_recovery(players: list[IdlePlayer], p99_before_ms: float, dash: Dashboard) -> float | None:
    """Seconds after the overload until a slice's p99 is back within 20 % of before (None: not in 30 s).

    Slices of `SLICE_S` of commands sent in them, so one slow straggler of the
    overload does not count against the slice after it."""
    limit = max(p99_before_ms * (1 + RECOVERY_WITHIN), 1.0)
    task = dash.phase(f"after the overload: until p99 <= {limit:.0f} ms", 30)
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < 30:
        tally = RunOutcomes()
        for p in players:
            p.tally = tally
        await asyncio.sleep(SLICE_S)  # one slice of time, measured by the clock
        await asyncio.sleep(SLICE_S)  # and time for its commands to be answered
        dash.update(task, min(30, time.perf_counter() - t0))
        samples = [s for lat in tally.latency.values() for s in lat.samples]
        if samples and summarize(samples).p99_ms <= limit:
            dash.finish(task)
            return round(elapsed + SLICE_S, 1)
    dash.finish(task)
    return None


def targets(f: PlayersFigures) -> list[Target]:
    out: list[Target] = []
    w = f.window
    if f.mode in ("open-loop", "find-capacity") and w is not None:
        out.append(at_most("enqueue p99", _p99(w, "queue.enqueue"), ENQUEUE_P99_MS, "ms"))
        out.append(at_most("delivery p99", w.delivery_latency.p99_ms, DELIVERY_P99_MS, "ms"))
        if w.system_cpu_ms_per_stored_event is not None:
            out.append(
                Target(
                    "system CPU per stored event",
                    f"<= {CPU_MS_PER_EVENT:g} ms",
                    w.system_cpu_ms_per_stored_event,
                    w.system_cpu_ms_per_stored_event <= CPU_MS_PER_EVENT,
                )
            )
    if f.saturate_ratio is not None:
        out.append(at_least("stored events/s ÷ raw OCC appends/s", f.saturate_ratio, SATURATE_RATIO))
    if f.capacity_players is not None:
        out.append(at_least("players held at one command per 10 s", f.capacity_players, CAPACITY_PLAYERS))
    if f.overload is not None:
        o = f.overload
        out.append(at_most("admitted p99 during overload", o.admitted_latency.p99_ms, OVERLOAD_ADMITTED_P99_MS, "ms"))
        back = o.recovered_after_s if o.recovered_after_s is not None else float("inf")
        out.append(at_most("back within 20 % of the p99 before", back, RECOVERY_S, "s"))
    return out
