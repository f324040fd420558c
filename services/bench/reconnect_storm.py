"""`questlog bench reconnect-storm`: N clients drop, events happen, all reconnect at once.

Phase 1: N clients connect and each enqueues one task (so each player has a
history and the client a position). Phase 2: every client closes; while they
are away each player gets `missed` more commands through the commands service
over NATS (nothing of it reaches a client live). Phase 3: N new clients
resume from the (epoch, version) the old ones held, all started at the same
moment. With several gateways, each client comes back to another one than it
left, as after a gateway's crash behind a load balancer. Measured: the time
until every client has its hello and every missed event; checked:
`recovered` is true and each client's versions after its old position are
exactly old+1 … current, nothing missing, nothing twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import msgspec
from rich.console import Console

from questlog.gateway.auth import issue_token
from questlog.services.contract.command_client import Actor, CommandClient

from .display import Dashboard
from .players import BenchClient
from .procfs import CpuUse, CpuWindow
from .results import BenchResult, at_most
from .stack import BenchStack
from .stats import Latencies, LatencySummary

RECOVERED_IN_S = 2.0
ENQUEUE = {"activity": "harvesting", "target": "oak_log", "quantity": 1}


class StormFigures(msgspec.Struct, kw_only=True):
    clients: int
    gateways: int
    missed_per_client: int
    all_recovered_s: float
    per_client: LatencySummary  # from the storm's start to that client's last missed event
    hello: LatencySummary  # from the storm's start to that client's hello answer
    recovered: int
    not_recovered: int
    gap_free: int
    with_gaps: int
    failures: dict[str, int]
    cpu: list[CpuUse]  # over the storm (phase 3)


class _Outcome(msgspec.Struct):
    player_id: str
    hello_s: float = 0.0
    done_s: float = 0.0
    recovered: bool = False
    gap_free: bool = False
    failure: str = ""


async def run_storm(
    result: BenchResult, console: Console, *, clients: int, missed: int, gateways: int = 1, timeout_s: float = 60.0
) -> None:
    run = f"st-{uuid.uuid4().hex[:6]}"
    ids = [f"{run}-{i:05d}" for i in range(clients)]
    async with BenchStack(("commands",), gateway=True, gateways=gateways) as stack:
        assert stack.nc is not None
        urls = stack.gateway_urls
        tokens = {p: issue_token(stack.settings, p, ttl_s=3600) for p in ids}
        left = {p: urls[i % len(urls)] for i, p in enumerate(ids)}
        back = {p: urls[(i + 1) % len(urls)] for i, p in enumerate(ids)}  # another gateway, if there are several
        # one HTTP session for every client, as a load generator should (its cost is not the server's)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            with Dashboard(console, "reconnect-storm") as dash:
                dash.stats["stack"] = f"nats-server, redis-server, commands, {len(urls)} gateway(s) (subprocesses)"
                positions = await _first_sessions(dash, http, left, ids, tokens)
                await _all_closed(dash, stack)
                targets = await _events_happen(dash, CommandClient(stack.nc, timeout=30.0), ids, missed)
                cpu = CpuWindow(stack.pids())
                cpu.start()
                outcomes, total = await _storm(dash, http, back, ids, tokens, positions, targets, timeout_s)
                usage = cpu.stop()
                dash.stats["all recovered in"] = f"{total:.3f} s"
    failures: dict[str, int] = {}
    for o in outcomes:
        if o.failure:
            failures[o.failure] = failures.get(o.failure, 0) + 1
    ok = [o for o in outcomes if not o.failure]
    per_client, hello = Latencies(), Latencies()
    for o in ok:
        per_client.add(o.done_s)
        hello.add(o.hello_s)
    figures = StormFigures(
        clients=clients,
        gateways=gateways,
        missed_per_client=missed,
        all_recovered_s=round(total, 3),
        per_client=per_client.summary(),
        hello=hello.summary(),
        recovered=sum(1 for o in outcomes if o.recovered),
        not_recovered=sum(1 for o in outcomes if not o.recovered),
        gap_free=sum(1 for o in outcomes if o.gap_free),
        with_gaps=sum(1 for o in outcomes if not o.gap_free),
        failures=failures,
        cpu=usage,
    )
    result.figures = figures
    result.targets = [at_most(f"{clients} clients recovered", total, RECOVERED_IN_S, "s")]
    result.checks_passed = figures.gap_free == clients and figures.recovered == clients


async def _first_sessions(
    dash: Dashboard, http: aiohttp.ClientSession, urls: dict[str, str], ids: list[str], tokens: dict[str, str]
) -> dict[str, tuple[str, int]]:
    """Connect, enqueue once, wait for our own events; the (epoch, version) each client holds."""
    task = dash.phase(f"phase 1: {len(ids)} clients connect and play once", len(ids))
    gate = asyncio.Semaphore(200)
    out: dict[str, tuple[str, int]] = {}

    async def one(p: str) -> None:
        async with gate:
            client = BenchClient(urls[p], tokens[p], reconnect=False, http=http)
            try:
                await client.connect()
                answer = await client.call_admitted("queue.enqueue", {**ENQUEUE, "command_id": f"{p}-first"})
                async with asyncio.timeout(30):
                    while (client.version or 0) < int(answer["version"]):
                        await client.events.get()
                assert client.epoch is not None and client.version is not None
                out[p] = (client.epoch, client.version)
            finally:
                await client.close()
            dash.advance(task)

    await asyncio.gather(*(one(p) for p in ids))
    return out


async def _all_closed(dash: Dashboard, stack: BenchStack) -> None:
    """Until the gateway has let go of every old session (its per-player cap would refuse the new ones)."""
    task = dash.phase("waiting for the gateway to close the old sessions", 1)
    async with asyncio.timeout(30):
        while await stack.gateway_metric("questlog_gateway_connections") > 0:
            await asyncio.sleep(0.1)  # another process's state: polled
    dash.finish(task)


async def _events_happen(dash: Dashboard, commands: CommandClient, ids: list[str], missed: int) -> dict[str, int]:
    """`missed` commands per player while nobody is connected; each player's final version."""
    task = dash.phase(f"phase 2: {missed} events per player while offline", len(ids) * missed)
    gate = asyncio.Semaphore(100)
    final: dict[str, int] = {}

    async def one(p: str) -> None:
        async with gate:
            for i in range(missed):
                params = {**ENQUEUE, "command_id": f"{p}-away-{i}"}
                answer = await commands.call("queue.enqueue", p, params, Actor(p))
                final[p] = int(answer["version"])
                dash.advance(task)

    await asyncio.gather(*(one(p) for p in ids))
    return final


