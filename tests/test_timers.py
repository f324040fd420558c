"""Durable timers are JetStream scheduled messages: they fire, once, even in the past."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import nats
from nats.aio.client import Client as NATS
from opentelemetry.sdk.trace import TracerProvider

from questlog.services.settings import Settings
from questlog.services.timers import Timer, TimerScheduler, due_subject, schedule_expression, timer_decoder


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
    soon = Timer(player_id=player_id, task_id="t-1", attempt=1, kind="step", step=2, due_at=now + timedelta(seconds=0.5))
    sub = await js.pull_subscribe(due_subject(player_id), durable=f"t-{player_id}", stream=settings.timers_stream)
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
    except (asyncio.TimeoutError, nats.errors.TimeoutError):  # nothing more fired
        extra = []
    assert extra == [], "a timer scheduled twice fires once"
    await sub.unsubscribe()
