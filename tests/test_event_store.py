"""The event store against a real nats-server: OCC, atomic batches, dedupe, upcasting."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
from nats.aio.client import Client as NATS

from questlog.events import codec
from questlog.events.errors import ConcurrencyConflict, DuplicateAppend, UnknownEventType
from questlog.events.registry import EventRegistry
from questlog.events.schema import (
    PAYLOADS,
    NewEvent,
    Payload,
    QueuePaused,
    QueueResumed,
    Recorded,
)
from questlog.events.store import APPEND_END, EPOCH_TTL_S, EventStore, Position, ends_its_append
from questlog.events.streams import ensure_streams
from questlog.events.subjects import event_subject, player_events
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import Settings

from .direct_gets import DirectGets, watched
from .stacks import private_stack

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def paused(reason: str) -> NewEvent:
    return NewEvent(QueuePaused(reason=reason), NOW)


@pytest.fixture
def store(nc: NATS, settings: Settings) -> EventStore:
    return EventStore(nc, settings.streams.events)


async def test_append_and_read_back_in_order(store: EventStore, player_id: str) -> None:
    first = await store.append(player_id, [paused("a")], expected=Position(), command_id="c1")
    assert [r.version for r in first] == [1]
    second = await store.append(
        player_id,
        [NewEvent(QueueResumed(), NOW), paused("b")],
        expected=Position(first[-1].version, first[-1].seq),
        command_id="c2",
    )
    assert [r.version for r in second] == [2, 3]
    assert second[0].seq < second[1].seq
    events = await store.read(player_id)
    assert [(r.version, r.type, r.command_id) for r in events] == [
        (1, "queue.paused", "c1"),
        (2, "queue.resumed", "c2"),
        (3, "queue.paused", "c2"),
    ]
    assert events[2].event == QueuePaused(reason="b")
    assert await store.position(player_id) == Position(3, second[-1].seq)
    assert [r.version for r in await store.read(player_id, from_version=2)] == [2, 3]
    assert [r.version for r in await store.read(player_id, after_seq=first[0].seq)] == [2, 3]


async def test_twenty_concurrent_writers_get_dense_versions(store: EventStore, player_id: str) -> None:
    """Each writer appends 5 decisions (some of 2 events); losers reload and retry."""
    writers, decisions = 20, 5
    conflicts = 0

    async def writer(w: int) -> None:
        nonlocal conflicts
        for d in range(decisions):
            batch = [paused(f"w{w}d{d}")] + ([paused(f"w{w}d{d}+")] if d % 2 else [])
            while True:
                pos = await store.position(player_id)
                try:
                    await store.append(player_id, batch, expected=pos, command_id=f"w{w}-d{d}")
                    break
                except ConcurrencyConflict:
                    conflicts += 1

    await asyncio.gather(*(writer(w) for w in range(writers)))
    events = await store.read(player_id)
    expected_total = writers * sum(2 if d % 2 else 1 for d in range(decisions))
    assert [r.version for r in events] == list(range(1, expected_total + 1))
    reasons = [r.event.reason for r in events if isinstance(r.event, QueuePaused)]
    assert len(set(reasons)) == expected_total  # every event exactly once
    # a batch stays contiguous: the "+" event directly follows its partner
    for i, reason in enumerate(reasons):
        if reason.endswith("+"):
            assert reasons[i - 1] == reason[:-1]
    assert conflicts > 0, "20 concurrent writers should have collided at least once"


async def test_batch_failing_occ_lands_nothing(store: EventStore, player_id: str) -> None:
    await store.append(player_id, [paused("one")], expected=Position(), command_id="c1")
    with pytest.raises(ConcurrencyConflict) as info:
        await store.append(player_id, [paused("x"), paused("y"), paused("z")], expected=Position(), command_id="stale")
    assert info.value.expected_seq == 0
    events = await store.read(player_id)
    assert [r.command_id for r in events] == ["c1"]


async def test_retried_append_lands_once(store: EventStore, player_id: str) -> None:
    """The ack of the first attempt is 'lost': the writer sends the same decision again."""
    batch = [paused("x"), paused("y")]
    landed = await store.append(player_id, batch, expected=Position(), command_id="retry-me")
    with pytest.raises(DuplicateAppend) as info:
        await store.append(player_id, batch, expected=Position(), command_id="retry-me")
    assert [r.seq for r in info.value.landed] == [r.seq for r in landed]
    # and a single-event retry
    pos = Position(landed[-1].version, landed[-1].seq)
    one = await store.append(player_id, [paused("z")], expected=pos, command_id="single")
    with pytest.raises(DuplicateAppend):
        await store.append(player_id, [paused("z")], expected=pos, command_id="single")
    events = await store.read(player_id)
    assert [r.version for r in events] == [1, 2, 3]
    assert events[-1].seq == one[0].seq


async def test_old_schema_event_is_upcast_on_read(tmp_path: Path, player_id: str) -> None:
    """A v1 payload written by old code reads as today's v2 struct (own server: the
    session's services must never meet these hand-written events)."""

    class QueuePausedV2(Payload, frozen=True):
        TYPE: ClassVar[str] = "queue.paused"
        SCHEMA: ClassVar[int] = 2
        reason: str
        by: str
        severity: str

    others = [p for p in PAYLOADS if p.TYPE != "queue.paused"]
    registry = EventRegistry([*others, QueuePausedV2])

    @registry.upcaster("queue.paused", 1)
    def _v1_to_v2(data: dict) -> dict:
        return {**data, "by": data.get("by", "player"), "severity": "info"}

    v1 = {
        "type": "queue.paused",
        "schema": 1,
        "player_id": player_id,
        "version": 1,
        "occurred_at": NOW.isoformat(),
        "data": {"reason": "old"},
    }
    async with private_stack(tmp_path) as (settings, nc, _env):
        await nc.jetstream().publish(event_subject(player_id, "queue.paused"), msgspec.json.encode(v1))
        (event,) = await EventStore(nc, settings.streams.events, registry).read(player_id)
    assert event.event == QueuePausedV2(reason="old", by="player", severity="info")
    assert event.version == 1


