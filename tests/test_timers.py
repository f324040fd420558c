"""Durable timers are JetStream scheduled messages: they fire, once, even in the past."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from opentelemetry.sdk.trace import TracerProvider

from questlog.projections.due import Timer
from questlog.services.runtime.connections import flushed
from questlog.services.runtime.settings import Settings
from questlog.services.timers import TimerScheduler, due_subject, schedule_expression, schedule_subject, timer_decoder


def test_schedule_expression_is_rfc3339_utc_with_millis() -> None:
    at = datetime(2026, 11, 23, 10, 0, 1, 234567, tzinfo=UTC)
    assert schedule_expression(at) == "@at 2026-11-23T10:00:01.234Z"


async def test_timers_fire_in_due_order_and_rescheduling_is_idempotent(
    nc: NATS, settings: Settings, player_id: str
) -> None:
    js = nc.jetstream()
    scheduler = TimerScheduler(js)
    now = datetime.now(UTC)
    past = Timer(player_id=player_id, task_id="t-1", attempt=1, kind="step", step=1, due_at=now - timedelta(hours=3))
    soon = Timer(
        player_id=player_id, task_id="t-1", attempt=1, kind="step", step=2, due_at=now + timedelta(seconds=0.5)
    )
    sub = await js.pull_subscribe(due_subject(player_id), durable=f"t-{player_id}", stream=settings.streams.timers)
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("scheduling") as span:
        await scheduler.schedule(soon)
        await scheduler.schedule(past)
        await scheduler.schedule(soon)  # the same timer again: still one
    trace_id = format(span.get_span_context().trace_id, "032x")
    fired: list[Timer] = []
    while len(fired) < 2:
        for msg in await sub.fetch(1, timeout=10):
            fired.append(timer_decoder.decode(msg.data))
            assert trace_id in msg.headers.get("traceparent", ""), "a fired timer carries the scheduling trace"
            await msg.ack()
    assert [t.step for t in fired] == [1, 2]
    assert fired[1] == soon
    assert datetime.now(UTC) >= soon.due_at
    try:
        extra = await sub.fetch(1, timeout=1.0)
    except (TimeoutError, nats.errors.TimeoutError):  # nothing more fired
        extra = []
    assert extra == [], "a timer scheduled twice fires once"
    await sub.unsubscribe()


async def _published(nc: NATS, prefix: str, schedule: Callable[[], Awaitable[None]]) -> list[str]:
    """The schedule subjects under `prefix` that reached the server while `schedule` ran."""
    seen: list[str] = []
    sentinel = asyncio.get_running_loop().create_future()
    end = f"{prefix}.sentinel"

    async def on_schedule(msg: Msg) -> None:
        if msg.subject == end:
            sentinel.set_result(None)
        else:
            seen.append(msg.subject)

    sub = await nc.subscribe(f"{prefix}.>", cb=on_schedule)
    await flushed(nc)
    await schedule()
    await nc.publish(end, b"")  # after everything schedule() sent, on the same connection
    await asyncio.wait_for(sentinel, 10)
    await sub.unsubscribe()
    return seen


async def test_a_timer_already_acknowledged_is_not_published_again(nc: NATS, player_id: str) -> None:
    """The processor asks for the same timer after every event; only a new one costs a publish."""
    js = nc.jetstream()
    at = datetime.now(UTC) + timedelta(hours=1)
    timer = Timer(player_id=player_id, task_id="t-1", attempt=1, kind="step", step=1, due_at=at)
    moved = Timer(player_id=player_id, task_id="t-1", attempt=1, kind="step", step=1, due_at=at + timedelta(minutes=1))

    async def schedule() -> None:
        scheduler = TimerScheduler(js)
        for _ in range(3):
            await scheduler.schedule(timer)
        await scheduler.schedule(moved)  # a moved timer is a new one
        await scheduler.schedule(timer)  # and moving it back publishes again (the server drops the copy)
        await TimerScheduler(js).schedule(timer)  # a restarted processor remembers nothing
        forgetful = TimerScheduler(js, remember_s=0)  # remembers nothing past the stream's duplicate window
        await forgetful.schedule(timer)
        await forgetful.schedule(timer)

    seen = await _published(nc, f"timers.schedule.{player_id}", schedule)
    assert seen == [schedule_subject(timer), schedule_subject(moved)] + [schedule_subject(timer)] * 4


async def test_the_memory_of_acknowledged_timers_is_bounded(nc: NATS, player_id: str) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    timers = [
        Timer(player_id=f"{player_id}-{n}", task_id="t", attempt=1, kind="step", step=1, due_at=at) for n in range(3)
    ]

    async def schedule() -> None:
        scheduler = TimerScheduler(nc.jetstream(), remember=2)
        for timer in timers:
            await scheduler.schedule(timer)
        await scheduler.schedule(timers[2])  # remembered
        await scheduler.schedule(timers[0])  # forgotten: the oldest of three, with room for two

    seen = await _published(nc, "timers.schedule", schedule)
    mine = [subject for subject in seen if subject.startswith(f"timers.schedule.{player_id}-")]
    assert mine == [schedule_subject(t) for t in timers] + [schedule_subject(timers[0])]
