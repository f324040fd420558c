"""The async Python client of the questlog protocol: used by the tests and the benchmarks.

It reconnects by itself (jittered exponential backoff over the gateway URLs it
knows), resumes with its epoch and version, and checks every `event` it gets:
a duplicate is dropped, a gap is repaired with `events.replay` before the event
that revealed it. So `events` yields the player's log in version order, with
no gap and no duplicate, across reconnects; when a resume is not recoverable,
the new full state lands in `states` and the versions continue after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import msgspec

from questlog.services.contract.protocol import RATE_LIMITED, RpcError

from .close_codes import CloseCode

log = logging.getLogger("questlog.client")

TokenSource = str | Callable[[], str | Awaitable[str]]

# close codes the client reacts to (docs/protocol.md)


class ConnectionLost(ConnectionError):
    """The socket closed while a call was in flight; whether it took effect is unknown (use command_id)."""


class QuestlogClient:
    def __init__(
        self,
        urls: str | Sequence[str],
        token: TokenSource,
        *,
        epoch: str | None = None,
        version: int | None = None,
        reconnect: bool = True,
        backoff_base_s: float = 0.05,
        backoff_max_s: float = 5.0,
        call_timeout_s: float = 30.0,
        http: aiohttp.ClientSession | None = None,
    ) -> None:
        """`http`: a session shared with other clients (many clients in one process); it stays open at `close`."""
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self._token_source = token
        self.epoch, self.version = epoch, version
        self.reconnect = reconnect
        self._backoff_base_s, self._backoff_max_s = backoff_base_s, backoff_max_s
        self._call_timeout_s = call_timeout_s
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.notifications: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.states: list[dict[str, Any]] = []  # hello results that carried a full state
        self.hellos: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.gaps_repaired = 0
        self.connected = asyncio.Event()
        self._url_index = 0
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ordered: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = http
        self._own_http = http is None
        self._runner: asyncio.Task[None] | None = None
        self._orderer: asyncio.Task[None] | None = None
        self._first: asyncio.Future[dict[str, Any]] | None = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------

    async def connect(self) -> dict[str, Any]:
        """Open the first session; the hello result (an error if the first hello fails)."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._first = asyncio.get_running_loop().create_future()
        self._orderer = asyncio.create_task(self._order_events(), name="client-events")
        self._runner = asyncio.create_task(self._run(), name="client-connection")
        try:
            return await self._first
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        for task in (self._runner, self._orderer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._http is not None and self._own_http:
            await self._http.close()

    async def __aenter__(self) -> QuestlogClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Close the socket as a network failure would; the client reconnects and resumes."""
        if self._ws is not None:
            await self._ws.close(code=4000, message=b"client dropped")

    # -- calls ----------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None) -> Any:
        """The result, or raise `RpcError` (the server's error) / `ConnectionLost`."""
        timeout = timeout or self._call_timeout_s
        await asyncio.wait_for(self.connected.wait(), timeout)
        return await self._call_on(self._ws, method, params, timeout)

    async def call_admitted(self, method: str, params: dict[str, Any], *, give_up_s: float = 60.0) -> Any:
        """`call`, sent again after each -32029 once its `retry_after_ms` passed (give `params`
        a `command_id`, so a command that landed after all is not applied twice)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + give_up_s
        while True:
            try:
                return await self.call(method, params)
            except RpcError as exc:
                if exc.code != RATE_LIMITED or loop.time() >= until:
                    raise
                await asyncio.sleep((exc.data or {}).get("retry_after_ms", 500) / 1000)  # the back-off it asked for

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self.connected.wait()
        assert self._ws is not None
        await self._ws.send_str(_encode({"jsonrpc": "2.0", "method": method, "params": params or {}}))

    async def _call_on(
        self, ws: aiohttp.ClientWebSocketResponse | None, method: str, params: dict[str, Any] | None, timeout: float
    ) -> Any:
        if ws is None or ws.closed:
            raise ConnectionLost("not connected")
        rid = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        try:
            await ws.send_str(_encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(rid, None)

    # -- the connection loop -------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            url = self.urls[self._url_index % len(self.urls)]
            code: int | None = None
            try:
                assert self._http is not None
                async with self._http.ws_connect(url, max_msg_size=0, compress=15, heartbeat=None) as ws:
                    self._ws = ws
                    reader = asyncio.create_task(self._read(ws))
                    try:
                        hello = await self._hello(ws)
                    except BaseException:
                        reader.cancel()
                        raise
                    attempt = 0
                    self.connected.set()
                    if self._first is not None and not self._first.done():
                        self._first.set_result(hello)
                    await reader
                    code = ws.close_code
            except RpcError as exc:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(exc)
                    return
                log.warning("session.hello refused: %s", exc.message)
            except (aiohttp.ClientError, OSError, TimeoutError, ConnectionLost) as exc:
                log.info("connection failed: %r", exc)
            finally:
                self.connected.clear()
                self._ws = None
                self._fail_pending()
            self.close_codes.append(code)
            if self._closed or not self.reconnect:
                if self._first is not None and not self._first.done():
                    self._first.set_exception(ConnectionLost(f"closed with {code}"))
                return
            if code == CloseCode.GOING_AWAY:
                self._url_index += 1  # that gateway is going away: another one, at once
                continue
            if code == CloseCode.TOKEN_EXPIRED and not callable(self._token_source):
                self._closed = True  # a fixed token will not get better
                return
            if code != CloseCode.TOO_SLOW:
                self._url_index += 1
            attempt += 1
            cap = min(self._backoff_max_s, self._backoff_base_s * 2**attempt)
            if code == CloseCode.TOO_MANY:
                cap = self._backoff_max_s
            await asyncio.sleep(random.uniform(cap / 2, cap))

    async def _token(self) -> str:
        if isinstance(self._token_source, str):
            return self._token_source
        token = self._token_source()
        return await token if inspect.isawaitable(token) else token

    async def _hello(self, ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        params: dict[str, Any] = {"token": await self._token()}
        if self.epoch is not None and self.version is not None:
            params["resume"] = {"epoch": self.epoch, "version": self.version}
        # the reader hands the answer to the event orderer before any event that follows it
        welcome: dict[str, Any] = await self._call_on(ws, "session.hello", params, self._call_timeout_s)
        return welcome

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = msgspec.json.decode(msg.data)
            except msgspec.DecodeError:
                continue
            for item in data if isinstance(data, list) else [data]:
                self._dispatch(item)

    def _dispatch(self, item: dict[str, Any]) -> None:
        if "method" in item and "id" not in item:
            method, params = item["method"], item.get("params")
            if method == "event":
                self._ordered.put_nowait(("event", params))
            else:
                self.notifications.put_nowait((method, params))
            return
        fut = self._pending.get(item.get("id", -1))
        if fut is None or fut.done():
            return
        if "error" in item:
            fut.set_exception(RpcError.from_dict(item["error"]))
            return
        result = item.get("result")
        if isinstance(result, dict) and "session_id" in result and "recovered" in result:
            self._ordered.put_nowait(("hello", result))  # before the events it announces
        fut.set_result(result)

    def _fail_pending(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionLost("the connection closed before the answer"))
        self._pending.clear()

    # -- events, in order ---------------------------------------------------------------

    async def _order_events(self) -> None:
        while True:
            kind, params = await self._ordered.get()
            if kind == "hello":
                self.hellos.append(params)
                self.epoch = params["epoch"]
                if not params["recovered"]:
                    self.version = params["version"]
                    self.states.append(params)
                continue
            version = int(params["version"])
            current = self.version or 0
            if version <= current:
                continue  # a duplicate
            if version > current + 1:
                await self._repair(current, version)
                if version <= (self.version or 0):
                    continue
            self.version = version
            self.events.put_nowait(params)

    async def _repair(self, current: int, upto: int) -> None:
        """Fill versions current+1 .. upto-1 with `events.replay`."""
        while (self.version or 0) < upto - 1:
            start = (self.version or 0) + 1
            try:
                result = await self.call("events.replay", {"from_version": start, "limit": min(1000, upto - start)})
            except (RpcError, ConnectionLost, TimeoutError) as exc:
                log.warning("gap repair failed: %r", exc)
                return
            got = [e for e in result["events"] if int(e["version"]) >= start]
            if not got:
                return
            for e in got:
                if int(e["version"]) != (self.version or 0) + 1 or int(e["version"]) >= upto:
                    break
                self.version = int(e["version"])
                self.gaps_repaired += 1
                self.events.put_nowait(e)

    async def next_event(self, timeout: float = 30.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)


_encoder = msgspec.json.Encoder()


def _encode(message: Any) -> str:
    return _encoder.encode(message).decode()
