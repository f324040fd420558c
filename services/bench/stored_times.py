"""When JetStream stored each event: the start of the delivery-latency clock.

The `EVENTS` stream republishes every stored event with `Nats-Time-Stamp`
(the server's store time, nanoseconds). The bench listens to the same
republished subjects the gateway does and keeps (player, version) -> that
time; a client's arrival stamp minus it is "append to client". Both clocks
are this machine's wall clock.
"""

from __future__ import annotations

import calendar
import time

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from questlog.events.subjects import LIVE_WILDCARD


class _Head(msgspec.Struct):
    player_id: str
    version: int


_head = msgspec.json.Decoder(_Head)


class StoredTimes:
    def __init__(self, nc: NATS, subject: str = LIVE_WILDCARD) -> None:
        self._nc = nc
        self._subject = subject
        self._raw: dict[tuple[str, int], str] = {}
        self._sub: Subscription | None = None
        self._seconds: dict[str, int] = {}

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._subject, cb=self._on, pending_msgs_limit=1_000_000)

    async def _on(self, msg: Msg) -> None:
        stamp = (msg.headers or {}).get("Nats-Time-Stamp")
        if stamp:
            head = _head.decode(msg.data)
            self._raw[(head.player_id, head.version)] = stamp

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()

    def __len__(self) -> int:
        return len(self._raw)

    def seen(self) -> list[tuple[str, int]]:
        """Every (player, version) whose store time was seen."""
        return list(self._raw)

    def stored_at(self, player_id: str, version: int) -> float | None:
        """Unix time the event was stored, or None if it was not seen (stored before `start`)."""
        raw = self._raw.get((player_id, version))
        return None if raw is None else self._parse(raw)

    def _parse(self, raw: str) -> float:
        # RFC 3339 with nanoseconds, always UTC ("…T10:37:20.031976377Z"); fromisoformat stops at micro
        base, _, frac = raw.rstrip("Z").partition(".")
        whole = self._seconds.get(base)
        if whole is None:
            whole = self._seconds[base] = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
        return whole + (float("0." + frac) if frac else 0.0)
