"""Where a new session starts: the events a resuming client missed, or the full state.

docs/protocol.md: with a `resume` in the same epoch and at most `replay_limit`
events behind, the client gets exactly the missed events (`recovered: true`);
otherwise (no resume, a foreign epoch, too far behind, or a version from the
future) it gets the full state (`queue.get` + `player.get`) and live events
continue after that state's version.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from questlog.events.schema import Recorded
from questlog.events.store import EventStore
from questlog.services.contract.protocol import ResumeFrom, internal

# (method, params) -> result, through the commands service as the session's player
Query = Callable[[str], Awaitable[Any]]

STATE_ATTEMPTS = 5


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    epoch: str
    version: int
    recovered: bool
    missed: int = 0
    events: list[Recorded] = []
    state: dict[str, Any] | None = None
    last_seq: int = 0  # stream sequence of `version`, when known (0: unknown)


async def recover(
    store: EventStore, player_id: str, resume: ResumeFrom | None, replay_limit: int, query: Query
) -> Recovery:
    epoch = await store.epoch()
    if resume is not None and resume.epoch == epoch:
        tail = await store.since(player_id, resume.version, replay_limit)
        if tail.events is not None:
            pos, events = tail.position, tail.events
            if [e.version for e in events] != list(range(resume.version + 1, pos.version + 1)):
                raise internal("the log could not be read back densely; reconnect")
            return Recovery(
                epoch=epoch, version=pos.version, recovered=True, missed=len(events), events=events, last_seq=pos.seq
            )
    state, version = await full_state(query)
    after = await store.position(player_id)
    return Recovery(
        epoch=epoch,
        version=version,
        recovered=False,
        state=state,
        last_seq=after.seq if after.version == version else 0,
    )


async def full_state(query: Query) -> tuple[dict[str, Any], int]:
    """`queue.get` and `player.get` at one version (retried while events land in between)."""
    for _ in range(STATE_ATTEMPTS):
        queue = await query("queue.get")
        player = await query("player.get")
        qv, pv = int(queue.get("version", 0)), int(player.get("version", 0))
        if qv == pv:
            return {"queue": queue, "player": player}, qv
    # Views of two versions would make the client apply events the newer one holds.
    raise internal("the player's state is changing too fast to take a picture of; try again")
