"""Load, decide, append with optimistic concurrency, retry on conflict: every writer's loop.

The commands service, the processor and the reward service all write through
here. A decision is a pure function of the player's state; when the append
meets a conflict (someone else wrote first) or its own earlier landing (a
retry), the state is reloaded and the function is asked again, so the result
is always a decision over the state it was actually appended after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from opentelemetry import trace

from questlog.events.errors import ConcurrencyConflict, DuplicateAppend, ReadBehind
from questlog.events.schema import NewEvent, Recorded
from questlog.events.store import EventStore, Position
from questlog.projections.player import evolve
from questlog.projections.repository import PlayerRepository
from questlog.projections.state import PlayerState

R = TypeVar("R")
_tracer = trace.get_tracer("questlog.decisions")


class TooMuchContention(Exception):
    """Every attempt met a conflict: the player is being written too fast."""


class Outcome(Generic[R]):
    __slots__ = ("recorded", "result", "state")

    def __init__(self, state: PlayerState, recorded: list[Recorded], result: R) -> None:
        self.state, self.recorded, self.result = state, recorded, result


class DecisionLoop:
    def __init__(self, store: EventStore, repo: PlayerRepository, *, max_attempts: int = 12) -> None:
        self.store = store
        self.repo = repo
        self.max_attempts = max_attempts

    async def run(
        self,
        player_id: str,
        decide: Callable[[PlayerState], tuple[list[NewEvent], R]],
        *,
        command_id: str | None = None,
        causation_id: str | None = None,
        fresh: bool = False,
        seen: Recorded | None = None,
        after_seq: int = 0,
    ) -> Outcome[R]:
        """Decide over the player's state and append; `decide` may raise domain errors.

        `fresh=False` lets the first attempt use the cached state: a stale cache
        costs one conflict (or one re-decision, if the cached state was refused),
        a fresh read costs a round trip every time. `seen` (an event a consumer
        was handed) lets the first attempt decide without a read if the cached
        state holds it or is one event short of it: a decision that appends is
        checked by the append, and one that appends nothing was taken on a state
        holding `seen`, so what later events make due is decided when they
        arrive. A service's `causation_id` gets `@v<version>` appended: two instances
        deciding over the same state make the same decision under the same id.

        `after_seq`: the stream sequence of what triggered the decision (the
        event a consumer was handed, the state a timer was set from). No
        decision is taken on a state that does not reach it: a replica behind
        the leader may answer a read without the trigger, and deciding "nothing
        to do" there, then acknowledging, would lose the trigger for good.
        Such a read is asked again; `ReadBehind` if it never catches up.
        """
        needed = after_seq
        reached: int | None = None  # where a read behind `needed` ended, in the last attempt
        with _tracer.start_as_current_span("decide_and_append", attributes={"player.id": player_id}):
            for attempt in range(self.max_attempts):
                reached = None
                state = self.repo.holding(seen) if seen is not None else None
                seen = None  # the first attempt only
                read_now = fresh and state is None
                if state is None:
                    state = await self.repo.load(player_id, fresh=fresh, at_least_seq=needed)
                if state.last_seq < needed:
                    read_now = True
                    state = await self.repo.load(player_id, fresh=True, at_least_seq=needed)
                    if state.last_seq < needed:
                        reached = state.last_seq
                        await asyncio.sleep(min(0.5, 0.01 * 2**attempt))  # backoff: let the replica catch up
                        continue
                try:
                    events, result = decide(state)
                except Exception:
                    if read_now:
                        raise
                    # Refused on a cached state: the log may have moved on (other
                    # services write too), so only a refusal of the fresh state counts.
                    fresh = True
                    continue
                if not events:
                    return Outcome(state, [], result)
                try:
                    recorded = await self.store.append(
                        player_id,
                        events,
                        expected=Position(state.version, state.last_seq),
                        command_id=command_id,
                        causation_id=f"{causation_id}@v{state.version}" if causation_id else None,
                    )
                except DuplicateAppend as landed:
                    # this very decision is already in the log (a retried append): it stands
                    recorded = landed.landed
                except ConcurrencyConflict as conflict:
                    fresh = True
                    needed = max(needed, conflict.actual_seq or 0)
                    continue
                for rec in recorded:
                    state = evolve(state, rec)
                self.repo.remember(state)
                return Outcome(state, recorded, result)
        if reached is not None:
            raise ReadBehind(player_id, needed, reached)
        raise TooMuchContention(f"player {player_id}: {self.max_attempts} conflicting attempts")
