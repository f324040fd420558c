"""The coalescer: calls of one moment share a batch, answers go back in order, failures reach every caller."""

from __future__ import annotations

import asyncio

import pytest

from questlog.services.runtime.batching import Coalescer


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None

    async def run(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        if self.gate is not None:
            await self.gate.wait()
        return [i * 10 for i in items]


async def test_calls_of_one_moment_share_one_batch_and_get_their_own_answers() -> None:
    rec = Recorder()
    square = Coalescer(rec.run)
    assert await asyncio.gather(*(square(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert rec.batches == [[0, 1, 2, 3, 4]]


async def test_calls_made_while_a_batch_is_in_flight_form_the_next_one() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    c = Coalescer(rec.run, max_batch=3)
    first = [asyncio.create_task(c(i)) for i in range(4)]  # 3 go now, 1 waits for the next batch
    await asyncio.sleep(0)  # let them queue (a turn of the loop, not a wait for time)
    while not rec.batches:
        await asyncio.sleep(0)
    later = [asyncio.create_task(c(i)) for i in range(10, 12)]
    rec.gate.set()
    assert await asyncio.gather(*first, *later) == [0, 10, 20, 30, 100, 110]
    assert rec.batches == [[0, 1, 2], [3, 10, 11]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("redis went away")
        return items

    c = Coalescer(flaky)
    results = await asyncio.gather(c(1), c(2), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError, ConnectionError]
    assert await c(3) == 3


async def test_a_cancelled_caller_does_not_shift_the_others_answers() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()
    c = Coalescer(rec.run)
    tasks = [asyncio.create_task(c(i)) for i in range(3)]
    while not rec.batches:
        await asyncio.sleep(0)
    tasks[1].cancel()  # gives up while the batch is in flight
    rec.gate.set()
    assert await tasks[0] == 0 and await tasks[2] == 20
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]


async def test_a_batch_with_the_wrong_number_of_answers_is_an_error_not_a_shuffle() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    c = Coalescer(short)
    results = await asyncio.gather(c(1), c(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_cancelling_the_flusher_fails_its_batch_and_the_calls_still_waiting() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set: the batch hangs until cancelled
    c = Coalescer(rec.run, max_batch=1)
    tasks = [asyncio.create_task(c(i)) for i in range(3)]
    while not rec.batches:
        await asyncio.sleep(0)
    assert c._flusher is not None
    c._flusher.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)  # the one in flight and the two waiting


async def test_a_flusher_cancelled_before_it_ran_leaves_no_caller_hanging() -> None:
    rec = Recorder()
    c = Coalescer(rec.run)
    first = asyncio.create_task(c(1))
    await asyncio.sleep(0)  # the call is queued and its flusher created, not yet run
    assert c._flusher is not None
    c._flusher.cancel()
    with pytest.raises(RuntimeError, match="cancelled"):
        await asyncio.wait_for(first, 5)
    assert await asyncio.wait_for(c(2), 5) == 20  # a later call gets a new flusher


async def test_a_stuck_batch_times_out_for_its_callers_and_the_next_batch_runs() -> None:
    rec = Recorder()
    rec.gate = asyncio.Event()  # never set: the first batch hangs
    c = Coalescer(rec.run, timeout_s=0.05)
    results = await asyncio.gather(c(1), c(2), return_exceptions=True)
    assert all(isinstance(r, TimeoutError) for r in results)
    rec.gate.set()
    assert await c(3) == 30
