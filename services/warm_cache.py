"""The commands service's cache, kept at the log's head by the stream's republished events.

The processor and the reward service write the same players as the commands
service, so its cached state is often behind the log, and a command decided
on it meets a conflict: a refused append, a read, a second append. The stream republishes every stored event on
`live.players.<id>.events.<type>`; folding those into the cached players'
states keeps them current most of the time.

Only whole appends are folded, in one step: a state in the middle of an
append is one the log never rested at, and a command decided on it could
take a retried command id for one already answered with less than it did. A
lost message leaves a gap (or an incomplete append) that is not folded past:
the cache stays behind until a conflict reads the log, which is slower,
never wrong.
"""

from __future__ import annotations

import logging
from itertools import pairwise

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from questlog.events.schema import Recorded
from questlog.events.store import APPEND_INDEX, decode_stored, ends_its_append
from questlog.events.subjects import LIVE_WILDCARD
from questlog.projections.repository import PlayerRepository

log = logging.getLogger("questlog.commands")


class WarmCache:
    def __init__(self, repo: PlayerRepository) -> None:
        self._repo = repo
        self._open: dict[str, list[Recorded]] = {}  # player -> the events of an append not ended yet

    async def fold(self, msg: Msg) -> None:
        player_id = msg.subject.split(".", 3)[2]  # live.players.<id>.events.<type>
        if player_id not in self._repo:
            self._open.pop(player_id, None)
            return
        headers = msg.headers or {}
        try:
            rec = decode_stored(msg, self._repo.registry)
            index = int(headers.get(APPEND_INDEX, "0"))
        except Exception:  # an event this version cannot read: a conflict will read the log
            log.debug("live event not folded", extra={"subject": msg.subject}, exc_info=True)
            self._open.pop(player_id, None)
            return
        started = [] if index == 0 else self._open.pop(player_id, [])
        append = [*started, rec]
        if not ends_its_append(headers):
            self._open[player_id] = append
            return
        self._open.pop(player_id, None)
        whole = len(append) == index + 1 and all(b.version == a.version + 1 for a, b in pairwise(append))
        if whole:
            for event in append:  # no await between: nobody sees a state in the middle
                self._repo.holding(event)


async def keep_warm(nc: NATS, repo: PlayerRepository) -> Subscription:
    """Fold each stored append of a cached player into the cache as the stream republishes it."""
    return await nc.subscribe(LIVE_WILDCARD, cb=WarmCache(repo).fold)
