"""JSON-RPC 2.0 exactly, over /ws and POST /rpc: errors, batches, notifications, frame size."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec

from questlog.gateway.openrpc import openrpc_document
from questlog.services.contract import protocol
from questlog.services.contract.protocol import METHODS


async def authed(open_socket, token, player_id):
    sock = await open_socket()
    answer = await sock.request("session.hello", {"token": token(player_id)})
    assert "result" in answer
    return sock


async def test_standard_errors(open_socket, token, player_id) -> None:
    sock = await authed(open_socket, token, player_id)
    await sock.ws.send_str("{not json")
    assert (await sock.recv())["error"]["code"] == protocol.PARSE_ERROR
    await sock.ws.send_str("[]")
    empty = await sock.recv()
    assert empty["error"]["code"] == protocol.INVALID_REQUEST and empty["id"] is None
    await sock.send({"jsonrpc": "1.0", "id": 7, "method": "queue.get"})
    assert (await sock.recv()) == {
        "jsonrpc": "2.0",
        "id": 7,
        "error": {"code": protocol.INVALID_REQUEST, "message": 'invalid request: "jsonrpc" must be "2.0"'},
    }
    assert (await sock.request("no.such.method"))["error"]["code"] == protocol.METHOD_NOT_FOUND
    bad = await sock.request("queue.enqueue", {"activity": "harvesting", "target": "oak", "quantity": 0})
    assert bad["error"]["code"] == protocol.INVALID_PARAMS
    assert bad["error"]["data"]["field"] == "quantity" and bad["error"]["data"]["reason"]
    positional = await sock.request("queue.get", [1, 2])
    assert positional["error"]["code"] == protocol.INVALID_PARAMS


async def test_batches_answer_every_request_and_skip_notifications(open_socket, token, player_id) -> None:
    sock = await authed(open_socket, token, player_id)
    await sock.send(
        [
            {"jsonrpc": "2.0", "id": "a", "method": "player.get"},
            {"jsonrpc": "2.0", "method": "queue.get"},  # notification: no answer
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            5,
            {"jsonrpc": "2.0", "id": 3, "method": "events.replay", "params": {"from_version": 1}},
        ]
    )
    answers = await sock.recv()
    assert isinstance(answers, list) and len(answers) == 4
    by_id = {a["id"]: a for a in answers if a["id"] is not None}
    assert by_id["a"]["result"]["version"] == 0
    assert by_id[2]["error"]["code"] == protocol.METHOD_NOT_FOUND
    assert by_id[3]["result"] == {"events": []}
    assert [a["error"]["code"] for a in answers if a["id"] is None] == [protocol.INVALID_REQUEST]
    # a frame of notifications only gets nothing back: the next answer is for the next request
    await sock.send([{"jsonrpc": "2.0", "method": "queue.get"}, {"jsonrpc": "2.0", "method": "player.get"}])
    assert (await sock.request("rpc.discover"))["result"]["openrpc"]


async def test_a_frame_over_the_limit_closes_with_1009(open_socket, settings) -> None:
    sock = await open_socket()
    await sock.ws.send_str(
        '{"jsonrpc":"2.0","id":1,"method":"x","params":{"p":"' + "x" * settings.max_frame_bytes + '"}}'
    )
    assert await sock.closed() == 1009


async def test_permessage_deflate_is_negotiated(gateway, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(gateway.ws_url, compress=15) as ws:
        assert ws.compress == 15


async def test_deflate_can_be_turned_off_to_save_memory_per_socket(gateway_wiring, http: aiohttp.ClientSession) -> None:
    from .conftest import start_gateway

    plain = await start_gateway(gateway_wiring, ws_deflate=False)
    try:
        async with http.ws_connect(plain.ws_url, compress=15) as ws:
            assert ws.compress == 0
    finally:
        await plain.runner.cleanup()


async def test_http_rpc_with_bearer_token(gateway, http: aiohttp.ClientSession, token, player_id) -> None:
    url = f"{gateway.base}/rpc"
    headers = {"Authorization": f"Bearer {token(player_id)}"}
    async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "queue.get"}, headers=headers) as resp:
        body = await resp.json()
    assert body["result"]["queued"] == []
    async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "queue.get"}) as resp:
        assert (await resp.json())["error"]["code"] == protocol.NOT_AUTHENTICATED
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "session.hello", "params": {"token": "x"}},
        {"jsonrpc": "2.0", "id": 2, "method": "presence.subscribe", "params": {"player_ids": [player_id]}},
    ]
    async with http.post(url, json=batch, headers=headers) as resp:
        codes = sorted(a["error"]["code"] for a in await resp.json())
    assert codes == [protocol.METHOD_NOT_FOUND, protocol.METHOD_NOT_FOUND]
    async with http.post(url, json={"jsonrpc": "2.0", "method": "queue.get"}, headers=headers) as resp:
        assert resp.status == 204


async def test_rpc_discover_is_generated_from_the_param_structs(open_socket, token, player_id) -> None:
    sock = await authed(open_socket, token, player_id)
    doc = (await sock.request("rpc.discover"))["result"]
    assert doc == msgspec.json.decode(msgspec.json.encode(openrpc_document()))
    assert {m["name"] for m in doc["methods"]} == set(METHODS)
    enqueue = next(m for m in doc["methods"] if m["name"] == "queue.enqueue")
    quantity = next(p for p in enqueue["params"] if p["name"] == "quantity")
    assert quantity["required"] and quantity["schema"]["minimum"] == 1


async def test_health_readiness_and_metrics(gateway, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{gateway.base}/readyz") as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "ok"
    async with http.get(f"{gateway.base}/metrics") as resp:
        assert "questlog_gateway_requests_total" in await resp.text()


async def test_metrics_join_the_process_registry_without_clashes(
    gateway, http: aiohttp.ClientSession, token, player_id
) -> None:
    """/metrics is the process's Prometheus registry: the gateway's tallies (gateway/tallies.py) and
    the OpenTelemetry instruments `questlog run gateway` installs there (tests/test_telemetry.py)."""
    from questlog.gateway.client import QuestlogClient

    client = QuestlogClient(gateway.ws_url, token(player_id), reconnect=False)
    await client.connect()
    async with http.get(f"{gateway.base}/metrics") as resp:
        text = await resp.text()
    await client.close()
    assert "questlog_gateway_sessions_total" in text and "process_cpu_seconds_total" in text
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(families) == len(set(families)), "no metric family twice"


async def test_an_idle_socket_gives_back_its_compressor_and_later_frames_still_inflate(
    gateway_wiring, http: aiohttp.ClientSession, token, player_id
) -> None:
    from questlog.gateway.deflate import compressor_releasable

    from .conftest import RawSocket, start_gateway

    running = await start_gateway(gateway_wiring, deflate_idle_s=1.0)
    try:
        sock = RawSocket(await http.ws_connect(running.ws_url, compress=15))
        assert sock.ws.compress == 15
        assert "result" in await sock.request("session.hello", {"token": token(player_id)})
        (session,) = [s for s in running.gw.sessions if s.identity and s.identity.player_id == player_id]
        assert compressor_releasable(session.ws), (
            "aiohttp no longer keeps its compressor at WebSocketWriter._compressobj: gateway/deflate.py must follow it"
        )
        assert session.ws._writer._compressobj is not None, "a socket that just sent keeps its compressor"
        async with asyncio.timeout(10):  # QUESTLOG_DEFLATE_IDLE_S after the last frame
            while session.ws._writer._compressobj is not None:
                await asyncio.sleep(0.05)

        # Frames after the release come from a fresh compressor while the client
        # keeps its context: every one must still inflate to the JSON meant.
        for quantity in (2, 3):
            answer = await sock.request(
                "queue.enqueue", {"activity": "harvesting", "target": "oak_log", "quantity": quantity}
            )
            assert answer["result"]["version"] >= 1, answer
        events = await sock.events(3)  # enqueued, started (by the processor), enqueued
        enqueued = [e for e in events if e["type"] == "task.enqueued"]
        assert [e["data"]["task"]["quantity"] for e in enqueued] == [2, 3], events
        await sock.ws.close()
    finally:
        await running.runner.cleanup()