async def _storm(
    dash: Dashboard,
    http: aiohttp.ClientSession,
    urls: dict[str, str],
    ids: list[str],
    tokens: dict[str, str],
    positions: dict[str, tuple[str, int]],
    targets: dict[str, int],
    timeout_s: float,
) -> tuple[list[_Outcome], float]:
    task = dash.phase(f"phase 3: {len(ids)} clients reconnect at once", len(ids))
    clients = {
        p: BenchClient(urls[p], tokens[p], epoch=positions[p][0], version=positions[p][1], reconnect=False, http=http)
        for p in ids
    }
    start = asyncio.Event()
    t0 = 0.0

    async def one(p: str) -> _Outcome:
        out = _Outcome(p)
        client = clients[p]
        old, target = positions[p][1], targets[p]
        await start.wait()
        try:
            hello: dict[str, Any] = await client.connect()
            out.hello_s = time.perf_counter() - t0
            out.recovered = bool(hello.get("recovered")) and int(hello.get("missed", -1)) == target - old
            got: list[int] = []
            while not got or got[-1] < target:  # the events the client took in, in the order it gave them
                got.append(int((await client.events.get())["version"]))
            out.done_s = time.perf_counter() - t0
            out.gap_free = got == list(range(old + 1, target + 1))
        except Exception as exc:
            out.failure = type(exc).__name__
        dash.advance(task)
        return out

    runs = [asyncio.create_task(one(p)) for p in ids]
    await asyncio.sleep(0)  # every task is waiting on `start`
    t0 = time.perf_counter()
    start.set()
    try:
        outcomes = await asyncio.wait_for(asyncio.gather(*runs), timeout_s)
    except TimeoutError:
        outcomes = [r.result() if r.done() else _Outcome(p, failure="timeout") for p, r in zip(ids, runs, strict=True)]
    total = time.perf_counter() - t0
    for chunk in range(0, len(ids), 200):
        await asyncio.gather(*(clients[p].close() for p in ids[chunk : chunk + 200]), return_exceptions=True)
    return outcomes, total
