"""Bytes in the stream <-> `Recorded` events.

The stored body is a JSON envelope readable from any language:
`{"type", "schema", "player_id", "version", "occurred_at", "command_id",
"causation_id", "data"}`. Decoding checks the type, upcasts old schemas and
validates the payload; nothing unknown is passed through silently.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from .errors import MalformedEvent
from .registry import EventRegistry
from .schema import Payload, Recorded


class _Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    type: str
    schema: int
    player_id: str
    version: int
    occurred_at: datetime
    data: msgspec.Raw
    command_id: str | None = None
    causation_id: str | None = None


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(_Envelope)


def encode(recorded: Recorded) -> bytes:
    event = recorded.event
    return _encoder.encode(
        _Envelope(
            type=event.TYPE,
            schema=event.SCHEMA,
            player_id=recorded.player_id,
            version=recorded.version,
            occurred_at=recorded.occurred_at,
            data=msgspec.Raw(_encoder.encode(event)),
            command_id=recorded.command_id,
            causation_id=recorded.causation_id,
        )
    )


def decode(body: bytes, registry: EventRegistry, seq: int = 0) -> Recorded:
    try:
        env = _envelope_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"stream sequence {seq}: {exc}") from None
    cls = registry.payload_class(env.type, seq or None)
    try:
        if env.schema == cls.SCHEMA:
            payload: Payload = msgspec.json.decode(env.data, type=cls)
        else:
            raw = msgspec.json.decode(env.data)
            payload = msgspec.convert(registry.upcast(env.type, env.schema, raw), cls)
    except msgspec.ValidationError as exc:
        raise MalformedEvent(f"stream sequence {seq}, {env.type}: {exc}") from None
    return Recorded(
        player_id=env.player_id,
        version=env.version,
        occurred_at=env.occurred_at,
        event=payload,
        command_id=env.command_id,
        causation_id=env.causation_id,
        seq=seq,
    )
