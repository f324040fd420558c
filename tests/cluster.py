"""A 3-node NATS cluster on loopback for the R3 tests: nodes killed, frozen, restarted.

Three nats-server processes from the wheel, routed to each other, each with
its own store dir and fixed ports, so a restarted node (one or all of them)
comes back as the same peer with the same data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from nats.aio.client import Client as NATS
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo

from questlog.services.runtime.embedded import ServerProcess, free_port, nats_server

DEADLINE_S = 40.0


class Cluster:
    """Three nats-server processes routed to each other, each with its own store dir."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = [free_port() for _ in range(3)]
        self.cluster_ports = [free_port() for _ in range(3)]
        self.monitor_ports = [free_port() for _ in range(3)]
        self.names = [f"n{i}" for i in range(3)]
        self.nodes: list[ServerProcess] = [self._node(i) for i in range(3)]
        self.frozen: set[int] = set()

    def _node(self, i: int) -> ServerProcess:
        peers = [p for j, p in enumerate(self.cluster_ports) if j != i]
        return nats_server(
            self.ports[i],
            self.tmp / self.names[i],
            name=self.names[i],
            cluster=(self.cluster_ports[i], peers),
            monitor_port=self.monitor_ports[i],  # /connz: which client is on which node
        )

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{p}" for p in self.ports]

    @property
    def seeds(self) -> str:
        """Every node, as QUESTLOG_NATS_URL takes them (a comma-separated list)."""
        return ",".join(self.urls)

    def log_path(self, name: str) -> Path:
        return self.nodes[self.names.index(name)].log_path

    async def start(self) -> None:
        await asyncio.gather(*(n.start() for n in self.nodes))

    async def kill(self, name: str) -> int:
        """SIGKILL the node, and return once the process is gone."""
        i = self.names.index(name)
        self.nodes[i].kill()
        proc = self.nodes[i].proc
        assert proc is not None
        await proc.wait()
        return i

    async def restart(self, i: int) -> None:
        await self.nodes[i].stop()  # reaps the killed process
        self.nodes[i] = self._node(i)  # same ports, same store dir
        await self.nodes[i].start()

    def freeze(self, name: str) -> int:
        """SIGSTOP the node: it holds its sockets but answers nothing (a stalled VM, a GC pause)."""
        i = self.names.index(name)
        pid = self.nodes[i].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        self.frozen.add(i)
        return i

    def thaw(self, i: int) -> None:
        pid = self.nodes[i].pid
        assert pid is not None
        os.kill(pid, signal.SIGCONT)
        self.frozen.discard(i)

    async def restart_all(self) -> None:
        """Stop every node (SIGTERM), then start all three again on the same ports and store dirs."""
        await self.stop()
        self.nodes = [self._node(i) for i in range(3)]
        await self.start()

    async def clients(self) -> dict[str, str]:
        """Connection name -> the node it is connected to, for every node that answers."""
        where: dict[str, str] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            for i, name in enumerate(self.names):
                if i in self.frozen:
                    continue
                try:
                    async with http.get(f"http://127.0.0.1:{self.monitor_ports[i]}/connz?limit=1024") as r:
                        conns = (await r.json())["connections"] or []
                except (aiohttp.ClientError, TimeoutError):
                    continue
                where.update({c["name"]: name for c in conns if c.get("name")})
        return where

    async def stop(self) -> None:
        for i in list(self.frozen):  # a stopped process would not act on SIGTERM
            self.thaw(i)
        await asyncio.gather(*(n.stop() for n in self.nodes))


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE_S) -> None:
    """Poll `condition` until true. Only for server state that raises no event a
    client could await (JetStream readiness, raft replica catch-up)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def replicas_current(info: StreamInfo, names: list[str]) -> bool:
    c = info.cluster
    if c is None or c.leader is None or not c.replicas:
        return False
    peers = {c.leader} | {r.name for r in c.replicas if r.current and not r.offline and not r.lag}
    return peers == set(names)


async def stream_info(js: JetStreamContext, stream: str) -> StreamInfo | None:
    """The stream's info, or None while the cluster cannot answer (no meta or stream leader)."""
    try:
        return await js.stream_info(stream)
    except (TimeoutError, NatsError):
        return None


async def leader_of(
    js: JetStreamContext, stream: str, timeout: float = DEADLINE_S, *, other_than: str | None = None
) -> str:
    """The stream's raft leader once it has one (`other_than`: a new one); polled, an election has no event."""
    leader: list[str] = []

    async def elected() -> bool:
        info = await stream_info(js, stream)
        found = info.cluster.leader if info is not None and info.cluster is not None else None
        if found and found != other_than:
            leader.append(found)
            return True
        return False

    await until(elected, f"a leader of {stream}" + (f" other than {other_than}" if other_than else ""), timeout)
    return leader[-1]


async def move_leader(nc: NATS, stream: str, to: str, timeout: float = DEADLINE_S) -> None:
    """Make `to` the stream's leader: a leader stepdown naming it the preferred peer (nats-server 2.11+)."""
    js = nc.jetstream(timeout=1.0)
    request = json.dumps({"placement": {"preferred": to}}).encode()

    async def moved() -> bool:
        if await leader_of(js, stream) == to:
            return True
        with contextlib.suppress(TimeoutError, NatsError):
            await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", request, timeout=2.0)
        return False

    await until(moved, f"{to} to lead {stream}", timeout)


async def all_current(js: JetStreamContext, streams: list[str], names: list[str], timeout: float = DEADLINE_S) -> None:
    """Until every stream has a leader and every other node is a current replica (polled: raft catch-up)."""

    async def current() -> bool:
        for stream in streams:
            info = await stream_info(js, stream)
            if info is None or not replicas_current(info, names):
                return False
        return True

    await until(current, f"every replica of {', '.join(streams)} to be current", timeout)
