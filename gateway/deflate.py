"""Give back a quiet socket's permessage-deflate compressor.

aiohttp keeps one zlib compressor per WebSocket for the socket's whole life,
larger once it has compressed a frame than the memory budget of an idle
connection (docs/benchmarks.md). A socket that has sent nothing for
`QUESTLOG_DEFLATE_IDLE_S` drops it, and its next frame starts a fresh one.
That is valid permessage-deflate even with context takeover: every frame ends
on a sync flush, so a new deflate stream may follow, and a fresh compressor
never refers back into data the client holds from earlier frames.

Not sooner: a fresh compressor costs far more CPU per frame than a warm one,
and compresses a small event far worse without the frames before it, so a
player who is sent something every few seconds keeps one.

aiohttp has no public switch for this; `compressor_releasable` tells whether the
installed aiohttp still keeps the compressor where this module looks for it
(a test fails with that message if an upgrade moves it).
"""

from __future__ import annotations

from aiohttp import web

_ATTRIBUTE = "_compressobj"


def compressor_releasable(ws: web.WebSocketResponse) -> bool:
    writer = getattr(ws, "_writer", None)
    return writer is not None and hasattr(writer, _ATTRIBUTE)


def release_compressor(ws: web.WebSocketResponse) -> bool:
    """Drop the socket's compressor if it has one; True when one was dropped."""
    writer = getattr(ws, "_writer", None)
    if writer is None or getattr(writer, _ATTRIBUTE, None) is None:
        return False
    setattr(writer, _ATTRIBUTE, None)
    return True
