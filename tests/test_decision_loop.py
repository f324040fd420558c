"""Deciding on the event a consumer was handed: no read when the cache holds it, the log still judges."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from questlog.events.schema import NewEvent, QueuePaused, QueueResumed, Recorded
from questlog.events.store import EventStore, Position
from questlog.events.subjects import player_events
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import PlayerState
from questlog.services.decision_loop import DecisionLoop
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import Settings
from questlog.services.warm_cache import WarmCache, keep_warm

from .direct_gets import watched

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def paused(reason: str) -> NewEvent:
    return NewEvent(QueuePaused(reason=reason), NOW)


async def _written_by_others(store: EventStore, player_id: str, n: int) -> list[Recorded]:
    """`n` more events of the player, appended by some other writer."""
    at = await store.position(player_id)
    out = []
    for i in range(n):
        (rec,) = await store.append(
            player_id, [NewEvent(QueueResumed(), NOW)], expected=at, command_id=f"other-{at.version}-{i}"
        )
        at = Position(rec.version, rec.seq)
        out.append(rec)
    return out


async def _cached_at_version_1(store: EventStore, player_id: str) -> PlayerRepository:
    """A consumer's repository that has seen the player's first event."""
    repo = PlayerRepository(store)
    await store.append(player_id, [paused("first")], expected=Position(), command_id="c1")
    await repo.load(player_id)
    return repo


def _pause(state: PlayerState) -> tuple[list[NewEvent], int]:
    return [paused(f"at v{state.version}")], state.version


@pytest.mark.parametrize("appends", [True, False], ids=["appends", "nothing-to-do"])
async def test_the_next_event_is_folded_into_the_cache_without_a_read(
    nc: NATS, settings: Settings, player_id: str, appends: bool
) -> None:
    """Nothing to do is the processor's common case: no read and no append then either."""
    async with watched(settings) as (store, gets):
        repo = await _cached_at_version_1(store, player_id)
        (v2,) = await _written_by_others(store, player_id, 1)
        decide = _pause if appends else (lambda state: ([], state.version))
        await gets.start()
        outcome = await DecisionLoop(store, repo).run(player_id, decide, causation_id="t", fresh=True, seen=v2)
        await gets.stop()
        assert gets.requests == [], "the cached state plus the event in hand needed no read"
        assert outcome.result == 2
        assert [r.version for r in outcome.recorded] == ([3] if appends else [])
        assert outcome.state == await PlayerRepository(store).load(player_id), "the same state a fresh read builds"
        assert repo.holding(v2) == outcome.state, "and the cache holds it"


async def test_a_held_state_behind_the_log_meets_the_append_check_and_is_decided_again(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, _gets):
        repo = await _cached_at_version_1(store, player_id)
        v2, _v3 = await _written_by_others(store, player_id, 2)  # the consumer holds v2; the log is at v3
        outcome = await DecisionLoop(store, repo).run(player_id, _pause, causation_id="t", fresh=True, seen=v2)
        assert outcome.result == 3, "decided again on the log as it is"
        assert [r.version for r in outcome.recorded] == [4]
        assert [r.version for r in await store.read(player_id)] == [1, 2, 3, 4], "nothing appended on the stale state"


async def test_a_refusal_of_a_held_state_is_asked_again_of_the_log(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, _):
        repo = await _cached_at_version_1(store, player_id)
        v2, _v3 = await _written_by_others(store, player_id, 2)

        def needs_v3(state: PlayerState) -> tuple[list[NewEvent], int]:
            if state.version < 3:
                raise ValueError("not yet")
            return _pause(state)

        outcome = await DecisionLoop(store, repo).run(player_id, needs_v3, causation_id="t", fresh=True, seen=v2)
        assert outcome.result == 3


async def test_holding_reads_nothing_only_when_the_cache_reaches_the_event(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, _):
        repo = PlayerRepository(store)
        assert repo.holding((await _written_by_others(store, player_id, 1))[0]) is None, "nothing cached"
        await repo.load(player_id)  # version 1
        v2, v3 = await _written_by_others(store, player_id, 2)
        assert repo.holding(v3) is None, "v2 was never seen: a gap is read, not guessed"
        held = repo.holding(v2)
        assert held is not None and held.version == 2
        assert repo.holding(v2) == held, "an event the cache already holds: the cache as it is"
        first = (await store.read(player_id))[0]
        assert repo.holding(first) == held, "an older event (a redelivery): the newer cached state"
        repo.remember(await PlayerRepository(store).load_at(player_id, 1))
        assert repo.holding(first) == held, "remembering an older state keeps the newer one"


async def test_a_command_decided_on_a_cache_kept_warm_meets_no_conflict(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    """The commands service folds the republished events of cached players: another writer's events included."""
    async with watched(settings) as (store, gets):
        repo = await _cached_at_version_1(store, player_id)
        warm = await keep_warm(nc, repo)
        try:
            await flushed(nc)
            other = f"{player_id}-other"
            await store.append(other, [paused("elsewhere")], expected=Position(), command_id="o1")
            await _written_by_others(store, player_id, 2)  # the processor, the reward service…
            async with asyncio.timeout(10):
                while (await repo.load(player_id, fresh=False)).version < 3:  # the cache, never the log
                    await asyncio.sleep(0.01)
            await gets.start()
            outcome = await DecisionLoop(store, repo).run(player_id, _pause, command_id="cmd")  # fresh=False
            await gets.stop()
        finally:
            await warm.unsubscribe()
        assert outcome.result == 3 and [r.version for r in outcome.recorded] == [4]
        assert gets.requests == [], "no conflict, so no read"
        assert other not in repo, "only players already cached are kept: the cache does not grow with the log"


async def test_the_warm_cache_folds_whole_appends_only(nc: NATS, settings: Settings, player_id: str) -> None:
    """Never a state in the middle of an append, and nothing past a lost message."""
    async with watched(settings) as (store, _):
        repo = await _cached_at_version_1(store, player_id)
        at = Position(1, (await store.position(player_id)).seq)
        for c in ("b1", "b2", "s3"):  # two appends of three events, then one of one
            n = 1 if c.startswith("s") else 3
            recs = await store.append(player_id, [paused(f"{c}-{i}") for i in range(n)], expected=at, command_id=c)
            at = Position(recs[-1].version, recs[-1].seq)
        sub = await nc.jetstream().pull_subscribe(player_events(player_id), stream=settings.streams.events)
        stored = await sub.fetch(8, timeout=5)
        await sub.unsubscribe()
        live = [
            Msg(
                nc,
                subject=f"live.players.{player_id}.events.queue.paused",
                data=m.data,
                headers={**(m.headers or {}), "Nats-Sequence": str(m.metadata.sequence.stream)},
            )
            for m in stored[1:]  # versions 2..8
        ]
        warm = WarmCache(repo)

        async def cached_after(msg: Msg) -> int:
            await warm.fold(msg)
            return (await repo.load(player_id, fresh=False)).version

        assert [await cached_after(m) for m in live[0:3]] == [1, 1, 4], "versions 2-4 land together"
        await warm.fold(live[3])  # version 5; version 6 is lost
        assert await cached_after(live[5]) == 4, "an append with a hole is not folded"
        assert await cached_after(live[6]) == 4, "nor anything after the hole"
