"""Live events of one player: a core NATS subscription, forwarded in version order.

Subscribed before recovery reads the log, so nothing stored in between is
missed; arrivals wait in a buffer until `start(last_version)`. From then on a
pump forwards each event once, in order: versions already sent are dropped,
and a gap (a message core NATS lost, or stored while recovery was reading) is
filled from JetStream before the event that revealed it. The read asks for a
replica that holds that event, and a short answer is asked again: the event
that revealed the gap is never dropped.

A lost *last* republish has no later event to reveal it; `behind(seq)` (from
the gateway's periodic check of every session against where the log is) makes
the pump read what the session has not seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from questlog.events.schema import Recorded
from questlog.events.store import EventStore, decode_stored
from questlog.events.subjects import live_player_events

from .mailbox import Mailbox, MailboxFull

_tracer = trace.get_tracer("questlog.gateway")
log = logging.getLogger("questlog.gateway.live")

Emit = Callable[[Recorded], bool]  # False: the session is gone, stop

# Live events waiting for the pump (it may be reading a gap from JetStream).
# Past this the session is closed as too slow (4008) and the client resumes.
MAX_ARRIVALS = 4096
# A gap read that keeps coming back short (a replica far behind): asked this
# many times, then the session is closed and the client resumes.
GAP_READS = 5


class GapNotFilled(RuntimeError):
    """The log kept answering without events it is known to hold."""


class LiveFeed:
    def __init__(self, nc: NATS, store: EventStore, player_id: str, emit: Emit, on_failure: Callable[[], None]) -> None:
        self._nc = nc
        self._store = store
        self._player_id = player_id
        self._emit = emit
        self._on_failure = on_failure
        # an event, or a stream sequence the log is known to hold for this player (`behind`)
        self._arrivals: Mailbox[Recorded | int] = Mailbox(MAX_ARRIVALS)
        self._sub: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self.last_version = 0
        self.last_seq = 0
        self.repaired = 0  # events fetched from JetStream to fill gaps (a metric)
        # done once the events stored before `start` are forwarded (a future: an Event costs a deque)
        self.caught_up: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def subscribe(self) -> None:
        self._sub = await self._nc.subscribe(live_player_events(self._player_id), cb=self._arrived)

    async def _arrived(self, msg: Msg) -> None:
        seq = int((msg.headers or {}).get("Nats-Sequence", "0") or 0)
        try:
            # the end of the event's trace: it reached this player's session
            with _tracer.start_as_current_span(
                "event to client",
                context=propagate.extract(msg.headers or {}),
                kind=SpanKind.CONSUMER,
                attributes={"player.id": self._player_id, "event.seq": seq},
            ):
                self._arrivals.put(decode_stored(msg, self._store.registry))
        except MailboxFull:
            log.warning("live events pile up; closing the session", extra={"player_id": self._player_id})
            self._on_failure()
        except Exception:
            # the pump sees the hole at the next event and reads it from JetStream, which raises loudly
            log.exception("undecodable live event", extra={"player_id": self._player_id, "seq": seq})

    @property
    def player_id(self) -> str:
        return self._player_id

    @property
    def started(self) -> bool:
        """Whether the pump runs (before `start`, arrivals wait for recovery)."""
        return self._pump is not None

    def behind(self, seq: int) -> None:
        """The log holds this player's events up to stream sequence `seq`: send what is missing."""
        if seq > self.last_seq and self.last_seq:
            try:
                self._arrivals.put(seq)
            except MailboxFull:
                self._on_failure()

    def start(self, last_version: int, last_seq: int = 0) -> None:
        """Forward events after `last_version`; `last_seq` (if known) makes gap reads cheap."""
        self.last_version, self.last_seq = last_version, last_seq
        self._pump = asyncio.create_task(self._run(), name=f"live-{self._player_id}")

    async def _run(self) -> None:
        try:
            # Anything stored between the read and now that no live message
            # brought (one was lost): a last-event get, and a read only if it
            # moved on. A scan from `last_seq` would cost the server everything
            # stored since this player's last event.
            pos = await self._store.position(self._player_id)
            if pos.version > self.last_version:
                await self._catch_up(upto=pos.version, repairing=False)
            self.caught_up.set_result(None)
            while True:
                rec = await self._arrivals.get()
                if isinstance(rec, int):
                    if rec > self.last_seq:
                        await self._catch_up(at_least_seq=rec)
                    continue
                if rec.version <= self.last_version:
                    continue
                if rec.version > self.last_version + 1:
                    await self._catch_up(upto=rec.version - 1, at_least_seq=rec.seq)
                if rec.version != self.last_version + 1:
                    raise GapNotFilled(f"{self._player_id}: versions before {rec.version} never came")
                if not self._forward(rec):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("live delivery failed", extra={"player_id": self._player_id})
            self._on_failure()

    async def _catch_up(self, upto: int | None = None, repairing: bool = True, at_least_seq: int = 0) -> None:
        """Forward the events after the last one sent, up to version `upto` (None: the log's end).

        `at_least_seq`: the log holds this sequence (the event that revealed the
        gap): the read goes to a replica that has it, and an answer that stops
        short of `upto` is asked again rather than taken for the whole gap.
        """
        for attempt in range(GAP_READS):
            if self.last_seq and repairing:  # a gap just behind a live event: a short scan from where we are
                missing = await self._store.read(
                    self._player_id, after_seq=self.last_seq, to_version=upto, at_least_seq=at_least_seq
                )
            else:  # walks back from the last event
                missing = await self._store.read(
                    self._player_id, from_version=self.last_version + 1, to_version=upto, at_least_seq=at_least_seq
                )
            for rec in missing:
                if rec.version <= self.last_version:
                    continue
                if rec.version != self.last_version + 1:
                    raise RuntimeError(f"{self._player_id}: the log has a hole before version {rec.version}")
                self.repaired += 1 if repairing else 0
                if not self._forward(rec):
                    return
            done = self.last_version >= upto if upto is not None else self.last_seq >= at_least_seq
            if done:
                return
            await asyncio.sleep(0.05 * 2**attempt)  # backoff: the replica that answered is catching up
        raise GapNotFilled(f"{self._player_id}: the log kept answering short of version {upto}")

    def _forward(self, rec: Recorded) -> bool:
        self.last_version, self.last_seq = rec.version, rec.seq or self.last_seq
        return self._emit(rec)

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._sub is not None:
            with contextlib.suppress(Exception):  # the connection may be closing already
                await self._sub.unsubscribe()
