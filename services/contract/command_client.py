"""Calling the commands service over NATS request/reply: the gateway, CLI and other services.

Subject `questlog.cmd.<method>` (e.g. `questlog.cmd.queue.enqueue`); body
`{"player_id", "params", "actor": {"player_id", "roles"}}`; reply
`{"result": …}` or `{"error": {"code", "message", "data"}}` with the
protocol's JSON-RPC codes. The W3C trace context rides in the headers.
"""

from __future__ import annotations

from typing import Any

import msgspec
from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from opentelemetry import propagate

from .protocol import RpcError, unavailable

SUBJECT_PREFIX = "questlog.cmd"


class Actor(msgspec.Struct, frozen=True):
    player_id: str
    roles: tuple[str, ...] = ()


class CommandRequest(msgspec.Struct, frozen=True):
    player_id: str
    params: dict[str, Any]
    actor: Actor


class CommandReply(msgspec.Struct, frozen=True, omit_defaults=True):
    result: Any = None
    error: dict[str, Any] | None = None


def subject_for(method: str) -> str:
    return f"{SUBJECT_PREFIX}.{method}"


_encoder = msgspec.json.Encoder()
_reply_decoder = msgspec.json.Decoder(CommandReply)


class CommandClient:
    def __init__(self, nc: NATS, timeout: float = 10.0) -> None:
        self._nc = nc
        self._timeout = timeout

    async def call(self, method: str, player_id: str, params: dict[str, Any], actor: Actor) -> Any:
        """The method's result, or raise `RpcError` exactly as the client should see it."""
        headers: dict[str, str] = {}
        propagate.inject(headers)
        body = _encoder.encode(CommandRequest(player_id, params, actor))
        try:
            msg = await self._nc.request(subject_for(method), body, timeout=self._timeout, headers=headers or None)
        # -32029, not -32603: the client retries with the same command_id, which is safe
        except NoRespondersError:
            raise unavailable("the commands service is not running; try again shortly") from None
        except (NatsTimeout, ConnectionClosedError):
            raise unavailable("the commands service did not answer in time; try again") from None
        reply = _reply_decoder.decode(msg.data)
        if reply.error is not None:
            raise RpcError.from_dict(reply.error)
        return reply.result
