"""The WebSocket close codes of docs/protocol.md, which tell a client how to reconnect.

The standard ones are aiohttp's `WSCloseCode`; the 4000s are the protocol's own.
"""

from __future__ import annotations

import enum

from aiohttp import WSCloseCode


class CloseCode(enum.IntEnum):
    GOING_AWAY = WSCloseCode.GOING_AWAY  # 1001: the gateway drains; reconnect elsewhere at once
    TOO_BIG = WSCloseCode.MESSAGE_TOO_BIG  # 1009: a frame over the size limit
    INTERNAL = WSCloseCode.INTERNAL_ERROR  # 1011: resume
    TOKEN_EXPIRED = 4001  # expired or revoked: reconnect with a new token
    TOO_SLOW = 4008  # the send queue overflowed: resume
    TOO_MANY = 4029  # too many connections: back off
