"""Seeing which direct gets a store sends: how tests prove a read was or was not made."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import msgspec
import nats
from nats.aio.client import Client as NATS

from questlog.events.store import EventStore
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import Settings


class DirectGets:
    """The direct gets one connection sends, seen by a plain subscription on the API subject.

    The connection has an inbox prefix of its own, so its requests are told
    apart from those of every other client of the suite's server.
    """

    def __init__(self, nc: NATS, settings: Settings, inbox_prefix: str) -> None:
        self._nc, self._settings, self._prefix = nc, settings, inbox_prefix
        self.requests: list[dict[str, object]] = []
        self._watching = False

    async def start(self) -> None:
        async def seen(msg) -> None:
            if self._watching and (msg.reply or "").startswith(self._prefix):
                self.requests.append(msgspec.json.decode(msg.data))

        self._sub = await self._nc.subscribe(f"$JS.API.DIRECT.GET.{self._settings.streams.events}", cb=seen)
        await flushed(self._nc)
        self._watching = True

    async def stop(self) -> None:
        await flushed(self._nc)  # the requests sent so far have reached the server, and so this subscription
        self._watching = False
        await self._sub.unsubscribe()

    @property
    def scans(self) -> list[dict[str, object]]:
        """Requests that make the server search by subject (its cost grows with the stream)."""
        return [r for r in self.requests if "next_by_subj" in r]


@contextlib.asynccontextmanager
async def watched(settings: Settings, **store_kw: object) -> AsyncIterator[tuple[EventStore, DirectGets]]:
    """A store on a connection of its own, and what it asks the server."""
    prefix = f"_INBOX_T{uuid.uuid4().hex[:8]}"
    conn = await nats.connect(settings.nats_url, inbox_prefix=prefix)
    try:
        yield EventStore(conn, settings.streams.events, **store_kw), DirectGets(conn, settings, prefix)
    finally:
        await conn.close()