async def test_unknown_event_type_raises_named_error(tmp_path: Path, player_id: str) -> None:
    body = msgspec.json.encode(
        {
            "type": "dragon.befriended",
            "schema": 1,
            "player_id": player_id,
            "version": 1,
            "occurred_at": NOW.isoformat(),
            "data": {},
        }
    )
    async with private_stack(tmp_path) as (settings, nc, _env):
        await nc.jetstream().publish(event_subject(player_id, "dragon.befriended"), body)
        with pytest.raises(UnknownEventType) as info:
            await EventStore(nc, settings.streams.events).read(player_id)
    assert info.value.event_type == "dragon.befriended"


async def test_replay_uses_ordered_consumer_in_stream_order(store: EventStore, player_id: str) -> None:
    pos = Position()
    for i in range(12):
        (rec,) = await store.append(player_id, [paused(str(i))], expected=pos, command_id=f"r{i}")
        pos = Position(rec.version, rec.seq)
    replayed = [r async for r in store.replay(subject=player_events(player_id))]
    assert [r.version for r in replayed] == list(range(1, 13))
    assert [r.seq for r in replayed] == sorted(r.seq for r in replayed)


async def test_codec_round_trip_and_epoch(store: EventStore, player_id: str) -> None:
    rec = Recorded(
        player_id=player_id, version=7, occurred_at=NOW, event=QueuePaused(reason="r", by="system"), command_id="c"
    )
    assert codec.decode(codec.encode(rec), store.registry) == rec
    epoch = await store.epoch()
    assert epoch and epoch == await store.epoch()


async def test_live_subject_carries_only_stored_events(nc: NATS, store: EventStore, player_id: str) -> None:
    """A refused append (lost OCC race, failed batch) never reaches live subscribers."""
    from questlog.events.subjects import live_player_events

    got: list[int] = []
    arrived = asyncio.Event()

    async def on_live(msg) -> None:
        got.append(int(msg.headers["Nats-Sequence"]))
        if len(got) == 2:
            arrived.set()

    sub = await nc.subscribe(live_player_events(player_id), cb=on_live)
    first = await store.append(player_id, [paused("ok")], expected=Position(), command_id="a")
    with pytest.raises(ConcurrencyConflict):
        await store.append(player_id, [paused("lost"), paused("race")], expected=Position(), command_id="b")
    second = await store.append(player_id, [paused("ok2")], expected=Position(1, first[0].seq), command_id="c")
    await asyncio.wait_for(arrived.wait(), 5)
    await sub.unsubscribe()
    assert got == [first[0].seq, second[0].seq]


