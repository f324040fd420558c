"""JSON-RPC 2.0 framing: one frame in, the requests it holds, and the responses out.

Everything a client can send is classified here (parse error, invalid request,
batch, notification) so the session and the HTTP endpoint only see well-formed
`Call`s. Nothing here raises on any input: an unreadable frame becomes an error
response, as the spec wants.
"""

from __future__ import annotations

from typing import Any

import msgspec

from questlog.services.contract import protocol
from questlog.services.contract.protocol import RpcError

_encoder = msgspec.json.Encoder()

# JSON-RPC ids are strings, numbers or null; a bool is not a number here.
_ID_TYPES = (str, int, float, type(None))


class Call(msgspec.Struct, frozen=True):
    """A well-formed request; `notification` calls get no response."""

    method: str
    params: Any
    id: Any = None
    notification: bool = False


class Invalid(msgspec.Struct, frozen=True):
    """A batch item (or frame) that is not a request: answered with this error."""

    error: RpcError
    id: Any = None


class Frame(msgspec.Struct, frozen=True):
    items: list[Call | Invalid]
    batch: bool = False


def _valid_id(value: Any) -> bool:
    return isinstance(value, _ID_TYPES) and not isinstance(value, bool)


def _item(raw: Any) -> Call | Invalid:
    if not isinstance(raw, dict):
        return Invalid(RpcError(protocol.INVALID_REQUEST, "invalid request: not an object"))
    has_id = "id" in raw
    rid = raw.get("id")
    if has_id and not _valid_id(rid):
        return Invalid(RpcError(protocol.INVALID_REQUEST, "invalid request: id must be a string, number or null"))
    if raw.get("jsonrpc") != "2.0":
        return Invalid(RpcError(protocol.INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"'), rid)
    method = raw.get("method")
    if not isinstance(method, str):
        return Invalid(RpcError(protocol.INVALID_REQUEST, "invalid request: method must be a string"), rid)
    params = raw.get("params")
    if "params" in raw and not isinstance(params, dict | list):
        return Invalid(RpcError(protocol.INVALID_REQUEST, "invalid request: params must be an object or array"), rid)
    extra = set(raw) - {"jsonrpc", "method", "params", "id"}
    if extra:
        return Invalid(RpcError(protocol.INVALID_REQUEST, f"invalid request: unknown member {sorted(extra)[0]!r}"), rid)
    return Call(method, params, rid, notification=not has_id)


def parse_frame(data: str | bytes) -> Frame:
    """Classify one frame; never raises."""
    try:
        raw = msgspec.json.decode(data)
    except Exception:  # malformed JSON, too deep (RecursionError), number out of range
        return Frame([Invalid(RpcError(protocol.PARSE_ERROR, "parse error: the frame is not valid JSON"))])
    if isinstance(raw, list):
        if not raw:
            return Frame([Invalid(RpcError(protocol.INVALID_REQUEST, "invalid request: empty batch"))])
        return Frame([_item(r) for r in raw], batch=True)
    return Frame([_item(raw)])


def result(rid: Any, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": value}


def error(rid: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": err.to_dict()}


def notification(method: str, params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def encode(message: Any) -> str:
    return _encoder.encode(message).decode()
