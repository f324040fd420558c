"""Presence across gateways with TTLs, and the notifier's inbox and webhooks for offline players."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec
import pytest
from aiohttp import web

from questlog.events.schema import NewEvent, QueuePaused, QueueResumed
from questlog.services.notifier import serve_notifier
from questlog.services.presence import PlayerLocks, PresenceLeases, PresenceStore, changed_subject, run_sweeper
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import RealtimeSettings

from .test_jsonrpc import authed


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> None:
    """Re-check a condition on the servers' state until it holds."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_presence_get_and_changes_follow_connections(open_socket, token, player_id) -> None:
    watcher = await authed(open_socket, token, f"{player_id}-w")
    assert (await watcher.request("presence.get", {"player_ids": [player_id]}))["result"] == [
        {"player_id": player_id, "online": False, "last_seen": None}
    ]
    assert (await watcher.request("presence.subscribe", {"player_ids": [player_id]}))["result"] == {}
    first = await authed(open_socket, token, player_id)
    second = await authed(open_socket, token, player_id)
    status = (await watcher.request("presence.get", {"player_ids": [player_id]}))["result"][0]
    assert status["online"] is True and status["last_seen"].endswith("Z")
    await first.ws.close()
    await second.request("player.get")  # still held by the second socket
    await second.ws.close()
    async with asyncio.timeout(10):
        while True:
            changes = [m["params"] for m in watcher.notes if m.get("method") == "presence.changed"]
            if len(changes) >= 2:
                break
            watcher.notes.append(await watcher.recv())
    assert [c["online"] for c in changes] == [True, False]
    assert changes[1]["player_id"] == player_id and changes[1]["last_seen"]


class Announcements:
    """The `presence.changed` messages of one player, and an event for each time they went offline."""

    def __init__(self) -> None:
        self.changes: list[dict] = []
        self.offline = asyncio.Event()

    async def watch(self, nc, player_id: str):
        async def on_change(msg) -> None:
            self.changes.append(msgspec.json.decode(msg.data))
            if not self.changes[-1]["online"]:
                self.offline.set()

        sub = await nc.subscribe(changed_subject(player_id), cb=on_change)
        await flushed(nc)
        return sub


async def test_a_lease_nobody_renews_expires_but_another_gateway_keeps_the_player_online(
    gateway_wiring, player_id
) -> None:
    redis, nc = gateway_wiring.redis, gateway_wiring.nc
    store = PresenceStore(redis, nc, ttl_s=0.6)
    seen = Announcements()
    changes, offline = seen.changes, seen.offline
    sub = await seen.watch(nc, player_id)
    stop = asyncio.Event()
    sweeper = asyncio.create_task(run_sweeper(gateway_wiring, stop, ttl_s=0.6, every_s=0.05))
    alive = PresenceLeases(store, "gw-alive", renew_every_s=0.2)
    alive.start()
    try:
        await store.join(player_id, "gw-crashed")  # a gateway that will never renew
        await alive.connected(player_id)

        async def crashed_lease_gone() -> bool:
            return await redis.zscore(f"presence:gw:{player_id}", "gw-crashed") is None

        await eventually(crashed_lease_gone)
        assert (await store.get([player_id]))[0]["online"] is True
        assert [c["online"] for c in changes] == [True]
        await alive.close()  # the second gateway lets go too, then shuts down
        await asyncio.wait_for(offline.wait(), 10)
        assert [c["online"] for c in changes] == [True, False]
        # and a player whose only gateway crashed goes offline after the TTL, by the sweeper
        offline.clear()
        await store.join(player_id, "gw-crashed")
        await asyncio.wait_for(offline.wait(), 10)
        assert (await store.get([player_id]))[0]["online"] is False
    finally:
        stop.set()
        await sweeper
        await sub.unsubscribe()


