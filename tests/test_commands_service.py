"""The commands service over real NATS: one path for every command, OCC, idempotency."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from questlog.events.store import EventStore
from questlog.services.contract import protocol
from questlog.services.contract.protocol import RpcError
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import Settings


@pytest.fixture
def store(nc: NATS, settings: Settings) -> EventStore:
    return EventStore(nc, settings.streams.events)


async def test_service_is_discoverable_through_srv_ping_and_info(call, nc: NATS) -> None:
    ping = await nc.request("$SRV.PING.questlog-commands", b"", timeout=5)
    assert msgspec.json.decode(ping.data)["name"] == "questlog-commands"
    info = msgspec.json.decode((await nc.request("$SRV.INFO.questlog-commands", b"", timeout=5)).data)
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"questlog.cmd.queue.enqueue", "questlog.cmd.queue.get", "questlog.cmd.sync.push"} <= subjects


async def test_enqueue_lands_events_and_answers_version_and_task(call, store: EventStore, player_id: str) -> None:
    result = await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=2)
    task = result["task"]
    assert task["activity"] == "harvesting" and task["target"] == "oak_log" and task["quantity"] == 2
    events = await store.read(player_id)
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "player.created", "a new player's first event is the starter kit"
    assert result["version"] >= 2
    assert any(e.type == "task.enqueued" for e in events)


async def test_two_concurrent_enqueues_both_land(call, store: EventStore, player_id: str) -> None:
    a, b = await asyncio.gather(
        call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=1, command_id="a"),
        call("queue.enqueue", player_id, activity="harvesting", target="stone", quantity=1, command_id="b"),
    )
    events = await store.read(player_id)
    enqueued = [e for e in events if e.type == "task.enqueued"]
    assert sorted(e.command_id for e in enqueued) == ["a", "b"]
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert {a["task"]["task_id"], b["task"]["task_id"]} == {e.event.task.task_id for e in enqueued}


async def test_invalid_command_lands_no_event(call, store: EventStore, player_id: str) -> None:
    await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=1)

    async def commanded() -> list:  # the engine keeps running the first task meanwhile
        return [e for e in await store.read(player_id) if e.command_id is not None]

    before = await commanded()
    with pytest.raises(RpcError) as info:
        await call("queue.enqueue", player_id, activity="harvesting", target="iron_ore", quantity=1)
    assert info.value.code == protocol.RULE_VIOLATED
    assert info.value.data["rule"] and "level" in info.value.data["detail"].lower()
    with pytest.raises(RpcError) as bad:
        await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=0)
    assert bad.value.code == protocol.INVALID_PARAMS and bad.value.data["field"] == "quantity"
    with pytest.raises(RpcError) as missing:
        await call("queue.cancel", player_id, task_id="t-nope")
    assert missing.value.code == protocol.NOT_FOUND and missing.value.data == {"what": "task", "id": "t-nope"}
    assert await commanded() == before


async def test_command_id_takes_effect_once_and_returns_first_result(call, store: EventStore, player_id: str) -> None:
    first = await call("queue.enqueue", player_id, activity="harvesting", target="stone", quantity=1, command_id="once")
    again = await call("queue.enqueue", player_id, activity="harvesting", target="stone", quantity=1, command_id="once")
    assert again == first
    enqueued = [e for e in await store.read(player_id) if e.type == "task.enqueued"]
    assert len(enqueued) == 1


async def test_expected_version_mismatch_is_a_conflict(call, store: EventStore, player_id: str) -> None:
    r = await call("queue.pause", player_id)
    with pytest.raises(RpcError) as info:
        await call("queue.resume", player_id, expected_version=r["version"] - 1)
    assert info.value.code == protocol.CONFLICT
    assert info.value.data == {"current_version": r["version"]}
    ok = await call("queue.resume", player_id, expected_version=r["version"])
    assert ok["version"] == r["version"] + 1


async def test_sync_push_applies_in_order_and_a_stale_command_fails_alone(call, player_id: str) -> None:
    result = await call(
        "sync.push",
        player_id,
        commands=[
            {"method": "queue.pause", "params": {"command_id": "s1"}},
            {"method": "queue.cancel", "params": {"task_id": "t-gone", "command_id": "s2"}},
            {
                "method": "queue.enqueue",
                "params": {"activity": "harvesting", "target": "stone", "quantity": 1, "command_id": "s3"},
            },
        ],
    )
    oks = [(r["command_id"], r["ok"]) for r in result["results"]]
    assert oks == [("s1", True), ("s2", False), ("s3", True)]
    assert result["results"][1]["error"]["code"] == protocol.NOT_FOUND
    again = await call("sync.push", player_id, commands=[{"method": "queue.pause", "params": {"command_id": "s1"}}])
    assert again["results"][0]["ok"] and again["version"] == result["version"], "replayed id changes nothing"


async def test_a_player_cannot_act_for_another_and_admin_needs_the_role(call, player_id: str) -> None:
    with pytest.raises(RpcError) as info:
        await call("queue.get", player_id, actor="someone-else")
    assert info.value.code == protocol.FORBIDDEN
    with pytest.raises(RpcError) as info:
        await call("admin.pause", player_id, player_id=player_id, reason="testing")
    assert info.value.code == protocol.FORBIDDEN


async def test_admin_pause_and_grant_are_recorded_naming_the_admin(call, store: EventStore, player_id: str) -> None:
    await call("queue.configure", player_id, auto_start=False)
    await call("admin.pause", "ops", roles=("admin",), actor="ops", player_id=player_id, reason="investigating")
    await call(
        "admin.grant", "ops", roles=("admin",), actor="ops", player_id=player_id, reason="sorry", items={"stone": 5}
    )
    events = await store.read(player_id)
    paused = [e for e in events if e.type == "queue.paused"][-1]
    assert "ops" in paused.event.by
    granted = [e for e in events if e.type == "admin.granted"][-1]
    assert granted.event.admin == "ops" and granted.event.items == {"stone": 5}
    queue = await call("queue.get", player_id)
    assert queue["paused"] is True


async def test_queries_serve_views(call, player_id: str) -> None:
    catalog = await call("catalog.get", player_id)
    assert catalog
    player = await call("player.get", player_id)
    assert set(player) >= {"version", "skills", "inventory", "equipment"}
    queue = await call("queue.get", player_id)
    assert set(queue) >= {"version", "paused", "pause_reason", "config", "current", "queued", "stats"}
    replay = await call("events.replay", player_id, from_version=1)
    assert [e["version"] for e in replay["events"]] == list(range(1, len(replay["events"]) + 1))


async def test_commands_are_judged_on_the_log_as_it_is_not_a_stale_cache(
    call, nc: NATS, store: EventStore, player_id: str
) -> None:
    """The processor and reward service write too: the commands service's cache falls behind."""
    from .watch import types, until

    await call("queue.enqueue", player_id, activity="harvesting", target="oak_log", quantity=50)
    await call("queue.enqueue", player_id, activity="harvesting", target="stone", quantity=1)
    await call("queue.enqueue", player_id, activity="harvesting", target="copper_ore", quantity=1)
    await until(nc, store, player_id, lambda ev: types(ev).count("reward.granted") >= 3)
    queued = [t["task_id"] for t in (await call("queue.get", player_id))["queued"]]
    result = await call("queue.reorder", player_id, order=list(reversed(queued)))
    position = await store.position(player_id)
    assert result["version"] >= position.version - 3
    current = (await store.position(player_id)).version
    try:
        await call("queue.pause", player_id, expected_version=current)
    except RpcError as exc:  # only if the engine wrote in between: then it names a newer version
        assert exc.code == protocol.CONFLICT and exc.data["current_version"] > current
    else:
        assert (await call("queue.get", player_id))["paused"] is True


