"""Deciding on the event a consumer was handed: no read when the cache holds it, the log still judges."""

from __future__ import annotations

from datetime import UTC, datetime


from nats.aio.client import Client as NATS

from questlog.events.schema import NewEvent, QueuePaused, QueueResumed, Recorded
from questlog.events.store import EventStore, Position
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import PlayerState
from questlog.services.decision_loop import DecisionLoop
from questlog.services.settings import Settings

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


def _pause(state: PlayerState) -> tuple[list[NewEvent], int]:
    return [paused(f"at v{state.version}")], state.version


async def test_the_next_event_is_folded_into_the_cache_without_a_read(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, gets):
        repo = PlayerRepository(store)
        await store.append(player_id, [paused("first")], expected=Position(), command_id="c1")
        await repo.load(player_id)  # cached at version 1
        (v2,) = await _written_by_others(store, player_id, 1)
        await gets.start()
        outcome = await DecisionLoop(store, repo).run(player_id, _pause, causation_id="t", fresh=True, seen=v2)
        await gets.stop()
        assert gets.requests == [], "the cached state plus the event in hand needed no read"
        assert outcome.result == 2 and [r.version for r in outcome.recorded] == [3]
        assert outcome.state == await PlayerRepository(store).load(player_id), "the same state a fresh read builds"


async def test_a_held_state_behind_the_log_meets_the_append_check_and_is_decided_again(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, gets):
        repo = PlayerRepository(store)
        await store.append(player_id, [paused("first")], expected=Position(), command_id="c1")
        await repo.load(player_id)
        v2, _v3 = await _written_by_others(store, player_id, 2)  # the consumer holds v2; the log is at v3
        outcome = await DecisionLoop(store, repo).run(player_id, _pause, causation_id="t", fresh=True, seen=v2)
        assert outcome.result == 3, "decided again on the log as it is"
        assert [r.version for r in outcome.recorded] == [4]
        assert [r.version for r in await store.read(player_id)] == [1, 2, 3, 4], "nothing appended on the stale state"


async def test_a_refusal_of_a_held_state_is_asked_again_of_the_log(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    async with watched(settings) as (store, _):
        repo = PlayerRepository(store)
        await store.append(player_id, [paused("first")], expected=Position(), command_id="c1")
        await repo.load(player_id)
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


async def test_a_held_state_with_nothing_to_do_costs_no_read_and_no_append(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    """The processor's common case: an event arrives, nothing starts; decided on the event in hand alone."""
    async with watched(settings) as (store, gets):
        repo = PlayerRepository(store)
        await store.append(player_id, [paused("first")], expected=Position(), command_id="c1")
        await repo.load(player_id)
        (v2,) = await _written_by_others(store, player_id, 1)
        await gets.start()
        outcome = await DecisionLoop(store, repo).run(
            player_id, lambda s: ([], s.version), causation_id="t", fresh=True, seen=v2
        )
        await gets.stop()
        assert gets.requests == []
        assert outcome.recorded == [] and outcome.result == 2
        assert repo.holding(v2) == outcome.state, "the cache moved on to the event in hand"
        assert (await store.position(player_id)).version == 2, "nothing appended"
