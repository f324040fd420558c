"""The consumer runtime against real JetStream: order, redelivery, dead letters, sharing, drain."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import msgspec
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from questlog.services.runtime.consumer import ConsumerSpec, ensure_consumer, run_consumer
from questlog.services.runtime.pulling import Pull, PullRefused
from questlog.services.runtime.settings import Settings

STREAM = "CONSUMERTEST"  # its own stream: the session's services never see these bodies


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def test_stream(nc: NATS) -> str:
    await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=["ctest.>"]))
    return STREAM


async def settled(js, durable: str) -> None:
    """Until the server has applied every ack/term: it does so apart from answering info requests."""
    async with asyncio.timeout(5):
        while True:
            info = await js.consumer_info(STREAM, durable)
            if info.num_ack_pending == 0 and info.num_pending == 0:
                return
            await asyncio.sleep(0.01)


def by_player(msg: Msg) -> str:
    return msg.subject.split(".")[1]


def spec_for(settings: Settings, subjects: list[str], **kw) -> ConsumerSpec:
    return ConsumerSpec(
        durable=f"test-{uuid.uuid4().hex[:8]}",
        stream=STREAM,
        filter_subjects=subjects,
        backoff_s=(0.01, 0.02, 0.05),
        **kw,
    )


async def publish(nc: NATS, subject: str, n: int) -> None:
    js = nc.jetstream()
    for i in range(n):
        await js.publish(subject, str(i).encode())


async def test_every_message_handled_once_after_transient_failures(
    nc: NATS, settings: Settings, test_stream: str
) -> None:
    players = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for p in players:
        await publish(nc, f"ctest.{p}.tick", 20)
    seen: dict[str, list[int]] = {p: [] for p in players}
    failed_once: set[tuple[str, int]] = set()
    done = asyncio.Event()
    stop = asyncio.Event()

    async def handler(msg: Msg) -> None:
        p, n = msg.subject.split(".")[1], int(msg.data)
        if n % 7 == 3 and (p, n) not in failed_once:
            failed_once.add((p, n))
            raise RuntimeError("transient")
        seen[p].append(n)
        if all(len(v) == 20 for v in seen.values()):
            done.set()

    spec = spec_for(settings, [f"ctest.{p}.>" for p in players])
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2, key=by_player))
    await asyncio.wait_for(done.wait(), 20)
    stop.set()
    await asyncio.wait_for(task, 10)
    for p in players:
        assert sorted(seen[p]) == list(range(20)), "every message handled, none twice"
        assert seen[p][:3] == [0, 1, 2], "up to the first failure, a player's messages come in order"
    assert len(failed_once) == 3 * 3


async def test_poison_message_goes_to_dead_letter_stream(nc: NATS, settings: Settings, test_stream: str) -> None:
    p = f"c-{uuid.uuid4().hex[:8]}"
    await publish(nc, f"ctest.{p}.poison", 1)
    spec = spec_for(settings, [f"ctest.{p}.>"], max_deliver=3)
    js = nc.jetstream()
    dl = await js.pull_subscribe(f"deadletter.{spec.durable}", stream=settings.streams.dead_letters)
    attempts = 0
    stop = asyncio.Event()

    async def handler(msg: Msg) -> None:
        nonlocal attempts
        attempts += 1
        raise ValueError("always broken")

    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2, key=by_player))
    (dead,) = await dl.fetch(1, timeout=20)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert attempts == 3
    assert dead.headers["Questlog-Original-Subject"] == f"ctest.{p}.poison"
    assert "always broken" in dead.headers["Questlog-Error"]
    await settled(js, spec.durable)


async def test_two_instances_share_one_durable_and_drain_on_stop(
    nc: NATS, settings: Settings, test_stream: str
) -> None:
    p_count, per = 8, 25
    players = [f"c-{uuid.uuid4().hex[:8]}" for _ in range(p_count)]
    for p in players:
        await publish(nc, f"ctest.{p}.work", per)
    spec = spec_for(settings, [f"ctest.{p}.>" for p in players], batch=16)
    handled: Counter[str] = Counter()
    by_instance: Counter[int] = Counter()
    done = asyncio.Event()
    stops = [asyncio.Event(), asyncio.Event()]

    def handler_for(i: int):
        async def handler(msg: Msg) -> None:
            await asyncio.sleep(0)  # yield, so both instances interleave
            handled[f"{msg.subject}:{msg.data.decode()}"] += 1
            by_instance[i] += 1
            if len(handled) == p_count * per:
                done.set()

        return handler

    js = nc.jetstream()
    tasks = [
        asyncio.create_task(run_consumer(nc, spec, handler_for(i), stops[i], wait_s=0.2, key=by_player))
        for i in range(2)
    ]
    await asyncio.wait_for(done.wait(), 20)
    for s in stops:
        s.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert all(v == 1 for v in handled.values()), "no message handled twice without a failure"
    assert by_instance[0] > 0 and by_instance[1] > 0, f"both instances should get work: {by_instance}"
    await settled(js, spec.durable)  # stop drains: everything fetched was acked


async def test_a_service_durable_takes_the_deployment_ack_wait(nc: NATS, settings: Settings, test_stream: str) -> None:
    """QUESTLOG_ACK_WAIT_S reaches the durable JetStream holds, not just the spec."""
    tuned = msgspec.structs.replace(settings, ack_wait_s=7.0)
    durable = f"ackwait-{uuid.uuid4().hex[:8]}"
    spec = ConsumerSpec.of_service(tuned, durable, ["ctest.>"], stream=test_stream)
    await ensure_consumer(nc.jetstream(), spec)
    info = await nc.jetstream().consumer_info(test_stream, durable)
    assert info.config.ack_wait == 7.0
    assert ConsumerSpec.of_service(tuned, "x", ["y"]).stream == settings.streams.events


async def test_a_caught_up_consumer_takes_a_new_message_at_once_not_when_a_batch_fills(
    nc: NATS, settings: Settings, test_stream: str
) -> None:
    """The wait for new messages is 30 s and a batch is 128: the message must not wait for either."""
    p = f"c-{uuid.uuid4().hex[:8]}"
    spec = spec_for(settings, [f"ctest.{p}.>"])
    handled: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()

    async def handler(msg: Msg) -> None:
        handled.put_nowait(int(msg.data))

    await ensure_consumer(nc.jetstream(), spec)
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=30, key=by_player))
    for n in range(3):  # one at a time, each after the one before was handled
        await nc.jetstream().publish(f"ctest.{p}.tick", str(n).encode())
        assert await asyncio.wait_for(handled.get(), 10) == n, "handled while the pull request is still open"
    stop.set()  # ends the 30 s wait at once
    await asyncio.wait_for(task, 10)
    await settled(nc.jetstream(), spec.durable)


async def test_a_pull_request_that_expired_is_replaced(nc: NATS, settings: Settings, test_stream: str) -> None:
    p = f"c-{uuid.uuid4().hex[:8]}"
    spec = spec_for(settings, [f"ctest.{p}.>"])
    await ensure_consumer(nc.jetstream(), spec)
    pull = await Pull(nc, STREAM, spec.durable, batch=2, expires_s=0.2).start()
    try:
        assert await pull.next(0.5) == [], "nothing published: the request expires (the server says 408)"
        await publish(nc, f"ctest.{p}.tick", 3)
        got: list[Msg] = []
        async with asyncio.timeout(10):
            while len(got) < 3:  # a batch of 2, so a third message needs a new request too
                got += await pull.next(1.0)
        assert [int(m.data) for m in got] == [0, 1, 2]
        for m in got:
            await m.ack()
    finally:
        left = await pull.close()
    assert left == []
    await settled(nc.jetstream(), spec.durable)


async def test_a_refused_pull_request_is_raised_not_retried_in_a_loop(
    nc: NATS, settings: Settings, test_stream: str
) -> None:
    """The caller (run_consumer) waits before asking again; a 409 or 503 would otherwise come back at once, forever."""
    missing = await Pull(nc, STREAM, f"missing-{uuid.uuid4().hex[:8]}", batch=8).start()
    try:
        with pytest.raises(PullRefused, match="503"):  # no such consumer: nobody answers the request
            await missing.next(5.0)
    finally:
        await missing.close()
    spec = spec_for(settings, [f"ctest.c-{uuid.uuid4().hex[:8]}.>"])
    js = nc.jetstream()
    await ensure_consumer(js, spec)
    pull = await Pull(nc, STREAM, spec.durable, batch=8, expires_s=30).start()
    try:
        assert await pull.next(0.2) == []  # the request is open and waiting
        await js.delete_consumer(STREAM, spec.durable)
        with pytest.raises(PullRefused, match="409"):
            await pull.next(5.0)
    finally:
        await pull.close()


async def test_a_stopping_instance_gives_back_what_it_had_not_started(
    nc: NATS, settings: Settings, test_stream: str
) -> None:
    """Messages delivered while a batch was being handled go to the next instance at once, not after the ack wait."""
    p = f"c-{uuid.uuid4().hex[:8]}"
    spec = spec_for(settings, [f"ctest.{p}.>"], ack_wait_s=60.0)
    js = nc.jetstream()
    await ensure_consumer(js, spec)
    started, release = asyncio.Event(), asyncio.Event()
    first_took: list[int] = []

    async def slow(msg: Msg) -> None:
        first_took.append(int(msg.data))
        started.set()
        await release.wait()

    stop = asyncio.Event()
    first = asyncio.create_task(run_consumer(nc, spec, slow, stop, wait_s=0.2, key=by_player))
    await publish(nc, f"ctest.{p}.work", 1)
    await asyncio.wait_for(started.wait(), 10)
    await publish(nc, f"ctest.{p}.work", 4)  # delivered to the open pull request while message 0 is in hand
    async with asyncio.timeout(10):
        while (await js.consumer_info(STREAM, spec.durable)).num_ack_pending < 5:
            await asyncio.sleep(0.02)
    stop.set()
    release.set()
    await asyncio.wait_for(first, 10)
    assert first_took == [0], "the batch in hand finishes; nothing new starts after stop"

    second_took: list[int] = []
    all_in = asyncio.Event()

    async def quick(msg: Msg) -> None:
        second_took.append(int(msg.data))
        if len(second_took) == 4:
            all_in.set()

    stop2 = asyncio.Event()
    second = asyncio.create_task(run_consumer(nc, spec, quick, stop2, wait_s=0.2, key=by_player))
    await asyncio.wait_for(all_in.wait(), 20)  # well inside the 60 s ack wait
    stop2.set()
    await asyncio.wait_for(second, 10)
    assert sorted(second_took) == [0, 1, 2, 3]
    await settled(js, spec.durable)


async def test_a_deleted_durable_is_made_again(nc: NATS, settings: Settings, test_stream: str) -> None:
    """An operator deleting the durable (or losing it) stops the service only for a moment."""
    p = f"c-{uuid.uuid4().hex[:8]}"
    spec = spec_for(settings, [f"ctest.{p}.>"])
    js = nc.jetstream()
    handled: asyncio.Queue[int] = asyncio.Queue()

    async def handler(msg: Msg) -> None:
        handled.put_nowait(int(msg.data))

    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(nc, spec, handler, stop, wait_s=0.2, key=by_player))
    await js.publish(f"ctest.{p}.tick", b"1")
    assert await asyncio.wait_for(handled.get(), 10) == 1
    await js.delete_consumer(STREAM, spec.durable)
    await js.publish(f"ctest.{p}.tick", b"2")
    seen: list[int] = []
    async with asyncio.timeout(15):
        while 2 not in seen:  # the new durable starts from the beginning: 1 may come again first
            seen.append(await handled.get())
    stop.set()
    await asyncio.wait_for(task, 10)
