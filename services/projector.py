"""The projector: keeps the Redis read models at the newest state of every player.

State-based like every service: for any event of a player it writes the
player's current state, tagged with the stream sequence it reflects, so
redelivered or reordered events cannot move a read model backwards.
"""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg

from questlog.events.subjects import EVENTS_WILDCARD, player_of
from questlog.projections.read_models import ReadModels
from questlog.projections.repository import PlayerRepository

from .consumer import ConsumerSpec, run_consumer
from .wiring import Wiring

DURABLE = "projector"


class Projector:
    def __init__(self, repo: PlayerRepository, read_models: ReadModels) -> None:
        self.repo, self.read_models = repo, read_models

    async def on_event(self, msg: Msg) -> None:
        state = await self.repo.load(player_of(msg.subject), fresh=True)
        if state.last_seq < msg.metadata.sequence.stream:
            raise RuntimeError("the log is behind the event being projected; retry")  # never silently stale
        await self.read_models.apply(state, await self.read_models.targets())


def projector_spec(wiring: Wiring) -> ConsumerSpec:
    return ConsumerSpec.of_service(wiring.settings, DURABLE, [EVENTS_WILDCARD])


async def serve_projector(wiring: Wiring, stop: asyncio.Event) -> None:
    projector = Projector(await wiring.players(), ReadModels(wiring.redis))
    await run_consumer(wiring.js, projector_spec(wiring), projector.on_event, stop)
