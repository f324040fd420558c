"""Work answered concurrently, each piece in its own task, at most `limit` at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("questlog.runtime")


class BoundedTasks:
    """Tasks started only while fewer than `limit` run: `spawn` waits for a free slot.

    The caller that waits is the reader (a socket, a subscription), so a flood
    slows down at its source instead of queueing without bound.
    """

    def __init__(self, limit: int, what: str) -> None:
        self._gate = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[None]] = set()
        self._what = what

    async def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        await self._gate.acquire()
        task = asyncio.create_task(work)  # kept in the set only: a finished one is let go at once
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._gate.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", self._what, exc_info=task.exception())

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def drain(self, timeout: float) -> None:
        """Wait (at most `timeout`) for what runs to finish."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
