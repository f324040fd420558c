"""Versioned snapshots of player state in a JetStream KV bucket.

A snapshot only ever saves work: a missing, corrupt or older-schema snapshot
is ignored and the state is folded from the events instead.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger("questlog.snapshots")

S = TypeVar("S")


class _Stored(msgspec.Struct, Generic[S]):
    schema: int
    state: S


class SnapshotStore(Generic[S]):
    def __init__(self, kv: KeyValue, state_type: type[S], schema: int) -> None:
        self._kv = kv
        self._schema = schema
        self._decoder = msgspec.json.Decoder(_Stored[state_type])  # type: ignore[valid-type]  # generic over a runtime type
        self._peek = msgspec.json.Decoder(_Stored[msgspec.Raw])
        self._encoder = msgspec.json.Encoder()

    async def get(self, player_id: str) -> S | None:
        try:
            entry = await self._kv.get(player_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        try:
            if self._peek.decode(entry.value).schema != self._schema:
                log.info("ignoring a snapshot of another schema", extra={"player_id": player_id})
                return None
            return self._decoder.decode(entry.value).state
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring a corrupt snapshot", extra={"player_id": player_id, "error": str(exc)})
            return None

    async def put(self, player_id: str, state: S) -> None:
        await self._kv.put(player_id, self._encoder.encode(_Stored(self._schema, state)))
