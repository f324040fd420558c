"""A store whose reads come back behind the log, as a lagging replica's would."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS

from questlog.events.schema import Recorded
from questlog.events.store import EventStore


class LaggingReplica(EventStore):
    """Its first `lagging` reads leave out every event from stream sequence `hidden_from` on."""

    def __init__(self, nc: NATS, stream: str, *, hidden_from: int, lagging: int = 1) -> None:
        super().__init__(nc, stream)
        self.hidden_from, self.lagging = hidden_from, lagging
        self.stale_reads = 0

    async def read(self, player_id: str, **kwargs: Any) -> list[Recorded]:
        events = await super().read(player_id, **kwargs)
        if self.lagging > 0:
            self.lagging -= 1
            self.stale_reads += 1
            return [e for e in events if e.seq < self.hidden_from]
        return events
