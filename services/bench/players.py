"""Players that speak the protocol through the real gateway, with `gateway/client.py`.

A `BenchClient` is the project's client plus one thing: it stamps the wall
time a frame was read on every `event` notification, before the client's own
ordering and gap repair, so delivery latency ends where the bytes arrived.
A `LoadPlayer` sends commands at a fixed rate on an absolute schedule (a late
loop does not silently lower the rate: lateness is recorded) and keeps what
it received.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from questlog.gateway.client import ConnectionLost, QuestlogClient
from questlog.services.contract.protocol import RATE_LIMITED, RpcError

from .stats import Latencies

RX = "_bench_rx"  # key of the receive stamp added to an event's params


class BenchClient(QuestlogClient):
    """QuestlogClient that stamps each event's arrival time."""

    def _dispatch(self, item: dict[str, Any]) -> None:
        if item.get("method") == "event" and isinstance(item.get("params"), dict):
            item["params"][RX] = time.time()
        super()._dispatch(item)


class Received:
    """What one player's client got: versions in order, and (version -> arrival time, type)."""

    __slots__ = ("arrivals", "types", "versions")

    def __init__(self) -> None:
        self.versions: list[int] = []
        self.arrivals: dict[int, float] = {}
        self.types: dict[int, str] = {}

    def add(self, params: dict[str, Any]) -> None:
        v = int(params["version"])
        self.versions.append(v)
        self.arrivals[v] = float(params.get(RX, time.time()))
        self.types[v] = str(params.get("type"))


class RunOutcomes:
    """Shared counters of every player of a run: latencies per method, errors, lateness."""

    def __init__(self) -> None:
        self.latency: dict[str, Latencies] = {}
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.ok = 0
        self.events = 0
        self.late = Latencies()  # how late the generator sent each command versus its schedule
        self.acked: list[tuple[str, str, int]] = []  # (player, command_id, version) of every success
        self.refusals: dict[str, Latencies] = {}  # -32029 answers by method: how long a refusal took

    def took(self, method: str, seconds: float) -> None:
        lat = self.latency.get(method)
        if lat is None:
            lat = self.latency[method] = Latencies()
        lat.add(seconds)

    def refused(self, method: str, seconds: float) -> None:
        lat = self.refusals.get(method)
        if lat is None:
            lat = self.refusals[method] = Latencies()
        lat.add(seconds)


def mix(i: int) -> tuple[str, dict[str, Any]]:
    """The i-th command of a player: four enqueues of one short harvest, then a clear (the queue never fills)."""
    if i % 5 == 4:
        return "queue.clear", {}
    return "queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 1}


class LoadPlayer:
    def __init__(
        self, player_id: str, url: str, token: str, tally: RunOutcomes, *, resume_epoch: str | None = None
    ) -> None:
        self.player_id = player_id
        self.tally = tally
        self.client = BenchClient(
            url, token, epoch=resume_epoch, version=0 if resume_epoch else None, call_timeout_s=30.0
        )
        self.received = Received()
        self.acked: list[tuple[str, str, int]] = []  # every success of this player, whichever tally counted it
        self._drain: asyncio.Task[None] | None = None
        self._ids = itertools.count()

    async def connect(self) -> dict[str, Any]:
        hello = await self.client.connect()
        self._drain = asyncio.create_task(self._take_events())
        return hello

    async def _take_events(self) -> None:
        while True:
            params = await self.client.events.get()
            self.received.add(params)
            self.tally.events += 1

    async def play(self, rate_per_s: float, until: float, rng: random.Random) -> None:
        """Commands at `rate_per_s` until loop time `until`, starting at a random phase."""
        loop = asyncio.get_running_loop()
        period = 1.0 / rate_per_s
        next_at = loop.time() + rng.uniform(0, period)
        i = 0
        while next_at < until and loop.time() < until:  # a player behind schedule still stops at `until`
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.tally.late.add(-delay)
            await self.command(i)
            i += 1
            next_at += period

    async def command(self, i: int) -> None:
        method, params = mix(i)
        await self.send(method, {**params, "command_id": f"{self.player_id}-{i}"})

    async def send(self, method: str, params: dict[str, Any]) -> Any:
        """One call, its latency and outcome in the tally; the result, or None if it failed."""
        result, _ = await self.attempt(method, params)
        return result

    async def attempt(self, method: str, params: dict[str, Any]) -> tuple[Any, RpcError | None]:
        """One call, recorded in the tally: (result, None), (None, the error), or (None, None) when
        the answer was lost (the connection dropped or it timed out)."""
        tally = self.tally  # the one of the window the call started in
        tally.sent += 1
        started = time.perf_counter()
        try:
            result = await self.client.call(method, params)
        except RpcError as exc:
            tally.errors[f"{method} {exc.code}"] += 1
            if exc.code == RATE_LIMITED:
                tally.refused(method, time.perf_counter() - started)
            return None, exc
        except (ConnectionLost, TimeoutError) as exc:
            tally.errors[f"{method} {type(exc).__name__}"] += 1
            return None, None
        tally.took(method, time.perf_counter() - started)
        tally.ok += 1
        command_id = params.get("command_id")
        if command_id and isinstance(result, dict) and "version" in result:
            acked = (self.player_id, str(command_id), int(result["version"]))
            tally.acked.append(acked)
            self.acked.append(acked)
        return result, None

    async def close(self) -> None:
        if self._drain is not None:
            self._drain.cancel()
        await self.client.close()


async def connect_all(
    players: Sequence[LoadPlayer], concurrency: int = 200, on_done: Any = None
) -> list[BaseException]:
    """Connect every player, at most `concurrency` hellos at once; the failures."""
    gate = asyncio.Semaphore(concurrency)
    failures: list[BaseException] = []

    async def one(p: LoadPlayer) -> None:
        async with gate:
            try:
                await p.connect()
            except BaseException as exc:
                failures.append(exc)
            if on_done is not None:
                on_done()

    await asyncio.gather(*(one(p) for p in players))
    return failures