async def _interleaved(store: EventStore, player_id: str, appends: int) -> None:
    """`appends` decisions of 1–3 events for the player, another player's events between them."""
    other = player_id + "-x"
    mine, theirs = Position(), Position()
    for i in range(appends):
        events = [paused(f"m{i}-{k}") for k in range(1 + i % 3)]
        recs = await store.append(player_id, events, expected=mine, command_id=f"m{i}")
        mine = Position(recs[-1].version, recs[-1].seq)
        for j in range(i % 3):
            (t,) = await store.append(other, [paused("o")], expected=theirs, command_id=f"o{i}-{j}")
            theirs = Position(t.version, t.seq)


async def test_reading_from_a_version_walks_back_without_scanning(nc: NATS, settings: Settings, player_id: str) -> None:
    """A resume's read follows each append's back-pointer with exact gets: no subject scan on the server."""
    async with watched(settings) as (store, gets):
        await _reading_from_a_version_walks_back(store, gets, player_id)


async def _reading_from_a_version_walks_back(store: EventStore, gets: DirectGets, player_id: str) -> None:
    await _interleaved(store, player_id, 30)  # versions 1..60, in appends of 1, 2 and 3 events
    last = (await store.position(player_id)).version
    assert last == 60
    await gets.start()
    for v in (2, 3, 17, 39, 59, 60):
        got = await store.read(player_id, from_version=v)
        assert [e.version for e in got] == list(range(v, last + 1))
        assert all(e.player_id == player_id for e in got)
    assert await store.read(player_id, from_version=61) == []
    assert [e.version for e in await store.read(player_id, from_version=10, limit=3)] == [10, 11, 12]
    assert [e.version for e in await store.read(player_id, from_version=10, to_version=12)] == [10, 11, 12]
    await gets.stop()
    assert gets.requests, "the sniffing subscription saw no direct gets"
    assert gets.scans == []


async def test_since_gives_position_and_the_missed_events_or_none(nc: NATS, settings: Settings, player_id: str) -> None:
    """What a resume asks: one last-event get, then one exact get per missed append."""
    async with watched(settings) as (store, gets):
        await _since(store, gets, player_id)


async def _since(store: EventStore, gets: DirectGets, player_id: str) -> None:
    await _interleaved(store, player_id, 6)  # appends of 1,2,3,1,2,3 events: versions 1..12
    pos = await store.position(player_id)
    await gets.start()
    tail = await store.since(player_id, 8, limit=10)
    await gets.stop()
    assert tail.position == pos
    assert tail.events is not None and [e.version for e in tail.events] == [9, 10, 11, 12]
    # 12: the last-event get; 10 and 11 share its append: one run get; 9 ends the append before: one get
    assert len(gets.requests) == 3 and gets.scans == []
    assert (await store.since(player_id, 12, limit=10)).events == []
    assert (await store.since(player_id, 1, limit=10)).events is None  # 11 behind
    assert (await store.since(player_id, 13, limit=10)).events is None  # from the future
    assert (await store.since(player_id + "-nobody", 0, limit=10)).events == []


