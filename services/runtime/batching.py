"""Concurrent single calls coalesced into one batched round trip.

A Redis command costs this process more CPU in redis-py, whatever it carries,
than Redis spends on it, so a gateway answering hundreds of calls at once
would spend most of its time on the client, not on Redis. A `Coalescer` gathers the calls made in the
same turn of the event loop, and those made while a batch is in flight, into
one batch (DataLoader's trick): under load a batch carries many, alone a call
waits one loop turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[list[T]], Awaitable[Sequence[R]]]  # one answer per item, in order


class Coalescer(Generic[T, R]):
    """`timeout_s` bounds one batch: one stuck round trip would otherwise hold every caller."""

    def __init__(self, run: RunBatch[T, R], max_batch: int = 500, timeout_s: float = 10.0) -> None:
        self._run = run
        self._max = max_batch
        self._timeout_s = timeout_s
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())  # starts next turn: this turn's calls join
            self._flusher.add_done_callback(self._flusher_ended)
        return await future

    def _flusher_ended(self, flusher: asyncio.Task[None]) -> None:
        """Also when it was cancelled before its first step, and so never ran its own cleanup."""
        if flusher is self._flusher:
            self._flusher = None
        if flusher.cancelled() and self._pending:
            self._fail_pending(RuntimeError("the batch was cancelled"))

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                sent = [(item, future) for item, future in batch if not future.cancelled()]
                if not sent:
                    continue
                answers: Sequence[R]
                try:
                    answers = await asyncio.wait_for(self._run([item for item, _ in sent]), self._timeout_s)
                    if len(answers) != len(sent):
                        raise RuntimeError(f"a batch of {len(sent)} got {len(answers)} answers")
                except BaseException as exc:  # every caller of the batch sees the failure
                    failure = exc if isinstance(exc, Exception) else RuntimeError("the batch was cancelled")
                    for _, future in sent:
                        if not future.done():
                            future.set_exception(failure)
                    if not isinstance(exc, Exception):
                        self._fail_pending(failure)
                        raise
                    continue
                for (_, future), answer in zip(sent, answers, strict=True):
                    if not future.done():  # its caller may have given up meanwhile
                        future.set_result(answer)
        finally:
            if self._flusher is asyncio.current_task():
                self._flusher = None

    def _fail_pending(self, failure: Exception) -> None:
        """The flusher is going away (cancelled): nobody may wait for a batch that will not run."""
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(failure)
