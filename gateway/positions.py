"""Every live session checked against where the log is, on a timer, in one batch.

A gap is repaired when a later event reveals it; a lost *last* republish has
no later event, so the session would wait for the player's next event, which
for an idle queue may be hours away. Every `QUESTLOG_LIVE_CHECK_S` the gateway
asks Redis in one round trip per few hundred sessions where the projector last
saw each player's log (the queue read model's sequence, `ql:queue:<ns>:seq`),
and a session behind it reads the missing events from the log itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable

from questlog.projections.read_models import ReadModels

from .live import LiveFeed

log = logging.getLogger("questlog.gateway.positions")

CHUNK = 500  # players per Redis round trip


class PositionCheck:
    def __init__(self, feeds: Callable[[], Iterable[LiveFeed]], read_models: ReadModels, every_s: float) -> None:
        self._feeds = feeds
        self._read_models = read_models
        self._every_s = every_s
        self.nudged = 0  # sessions found behind the log (a metric)

    async def once(self) -> int:
        """One pass over every live session; how many were behind."""
        feeds = [f for f in self._feeds() if f.started]
        behind = 0
        for start in range(0, len(feeds), CHUNK):
            chunk = feeds[start : start + CHUNK]
            seqs = await self._read_models.positions([f.player_id for f in chunk])
            for feed in chunk:
                seq = seqs.get(feed.player_id, 0)
                if seq > feed.last_seq:
                    feed.behind(seq)
                    behind += 1
        self.nudged += behind
        return behind

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every_s)
            if stop.is_set():
                return
            try:
                await self.once()
            except Exception:  # Redis away for a moment: the next pass tries again
                log.warning("checking live sessions against the log failed", exc_info=True)