async def test_reading_far_back_or_without_pointers_scans_and_is_still_exact(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    """Past the walk limit, or over events stored without back-pointers, the read falls back to the scan."""
    async with watched(settings, walk_limit=5) as (near, gets):
        await _interleaved(near, player_id, 10)  # versions 1..19
        await gets.start()
        assert [e.version for e in await near.read(player_id, from_version=3)] == list(range(3, 20))
        await gets.stop()
    assert gets.scans, "a read 16 versions back with walk_limit=5 should have scanned"

    # events as an older store wrote them: no Questlog-* headers
    old = player_id + "-old"
    js = nc.jetstream()
    for v in range(1, 6):
        rec = Recorded(player_id=old, version=v, occurred_at=NOW, event=QueuePaused(reason=str(v)), command_id=f"c{v}")
        await js.publish(event_subject(old, rec.type), codec.encode(rec), stream=settings.streams.events)
    async with watched(settings) as (store, gets):
        await gets.start()
        assert [e.version for e in await store.read(old, from_version=2)] == [2, 3, 4, 5]
        await gets.stop()
    assert gets.scans, "events without back-pointers can only be found by a scan"


async def test_concurrent_resumes_share_one_stream_info_for_the_epoch(nc: NATS, settings: Settings) -> None:
    """After a quiet spell the cached epoch has expired; a storm's resumes must not each ask the server."""
    async with watched(settings) as (store, gets):  # a new store: nothing cached yet
        asked: list[bytes] = []

        async def seen(msg) -> None:
            if (msg.reply or "").startswith(gets._prefix):
                asked.append(msg.data)

        sub = await nc.subscribe(f"$JS.API.STREAM.INFO.{settings.streams.events}", cb=seen)
        await flushed(nc)
        epochs = await asyncio.gather(*(store.epoch() for _ in range(200)))
        await nc.flush()
        await sub.unsubscribe()
    assert len(set(epochs)) == 1 and epochs[0] != "0"
    assert len(asked) == 1


async def test_pointers_that_are_malformed_or_lead_elsewhere_fall_back_to_the_scan(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    """Messages written by something else than the store: the walk gives up, the read stays exact."""
    js = nc.jetstream()
    (decoy,) = await EventStore(nc, settings.streams.events).append(
        player_id + "-z", [paused("decoy")], expected=Position(), command_id="d"
    )
    cases = {player_id + "-nan": "x", player_id + "-foreign": str(decoy.seq)}  # the last event's pointer
    for player, pointer in cases.items():
        for v, prev in ((1, "0"), (2, pointer)):
            rec = Recorded(player_id=player, version=v, occurred_at=NOW, event=paused(str(v)).event, command_id=f"c{v}")
            await js.publish(
                event_subject(player, rec.type),
                codec.encode(rec),
                stream=settings.streams.events,
                headers={"Questlog-Prev-Seq": prev},
            )
    store = EventStore(nc, settings.streams.events)
    for player in cases:
        assert [e.version for e in await store.read(player, from_version=1)] == [1, 2]
        tail = await store.since(player, 0, limit=10)
        assert tail.events is not None and [e.version for e in tail.events] == [1, 2]


async def test_the_last_event_of_each_append_is_told_apart(
    nc: NATS, store: EventStore, settings: Settings, player_id: str
) -> None:
    """What the processor and the projector use to act only on states the log rests at."""
    (one,) = await store.append(player_id, [paused("alone")], expected=Position(), command_id="c1")
    await store.append(player_id, [paused(f"b{i}") for i in range(3)], expected=Position(1, one.seq), command_id="c2")
    sub = await nc.jetstream().pull_subscribe(player_events(player_id), stream=settings.streams.events)
    msgs = await sub.fetch(4, timeout=5)
    await sub.unsubscribe()
    assert [ends_its_append(m.headers or {}) for m in msgs] == [True, False, False, True]
    last = dict(msgs[3].headers or {})
    assert last.pop(APPEND_END) == "1"
    assert ends_its_append(last), "events stored before Questlog-Append-End: the server's Nats-Batch-Commit"
    del last["Nats-Batch-Commit"]
    assert not ends_its_append(last)


async def test_a_recreated_stream_is_never_given_out_under_the_old_epoch(tmp_path: Path) -> None:
    """The cached epoch is dropped when the server says the stream was deleted or made again,
    well before its time to live (EPOCH_TTL_S) runs out."""
    async with private_stack(tmp_path) as (settings, nc, _env):
        store = EventStore(nc, settings.streams.events)
        before = await store.epoch()
        js = nc.jetstream()
        await js.delete_stream(settings.streams.events)
        await ensure_streams(js, settings.streams, settings.replicas)
        async with asyncio.timeout(EPOCH_TTL_S / 2):
            while (after := await store.epoch()) == before:
                await asyncio.sleep(0.01)  # the advisory reaches this connection: nothing to await but it
    assert after != before
