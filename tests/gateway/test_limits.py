"""Backpressure, connection caps, rate limits and draining: each with its documented answer."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime

import aiohttp

from questlog.events.schema import NewEvent, QueuePaused
from questlog.services.contract import protocol

from .conftest import RawSocket, start_gateway


async def test_a_client_too_slow_to_read_is_closed_with_4008_and_can_resume(
    gateway_wiring, http: aiohttp.ClientSession, token, player_id
) -> None:
    running = await start_gateway(gateway_wiring, send_queue_size=4)
    store = gateway_wiring.store
    try:
        sock = RawSocket(await http.ws_connect(running.ws_url))
        hello = (await sock.request("session.hello", {"token": token(player_id)}))["result"]
        # stop reading; push big events until the gateway gives up on this socket
        big = os.urandom(24_000).hex()
        for _ in range(2000):
            pos = await store.position(player_id)
            await store.append(
                player_id,
                [NewEvent(QueuePaused(reason=big), datetime.now(UTC))],
                expected=pos,
                causation_id=uuid.uuid4().hex,
            )
            if running.gw.metrics.too_slow:
                break
        assert running.gw.metrics.too_slow == 1
        assert await sock.closed(timeout=30) == 4008
        # nothing is lost: a resume from the last version it read replays the rest
        again = RawSocket(await http.ws_connect(running.ws_url))
        resumed = (
            await again.request(
                "session.hello", {"token": token(player_id), "resume": {"epoch": hello["epoch"], "version": 0}}
            )
        )["result"]
        assert resumed["recovered"] is True and resumed["missed"] == resumed["version"] > 4
        await again.ws.close()
    finally:
        await running.runner.cleanup()


async def test_connection_caps_close_with_4029(gateway_wiring, http: aiohttp.ClientSession, token, player_id) -> None:
    running = await start_gateway(gateway_wiring, max_conns_per_player=2, max_conns_per_ip=3)
    try:
        socks = [RawSocket(await http.ws_connect(running.ws_url)) for _ in range(3)]
        for sock in socks[:2]:
            assert "result" in await sock.request("session.hello", {"token": token(player_id)})
        third = await socks[2].request("session.hello", {"token": token(player_id)})
        assert third["error"]["code"] == protocol.RATE_LIMITED
        assert await socks[2].closed() == 4029
        fourth = RawSocket(await http.ws_connect(running.ws_url))  # the address holds 3 again
        assert (await fourth.request("rpc.discover"))["error"]["code"] == protocol.NOT_AUTHENTICATED
        fifth = RawSocket(await http.ws_connect(running.ws_url))
        assert await fifth.closed() == 4029
    finally:
        await running.runner.cleanup()


async def test_rate_limits_answer_32029_with_retry_after(
    gateway_wiring, http: aiohttp.ClientSession, token, player_id
) -> None:
    running = await start_gateway(gateway_wiring, rate_player_per_s=1.0, rate_player_burst=3)
    try:
        sock = RawSocket(await http.ws_connect(running.ws_url))
        assert "result" in await sock.request("session.hello", {"token": token(player_id)})
        await sock.send([{"jsonrpc": "2.0", "id": i, "method": "rpc.discover"} for i in range(6)])
        answers = await sock.recv()
        limited = [a for a in answers if "error" in a]
        assert len(limited) >= 3
        assert all(a["error"]["code"] == protocol.RATE_LIMITED for a in limited)
        assert all(0 < a["error"]["data"]["retry_after_ms"] <= 3000 for a in limited)
        await sock.ws.close()
    finally:
        await running.runner.cleanup()


async def test_shutdown_drains_with_1001(gateway_wiring, http: aiohttp.ClientSession, token, player_id) -> None:
    running = await start_gateway(gateway_wiring)
    sock = RawSocket(await http.ws_connect(running.ws_url))
    assert "result" in await sock.request("session.hello", {"token": token(player_id)})
    cleanup = asyncio.create_task(running.runner.cleanup())
    assert await sock.closed() == 1001
    await cleanup


async def test_rate_limiter_takes_from_every_bucket_of_a_call_or_from_none(redis_client, player_id) -> None:
    from questlog.gateway.ratelimit import Bucket, Claim, RateLimiter

    limiter = RateLimiter(redis_client, prefix=f"rl-{player_id}")
    ip = Claim("ip", "10.0.0.1", Bucket(rate_per_s=0.001, burst=10))
    player = Claim("player", player_id, Bucket(rate_per_s=0.001, burst=2))
    assert await limiter.take([ip, player]) == 0
    assert await limiter.take([ip, player]) == 0
    assert await limiter.take([ip, player]) > 0  # the player's bucket is empty ...
    tokens = float(await redis_client.hget(f"rl-{player_id}:ip:10.0.0.1", "tokens"))
    assert 7.9 < tokens < 8.1  # ... and the refused call took nothing from the address's
    twice = Claim("twice", player_id, Bucket(rate_per_s=0.001, burst=3))
    assert await limiter.take([twice, twice]) == 0  # one bucket named twice costs twice
    assert await limiter.take([twice, twice]) > 0


async def test_concurrent_takes_share_one_script_run_and_grant_exactly_the_burst(redis_client, player_id) -> None:
    from questlog.gateway.ratelimit import Bucket, Claim, RateLimiter

    class Counted(RateLimiter):
        runs = 0

        async def _take_batch(self, calls):
            Counted.runs += 1
            return await super()._take_batch(calls)

    limiter = Counted(redis_client, prefix=f"rl-{player_id}")
    claim = Claim("player", player_id, Bucket(rate_per_s=0.001, burst=25))
    waits = await asyncio.gather(*(limiter.take([claim]) for _ in range(40)))
    assert Counted.runs == 1
    assert sum(1 for w in waits if w == 0) == 25 and all(w > 0 for w in waits[25:])


async def test_two_gateways_share_one_port_with_reuse_port(gateway_wiring) -> None:
    """QUESTLOG_REUSE_PORT: one process per core on one port; without it a second one cannot bind."""
    from questlog.gateway.app import serve
    from questlog.services.runtime.settings import RealtimeSettings

    first = await start_gateway(gateway_wiring, reuse_port=True)
    port = int(first.base.rsplit(":", 1)[1])
    second = await serve(gateway_wiring, "127.0.0.1", port, RealtimeSettings(reuse_port=True))
    try:
        assert second.addresses[0][1] == port
        async with aiohttp.ClientSession() as http:
            for _ in range(4):  # the kernel picks the process; either answers
                async with http.get(f"{first.base}/healthz") as r:
                    assert r.status == 200
        try:
            lone = await serve(gateway_wiring, "127.0.0.1", port, RealtimeSettings(reuse_port=False))
        except OSError:
            pass
        else:
            await lone.cleanup()
            raise AssertionError("a gateway without reuse_port bound a port two others hold")
    finally:
        await second.cleanup()
        await first.runner.cleanup()
