"""One WebSocket's transport: frames in, each answered in its own task; one bounded send queue out.

Every frame is answered in its own task (responses may come in any order, as
JSON-RPC allows), at most `max_inflight` at once: beyond that the socket is not
read, which slows a flooding client down instead of queueing without bound.
Everything the server sends goes through one bounded queue drained by one
writer; a client that does not read fast enough fills it and is closed with
4008, and can resume without losing anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from questlog.services.runtime.spawning import BoundedTasks

from . import jsonrpc
from .close_codes import CloseCode
from .deflate import release_compressor
from .mailbox import Mailbox, MailboxFull

log = logging.getLogger("questlog.gateway.session")

CLOSE_TIMEOUT_S = 10.0


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


class Transport:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        *,
        send_queue_size: int,
        max_inflight: int,
        deflate_idle_s: float,
        on_overflow: Callable[[], None],
    ) -> None:
        self.ws = ws
        self.request = request
        self.close_code: int | None = None
        self._queue_size = send_queue_size
        # one extra slot, so a flushing close always fits behind what is queued
        self._out: Mailbox[str | _Close] = Mailbox(send_queue_size + 1)
        self._flushing = False
        self._answering = BoundedTasks(max_inflight, "answering a frame")
        self._deflate_idle_s = deflate_idle_s
        self._on_overflow = on_overflow
        self._closing: asyncio.Task[None] | None = None

    async def serve(self, answer: Callable[[str | bytes], Coroutine[Any, Any, None]]) -> None:
        """Read frames until the socket closes, each answered by `answer` in its own task."""
        writer = asyncio.create_task(self._write())
        try:
            async for msg in self.ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    break
                await self._answering.spawn(answer(msg.data))
        finally:
            writer.cancel()
            self._answering.cancel()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        quiet: asyncio.TimerHandle | None = None  # gives the compressor back if nothing follows
        try:
            while True:
                item = await self._out.get()
                if quiet is not None:
                    quiet.cancel()
                    quiet = None
                if isinstance(item, _Close):
                    self._begin_close(item.code, item.reason)
                    return
                await self.ws.send_str(item)
                if not self._out:
                    quiet = loop.call_later(self._deflate_idle_s, release_compressor, self.ws)
        finally:
            if quiet is not None:
                quiet.cancel()

    def send(self, text: str) -> bool:
        """Queue one frame; False when closing, or when the queue is full (then the socket closes 4008)."""
        if self._closing is not None or self._flushing:
            return False
        try:
            if len(self._out) >= self._queue_size:
                raise MailboxFull
            self._out.put(text)
            return True
        except MailboxFull:
            self._on_overflow()
            self.close_soon(CloseCode.TOO_SLOW, "too slow")
            return False

    def notify(self, method: str, params: Any) -> bool:
        return self.send(jsonrpc.encode(jsonrpc.notification(method, params)))

    def close_soon(self, code: int, reason: str, *, flush: bool = False) -> None:
        """Close with `code`: at once, or (`flush`) once what is already queued has been sent."""
        if flush and not self._flushing and self._closing is None:
            self._flushing = True
            self.close_code = code
            self._out.put(_Close(code, reason))
            return
        self._begin_close(code, reason)

    def _begin_close(self, code: int, reason: str) -> None:
        if self._closing is None:
            self.close_code = code
            self._closing = asyncio.create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode(), drain=False), CLOSE_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError, ConnectionError):
            transport = self.request.transport
            if transport is not None:
                transport.abort()
