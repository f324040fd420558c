"""The one consumer runtime every reacting service uses.

A durable pull consumer shared by every instance of a service (so N instances
split the work), its messages taken as they arrive (`pulling.Pull`); within
what arrived together one player's messages are handled in order and
different players concurrently; ack only after the effect, redelivery with
backoff on errors, and a dead-letter stream once a message used up its
deliveries. Setting `stop` drains: nothing new is taken, the in-flight
messages finish and are acked, and those delivered but not yet started are
given back (nak) for another instance (any still on the wire come back after
the ack wait).

Beside it, each service takes back its own dead letters when an operator
re-drives them (`questlog deadletters redrive`, `redrive.py`): a second
durable, `<durable>-redrive`, on `deadletter.redrive.<durable>` in the
dead-letter stream hands each re-drive to the same handler as the original
message (`redrive.original_of`), acks it once the handler succeeded, and
dead-letters it again once its deliveries are used up.

Redelivery and several instances mean a handler can see a player's messages
out of order or twice, so every handler is state-based: it decides what is due
from the player's state (one that holds the message, checked against the log
when it appends), which makes order and repeats harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from . import redrive
from .metrics import QuestlogMetrics
from .pulling import Pull, PullRefused
from .settings import Settings
from .startup import patiently

log = logging.getLogger("questlog.consumer")
_tracer = trace.get_tracer("questlog.consumer")

Handler = Callable[[Msg], Awaitable[None]]

# How often an idle consumer asks the server for its num_pending (the lag gauge);
# a busy one reads it from the metadata of what it takes instead.
LAG_EVERY_S = 5.0


class ConsumerSpec(msgspec.Struct, frozen=True, kw_only=True):
    durable: str
    stream: str
    filter_subjects: list[str]
    max_deliver: int = 10
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (0.1, 0.5, 2.0, 5.0, 10.0, 30.0)
    batch: int = 128
    max_ack_pending: int = 4096
    dead_letter_subject: str = redrive.DEAD_LETTER_SUBJECT
    # where this durable's re-drives arrive; None: the stream that holds the subject (found at start)
    dead_letter_stream: str | None = None
    redrive_batch: int = 16
    startup_timeout_s: float = 120.0  # how long creating the durable may wait for the cluster

    @classmethod
    def of_service(
        cls, settings: Settings, durable: str, filter_subjects: list[str], *, stream: str | None = None
    ) -> ConsumerSpec:
        """A service's durable: on the events stream unless `stream` says otherwise, with the deployment's ack wait."""
        return cls(
            durable=durable,
            stream=stream or settings.streams.events,
            filter_subjects=filter_subjects,
            ack_wait_s=settings.ack_wait_s,
            dead_letter_stream=settings.streams.dead_letters,
            startup_timeout_s=settings.startup_timeout_s,
        )

    def redrive_spec(self, dead_letter_stream: str) -> ConsumerSpec:
        """The second durable: this one's re-driven dead letters, with the same deliveries and backoff."""
        return msgspec.structs.replace(
            self,
            durable=redrive.redrive_durable(self.durable),
            stream=dead_letter_stream,
            filter_subjects=[redrive.redrive_subject(self.durable, self.dead_letter_subject)],
            batch=self.redrive_batch,
            max_ack_pending=max(self.redrive_batch, 64),
        )

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=list(self.filter_subjects),
            max_deliver=self.max_deliver,
            ack_wait=self.ack_wait_s,
            max_ack_pending=self.max_ack_pending,
        )


