"""The stuck-queue sweep: a queue long past the time it needed a service is driven again.

A queue stops when whatever should move it is gone: the message that would
have was dead-lettered, a timer was lost, a decision went wrong. The projector
keeps, per player, when the queue next needs the processor or the reward
service (the `due` read model, read off the state alone). A recurring schedule
in the TIMERS stream (`@every QUESTLOG_SWEEP_EVERY_S`, one tick per period,
taken by one processor instance through a durable) looks for players past that
time by more than `QUESTLOG_SWEEP_GRACE_S` and catches them up with exactly
what the processor and reward service would have written. Nothing of it lives
in memory: a processor that restarts finds the next tick in the stream.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from questlog.projections.read_models import ReadModels
from questlog.services.rules.clock import Clock
from questlog.services.runtime.metrics import QuestlogMetrics

log = logging.getLogger("questlog.sweep")

SWEEP_SUBJECT = "timers.sweep"
SWEEP_SCHEDULE = "timers.schedule.sweep"  # three tokens: no player's timer subject has so few
BATCH = 200  # players driven per tick at most; the rest wait for the next


async def schedule_sweeps(js: JetStreamContext, every_s: float) -> None:
    """The recurring tick; publishing it again replaces it (one schedule per subject)."""
    # the server takes whole seconds only
    headers = {"Nats-Schedule": f"@every {max(1, round(every_s))}s", "Nats-Schedule-Target": SWEEP_SUBJECT}
    await js.publish(SWEEP_SCHEDULE, b"", headers=headers)


class Sweep:
    def __init__(
        self,
        unstick: Callable[[str], Awaitable[bool]],
        read_models: ReadModels,
        clock: Clock,
        grace_s: float,
        every_s: float,
        metrics: QuestlogMetrics | None = None,
    ) -> None:
        self._unstick = unstick  # catch a player's queue up; whether anything was written
        self._read_models = read_models
        self._clock = clock
        self._grace = timedelta(seconds=grace_s)
        self._every_s = every_s
        self._metrics = metrics or QuestlogMetrics.from_global()

    async def on_tick(self, msg: Msg) -> None:
        # ticks stored while no processor ran pile up; only the newest is worth a sweep
        if msg.metadata.num_pending == 0:
            await self.once()

    async def once(self) -> list[str]:
        """Drive every queue overdue by more than the grace; the players found."""
        now = self._clock.now()
        found = await self._read_models.overdue(now - self._grace, BATCH)
        for player_id, due_at in found:
            moved = await self._unstick(player_id)
            self._metrics.stuck_found(moved)
            log.warning(
                "stuck queue found by the sweep: %s",
                "caught up" if moved else "nothing was due; looked at again later",
                extra={"player_id": player_id, "overdue_s": round((now - due_at).total_seconds(), 1)},
            )
            if not moved:  # the read model may lag, or the state needs a person: do not spin on it
                await self._read_models.postpone(player_id, now + self._grace)
        return [p for p, _ in found]
