"""A bounded FIFO with one reader: what each connection queues for its writer and its live pump.

asyncio.Queue would do, but it holds four deques (items, getters, putters and
its own Event's) and asyncio.Event one, each allocated even when empty; a
gateway keeps two queues and two events per idle connection, a visible share
of its memory budget. This holds one deque, and one future only while its
reader waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class MailboxFull(Exception):
    """`put` beyond the bound: the reader is not keeping up."""


class Mailbox(Generic[T]):
    __slots__ = ("_bound", "_items", "_waiter")

    def __init__(self, bound: int) -> None:
        self._items: deque[T] = deque()
        self._bound = bound
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if len(self._items) >= self._bound:
            raise MailboxFull
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> T:
        """The oldest item, waiting for one if there is none. One reader at a time."""
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("a mailbox has one reader")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()
