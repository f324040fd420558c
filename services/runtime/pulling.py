"""A durable's messages handed over as they arrive, not a full batch at a time.

nats-py's `fetch(n, timeout)` returns once n messages came or the timeout
passed, so a caught-up consumer would hold the first new message for up to a
whole timeout, then handle that timeout's worth at once: every service would
wake in bursts, and every other process on the machine would feel each burst
as slow round trips. A `Pull` keeps one pull request open
(up to `batch` messages, expiring after `expires_s`) and hands over whatever
has arrived as soon as anything has; a new request goes out when the open one
is used up or has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger("questlog.consumer")

_encoder = msgspec.json.Encoder()

# Status messages: a heartbeat, or the end of a request, quietly (no messages,
# expired) or not (a 409: leadership change, consumer deleted, too many
# waiting requests…; a 503: no such consumer).
_HEARTBEAT = "100"
_QUIET = ("404", "408")

WIRE_DRAIN_S = 2.0  # how long a stopping consumer waits for what is on the wire (nats-py's flush waits 10 s)


class PullRefused(Exception):
    """The server ended a pull request with an error (409: consumer deleted, leadership change…)."""


class Pull:
    def __init__(
        self, nc: NATS, stream: str, durable: str, *, batch: int, expires_s: float = 5.0, api_prefix: str = "$JS.API"
    ) -> None:
        self._nc = nc
        self._next_subject = f"{api_prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._durable = durable
        self._batch = batch
        self._expires_s = expires_s
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._arrived: deque[Msg] = deque()
        self._wake = asyncio.Event()
        self._remaining = 0  # messages the open request may still bring; 0: none open
        self._open_until = 0.0  # loop time after which the open request is surely over (a reply can be lost)
        self._refused: str | None = None  # an error that ended the last request, raised at the next call

    async def start(self) -> Pull:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_msg)
        return self

    async def _on_msg(self, msg: Msg) -> None:
        self._arrived.append(msg)
        self._wake.set()

    def interrupt(self) -> None:
        """End the current wait of `next` now (the consumer is stopping)."""
        self._wake.set()

    async def next(self, timeout: float) -> list[Msg]:
        """What has arrived, waiting up to `timeout` for the first (or an interrupt); [] if nothing came.

        Raises PullRefused, after handing over what came before it, when the
        server ended the request with an error: the caller waits before asking
        again rather than asking in a tight loop.
        """
        self._raise_refusal()
        await self._ensure_request()
        if not self._arrived:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return []
        out: list[Msg] = []
        while self._arrived:
            msg = self._arrived.popleft()
            status = _status(msg)
            if status is None:
                self._remaining = max(0, self._remaining - 1)
                out.append(msg)
            elif status != _HEARTBEAT:
                self._remaining = 0
                if status not in _QUIET:
                    self._refused = f"{status} {(msg.headers or {}).get('Description', '')}".strip()
                    break
        if not out:
            self._raise_refusal()
        return out

    def _raise_refusal(self) -> None:
        if self._refused is not None:
            refused, self._refused = self._refused, None
            raise PullRefused(refused)

    async def _ensure_request(self) -> None:
        loop = asyncio.get_running_loop()
        if self._remaining > 0 and loop.time() < self._open_until:
            return
        request = {"batch": self._batch, "expires": int(self._expires_s * 1e9)}
        await self._nc.publish(self._next_subject, _encoder.encode(request), reply=self._inbox)
        self._remaining = self._batch
        self._open_until = loop.time() + self._expires_s + 1.0

    async def close(self) -> list[Msg]:
        """Stop taking messages; returns those that arrived and were not handed over (to give back).

        Draining lets the messages already on their way reach us; any the server
        sends later (the open request lives until it expires) come back after
        the ack wait, as after a crash.
        """
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                if not self._nc.is_connected:
                    raise ConnectionError("not connected")
                await asyncio.wait_for(sub.drain(), WIRE_DRAIN_S)  # type: ignore[no-untyped-call]  # unannotated in nats-py
            except Exception:  # reconnecting, closing or slow: what came is all there is
                log.debug("could not drain the pull subscription", extra={"consumer": self._durable}, exc_info=True)
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        left = [m for m in self._arrived if _status(m) is None]
        self._arrived.clear()
        return left


def _status(msg: Msg) -> str | None:
    """A status message's code (it has no body); None for a message of the stream."""
    return None if msg.data else (msg.headers or {}).get("Status")