async def test_offline_players_get_an_inbox_and_webhooks_with_retries(
    gateway_wiring, open_socket, token, player_id
) -> None:
    offline_player, online_player = player_id, f"{player_id}-on"
    calls: list[dict] = []
    delivered = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        if body["player_id"] != offline_player:
            return web.Response(status=200)
        calls.append(body)
        if len(calls) <= 2:
            return web.Response(status=503)  # the receiver is flaky at first
        delivered.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    rt = RealtimeSettings(
        webhook_url=f"http://{host}:{port}/hook", webhook_backoff_s=0.01, webhook_attempts=5, presence_ttl_s=3
    )
    stop = asyncio.Event()
    durable = f"notifier-test-{uuid.uuid4().hex[:8]}"
    notifier = asyncio.create_task(serve_notifier(gateway_wiring, stop, rt=rt, durable=durable))
    store = gateway_wiring.store
    try:
        online = await authed(open_socket, token, online_player)
        pos = await store.position(online_player)
        mine = await store.append(
            online_player,
            [NewEvent(QueuePaused(reason="out of logs", by="system"), datetime.now(UTC))],
            expected=pos,
            causation_id="c1",
        )
        await store.append(
            offline_player,
            [
                NewEvent(QueueResumed(), datetime.now(UTC)),  # not notable
                NewEvent(QueuePaused(reason="out of logs", by="system"), datetime.now(UTC)),
            ],
            expected=await store.position(offline_player),
            causation_id="c2",
        )
        await asyncio.wait_for(delivered.wait(), 30)
        assert len(calls) == 3 and calls[-1]["notification"]["type"] == "queue.paused"
        assert calls[-1]["notification"]["version"] == 2

        async def online_event_handled() -> bool:
            info = await gateway_wiring.js.consumer_info(gateway_wiring.settings.streams.events, durable)
            return info.ack_floor.stream_seq >= mine[0].seq

        await eventually(online_event_handled, 30)
        assert (await online.request("inbox.get"))["result"] == {"unread": 0, "items": []}

        sock = await open_socket()
        hello = (await sock.request("session.hello", {"token": token(offline_player)}))["result"]
        assert hello["unread"] == 1
        inbox = (await sock.request("inbox.get", {"limit": 10}))["result"]
        assert inbox["unread"] == 0
        assert [(i["type"], i["version"], i["title"]) for i in inbox["items"]] == [
            ("queue.paused", 2, "Your queue stopped: out of logs")
        ]
    finally:
        stop.set()
        await asyncio.wait_for(notifier, 10)
        await gateway_wiring.js.delete_consumer(gateway_wiring.settings.streams.events, durable)
        await runner.cleanup()


async def test_the_inbox_keeps_a_redelivered_older_event_and_drops_exact_repeats(redis_client, player_id) -> None:
    """A failed message may come back after a later one of the same player succeeded."""
    from questlog.services.notifier import Inbox, Notification

    inbox = Inbox(redis_client, max_items=10)

    def note(seq: int) -> Notification:
        return Notification(seq, seq, "task.completed", "2026-11-23T10:00:00.000Z", f"n{seq}", {})

    assert await inbox.push(player_id, note(11))
    assert await inbox.push(player_id, note(10)), "the redelivered older event is stored"
    assert not await inbox.push(player_id, note(11)), "an exact repeat is not"
    got = await inbox.read(player_id, limit=10, mark_read=False)
    assert sorted(i["seq"] for i in got["items"]) == [10, 11] and got["unread"] == 2


async def test_player_locks_order_one_player_and_let_others_through() -> None:
    locks = PlayerLocks()
    order: list[str] = []
    async with locks.hold("a"):
        async with asyncio.timeout(5):  # another player is not held up by "a"
            async with locks.hold("b"):
                order.append("b")
        second_a_in = asyncio.Event()

        async def second_a() -> None:
            async with locks.hold("a"):
                order.append("a2")
                second_a_in.set()

        waiter = asyncio.create_task(second_a())
        for _ in range(20):  # give it every chance to run: it must still be waiting
            await asyncio.sleep(0)
        assert not second_a_in.is_set()
        order.append("a1 done")
    await asyncio.wait_for(waiter, 5)
    assert order == ["b", "a1 done", "a2"]
    assert len(locks) == 0  # nothing kept for players nobody holds