async def test_admin_methods_on_an_unknown_player_are_not_found(call, store: EventStore, player_id: str) -> None:
    for method, params in [
        ("admin.pause", {"player_id": player_id, "reason": "typo?"}),
        ("admin.grant", {"player_id": player_id, "reason": "gift", "items": {"stone": 1}}),
        ("admin.inspect", {"player_id": player_id}),
    ]:
        with pytest.raises(RpcError) as info:
            await call(method, "ops", roles=("admin",), actor="ops", **params)
        assert info.value.code == protocol.NOT_FOUND
        assert info.value.data == {"what": "player", "id": player_id}
    assert await store.read(player_id) == [], "an operator's typo creates nobody"


async def test_player_ids_that_are_not_subject_tokens_are_refused(call) -> None:
    for bad in ("*", ">", "a.b"):
        with pytest.raises(RpcError) as info:
            await call("events.replay", bad, actor=bad, from_version=1)
        assert info.value.code in (protocol.INVALID_PARAMS, protocol.FORBIDDEN)


async def test_once_flushed_a_new_subscription_answers_another_connection_at_once(settings: Settings) -> None:
    """What the commands service relies on before it says it is ready.

    nats-py's own flush() let a request from elsewhere find no responder about
    once in a thousand tries (its PING overtakes a queued SUB); this repeats
    the pattern often enough to see it come back.
    """
    a, b = await nats.connect(settings.nats_url), await nats.connect(settings.nats_url)

    async def echo(msg: Msg) -> None:
        await msg.respond(b"ok")

    refused = 0
    try:
        for _ in range(1500):
            sub = await a.subscribe(f"flushed.{uuid.uuid4().hex}", queue="q", cb=echo)
            await flushed(a)
            try:
                await b.request(sub.subject, b"", timeout=5)
            except NoRespondersError:
                refused += 1
            await sub.unsubscribe()
    finally:
        await a.close()
        await b.close()
    assert refused == 0
