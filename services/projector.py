"""The projector: keeps the Redis read models at the newest state of every player.

State-based like every service: for the last event of each append (the
states the log rests at) it writes the player's state as of that event or
later, tagged with the stream sequence it reflects, so redelivered or
reordered events cannot move a read model backwards. It is handed every
event, in order, so its cached state is usually one event short of the one in
hand and needs no read of the log.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from questlog.events.store import decode_stored, ends_its_append
from questlog.events.subjects import EVENTS_WILDCARD
from questlog.projections.read_models import ReadModels
from questlog.projections.repository import PlayerRepository
from questlog.services.runtime.batching import Coalescer
from questlog.services.runtime.connections import Wiring
from questlog.services.runtime.consumer import ConsumerSpec, run_consumer

DURABLE = "projector"


class Projector:
    def __init__(self, repo: PlayerRepository, read_models: ReadModels) -> None:
        self.repo, self.read_models = repo, read_models
        # the states written in one event-loop turn go in one script run
        self.write = Coalescer(read_models.project)

    async def on_event(self, msg: Msg) -> None:
        rec = decode_stored(msg, self.repo.registry)
        if not ends_its_append(msg.headers or {}):
            # Not a state the log rests at: fold it, and let the append's last event write.
            self.repo.holding(rec)
            return
        held = self.repo.holding(rec)
        if held is not None and held.last_seq > rec.seq:
            # Seen past this event already (a redelivery): what the cache holds
            # was written, or is the middle of an append whose last event writes.
            return
        state = held or await self.repo.load(rec.player_id, fresh=True, at_least_seq=rec.seq)
        if state.last_seq < rec.seq:
            raise RuntimeError("the log is behind the event being projected; retry")  # never silently stale
        await self.write(state)


def projector_spec(wiring: Wiring) -> ConsumerSpec:
    return ConsumerSpec.of_service(wiring.settings, DURABLE, [EVENTS_WILDCARD])


async def serve_projector(wiring: Wiring, stop: asyncio.Event) -> None:
    projector = Projector(await wiring.players(), ReadModels(wiring.redis))
    await run_consumer(wiring.nc, projector_spec(wiring), projector.on_event, stop, ready=wiring.ready("projector"))