def player_key(msg: Msg) -> str:
    """Order key: the player token of `players.<id>.…` or `timers.due.<id>`."""
    parts = msg.subject.split(".")
    return parts[1] if parts[0] == "players" else parts[-1]


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable, or update it in place to this spec (same name)."""
    await js.add_consumer(spec.stream, spec.config())


async def run_consumer(
    nc: NATS,
    spec: ConsumerSpec,
    handler: Handler,
    stop: asyncio.Event,
    *,
    key: Callable[[Msg], str] = player_key,
    wait_s: float = 1.0,
    metrics: QuestlogMetrics | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Handle the durable's messages, and its re-driven dead letters, until `stop`; `wait_s` bounds each wait.

    `ready` is set once both durables exist and messages are being asked for.
    """
    metrics = metrics or QuestlogMetrics.from_global()
    js = nc.jetstream()
    # the durable's raft group may still be electing (a fresh cluster, a fail-over)
    await patiently(
        f"create the durable consumer {spec.durable}",
        lambda: ensure_consumer(js, spec),
        deadline_s=spec.startup_timeout_s,
    )
    dead_letters = spec.dead_letter_stream
    if dead_letters is None:
        subject = redrive.redrive_subject(spec.durable, spec.dead_letter_subject)
        dead_letters = await patiently(
            f"find the stream of {subject}",
            lambda: js.find_stream_name_by_subject(subject),
            deadline_s=spec.startup_timeout_s,
        )
    redrives = spec.redrive_spec(dead_letters)
    await patiently(
        f"create the durable consumer {redrives.durable}",
        lambda: ensure_consumer(js, redrives),
        deadline_s=spec.startup_timeout_s,
    )
    pull = await Pull(nc, spec.stream, spec.durable, batch=spec.batch).start()
    redrive_pull = await Pull(nc, redrives.stream, redrives.durable, batch=redrives.batch).start()
    if ready is not None:
        ready.set()
    stopping = asyncio.create_task(stop.wait())
    stopping.add_done_callback(lambda _: pull.interrupt())
    stopping.add_done_callback(lambda _: redrive_pull.interrupt())
    redriving = asyncio.create_task(
        _take_redrives(nc, spec, redrives, redrive_pull, handler, stop, wait_s=wait_s, metrics=metrics)
    )
    redriving.add_done_callback(partial(_said_if_failed, redrives))
    lag_at = await _measure_lag(js, spec, metrics)
    try:
        while not stop.is_set():
            msgs = await _next(js, spec, pull, stop, wait_s)
            if msgs is None:
                continue
            if not msgs:
                if time.monotonic() - lag_at >= LAG_EVERY_S:
                    lag_at = await _measure_lag(js, spec, metrics)
                continue
            metrics.lag(spec.durable, msgs[-1].metadata.num_pending)
            lag_at = time.monotonic()
            groups: dict[str, list[Msg]] = {}
            for msg in msgs:
                groups.setdefault(key(msg), []).append(msg)
            await asyncio.gather(*(_in_order(js, spec, handler, group, metrics) for group in groups.values()))
    finally:
        stopping.cancel()
        if not stop.is_set():  # leaving on an error: the re-drives stop too
            redriving.cancel()
        # Delivered to us after the last batch: give them back now rather than after the ack wait.
        for msg in await pull.close():
            await _settle(msg.nak(), spec, msg)
        await asyncio.wait([redriving])  # it stops with `stop` too; a failure of its own was logged


def _said_if_failed(redrives: ConsumerSpec, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.critical(
            "the re-drive consumer stopped; re-driven dead letters wait until the service restarts",
            extra={"consumer": redrives.durable, "error": repr(failure)},
        )


async def _next(
    js: JetStreamContext, spec: ConsumerSpec, pull: Pull, stop: asyncio.Event, wait_s: float
) -> list[Msg] | None:
    """What arrived within `wait_s` ([] if nothing); None after a failed pull request (already waited for)."""
    try:
        return await pull.next(wait_s)
    except (NatsError, PullRefused) as exc:  # reconnecting, a leader election: wait, then ask again
        log.warning("pull request failed; retrying", extra={"consumer": spec.durable, "error": repr(exc)})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), wait_s)
        if isinstance(exc, PullRefused) and not stop.is_set():
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                await ensure_consumer(js, spec)  # deleted by an operator, or lost: made again
        return None


async def _take_redrives(
    nc: NATS,
    spec: ConsumerSpec,
    redrives: ConsumerSpec,
    pull: Pull,
    handler: Handler,
    stop: asyncio.Event,
    *,
    wait_s: float,
    metrics: QuestlogMetrics,
) -> None:
    """The service's re-driven dead letters, one at a time (there are few), until `stop`."""
    js = nc.jetstream()
    try:
        while not stop.is_set():
            for msg in await _next(js, redrives, pull, stop, wait_s) or []:
                await _redrive_one(nc, js, spec, redrives, handler, msg, metrics)
    finally:
        for msg in await pull.close():
            await _settle(msg.nak(), redrives, msg)


async def _redrive_one(
    nc: NATS,
    js: JetStreamContext,
    spec: ConsumerSpec,
    redrives: ConsumerSpec,
    handler: Handler,
    msg: Msg,
    metrics: QuestlogMetrics,
) -> None:
    """Hand one re-drive to the handler as the original message; ack it after, or back off, or dead-letter again."""
    try:
        original = redrive.original_of(nc, msg, stream=spec.stream, durable=spec.durable)
    except (KeyError, ValueError) as exc:
        log.error(
            "a re-drive without the original's subject and sequence; dropped",
            extra={"consumer": redrives.durable, "stream_seq": msg.metadata.sequence.stream, "error": repr(exc)},
        )
        await _settle(msg.term(), redrives, msg)
        metrics.message_taken(redrives.durable, "failed")
        return
    try:
        with _tracer.start_as_current_span(
            f"consume {redrives.durable}",
            context=propagate.extract(original.headers or {}),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.destination.name": original.subject,
                "messaging.consumer.group.name": redrives.durable,
            },
        ):
            await handler(original)
    except Exception as exc:
        again = redrive.dead_letter_again_headers(msg, exc)
        metrics.message_taken(redrives.durable, await _failed(js, redrives, msg, exc, dead_letter=(spec, again)))
    else:
        if await _settle(msg.ack(), redrives, msg):
            log.info(
                "re-driven dead letter handled",
                extra={
                    "consumer": spec.durable,
                    "subject": original.subject,
                    "dead_letter_seq": (msg.headers or {}).get(redrive.REDRIVE_OF),
                },
            )
            metrics.message_taken(redrives.durable, "handled")


