"""Through the whole system: the Python client, the gateway, the commands service and the engine."""

from __future__ import annotations

import asyncio

from questlog.gateway.client import QuestlogClient
from questlog.services.contract.protocol import RpcError

from ..watch import until


async def collect_until(client: QuestlogClient, done, timeout: float = 30.0) -> list[dict]:
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while not out or not done(out):
            out.append(await client.events.get())
    return out


def completed(events: list[dict]) -> bool:
    return any(e["type"] == "task.completed" for e in events)


async def test_a_client_away_while_its_task_runs_gets_exactly_the_missed_versions_then_live_ones(
    gateway, gateway_wiring, token, player_id
) -> None:
    store = gateway_wiring.store
    first = QuestlogClient(gateway.ws_url, token(player_id), reconnect=False)
    hello = await first.connect()
    assert hello["recovered"] is False
    result = await first.call("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 6})
    seen = await collect_until(first, lambda es: any(e["type"] == "task.started" for e in es))
    away_at = first.version
    epoch = first.epoch
    await first.close()
    assert result["version"] <= away_at

    # the task keeps running while nobody is connected
    log = await until(gateway_wiring.nc, store, player_id, lambda es: len(es) >= away_at + 3)
    second = QuestlogClient(gateway.ws_url, token(player_id), epoch=epoch, version=away_at)
    h2 = await second.connect()
    assert h2["recovered"] is True and h2["missed"] == h2["version"] - away_at >= 3
    rest = await collect_until(second, completed)
    await second.close()
    log = await store.read(player_id)
    versions = [e["version"] for e in seen + rest]
    assert versions == list(range(hello["version"] + 1, versions[-1] + 1))  # no gap, no duplicate
    assert [(e["version"], e["type"]) for e in seen + rest] == [
        (r.version, r.type) for r in log if r.version > hello["version"]
    ][: len(versions)]
    assert second.gaps_repaired == 0


async def test_the_client_reconnects_by_itself_and_resumes_gap_free(gateway, token, player_id) -> None:
    client = QuestlogClient(gateway.ws_url, token(player_id), backoff_base_s=0.01)
    start = await client.connect()
    try:
        await client.call("queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": 5})
        got = [await client.next_event()]
        await client.drop()  # a network failure: the client reconnects and resumes
        got += await collect_until(client, completed)
        assert [e["version"] for e in got] == list(range(start["version"] + 1, got[-1]["version"] + 1))
        assert len(client.hellos) == 2 and client.hellos[1]["recovered"] is True
        assert len(client.close_codes) == 1
        try:
            await client.call("queue.cancel", {"task_id": "t-nope"})
        except RpcError as err:
            assert err.code == -32004 and err.data == {"what": "task", "id": "t-nope"}
    finally:
        await client.close()
