"""The per-connection mailbox: FIFO, bounded, one reader that waits without polling."""

from __future__ import annotations

import asyncio

import pytest

from questlog.gateway.mailbox import Mailbox, MailboxFull


async def test_items_come_out_in_order_and_the_bound_refuses_more() -> None:
    box: Mailbox[int] = Mailbox(3)
    for i in range(3):
        box.put(i)
    with pytest.raises(MailboxFull):
        box.put(3)
    assert len(box) == 3
    assert [await box.get() for _ in range(3)] == [0, 1, 2]
    assert not box


async def test_a_waiting_reader_wakes_on_put_and_a_cancelled_one_leaves_it_usable() -> None:
    box: Mailbox[str] = Mailbox(10)
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)  # the reader is now waiting (a loop turn, not a wait for time)
    assert not reader.done()
    box.put("a")
    assert await reader == "a"

    waiting = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    box.put("b")
    assert await asyncio.wait_for(box.get(), 5) == "b"


async def test_two_readers_at_once_is_a_mistake_said_out_loud() -> None:
    box: Mailbox[int] = Mailbox(1)
    first = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one reader"):
        await box.get()
    first.cancel()
