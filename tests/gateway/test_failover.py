"""Two gateway processes: one is killed with -9, the client moves to the other and recovers gap-free."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest

from questlog.events.schema import NewEvent, QueuePaused
from questlog.gateway.client import QuestlogClient
from questlog.services.bench.stack import ServiceProcess, http_ready
from questlog.services.presence import changed_subject, run_sweeper
from questlog.services.runtime.embedded import free_port

from ..processes import service_env
from .conftest import RawSocket

TTL_S = 1.5


async def append(store, player_id: str, n: int) -> None:
    for _ in range(n):
        pos = await store.position(player_id)
        await store.append(
            player_id,
            [NewEvent(QueuePaused(reason="x"), datetime.now(UTC))],
            expected=pos,
            causation_id=uuid.uuid4().hex,
        )


@pytest.mark.slow
async def test_kill_9_of_a_gateway_moves_the_client_gap_free_and_presence_follows(
    gateway_wiring, settings, token, player_id, tmp_path
) -> None:
    store, nc = gateway_wiring.store, gateway_wiring.nc
    ports = [free_port(), free_port()]
    procs = [
        await ServiceProcess(
            "gateway",
            service_env(
                settings.nats_url,
                settings.redis_url,
                QUESTLOG_HTTP_PORT=str(port),
                QUESTLOG_PRESENCE_TTL_S=str(TTL_S),
                QUESTLOG_GATEWAY_ID=f"gw{i}-{uuid.uuid4().hex[:6]}",
            ),
            tmp_path,
            i,
        ).start()
        for i, port in enumerate(ports)
    ]
    bases = [f"http://127.0.0.1:{p}" for p in ports]
    stop = asyncio.Event()
    sweeper = asyncio.create_task(run_sweeper(gateway_wiring, stop, ttl_s=TTL_S, every_s=0.1))
    bystander = f"{player_id}-b"  # held only by the gateway that will crash
    changes: dict[str, list[bool]] = {player_id: [], bystander: []}
    offline = asyncio.Event()

    async def on_change(msg) -> None:
        change = msgspec.json.decode(msg.data)
        changes[change["player_id"]].append(change["online"])
        if change["player_id"] == bystander and not change["online"]:
            offline.set()

    subs = [await nc.subscribe(changed_subject(p), cb=on_change) for p in changes]
    async with aiohttp.ClientSession() as http:
        for proc, base in zip(procs, bases, strict=True):
            await http_ready(base, proc)
        client = QuestlogClient([f"ws://127.0.0.1:{p}/ws" for p in ports], token(player_id), backoff_base_s=0.02)
        try:
            start = await client.connect()
            other = RawSocket(await http.ws_connect(f"ws://127.0.0.1:{ports[0]}/ws"))
            assert "result" in await other.request("session.hello", {"token": token(bystander)})
            await append(store, player_id, 3)
            got = [await client.next_event() for _ in range(3)]

            await procs[0].kill9()
            await append(store, player_id, 4)  # stored while the client has no gateway
            async with asyncio.timeout(30):
                while len(client.hellos) < 2:
                    got.append(await client.next_event())
            await append(store, player_id, 2)
            final = (await store.position(player_id)).version
            async with asyncio.timeout(30):
                while not got or got[-1]["version"] < final:
                    got.append(await client.next_event())
            assert [e["version"] for e in got] == list(range(start["version"] + 1, final + 1))
            assert client.hellos[1]["recovered"] is True

            # the crashed gateway's leases lapse: its only player goes offline, ours stays online
            await asyncio.wait_for(offline.wait(), 30)
            status = await client.call("presence.get", {"player_ids": [player_id, bystander]})
            assert [s["online"] for s in status] == [True, False]
            assert False not in changes[player_id]
        finally:
            await client.close()
            stop.set()
            await sweeper
            for sub in subs:
                await sub.unsubscribe()
            for proc in procs:
                await proc.stop() if proc.proc and proc.proc.returncode is None else None
