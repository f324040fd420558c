"""Durable timers: one JetStream scheduled message per due step or retry.

A timer is a message on
`timers.schedule.<player>.<task>.<attempt>.<kind><n>.<due ms>` with
`Nats-Schedule: @at <time>`; at that time the server publishes its body to
`timers.due.<player>`, where the processor consumes it. The schedule subject
doubles as the `Nats-Msg-Id`, so scheduling the same timer (same due time)
twice is harmless, a moved timer is a new one, and a time in the past fires at
once. A timer that fires for a step no longer due is stale and does nothing.
No timer lives only in memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from datetime import datetime

import msgspec
from nats.js import JetStreamContext
from opentelemetry import propagate

from questlog.events.streams import TIMERS_DUPLICATE_WINDOW
from questlog.projections.due import Timer
from questlog.projections.views import iso

DUE_SUBJECTS = "timers.due.>"


def schedule_subject(timer: Timer) -> str:
    """Unique per due time too: a pause and resume moves a step's due time, and the
    moved timer must not be taken for a duplicate of the first one."""
    millis = int(timer.due_at.timestamp() * 1000)
    return f"timers.schedule.{timer.player_id}.{timer.task_id}.{timer.attempt}.{timer.kind}{timer.step}.{millis}"


def due_subject(player_id: str) -> str:
    return f"timers.due.{player_id}"


def schedule_expression(at: datetime) -> str:
    return "@at " + iso(at)


_encoder = msgspec.json.Encoder()
timer_decoder = msgspec.json.Decoder(Timer)


# Within the TIMERS stream's duplicate window the server drops a repeated timer
# anyway, so skipping one changes nothing it would not.
REMEMBER_S = TIMERS_DUPLICATE_WINDOW.total_seconds()


class TimerScheduler:
    """Publishes timers, and remembers the last one it published for each player.

    The processor asks for a player's next timer after every event it reacts
    to, so most requests repeat a timer already in the stream. The server
    would drop the copy (same `Nats-Msg-Id`, within the stream's duplicate
    window), but each copy still costs a publish and its ack; a timer this
    process saw acknowledged less than that window ago is skipped. Memory of
    it is bounded, per process, and lost on restart, where the server's
    duplicate check takes over again.
    """

    def __init__(self, js: JetStreamContext, *, remember: int = 10_000, remember_s: float = REMEMBER_S) -> None:
        self._js = js
        self._remember = remember
        self._remember_s = remember_s
        # player id -> (schedule subject acknowledged, when: monotonic seconds)
        self._last: OrderedDict[str, tuple[str, float]] = OrderedDict()

    async def schedule(self, timer: Timer) -> None:
        subject = schedule_subject(timer)
        known = self._last.get(timer.player_id)
        if known is not None and known[0] == subject and time.monotonic() - known[1] < self._remember_s:
            self._last.move_to_end(timer.player_id)
            return
        headers = {
            "Nats-Schedule": schedule_expression(timer.due_at),
            "Nats-Schedule-Target": due_subject(timer.player_id),
            "Nats-Msg-Id": subject,
        }
        propagate.inject(headers)  # the step that fires continues the trace that scheduled it
        sent_at = time.monotonic()  # the server's window opens when it stores the timer, not later
        ack = await self._js.publish(subject, _encoder.encode(timer), headers=headers)
        if ack.duplicate:  # stored earlier, when is unknown: leave it to the server
            self._last.pop(timer.player_id, None)
            return
        self._last[timer.player_id] = (subject, sent_at)
        self._last.move_to_end(timer.player_id)
        while len(self._last) > self._remember:
            self._last.popitem(last=False)