async def _measure_lag(js: JetStreamContext, spec: ConsumerSpec, metrics: QuestlogMetrics) -> float:
    """Set the lag gauge from the consumer's info; a failure (a leader election) only skips a reading."""
    try:
        info = await js.consumer_info(spec.stream, spec.durable)
    except (TimeoutError, NatsError) as exc:
        log.debug("consumer info unavailable", extra={"consumer": spec.durable, "error": repr(exc)})
    else:
        metrics.lag(spec.durable, info.num_pending or 0)
    return time.monotonic()


async def _in_order(
    js: JetStreamContext, spec: ConsumerSpec, handler: Handler, msgs: list[Msg], metrics: QuestlogMetrics
) -> None:
    """One player's messages of a batch, one after the other.

    A failure does not hold back the messages after it: handlers are
    state-based, so order does not matter, and holding them back (nak) would
    spend their own deliveries on someone else's failure.
    """
    for msg in msgs:
        if msg.metadata.num_delivered > 1:
            metrics.message_redelivered(spec.durable)
        try:
            # The handler runs in the trace of whatever appended the message (its
            # `traceparent` header), so what it appends continues that trace.
            with _tracer.start_as_current_span(
                f"consume {spec.durable}",
                context=propagate.extract(msg.headers or {}),
                kind=SpanKind.CONSUMER,
                attributes={"messaging.destination.name": msg.subject, "messaging.consumer.group.name": spec.durable},
            ):
                await handler(msg)
        except Exception as exc:
            metrics.message_taken(spec.durable, await _failed(js, spec, msg, exc))
        else:
            if await _settle(msg.ack(), spec, msg):
                metrics.message_taken(spec.durable, "handled")


async def _settle(action: Awaitable[None], spec: ConsumerSpec, msg: Msg) -> bool:
    """Ack, nak or term; a lost connection only means the server redelivers later."""
    try:
        await action
        return True
    except (TimeoutError, NatsError) as exc:
        log.warning(
            "could not settle a message; it will be redelivered",
            extra={"consumer": spec.durable, "subject": msg.subject, "error": repr(exc)},
        )
        return False


async def _failed(
    js: JetStreamContext,
    spec: ConsumerSpec,
    msg: Msg,
    exc: Exception,
    *,
    dead_letter: tuple[ConsumerSpec, dict[str, str]] | None = None,
) -> str:
    """Dead-letter the message or schedule its redelivery; returns which ("dead_lettered", "failed").

    `spec` is the durable that delivered `msg`. `dead_letter`: whose dead letter
    it becomes, with which headers (a re-drive that failed again is the original
    durable's dead letter once more); by default `spec`'s, made from `msg`.
    """
    delivered = msg.metadata.num_delivered
    if delivered >= spec.max_deliver:
        log.error(
            "giving up on a message after %d deliveries; sent to the dead-letter stream",
            delivered,
            extra={"consumer": spec.durable, "subject": msg.subject, "error": repr(exc)},
        )
        if dead_letter is None:
            # The original's Nats-* headers (expected last sequence, batch, msg id) would
            # make the dead-letter stream refuse the copy: they are kept under other names.
            owner = spec
            headers = redrive.dead_letter_headers(
                msg.headers, subject=msg.subject, sequence=msg.metadata.sequence.stream, durable=spec.durable, error=exc
            )
        else:
            owner, headers = dead_letter
        for attempt in range(3):
            try:
                await js.publish(
                    redrive.dead_letter_subject(owner.durable, owner.dead_letter_subject), msg.data, headers=headers
                )
                break
            except (TimeoutError, NatsError) as err:
                log.error(
                    "dead-letter publish failed",
                    extra={"consumer": spec.durable, "attempt": attempt + 1, "error": repr(err)},
                )
        else:
            # Deliveries are used up, so the message stays in the log unprocessed: say where.
            log.critical(
                "message neither handled nor dead-lettered",
                extra={"consumer": spec.durable, "stream_seq": msg.metadata.sequence.stream},
            )
            return "failed"
        await _settle(msg.term(), spec, msg)
        return "dead_lettered"
    delay = spec.backoff_s[min(delivered - 1, len(spec.backoff_s) - 1)]
    log.warning(
        "handler failed; redelivery in %.1fs",
        delay,
        extra={"consumer": spec.durable, "subject": msg.subject, "delivered": delivered, "error": repr(exc)},
    )
    await _settle(msg.nak(delay=delay), spec, msg)
    return "failed"
