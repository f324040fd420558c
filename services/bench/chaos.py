"""`questlog bench chaos`: the load scenario while services are killed with SIGKILL and restarted.

Two instances each of commands, processor and reward (so a kill is a crash
the others must absorb, as in production), one of projector, snapshotter,
presence and notifier, all `questlog run` subprocesses; the gateway is not a
victim (a gateway crash is the reconnect-storm's subject). At random moments
one random service process gets SIGKILL and is started again after a random
pause. When the load stops, every player clears their queue, the system runs
until every task has ended, and the log is checked per player: versions
dense, each completed step exactly one `reward.granted`, every acknowledged
command in the log at the version it answered, and every client received its
whole log, in order, once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter

import msgspec
from rich.console import Console

from questlog.events.schema import QueueCleared, Recorded, TaskCancelled, TaskCompleted, TaskEnqueued, TaskFailed
from questlog.events.store import EventStore

from .checks import LogCheck, check_acknowledged, check_player, check_received
from .display import Dashboard
from .load import SERVICES, delivery, drive, latency_table, new_players
from .players import LoadPlayer, RunOutcomes, connect_all
from .results import BenchResult
from .stack import BenchStack, ServiceProcess
from .stats import LatencySummary
from .stored_times import StoredTimes

INSTANCES = {"commands": 2, "processor": 2, "reward": 2}
KILL_EVERY_S = (1.0, 4.0)
DOWN_FOR_S = (0.2, 2.0)
SETTLE_TIMEOUT_S = 180.0


class ChaosFigures(msgspec.Struct, kw_only=True):
    players: int
    rate_per_player: float
    duration_s: float
    kills: dict[str, int]
    commands_sent: int
    commands_ok: int
    errors: dict[str, int]
    command_latency: dict[str, LatencySummary]
    delivery_latency: LatencySummary
    settle_s: float
    check: LogCheck


async def chaos_monkey(
    stack: BenchStack, until: float, rng: random.Random, kills: Counter[str], dash: Dashboard
) -> None:
    loop = asyncio.get_running_loop()
    victims: list[ServiceProcess] = list(stack.procs)
    while loop.time() < until:
        await asyncio.sleep(min(rng.uniform(*KILL_EVERY_S), max(0.0, until - loop.time())))
        if loop.time() >= until:
            return
        victim = rng.choice(victims)
        await victim.kill9()
        kills[victim.service] += 1
        dash.stats["kills"] = ", ".join(f"{k} {v}" for k, v in sorted(kills.items()))
        await asyncio.sleep(rng.uniform(*DOWN_FOR_S))
        await victim.start()


def idle(events: list[Recorded]) -> bool:
    """Every enqueued task reached an end (completed, failed, cancelled or cleared)."""
    queued = {e.event.task.task_id for e in events if isinstance(e.event, TaskEnqueued)}
    ended = {e.event.task_id for e in events if isinstance(e.event, TaskCompleted | TaskFailed | TaskCancelled)}
    cleared = {t for e in events if isinstance(e.event, QueueCleared) for t in e.event.task_ids}
    return queued <= ended | cleared


async def settle(store: EventStore, players: list[LoadPlayer], dash: Dashboard) -> dict[str, list[Recorded]]:
    """Until every task ended and every client holds its whole log; the logs (bounded by SETTLE_TIMEOUT_S)."""
    task = dash.phase("letting every queue finish and every client catch up", len(players))
    logs: dict[str, list[Recorded]] = {}
    pending = list(players)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    gate = asyncio.Semaphore(50)

    async def read(p: LoadPlayer) -> None:
        async with gate:
            logs[p.player_id] = await store.read(p.player_id)

    while pending and time.monotonic() < deadline:
        still = []
        await asyncio.gather(*(read(p) for p in pending))
        for p in pending:
            log = logs[p.player_id]
            last = log[-1].version if log else 0
            if idle(log) and (p.client.version or 0) >= last:
                dash.advance(task)
            else:
                still.append(p)
        pending = still
        if pending:
            await asyncio.sleep(0.5)  # the system's own pace; polled, bounded by the deadline
    return logs


async def run_chaos(
    result: BenchResult, console: Console, *, players: int, rate: float, duration: float, seed: int
) -> None:
    tally = RunOutcomes()
    kills: Counter[str] = Counter()
    run = f"ch-{uuid.uuid4().hex[:6]}"
    rng = random.Random(seed)
    async with BenchStack(SERVICES, gateway=True, instances=INSTANCES) as stack:
        assert stack.nc is not None
        store = EventStore(stack.nc, stack.settings.streams.events)
        with Dashboard(console, "chaos") as dash:
            dash.stats["stack"] = (
                "2× commands, 2× processor, 2× reward, projector, snapshotter, presence, notifier, gateway"
            )
            group = new_players(stack, players, tally, run)
            failures = await connect_all(group)
            connected = [p for p in group if p.client.connected.is_set()]
            stored = StoredTimes(stack.nc)
            await stored.start()
            loop = asyncio.get_running_loop()
            monkey = asyncio.create_task(chaos_monkey(stack, loop.time() + duration, rng, kills, dash))
            wall = await drive(dash, connected, tally, rate, duration, seed)
            await monkey
            for proc in stack.procs:
                if not proc.alive:
                    await proc.start()
            clear = dash.phase("every player clears their queue", len(connected))

            async def final_clear(p: LoadPlayer) -> None:
                for attempt in range(10):  # a commands instance may have just been killed
                    try:
                        answer = await p.client.call("queue.clear", {"command_id": f"{p.player_id}-final"})
                        tally.acked.append((p.player_id, f"{p.player_id}-final", int(answer["version"])))
                        break
                    except Exception:
                        await asyncio.sleep(0.2 * (attempt + 1))
                dash.advance(clear)

            await asyncio.gather(*(final_clear(p) for p in connected))
            t0 = time.perf_counter()
            logs = await settle(store, connected, dash)
            settle_s = time.perf_counter() - t0
            await stored.stop()
            delivered, _ = delivery(connected, stored)
            check = LogCheck()
            for p in connected:
                log = logs.get(p.player_id, [])
                check_player(check, p.player_id, log)
                first = int(p.client.hellos[0]["version"]) + 1 if p.client.hellos else 1
                check_received(check, p.player_id, p.received.versions, log, first)
            check_acknowledged(check, logs, tally.acked)
            for chunk in range(0, len(group), 200):
                await asyncio.gather(*(p.close() for p in group[chunk : chunk + 200]))
    result.figures = ChaosFigures(
        players=players,
        rate_per_player=rate,
        duration_s=round(wall, 2),
        kills=dict(kills),
        commands_sent=tally.sent,
        commands_ok=tally.ok,
        errors=dict(tally.errors),
        command_latency=latency_table(tally),
        delivery_latency=delivered,
        settle_s=round(settle_s, 2),
        check=check,
    )
    result.checks_passed = check.ok and failures == [] and sum(kills.values()) > 0
    if failures:
        result.notes.append(f"{len(failures)} clients failed to connect")