async def test_player_locks_forget_a_waiter_that_was_cancelled() -> None:
    locks = PlayerLocks()
    async with locks.hold("a"):
        waiter = asyncio.create_task(locks.hold("a").__aenter__())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiter.done()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(locks) == 0
    async with asyncio.timeout(5), locks.hold("a"):  # and the player's lock is free again
        pass
    assert len(locks) == 0


async def test_renewal_extends_every_lease_and_announces_with_the_time_seen(gateway_wiring, player_id) -> None:
    redis, nc = gateway_wiring.redis, gateway_wiring.nc
    store = PresenceStore(redis, nc, ttl_s=30)
    players = [f"{player_id}-{i}" for i in range(200)]
    seen: list[dict] = []
    all_online = asyncio.Event()

    async def on_change(msg) -> None:
        seen.append(msgspec.json.decode(msg.data))
        if len(seen) == len(players):
            all_online.set()

    sub = await nc.subscribe("presence.changed.*", cb=on_change)
    leases = PresenceLeases(store, "gw-renew", renew_every_s=3600)
    try:
        await asyncio.gather(*(leases.connected(p) for p in players))
        await asyncio.wait_for(all_online.wait(), 10)
        assert all(c["online"] and c["last_seen"] for c in seen if c["player_id"] in players)
        # the announced time is the one the join stored
        first = next(c for c in seen if c["player_id"] == players[0])
        stored_ms = int(await redis.get(f"presence:seen:{players[0]}"))
        assert first["last_seen"] == (await store.get([players[0]]))[0]["last_seen"], (first, stored_ms)
        before = {p: await redis.zscore(f"presence:gw:{p}", "gw-renew") for p in players}
        await leases.renew_once()
        after = {p: await redis.zscore(f"presence:gw:{p}", "gw-renew") for p in players}
        assert all(after[p] >= before[p] for p in players) and any(after[p] > before[p] for p in players)

        # a lease that lapsed (this process or Redis stalled) is taken again, and said
        lapsed, gone = players[0], players[1]
        await redis.zadd(f"presence:gw:{lapsed}", {"gw-renew": 1})
        await leases.disconnected(gone)
        came_back = asyncio.Event()
        seen.clear()

        async def on_lapsed(msg) -> None:
            if msgspec.json.decode(msg.data)["online"]:
                came_back.set()

        sub2 = await nc.subscribe(changed_subject(lapsed), cb=on_lapsed)
        await leases.renew_once()
        await asyncio.wait_for(came_back.wait(), 10)
        await sub2.unsubscribe()
        assert (await redis.zscore(f"presence:gw:{lapsed}", "gw-renew") or 0) > after[lapsed]
        # and renewal never brings back a lease its player gave up
        assert await redis.zscore(f"presence:gw:{gone}", "gw-renew") is None
        assert (await store.get([gone]))[0]["online"] is False
    finally:
        await leases.close()
        await sub.unsubscribe()
    for p in players:
        assert await redis.zscore(f"presence:gw:{p}", "gw-renew") is None


async def test_transitions_of_several_gateways_in_one_batch_apply_in_order(gateway_wiring, player_id) -> None:
    """Two gateways take the player and one lets go, all in one script run: online once, still online."""
    redis, nc = gateway_wiring.redis, gateway_wiring.nc
    store = PresenceStore(redis, nc, ttl_s=30)
    seen = Announcements()
    sub = await seen.watch(nc, player_id)
    await asyncio.gather(store.join(player_id, "gw-a"), store.join(player_id, "gw-b"), store.leave(player_id, "gw-a"))
    assert set(await redis.zrange(f"presence:gw:{player_id}", 0, -1)) == {b"gw-b"}
    assert (await store.get([player_id]))[0]["online"] is True
    await store.leave(player_id, "gw-b")
    await asyncio.wait_for(seen.offline.wait(), 5)
    await sub.unsubscribe()
    assert [c["online"] for c in seen.changes] == [True, False]
